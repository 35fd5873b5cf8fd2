#!/usr/bin/env bash
# Benchmark of anon-node's C-STORE receive rate (issue 4): dcmtk storescu sends the same
# generated CT slices over one association to pixl-anon-node and to dcmtk's own storescp,
# both writing to disk on loopback, in the same run. TCP_NODELAY=1 for the dcmtk tools.
# Usage: bench/receive.sh [SLICES]   (default 500, ~0.5 MB each)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-500}
command -v storescu >/dev/null || { echo "needs dcmtk (Debian package dcmtk)" >&2; exit 1; }
cargo build --release --locked -p pixl-anon-node -p pixl-cli >&2
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
target/release/pixl bench generate-ct --count "$count" "$work/in" >/dev/null
megabytes=$(du -sm "$work/in" | cut -f1)
export TCP_NODELAY=1

ours=11200
theirs=11201
mkdir -p "$work/ours" "$work/theirs"
ANON_NODE_DICOM_PORT=$ours ANON_NODE_ALLOWED_CALLERS=ARCHIVE ANON_NODE_RAW_CACHE_DIR="$work/ours" RUST_LOG=warn \
  target/release/pixl-anon-node &
pids+=($!)
storescp -aet STORESCP -od "$work/theirs" $theirs &
pids+=($!)
sleep 1

timed() { local start; start=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $start" | bc; }
ours_s=$(timed storescu -aet ARCHIVE -aec PIXL_RAW 127.0.0.1 $ours "$work"/in/*.dcm)
theirs_s=$(timed storescu -aet ARCHIVE -aec STORESCP 127.0.0.1 $theirs "$work"/in/*.dcm)
ours_n=$(find "$work/ours" -name '*.dcm' | wc -l)
theirs_n=$(find "$work/theirs" -type f | wc -l)
[ "$ours_n" = "$count" ] && [ "$theirs_n" = "$count" ] || { echo "received $ours_n and $theirs_n of $count" >&2; exit 1; }

printf '| receiver | instances | seconds | instances/s | MB/s |\n|---|---:|---:|---:|---:|\n'
awk -v n="$count" -v s="$ours_s" -v mb="$megabytes" 'BEGIN { printf "| pixl-anon-node | %d | %.2f | %.0f | %.0f |\n", n, s, n / s, mb / s }'
awk -v n="$count" -v s="$theirs_s" -v mb="$megabytes" 'BEGIN { printf "| dcmtk storescp | %d | %.2f | %.0f | %.0f |\n", n, s, n / s, mb / s }'
awk -v a="$ours_s" -v b="$theirs_s" 'BEGIN { printf "\nreceive rate vs storescp: %.2f×\n", b / a }'
