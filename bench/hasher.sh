#!/usr/bin/env bash
# Benchmark of hasher-api (issue 3): wrk against GET /hash on loopback, for pixl's
# hasher-api and for a minimal FastAPI + uvicorn service computing the same PIXL BLAKE2b
# hash (bench/hasher_baseline.py), one after the other in the same run.
# Usage: bench/hasher.sh [DURATION]   (default 15s)
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-15s}
command -v wrk >/dev/null || { echo "needs wrk (Debian package wrk)" >&2; exit 1; }
python3 -c 'import fastapi, uvicorn' 2>/dev/null || pip install -q fastapi uvicorn >&2
cargo build --release --locked -p pixl-hasher-api >&2

work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/configs/tag-operations"
echo '[]' > "$work/configs/tag-operations/base.yaml"
cat > "$work/configs/bench-project.yaml" <<'YAML'
project:
  name: bench-project
  modalities: [CT]
tag_operation_files:
  base: [base.yaml]
destination:
  dicom: none
  parquet: none
hash_algorithm: pixl-blake2b
YAML
echo '{"hashing-key": "test-key", "bench-project": "a161577b49a9235a"}' > "$work/secrets.json"

ours=18001
theirs=18002
HASHER_API_PORT=$ours HASHER_API_ALLOW_NO_TOKEN=true PROJECT_CONFIGS_DIR="$work/configs" PIXL_SECRETS_FILE="$work/secrets.json" \
  LOCAL_SALT_VALUE=pixl_salt RUST_LOG=warn target/release/pixl-hasher-api &
pids+=($!)
python3 -m uvicorn --app-dir bench hasher_baseline:app --host 127.0.0.1 --port $theirs --log-level warning &
pids+=($!)
for port in $ours $theirs; do
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/heart-beat" >/dev/null && break; sleep 0.2; done
done
path='/hash?project_slug=bench-project&message=987654321&length=64'
expected=$(python3 -c 'import hashlib; h=hashlib.blake2b(key=b"test-key", digest_size=32); h.update(b"987654321a161577b49a9235apixl_salt"); print(h.hexdigest())')
for port in $ours $theirs; do
  got=$(curl -fs "http://127.0.0.1:$port$path")
  [ "$got" = "$expected" ] || { echo "port $port answered $got, expected $expected" >&2; exit 1; }
done

run() { wrk -t2 -c64 -d"$duration" --latency "http://127.0.0.1:$1$path"; }
run $ours > "$work/ours.txt"
run $theirs > "$work/theirs.txt"
rps() { awk '/^Requests\/sec/ {print $2}' "$1"; }
p99() { awk '$1 == "99%" {print $2}' "$1"; }
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v / 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v } else { sub(/s$/, "", v); print v * 1000 } }'; }
ours_rps=$(rps "$work/ours.txt"); theirs_rps=$(rps "$work/theirs.txt")
ours_p99=$(to_ms "$(p99 "$work/ours.txt")"); theirs_p99=$(to_ms "$(p99 "$work/theirs.txt")")
printf '| service | requests/s | p99 latency (ms) |\n|---|---:|---:|\n'
printf '| pixl hasher-api (Rust) | %.0f | %.2f |\n' "$ours_rps" "$ours_p99"
printf '| FastAPI + uvicorn baseline | %.0f | %.2f |\n' "$theirs_rps" "$theirs_p99"
awk -v a="$ours_rps" -v b="$theirs_rps" -v c="$ours_p99" -v d="$theirs_p99" \
  'BEGIN { printf "\nthroughput ratio: %.1f×, p99 ratio: %.2f× (lower is better)\n", a / b, c / d }'
