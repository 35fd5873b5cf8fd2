#!/usr/bin/env bash
# Benchmark of ultrasound burned-in annotation masking (issue 12): `pixl anonymise` with
# PIXL's own ultrasound project (its us-deid.recipe; tag operations and masking) against
# pydicom + deid's DicomCleaner (masking only, as PIXL runs it: bench/us_mask_deid.py), on
# the same generated images (bench/us_mask_make.py), one core each (taskset -c 0), in the
# same run. pixl is also timed on the same project without its recipe, to show what
# masking itself costs. The files live on tmpfs (/dev/shm, or BENCH_TMP), so that the
# disk (pixl fsyncs every file it writes; deid does not) is not what is measured: this is
# CPU per core. Three rounds; the median is printed.
# Usage: bench/us_mask.sh   (PIXL_BENCH_VENV: where the Python tools go; default target/bench-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${PIXL_BENCH_VENV:-$PWD/target/bench-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import deid, pydicom, numpy, pylibjpeg' 2>/dev/null ||
  "$venv/bin/pip" install -q --disable-pip-version-check deid pydicom numpy pylibjpeg pylibjpeg-libjpeg >&2
cargo build --release --locked -p pixl-cli >&2
pixl=$PWD/target/release/pixl
fixtures=$(cd ../shared/fixtures/pixl-configs && pwd)
slug=ultrasound-learning-for-timely-rapid-assessment-of-cts
work=$(mktemp -d -p "${BENCH_TMP:-/dev/shm}")
trap 'rm -rf "$work"' EXIT
echo '{"hashing-key": "bench-key"}' > "$work/secrets.json"
# The same project without its recipe: tag operations only.
mkdir -p "$work/nomask"
ln -s "$fixtures/tag-operations" "$work/nomask/tag-operations"
sed '/image_operation_files:/,/us-deid.recipe/d' "$fixtures/$slug.yaml" > "$work/nomask/$slug.yaml"

time_pixl() { # configs input output -> seconds
  local start
  start=$(date +%s.%N)
  PROJECT_CONFIGS_DIR="$1" PIXL_SECRETS_FILE="$work/secrets.json" taskset -c 0 "$pixl" anonymise --project "$slug" "$2" "$3" > "$3.txt"
  echo "$(date +%s.%N) - $start" | bc
}

printf '| images | files × frames | pixl (tags + masking) frames/s | pixl (tags only) frames/s | pydicom + deid (masking only) frames/s | speed-up |\n|---|---:|---:|---:|---:|---:|\n'
for spec in "mono 200 1" "mono 40 10" "rgb 20 10" "jpeg 40 10"; do
  read -r colour files frames <<< "$spec"
  in="$work/in-$colour-$frames"
  if [ "$colour" = jpeg ]; then
    # JPEG baseline (dcmtk's dcmcjpeg) of the monochrome images: both sides decode.
    "$venv/bin/python" bench/us_mask_make.py "$work/native" "$files" mono "$frames" >/dev/null
    mkdir -p "$in"
    for f in "$work/native"/*.dcm; do dcmcjpeg +eb "$f" "$in/$(basename "$f")"; done
    rm -rf "$work/native"
  else
    "$venv/bin/python" bench/us_mask_make.py "$in" "$files" "$colour" "$frames" >/dev/null
  fi
  total=$((files * frames))
  sync
  median() { sort -g | sed -n 2p; }
  ours=$(for round in 1 2 3; do rm -rf "$work/ours"; time_pixl "$fixtures" "$in" "$work/ours"; done | median)
  written=$(awk '/de-identified:/ {print $2}' "$work/ours.txt")
  [ "$written" = "$files" ] || { cat "$work/ours.txt" >&2; exit 1; }
  tags_only=$(for round in 1 2 3; do rm -rf "$work/tags"; time_pixl "$work/nomask" "$in" "$work/tags"; done | median)
  theirs=$(for round in 1 2 3; do
    rm -rf "$work/theirs"
    taskset -c 0 "$venv/bin/python" bench/us_mask_deid.py "$in" "$fixtures/image-operations/us-deid.recipe" "$work/theirs" 2>/dev/null |
      "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["seconds"])'
  done | median)
  rm -rf "$in" "$work/ours" "$work/tags" "$work/theirs"
  awk -v c="$colour" -v f="$files" -v n="$frames" -v t="$total" -v a="$ours" -v b="$tags_only" -v d="$theirs" \
    'BEGIN { printf "| %s, 640×480, 8-bit | %d × %d | %.0f | %.0f | %.0f | %.1f× |\n", c, f, n, t / a, t / b, t / d, d / a }'
done
