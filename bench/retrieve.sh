#!/usr/bin/env bash
# End-to-end imaging benchmark (issue 5): STUDIES × INSTANCES generated radiographs
# (512×512, 16-bit, ~0.5 MB) in a local Orthanc (the VNA). Measured in the same run:
#   ours:     `pixl populate` of the cohort → imaging-api (C-FIND, C-MOVE) → anon-node
#             (receive, de-identify into the anon store), until Postgres says every
#             study is anonymised;
#   baseline: dcmtk `movescu` moving the same studies, one after the other, from the same
#             Orthanc to dcmtk `storescp` writing to disk.
# Needs the local Postgres and RabbitMQ (database pixl_bench_e2e, queues bench-e2e.*),
# Orthanc and dcmtk. TCP_NODELAY=1 for Orthanc and the dcmtk tools.
# Usage: bench/retrieve.sh [STUDIES] [INSTANCES]   (default 100 100)
set -euo pipefail
cd "$(dirname "$0")/.."
studies=${1:-100}
instances=${2:-100}
command -v Orthanc >/dev/null && command -v movescu >/dev/null || { echo "needs orthanc and dcmtk" >&2; exit 1; }
cargo build --release --locked --workspace --bins >&2
bin=$PWD/target/release
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export TCP_NODELAY=1
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.2; done; echo "port $1 never opened" >&2; exit 1; }
now() { date +%s.%N; }

"$bin/pixl" bench generate-studies --studies "$studies" --instances "$instances" --size 512 "$work/in" >&2
total=$((studies * instances))
megabytes=$(du -sm "$work/in/dicom" | cut -f1)

vna_http=$(port); vna_dicom=$(port); anon_dicom=$(port); storescp_port=$(port)
cat > "$work/orthanc.json" <<JSON
{ "Name": "VNA", "HttpPort": $vna_http, "DicomPort": $vna_dicom, "DicomAet": "VNA",
  "StorageDirectory": "$work/orthanc/storage", "IndexDirectory": "$work/orthanc/index",
  "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
  "DicomAlwaysAllowEcho": true, "DicomAlwaysAllowStore": true, "DicomAlwaysAllowFind": true,
  "DicomAlwaysAllowMove": true, "DicomCheckModalityHost": false, "SynchronousCMove": true,
  "DicomModalities": { "pixl": ["PIXL_RAW", "127.0.0.1", $anon_dicom], "storescp": ["STORESCP", "127.0.0.1", $storescp_port] },
  "Plugins": [] }
JSON
Orthanc "$work/orthanc.json" 2>"$work/orthanc.log" & pids+=($!)
wait_port "$vna_dicom"
echo "loading $total instances into Orthanc..." >&2
storescu -aet LOADER -aec VNA +sd +r 127.0.0.1 "$vna_dicom" "$work/in/dicom" >/dev/null 2>&1

# Baseline: movescu → storescp, study after study.
mkdir -p "$work/storescp"
storescp -aet STORESCP -od "$work/storescp" "$storescp_port" & pids+=($!)
wait_port "$storescp_port"
sync
start=$(now)
while read -r uid; do
  movescu -aet BENCH -aec VNA -aem STORESCP -S -k QueryRetrieveLevel=STUDY -k StudyInstanceUID="$uid" 127.0.0.1 "$vna_dicom" >/dev/null 2>&1
done < "$work/in/study-uids.txt"
baseline_s=$(echo "$(now) - $start" | bc)
received=$(find "$work/storescp" -type f | wc -l)
[ "$received" = "$total" ] || { echo "storescp received $received of $total" >&2; exit 1; }
rm -rf "$work/storescp"; sync

