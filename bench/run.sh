#!/usr/bin/env bash
# Storefront load benchmark: one command from a fresh checkout.
#
#   bash bench/run.sh
#
# Builds the release binaries, installs the load generator (oha) if it is missing, then runs
# every scenario with the server pinned to one CPU and the load generator to another, prints a
# summary of ratios and writes bench/results/latest.json and latest.md. See docs/benchmarks.md.
#
# Knobs (environment): BENCH_SECONDS (10), BENCH_ROUNDS (3), BENCH_WARMUP_SECONDS (3),
# BENCH_CONNECTIONS (16), BENCH_LOGIN_CONNECTIONS (16), BENCH_PASSWORD_FLOOD_CONNECTIONS (300),
# BENCH_PROBE_RATE (50),
# BENCH_CATALOG (1000), BENCH_BIG_CATALOG (1000000), BENCH_STARTUP_RUNS (3),
# BENCH_ARGON2_ROUNDS (10), BENCH_SERVER_CPUS (0), BENCH_CLIENT_CPUS (1),
# BENCH_SHAPE_SECONDS (2), BENCH_SHAPE_ROUNDS (3), BENCH_SHAPE_WARMUP_SECONDS (1) (the page shapes),
# BENCH_POSTGRES_URL (unset: PostgreSQL skipped), BENCH_POSTGRES_BIG (1: PostgreSQL grows to
# BENCH_BIG_CATALOG too), BENCH_RESULTS_DIR (bench/results),
# BENCH_MICRO=1 (also run the criterion micro-benchmarks), BENCH_SKIP_BUILD=1, OHA (path),
# BENCH_FANOUT (1000: subscriber counts of the fan-out scenario, comma-separated; 0 skips it),
# BENCH_FANOUT_CHANGES (100), BENCH_FANOUT_GAP_MS (50), BENCH_FANOUT_SUBSCRIPTION
# (productChanged, or stockChanged), BENCH_ONLY=fanout (that scenario alone).
# A quick run: BENCH_SECONDS=3 BENCH_ROUNDS=1 BENCH_WARMUP_SECONDS=1 bash bench/run.sh
# The fan-out alone, at 1,000 and 10,000 sockets:
#   BENCH_ONLY=fanout BENCH_FANOUT=1000,10000 bash bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

OHA_VERSION="${OHA_VERSION:-1.16.0}"

step() { printf '\n==> %s\n' "$*" >&2; }

need() {
  if ! command -v "$1" >/dev/null 2>&1; then
    echo "bench: $1 is required ($2)" >&2
    exit 1
  fi
}

need cargo "the Rust toolchain"
need python3 "Python 3, standard library only"
need taskset "util-linux; pins the server and the load generator to their CPUs"

if [ "$(nproc)" -lt 2 ]; then
  echo "bench: warning: only $(nproc) CPU; server and load generator will share it" >&2
  export BENCH_CLIENT_CPUS="${BENCH_CLIENT_CPUS:-0}"
fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  step "cargo build --release -p storefront -p bench"
  cargo build --release -p storefront -p bench
fi

# The load generator: oha, from crates.io, unless one is on PATH already (or OHA names one).
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
if [ "${BENCH_ONLY:-}" != fanout ] && [ -z "${OHA:-}" ] && ! command -v oha >/dev/null 2>&1; then
  step "cargo install oha --version $OHA_VERSION --locked (the load generator, once)"
  cargo install oha --version "$OHA_VERSION" --locked
fi

if [ "${BENCH_MICRO:-0}" = 1 ]; then
  step "cargo bench (criterion micro-benchmarks, pinned to CPU ${BENCH_SERVER_CPUS:-0})"
  taskset -c "${BENCH_SERVER_CPUS:-0}" cargo bench -p storefront \
    --bench token_verify --bench authz_allows --bench password_hash
fi

step "load benchmark"
# bench.py stops every server and load generator it started, also on Ctrl-C and SIGTERM;
# the trap covers the case where this shell is killed first.
python3 bench/bench.py &
bench_pid=$!
trap 'kill -TERM "$bench_pid" 2>/dev/null || true; wait "$bench_pid" 2>/dev/null || true' INT TERM HUP
wait "$bench_pid"
