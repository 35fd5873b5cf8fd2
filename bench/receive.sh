#!/usr/bin/env bash
# Benchmark of anon-node's C-STORE receive rate (issue 4): dcmtk storescu sends the same
# generated CT slices over ASSOCIATIONS parallel associations (default 1) to pixl-anon-node
# and to dcmtk's own storescp, both writing to disk on loopback, in the same run.
# pixl-anon-node fsyncs every instance (and its directory) before answering success;
# storescp does not. TCP_NODELAY=1 for the dcmtk tools.
# Usage: bench/receive.sh [SLICES] [ASSOCIATIONS]   (default 500 1, ~0.5 MB each)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-500}
associations=${2:-1}
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
# The node also consumes its queue (Postgres and RabbitMQ of this machine, under a bench
# database and queue prefix); only its storage SCP is measured here.
PIXL_DB_NAME=pixl_bench PIXL_QUEUE_PREFIX=bench. ANON_NODE_HTTP_PORT=11202 \
ANON_NODE_DICOM_PORT=$ours ANON_NODE_ALLOWED_CALLERS=ARCHIVE ANON_NODE_RAW_CACHE_DIR="$work/ours" \
ANON_NODE_ANON_STORE_DIR="$work/anon" ANON_NODE_RAW_CACHE_MAX_SIZE_MB=0 ANON_NODE_API_TOKEN=bench-anon-token RUST_LOG=warn \
  target/release/pixl-anon-node &
pids+=($!)
storescp -aet STORESCP -od "$work/theirs" $theirs &
pids+=($!)
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$ours) 2>/dev/null && break; sleep 0.2; done

timed() { local start; start=$(date +%s.%N); "$@" >/dev/null 2>&1; echo "$(date +%s.%N) - $start" | bc; }
# Rounds in A-B-B-A order with the received files removed and flushed in between, so that
# neither receiver pays for the other's write-back.
send_all() { # port aet: the slices split over $associations storescu processes
  local files=("$work"/in/*.dcm) i senders=()
  for ((i = 0; i < associations; i++)); do
    local part=()
    for ((j = i; j < ${#files[@]}; j += associations)); do part+=("${files[$j]}"); done
    storescu -aet ARCHIVE -aec "$2" 127.0.0.1 "$1" "${part[@]}" & senders+=($!)
  done
  wait "${senders[@]}"
}
round() { # receiver-name port aet dir
  local s; s=$(timed send_all "$2" "$3")
  local n; n=$(find "$4" -type f -name '*' ! -name '.*' | wc -l)
  [ "$n" = "$count" ] || { echo "$1 received $n of $count" >&2; exit 1; }
  rm -rf "${4:?}"/*; sync
  echo "$s"
}
sync
ours_s=0; theirs_s=0
for order in ours theirs theirs ours; do
  if [ "$order" = ours ]; then ours_s=$(echo "$ours_s + $(round pixl-anon-node $ours PIXL_RAW "$work/ours")" | bc)
  else theirs_s=$(echo "$theirs_s + $(round storescp $theirs STORESCP "$work/theirs")" | bc); fi
done
count2=$((count * 2))
printf '| receiver | instances | seconds | instances/s | MB/s |\n|---|---:|---:|---:|---:|\n'
awk -v n="$count2" -v s="$ours_s" -v mb="$megabytes" 'BEGIN { printf "| pixl-anon-node | %d | %.2f | %.0f | %.0f |\n", n, s, n / s, 2 * mb / s }'
awk -v n="$count2" -v s="$theirs_s" -v mb="$megabytes" 'BEGIN { printf "| dcmtk storescp | %d | %.2f | %.0f | %.0f |\n", n, s, n / s, 2 * mb / s }'
awk -v a="$ours_s" -v b="$theirs_s" -v p="$associations" 'BEGIN { printf "\nreceive rate vs storescp over %d association(s): %.2f×\n", p, b / a }'
