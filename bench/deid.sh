#!/usr/bin/env bash
# Benchmark of the de-identification engine (issue 4): `pixl anonymise` (one process, one
# core) against the pydicom + dicom-anonymizer path applying the same allow-list
# (bench/deid_baseline.py), on the same generated CT corpus, in the same run.
# Usage: bench/deid.sh [SLICES]   (default 500, ~0.5 MB each)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-500}
python3 -c 'import pydicom, dicomanonymizer, yaml' 2>/dev/null || pip install -q pydicom dicom-anonymizer pyyaml >&2
cargo build --release --locked -p pixl-cli >&2
pixl=$PWD/target/release/pixl
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/configs"
ln -s "$PWD/projects/configs/tag-operations" "$work/configs/tag-operations"
cat > "$work/configs/bench-ct.yaml" <<'YAML'
project:
  name: bench-ct
  modalities: [CT]
tag_operation_files:
  base: [base.yaml, ct.yaml]
min_instances_per_series: 1
destination:
  dicom: none
  parquet: none
YAML
echo '{"hashing-key": "bench-key"}' > "$work/secrets.json"
"$pixl" bench generate-ct --count "$count" "$work/in" >/dev/null
megabytes=$(du -sm "$work/in" | cut -f1)
sync

start=$(date +%s.%N)
PROJECT_CONFIGS_DIR="$work/configs" PIXL_SECRETS_FILE="$work/secrets.json" taskset -c 0 "$pixl" anonymise --project bench-ct "$work/in" "$work/ours" > "$work/ours.txt"
ours=$(echo "$(date +%s.%N) - $start" | bc)
written=$(awk '/de-identified:/ {print $2}' "$work/ours.txt")
[ "$written" = "$count" ] || { cat "$work/ours.txt" >&2; exit 1; }

read -r theirs_count theirs < <(taskset -c 0 python3 bench/deid_baseline.py \
  projects/configs/tag-operations/base.yaml,projects/configs/tag-operations/ct.yaml "$work/in" "$work/theirs")

printf '| path | instances | seconds | instances/s | MB/s |\n|---|---:|---:|---:|---:|\n'
awk -v n="$count" -v s="$ours" -v mb="$megabytes" 'BEGIN { printf "| pixl anonymise (Rust, whole command) | %d | %.2f | %.0f | %.0f |\n", n, s, n / s, mb / s }'
awk -v n="$theirs_count" -v s="$theirs" -v mb="$megabytes" 'BEGIN { printf "| pydicom + dicom-anonymizer (processing only) | %d | %.2f | %.0f | %.0f |\n", n, s, n / s, mb / s }'
awk -v a="$ours" -v b="$theirs" 'BEGIN { printf "\nper-core speed-up: %.1f×\n", b / a }'
