#!/usr/bin/env bash
# Benchmark of `pixl populate` (issue 2): rows/s and peak memory on generated OMOP-ES
# extracts (batched parquet layout) into the local Postgres and RabbitMQ.
# Usage: bench/populate.sh [ROWS...]   (default: 100000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p pixl-cli >&2
pixl=$PWD/target/release/pixl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/configs"
ln -s "$PWD/projects/configs/tag-operations" "$work/configs/tag-operations"
cat > "$work/configs/bench-extract.yaml" <<'YAML'
project:
  name: "bench-extract"
  modalities: ["CT"]
tag_operation_files:
  base: ["base.yaml"]
destination:
  dicom: "none"
  parquet: "none"
YAML
export PIXL_DB_NAME=pixl_bench PIXL_QUEUE_PREFIX=bench. PROJECT_CONFIGS_DIR=$work/configs HOST_EXPORT_ROOT_DIR=$work/exports
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (Debian package time)" >&2; exit 1; }

printf '| rows in extract | studies queued | seconds | rows/s | peak RSS (MiB) |\n|---:|---:|---:|---:|---:|\n'
for rows in "${@:-100000 1000000}"; do
  for r in $rows; do
    "$pixl" bench generate-omop --rows "$r" "$work/extract-$r" >/dev/null
    psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $PIXL_DB_NAME WITH (FORCE)"
    for q in imaging-primary imaging-secondary anonymise export; do
      rabbitmqctl -q delete_queue "bench.$q" >/dev/null 2>&1 || true
    done
    /usr/bin/time -f '%e %M' -o "$work/time" "$pixl" populate "$work/extract-$r" > "$work/out"
    read -r seconds kib < "$work/time"
    queued=$(sed -n 's/.*project bench-extract: [0-9]* studies, \([0-9]*\) newly queued.*/\1/p' "$work/out")
    awk -v r="$r" -v q="$queued" -v s="$seconds" -v k="$kib" 'BEGIN { printf "| %d | %d | %.1f | %.0f | %.0f |\n", r, q, s, r / s, k / 1024 }'
    rm -rf "$work/extract-$r"
  done
done
psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $PIXL_DB_NAME WITH (FORCE)"
for q in imaging-primary imaging-secondary anonymise export; do
  rabbitmqctl -q delete_queue "bench.$q" >/dev/null 2>&1 || true
  rabbitmqctl -q delete_queue "bench.$q.dead-letter" >/dev/null 2>&1 || true
done
