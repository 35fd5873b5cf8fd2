#!/usr/bin/env bash
# Benchmark of ultrasound burned-in annotation masking (issue 12): `pixl anonymise` with
# PIXL's own ultrasound project (its us-deid.recipe; tag operations and masking) against
# pydicom + deid's DicomCleaner (masking only, as PIXL runs it: bench/us_mask_deid.py), on
# the same generated images (bench/us_mask_make.py), one core each (taskset -c 0), in the
# same run. pixl is also timed on the same project without its recipe, to show what
# masking itself costs.
# Usage: bench/us_mask.sh   (PIXL_BENCH_VENV: where the Python tools go; default target/bench-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${PIXL_BENCH_VENV:-$PWD/target/bench-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import deid, pydicom, numpy' 2>/dev/null || "$venv/bin/pip" install -q --disable-pip-version-check deid pydicom numpy >&2
cargo build --release --locked -p pixl-cli >&2
pixl=$PWD/target/release/pixl
fixtures=$(cd ../shared/fixtures/pixl-configs && pwd)
slug=ultrasound-learning-for-timely-rapid-assessment-of-cts
work=$(mktemp -d)
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
for spec in "mono 200 1" "mono 40 10" "rgb 20 10"; do
  read -r colour files frames <<< "$spec"
  in="$work/in-$colour-$frames"
  "$venv/bin/python" bench/us_mask_make.py "$in" "$files" "$colour" "$frames" >/dev/null
  total=$((files * frames))
  sync
  ours=$(time_pixl "$fixtures" "$in" "$work/ours-$colour-$frames")
  written=$(awk '/de-identified:/ {print $2}' "$work/ours-$colour-$frames.txt")
  [ "$written" = "$files" ] || { cat "$work/ours-$colour-$frames.txt" >&2; exit 1; }
  tags_only=$(time_pixl "$work/nomask" "$in" "$work/tags-$colour-$frames")
  theirs=$(taskset -c 0 "$venv/bin/python" bench/us_mask_deid.py "$in" "$fixtures/image-operations/us-deid.recipe" "$work/theirs-$colour-$frames" 2>/dev/null |
    "$venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
  awk -v c="$colour" -v f="$files" -v n="$frames" -v t="$total" -v a="$ours" -v b="$tags_only" -v d="$theirs" \
    'BEGIN { printf "| %s, 640×480, 8-bit | %d × %d | %.0f | %.0f | %.0f | %.1f× |\n", c, f, n, t / a, t / b, t / d, d / a }'
done
