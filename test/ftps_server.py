#!/usr/bin/env python3
"""A real FTPS server for pixl's tests and benchmarks: pyftpdlib (PyPI) with TLS from
pyOpenSSL, on 127.0.0.1 only.

  ftps_server.py --root DIR --port PORT --user U --password P --cert CERT --key KEY
                 [--implicit] [--read-limit BYTES_PER_S]

Explicit TLS (AUTH TLS) by default; --implicit makes the control connection TLS from the
first byte (PIXL's mode). TLS is required on the control and data connections. With
--read-limit, uploads are throttled (the tests use it to stop an upload midway).
Prints "ready" on stdout once listening.
"""

import argparse
import sys

from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.handlers import ThrottledDTPHandler, TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer


class ImplicitTLSHandler(TLS_FTPHandler):
    """TLS starts before the greeting; the 220 is sent once the handshake is done."""

    def handle(self):
        self.secure_connection(self.ssl_context)

    def handle_ssl_established(self):
        if not getattr(self, "_greeted", False):
            self._greeted = True
            TLS_FTPHandler.handle(self)


class ThrottledTLSDTPHandler(TLS_DTPHandler, ThrottledDTPHandler):
    """TLS data connections with pyftpdlib's bandwidth limit."""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--implicit", action="store_true")
    parser.add_argument("--read-limit", type=int, default=0)
    args = parser.parse_args()

    authorizer = DummyAuthorizer()
    # e: change directory, l: list, r: read, a: append, d: delete, f: rename, m: mkdir,
    # w: store.
    authorizer.add_user(args.user, args.password, args.root, perm="elradfmw")

    handler = ImplicitTLSHandler if args.implicit else TLS_FTPHandler
    handler.authorizer = authorizer
    handler.certfile = args.cert
    handler.keyfile = args.key
    handler.tls_control_required = True
    handler.tls_data_required = True
    handler.passive_ports = None
    handler.banner = "pixl test FTPS server"
    if args.read_limit:
        ThrottledTLSDTPHandler.read_limit = args.read_limit
        handler.dtp_handler = ThrottledTLSDTPHandler

    server = FTPServer(("127.0.0.1", args.port), handler)
    print("ready", flush=True)
    server.serve_forever(handle_exit=True)


if __name__ == "__main__":
    sys.exit(main())
