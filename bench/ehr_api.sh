#!/usr/bin/env bash
# Benchmark of ehr-api (issue 14): reports per second through the service (EMAP query,
# de-identification with the patient's probes, second check, store, acknowledgement)
# against the engine alone (`pixl deid-text` on the same report texts with the same
# probes), in the same run, each pinned to one core (taskset -c 0). Postgres and RabbitMQ
# run on the machine's other cores. Studies, EMAP database and reports are generated,
# seeded (`pixl bench ehr`).
# Usage: bench/ehr_api.sh [STUDIES]   (default 10000; PIXL_BENCH_PROFILE=dev: the test build)
set -euo pipefail
cd "$(dirname "$0")/.."
studies=${1:-10000}
if [ "${PIXL_BENCH_PROFILE:-release}" = dev ]; then
  cargo build --locked --workspace --bins >&2
  bin=$PWD/target/debug
else
  cargo build --release --locked -p pixl-cli -p pixl-ehr-api >&2
  bin=$PWD/target/release
fi
echo "machine: $(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p')"
"$bin/pixl" bench ehr --studies "$studies" --work "$PWD/target/bench-ehr"
