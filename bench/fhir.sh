#!/usr/bin/env bash
# Benchmark of `pixl fhir convert` (issue 15) against the bulk-data workshop's path
# (bench/fhir_workshop.py: fhirpathpy + pandas.json_normalize, everything in memory), on
# the same generated NDJSON (`pixl fhir generate`, Synthea-like: 11 resource types) and the
# same field selection (bench/fhir_views.json, the workshop's [name, FHIRPath] style, which
# pixl reads too), in the same run, each pinned to one core (taskset -c 0). Reports MB/s of
# NDJSON and peak RSS (GNU time), for pixl with de-identification off and on.
# Then pixl alone on LARGE_PATIENTS (about 1 GB by default), to show its peak RSS does not
# grow with the input (the workshop path holds everything in memory, so it is not run there).
# Usage: bench/fhir.sh [PATIENTS] [LARGE_PATIENTS]   (defaults 5000 ≈ 92 MB and 60000 ≈ 1.1 GB;
#        PIXL_BENCH_PROFILE=dev: the test build, in which pixl-fhir is optimised too)
set -euo pipefail
cd "$(dirname "$0")/.."
patients=${1:-5000}
large=${2:-60000}
if [ "${PIXL_BENCH_PROFILE:-release}" = dev ]; then
  cargo build --locked -p pixl-cli >&2
  bin=$PWD/target/debug
else
  cargo build --release --locked -p pixl-cli >&2
  bin=$PWD/target/release
fi
python3 -c 'import fhirpathpy, pandas, pyarrow' 2>/dev/null || python3 -m pip install -q --disable-pip-version-check fhirpathpy pandas pyarrow
work=$PWD/target/bench-fhir
rm -rf "$work" && mkdir -p "$work/views"
cp bench/fhir_views.json "$work/views/"
"$bin/pixl" fhir generate "$work/ndjson" --patients "$patients" --seed 1 >&2
mb=$(du -sm --apparent-size "$work/ndjson" | cut -f1)
mkdir -p "$work/configs"
ln -s "$PWD/projects/configs/tag-operations" "$work/configs/tag-operations"
printf 'project:\n  name: bench-fhir\n  modalities: [CT]\ntag_operation_files:\n  base: [base.yaml]\ndestination:\n  dicom: none\n  parquet: none\n' > "$work/configs/bench-fhir.yaml"
echo '{"hashing-key": "bench-key", "bench-fhir": "0123456789abcdef"}' > "$work/secrets.json"
echo "machine: $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p'); input: $patients patients, $mb MB of NDJSON"
measure() { # label, command...
  local label=$1; shift
  local start end rss
  start=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" taskset -c 0 "$@" > "$work/out.txt" 2>&1 || { cat "$work/out.txt" >&2; return 1; }
  end=$(date +%s.%N)
  rss=$(cat "$work/rss")
  python3 -c "import sys; s=$end-$start; print(f'{sys.argv[1]:<34} {s:8.1f} s {$mb/s:8.2f} MB/s  peak RSS {$rss/1024:8.0f} MB')" "$label"
}
measure "workshop (fhirpathpy + pandas)" python3 bench/fhir_workshop.py "$work/ndjson" bench/fhir_views.json "$work/workshop"
export PROJECT_CONFIGS_DIR=$work/configs PIXL_SECRETS_FILE=$work/secrets.json
measure "pixl fhir convert --no-deid" "$bin/pixl" fhir convert "$work/ndjson" --out "$work/plain" --views "$work/views" --no-deid
measure "pixl fhir convert (de-identified)" "$bin/pixl" fhir convert "$work/ndjson" --out "$work/deid" --views "$work/views" --project bench-fhir

"$bin/pixl" fhir generate "$work/large" --patients "$large" --seed 2 >&2
mb=$(du -sm --apparent-size "$work/large" | cut -f1)
echo "larger input: $large patients, $mb MB of NDJSON"
measure "pixl fhir convert --no-deid" "$bin/pixl" fhir convert "$work/large" --out "$work/large-plain" --views "$work/views" --no-deid
measure "pixl fhir convert (de-identified)" "$bin/pixl" fhir convert "$work/large" --out "$work/large-deid" --views "$work/views" --project bench-fhir
