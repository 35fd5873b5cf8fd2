#!/usr/bin/env bash
# Benchmark of `pixl ssmix2 extract` (issue 16) against the floor of reading and decoding
# the same files (pixl-ssmix2's `read_decode` example: walk, read, ISO-2022-JP decode,
# nothing else), on a generated storage (`pixl ssmix2 generate`), each pinned to one core
# (taskset -c 0), then on all cores (the floor split over as many threads; extract with
# as many workers, plus its writer thread; and with the generator's lab comments through
# pixl-text, `--free-text deidentify`). Reports messages/s, MB/s and peak RSS (GNU time), for PATIENTS and for
# 2×PATIENTS patients (peak RSS should not grow with the number of patients). Each figure
# is the median of 3 runs (the floor's time varies by 2x from run to run on this VM).
# Usage: bench/ssmix2.sh [PATIENTS]   (default 10000; PIXL_BENCH_PROFILE=dev: the test build)
set -euo pipefail
cd "$(dirname "$0")/.."
patients=${1:-10000}
if [ "${PIXL_BENCH_PROFILE:-release}" = dev ]; then
  cargo build --locked -p pixl-cli >&2
  cargo build --locked -p pixl-ssmix2 --example read_decode >&2
  bin=$PWD/target/debug
else
  cargo build --release --locked -p pixl-cli >&2
  cargo build --release --locked -p pixl-ssmix2 --example read_decode >&2
  bin=$PWD/target/release
fi
work=$PWD/target/bench-ssmix2
rm -rf "$work" && mkdir -p "$work/configs"
ln -s "$PWD/projects/configs/tag-operations" "$work/configs/tag-operations"
printf 'project:\n  name: bench-ssmix2\n  modalities: [CT]\ntag_operation_files:\n  base: [base.yaml]\ndestination:\n  dicom: none\n  parquet: none\n' > "$work/configs/bench-ssmix2.yaml"
echo '{"hashing-key": "bench-key", "bench-ssmix2": "0123456789abcdef"}' > "$work/secrets.json"
export PROJECT_CONFIGS_DIR=$work/configs PIXL_SECRETS_FILE=$work/secrets.json
measure() { # label, cores (taskset list), files, MB, command...   (median of 3 runs)
  local label=$1 cores=$2 files=$3 mb=$4; shift 4
  local start end times=() rss=0 r
  for _ in 1 2 3; do
    rm -rf "$work"/out*
    sync; start=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$work/rss" taskset -c "$cores" "$@" > "$work/out.txt" 2>&1 || { cat "$work/out.txt" >&2; return 1; }
    end=$(date +%s.%N)
    times+=("$(python3 -c "print($end-$start)")")
    r=$(cat "$work/rss"); ((r > rss)) && rss=$r
  done
  python3 -c "import sys; s=sorted(map(float, sys.argv[2:]))[1]; print(f'{sys.argv[1]:<36} {s:7.2f} s {$files/s:9.0f} messages/s {$mb/s:7.1f} MB/s  peak RSS {$rss/1024:6.0f} MB')" "$label" "${times[@]}"
}
echo "machine: $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p')"
for n in "$patients" $((patients * 2)); do
  "$bin/pixl" ssmix2 generate "$work/storage-$n" --patients "$n" > "$work/generated.txt"
  files=$(find "$work/storage-$n" -type f | wc -l)
  # The files' bytes (as the generator counted them), not the folders'.
  mb=$(sed -n 's/.*files (\([0-9.]*\) MB).*/\1/p' "$work/generated.txt")
  echo "storage: $n patients, $files files, $mb MB"
  all=0-$(($(nproc) - 1))
  measure "read + decode (floor), 1 core" 0 "$files" "$mb" "$bin/examples/read_decode" "$work/storage-$n" 1
  measure "pixl ssmix2 extract, 1 core" 0 "$files" "$mb" "$bin/pixl" ssmix2 extract "$work/storage-$n" --out "$work/out1-$n" --project bench-ssmix2 --identity-tag B --max-workers 1
  measure "read + decode (floor), all cores" "$all" "$files" "$mb" "$bin/examples/read_decode" "$work/storage-$n" "$(nproc)"
  measure "pixl ssmix2 extract, all cores" "$all" "$files" "$mb" "$bin/pixl" ssmix2 extract "$work/storage-$n" --out "$work/out-$n" --project bench-ssmix2 --identity-tag B --max-workers "$(nproc)"
  measure "  with --free-text deidentify" "$all" "$files" "$mb" "$bin/pixl" ssmix2 extract "$work/storage-$n" --out "$work/outd-$n" --project bench-ssmix2 --identity-tag B --max-workers "$(nproc)" --free-text deidentify
done
