#!/usr/bin/env bash
# Benchmark of export-api's FTPS upload (issue 6): the same files uploaded to the same local
# FTPS server by export-api's uploader (crates/pixl-export-api/benches/ftps_upload.rs: the
# code path of a study export, one session, temporary name, size check, rename) and by
# curl (`--ftp-ssl-reqd`: explicit TLS; an `ftps://` URL for implicit), in the same run,
# in A-B-B-A rounds, the uploads removed between rounds. TLS is required on the control and
# data connections.
#
# The server writes to tmpfs (/dev/shm), so that disk write-back does not decide the
# result. Server: pure-ftpd (Debian, C; explicit TLS only; needs root) when available,
# else test/ftps_server.py (pyftpdlib, Python: it saturates one core at ~600 MB/s, so it
# measures mostly itself). SERVER=pyftpdlib forces the latter; implicit TLS always uses it.
# Usage: bench/export.sh [FILES] [MB_EACH] [explicit|implicit] [ROUNDS]
#        (default 20 × 50 MB, explicit, 2 rounds of A-B-B-A)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-20}
size_mb=${2:-50}
mode=${3:-explicit}
rounds=${4:-2}
server=${SERVER:-}
if [ -z "$server" ]; then
  if [ "$mode" = explicit ] && [ "$(id -u)" = 0 ] && command -v pure-ftpd >/dev/null; then server=pure-ftpd; else server=pyftpdlib; fi
fi
command -v curl >/dev/null || { echo "needs curl" >&2; exit 1; }
python3 -c 'import pyftpdlib, OpenSSL' 2>/dev/null || { echo "needs pyftpdlib and pyopenssl (pip)" >&2; exit 1; }
cargo bench --locked -p pixl-export-api --bench ftps_upload --no-run >&2 2>/dev/null
bench_bin=$(find target/release/deps -maxdepth 1 -type f -executable -name 'ftps_upload-*' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)

work=$(mktemp -d)
root=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work" "$root"; }
trap cleanup EXIT

# A CA and a server certificate for 127.0.0.1, made now.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" -days 1 -subj "/CN=pixl bench CA" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$work/server.key" -out "$work/server.csr" -subj "/CN=127.0.0.1" 2>/dev/null
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial -out "$work/server.pem" -days 1 \
  -extfile <(printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n') 2>/dev/null

mkdir -p "$work/in"
for i in $(seq -w 1 "$count"); do head -c "$((size_mb * 1000000))" /dev/urandom >"$work/in/study-$i.zip"; done
names=$(cd "$work/in" && ls | paste -sd, -)
total_mb=$((count * size_mb))

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
password=bench-password
if [ "$server" = pure-ftpd ]; then
  # A virtual user mapped to nobody; its password hashed with SHA-512 crypt, because
  # pure-pw's default (memory-hard, 8 MB) costs 4 s per login here.
  chown nobody "$root"
  printf 'bench:%s:%s:%s::%s/./::::::::::::\n' "$(openssl passwd -6 "$password")" "$(id -u nobody)" "$(id -g nobody)" "$root" >"$work/passwd"
  PURE_PASSWDFILE="$work/passwd" pure-pw mkdb "$work/pureftpd.pdb" -f "$work/passwd"
  cat "$work/server.pem" "$work/server.key" >"$work/combined.pem"
  pure-ftpd -S "127.0.0.1,$port" -l "puredb:$work/pureftpd.pdb" -E -H -A -Y 2 -2 "$work/combined.pem" -p 40000:40999 >/dev/null 2>"$work/server.log" &
else
  implicit_flag=(); [ "$mode" = implicit ] && implicit_flag=(--implicit)
  python3 test/ftps_server.py --root "$root" --port "$port" --user bench --password "$password" \
    --cert "$work/server.pem" --key "$work/server.key" "${implicit_flag[@]}" >/dev/null 2>"$work/server.log" &
fi
pids+=($!)
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.2; done

scheme=ftp; [ "$mode" = implicit ] && scheme=ftps
timed() { local start; start=$(date +%s.%N); "$@" >/dev/null; echo "$(date +%s.%N) - $start" | bc; }
run_curl() { (cd "$work/in" && curl -sS --ftp-ssl-reqd --cacert "$work/ca.pem" -u "bench:$password" --ftp-create-dirs -T "{$names}" "$scheme://127.0.0.1:$port/curl/"); }
run_pixl() { BENCH_FTP_PASSWORD=$password "$bench_bin" --port "$port" --user bench --ca "$work/ca.pem" --tls "$mode" --remote-dir pixl "$work"/in/*.zip; }
round() { # name command
  local s; s=$(timed "$2")
  local dir="$root/$1"
  local n; n=$(find "$dir" -type f ! -name '.*' | wc -l)
  [ "$n" = "$count" ] || { echo "$1 uploaded $n of $count files" >&2; exit 1; }
  cmp -s "$work/in/$(ls "$work/in" | head -1)" "$dir/$(ls "$work/in" | head -1)" || { echo "$1 uploaded a different file" >&2; exit 1; }
  rm -rf "$dir"
  echo "$s"
}
pixl_s=0; curl_s=0
orders=(); for _ in $(seq "$rounds"); do orders+=(pixl curl curl pixl); done
for order in "${orders[@]}"; do
  if [ "$order" = pixl ]; then pixl_s=$(echo "$pixl_s + $(round pixl run_pixl)" | bc)
  else curl_s=$(echo "$curl_s + $(round curl run_curl)" | bc); fi
done
uploads=$((count * 2 * rounds)); mb=$((total_mb * 2 * rounds))
printf '| client (%s TLS, %s) | files | MB | seconds | MB/s |\n|---|---:|---:|---:|---:|\n' "$mode" "$server"
awk -v n="$uploads" -v s="$pixl_s" -v mb="$mb" 'BEGIN { printf "| export-api FTPS uploader | %d | %d | %.2f | %.0f |\n", n, mb, s, mb / s }'
awk -v n="$uploads" -v s="$curl_s" -v mb="$mb" 'BEGIN { printf "| curl --ftp-ssl-reqd | %d | %d | %.2f | %.0f |\n", n, mb, s, mb / s }'
awk -v a="$pixl_s" -v b="$curl_s" 'BEGIN { printf "\nupload throughput vs curl: %.2f×\n", b / a }'
