#!/usr/bin/env bash
# The test command of the README: on a fresh Debian machine it installs what the tests
# need, starts Postgres and RabbitMQ if they are down, validates the compose file, then
# runs every test of the workspace against the real services.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*" >&2; }

# --- packages -------------------------------------------------------------------------
# Debian packages the tests use as real peers or tools.
# dcmtk: storescu/echoscu as real DICOM peers of anon-node, dcmqrscp as the PACS;
# orthanc: the VNA of the imaging-api tests and of `pixl demo`; orthanc-dicomweb: the
# STOW-RS target of the export-api tests; curl: the baseline of the FTPS benchmark; strace:
# the durability test (fsync before acknowledging); openssh-client: ssh-keygen makes the
# SS-MIX2 recipient key as ssmixtools' users make theirs.
apt_packages=(docker-compose postgresql-client dcmtk orthanc orthanc-dicomweb curl strace openssh-client)
missing=()
for package in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  log "installing ${missing[*]}"
  sudo_cmd=(); [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# PyPI packages: pydicom's bundled test files are the real DICOM corpus of the
# de-identification tests; pyftpdlib with pyOpenSSL is the real FTPS server of the
# export-api tests (test/ftps_server.py); pyOpenSSL's `cryptography` also checks the FHIR
# Bulk Data client's signatures.
# pycryptodome: the recipients' side of SS-MIX2 output encryption (ssmixtools' format),
# the independent implementation the encryption test checks against.
python3 -c 'import pydicom, pyftpdlib, OpenSSL, Crypto' 2>/dev/null || {
  log "installing pydicom, pyftpdlib, pyopenssl, pycryptodome"
  python3 -m pip install -q --disable-pip-version-check pydicom pyftpdlib pyopenssl pycryptodome
}

# --- services -------------------------------------------------------------------------
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for() { # name, seconds, command...
  local name=$1 seconds=$2; shift 2
  for _ in $(seq "$seconds"); do "$@" && return 0; sleep 1; done
  echo "$name did not come up within ${seconds}s" >&2; return 1
}

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  log "starting Postgres"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
wait_for Postgres 60 pg_isready -q -h 127.0.0.1 -p 5432

if ! port_open 5672; then
  log "starting RabbitMQ"
  rabbitmq-server -detached
fi
wait_for RabbitMQ 120 port_open 5672
rabbitmqctl -q await_startup >/dev/null

# Databases left by earlier interrupted test runs.
psql -h 127.0.0.1 -U postgres -d postgres -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'pixl_test_%'" |
  while read -r db; do psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"; done

# --- static checks --------------------------------------------------------------------
log "validating docker-compose.yml"
docker-compose --env-file .env.sample -f docker-compose.yml config -q
docker-compose --env-file .env.sample -f docker-compose.yml -f docker-compose.host-ports.yml config -q

log "checking formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# --- tests ----------------------------------------------------------------------------
# Every service binary: `pixl demo`'s test runs them as processes, and `cargo test` builds
# the binaries only of packages that have integration tests.
log "building the service binaries"
cargo build --workspace --bins --locked

log "running the tests"
exec cargo test --workspace --locked "$@"