# Ours: one replica of each service, then two (a second imaging-api and a second
# anon-node consumer, no SCP, on the same raw cache and anon store), each on a fresh
# database and queues.
echo '{"hashing-key": "bench-key"}' > "$work/secrets.json"
run_ours() { # replicas
  local replicas=$1 started=() hasher_port imaging_port
  psql -h 127.0.0.1 -U postgres -d postgres -qc 'DROP DATABASE IF EXISTS pixl_bench_e2e WITH (FORCE)'
  rm -rf "$work/raw-cache" "$work/anon-store" "$work/exports"
  hasher_port=$(port); imaging_port=$(port)
  export PIXL_DB_NAME=pixl_bench_e2e PIXL_QUEUE_PREFIX=bench-e2e-$replicas. PROJECT_CONFIGS_DIR=$PWD/projects/configs \
    PIXL_SECRETS_FILE=$work/secrets.json HASHER_API_PORT=$hasher_port HASHER_API_URL=http://127.0.0.1:$hasher_port \
    HASHER_API_TOKEN=bench-hasher-token ANON_NODE_API_TOKEN=bench-anon-token \
    ANON_NODE_DICOM_PORT=$anon_dicom ANON_NODE_ALLOWED_CALLERS=VNA \
    ANON_NODE_RAW_CACHE_DIR=$work/raw-cache ANON_NODE_ANON_STORE_DIR=$work/anon-store ANON_NODE_RAW_CACHE_MAX_SIZE_MB=0 \
    PRIMARY_DICOM_SOURCE_AE_TITLE=VNA PRIMARY_DICOM_SOURCE_PORT=$vna_dicom IMAGING_API_RATE=1000 \
    HOST_EXPORT_ROOT_DIR=$work/exports RUST_LOG=warn
  local anon_http; anon_http=$(port)
  export ANON_NODE_URL=http://127.0.0.1:$anon_http IMAGING_API_URL=http://127.0.0.1:$imaging_port
  "$bin/pixl-hasher-api" 2>"$work/hasher.log" & started+=($!)
  ANON_NODE_HTTP_PORT=$anon_http "$bin/pixl-anon-node" 2>"$work/anon.log" & started+=($!)
  IMAGING_API_PORT=$imaging_port "$bin/pixl-imaging-api" 2>"$work/imaging.log" & started+=($!)
  if [ "$replicas" = 2 ]; then
    ANON_NODE_SCP=false ANON_NODE_HTTP_PORT=$(port) "$bin/pixl-anon-node" 2>"$work/anon2.log" & started+=($!)
    IMAGING_API_PORT=$(port) "$bin/pixl-imaging-api" 2>"$work/imaging2.log" & started+=($!)
  fi
  wait_port "$hasher_port"; wait_port "$anon_dicom"; wait_port "$imaging_port"
  sync
  local start done_n; start=$(now)
  "$bin/pixl" populate "$work/in/cohort.csv" >/dev/null
  while :; do
    done_n=$(psql -h 127.0.0.1 -U postgres -d pixl_bench_e2e -Atqc "SELECT count(*) FROM studies WHERE state IN ('anonymised','failed')")
    [ "$done_n" = "$studies" ] && break
    sleep 0.2
  done
  echo "$(now) - $start" | bc > "$work/seconds-$replicas"
  local failed written
  failed=$(psql -h 127.0.0.1 -U postgres -d pixl_bench_e2e -Atqc "SELECT count(*) FROM studies WHERE state = 'failed'")
  written=$(find "$work/anon-store" -name '*.dcm' | wc -l)
  [ "$failed" = 0 ] && [ "$written" = "$total" ] || { echo "failed $failed, written $written of $total" >&2; exit 1; }
  kill "${started[@]}" 2>/dev/null || true; wait "${started[@]}" 2>/dev/null || true
}
run_ours 1
run_ours 2
ours_s=$(cat "$work/seconds-1"); replicas_s=$(cat "$work/seconds-2")

printf '| path | studies | instances | seconds | instances/s | MB/s |\n|---|---:|---:|---:|---:|---:|\n'
awk -v n="$total" -v st="$studies" -v s="$ours_s" -v mb="$megabytes" 'BEGIN { printf "| pixl: populate → imaging-api → anon-node (de-identified) | %d | %d | %.1f | %.0f | %.0f |\n", st, n, s, n / s, mb / s }'
awk -v n="$total" -v st="$studies" -v s="$replicas_s" -v mb="$megabytes" 'BEGIN { printf "| pixl, two replicas of imaging-api and of anon-node'"'"'s consumer | %d | %d | %.1f | %.0f | %.0f |\n", st, n, s, n / s, mb / s }'
awk -v n="$total" -v st="$studies" -v s="$baseline_s" -v mb="$megabytes" 'BEGIN { printf "| dcmtk movescu → storescp | %d | %d | %.1f | %.0f | %.0f |\n", st, n, s, n / s, mb / s }'
awk -v a="$ours_s" -v b="$baseline_s" 'BEGIN { printf "\nend-to-end rate vs the dcmtk move: %.2f× (target ≥ 0.5×)\n", b / a }'
awk -v a="$ours_s" -v r="$replicas_s" 'BEGIN { printf "two replicas vs one: %.2f×\n", a / r }'
