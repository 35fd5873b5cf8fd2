#!/usr/bin/env bash
# Download benchmark of `pixl fhir export` (issue 15) against curl, on loopback: the test
# Bulk Data server (pixl-fhir-bulk's `bulk_server` example, an open server with
# requiresAccessToken false) serves generated NDJSON (`pixl fhir generate`); pixl exports it
# (kick-off, poll, 5 parallel downloads, every line parsed and checked, fsync, rename),
# then curl fetches the same manifest's files with `--parallel --parallel-max 5` (bytes
# to disk, nothing checked). Both with gzip off and on. Reports MB/s of NDJSON, CPU
# seconds and peak RSS (GNU time). The server runs in the same machine and shares its 2 cores.
# Usage: bench/fhir_download.sh [PATIENTS]   (default 20000 ≈ 370 MB;
#        PIXL_BENCH_PROFILE=dev: the test build)
set -euo pipefail
cd "$(dirname "$0")/.."
patients=${1:-20000}
if [ "${PIXL_BENCH_PROFILE:-release}" = dev ]; then
  cargo build --locked -p pixl-cli >&2
  cargo build --locked -p pixl-fhir-bulk --features test-support --example bulk_server >&2
  bin=$PWD/target/debug
else
  cargo build --release --locked -p pixl-cli >&2
  cargo build --release --locked -p pixl-fhir-bulk --features test-support --example bulk_server >&2
  bin=$PWD/target/release
fi
work=$PWD/target/bench-fhir-download
rm -rf "$work" && mkdir -p "$work"
"$bin/pixl" fhir generate "$work/ndjson" --patients "$patients" --seed 1 >&2
mb=$(du -sm --apparent-size "$work/ndjson" | cut -f1)
echo "machine: $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p'); input: $patients patients, $mb MB of NDJSON"
measure() { # label, command...
  local label=$1; shift
  local start end
  start=$(date +%s.%N)
  /usr/bin/time -f '%M %U %S' -o "$work/time" "$@" > "$work/out.txt" 2>&1 || { cat "$work/out.txt" >&2; return 1; }
  end=$(date +%s.%N)
  read -r rss user sys < "$work/time"
  python3 -c "import sys; s=$end-$start; print(f'{sys.argv[1]:<30} {s:7.2f} s {$mb/s:8.1f} MB/s  CPU {$user+$sys:6.2f} s  peak RSS {$rss/1024:6.0f} MB')" "$label"
}
for gzip in "" "--gzip"; do
  "$bin/examples/bulk_server" "$work/ndjson" $gzip --lines-per-file 20000 > "$work/server.url" &
  server=$!
  for _ in $(seq 100); do [ -s "$work/server.url" ] && break; sleep 0.1; done
  base=$(head -n1 "$work/server.url")
  echo "gzip: ${gzip:-off}"
  rm -rf "$work/pixl"
  measure "pixl fhir export" "$bin/pixl" fhir export --base "$base" --out "$work/pixl" --parallel 5
  # curl: the same protocol steps by hand, then the files.
  location=$(curl -sS -D - -o /dev/null -H 'Accept: application/fhir+json' -H 'Prefer: respond-async' "$base/\$export" | tr -d '\r' | sed -n 's/^content-location: //Ip')
  curl -sS "$location" > "$work/manifest.json"
  rm -rf "$work/curl" && mkdir -p "$work/curl"
  python3 -c "
import json, sys
manifest = json.load(open(sys.argv[1]))
for i, f in enumerate(manifest['output']):
    print(f'url = \"{f[\"url\"]}\"\noutput = \"{sys.argv[2]}/{i}.ndjson\"')
" "$work/manifest.json" "$work/curl" > "$work/curl.cfg"
  compressed=(); [ -n "$gzip" ] && compressed=(--compressed)
  measure "curl --parallel-max 5" curl -sS --fail --parallel --parallel-max 5 "${compressed[@]}" -K "$work/curl.cfg"
  cmp <(cat "$work"/pixl/*.ndjson | sort | md5sum) <(cat "$work"/curl/*.ndjson | sort | md5sum) && echo "same lines downloaded by both"
  kill "$server"; wait "$server" 2>/dev/null || true
done
