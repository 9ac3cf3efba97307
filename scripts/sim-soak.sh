#!/usr/bin/env bash
# The seeded network simulation (crates/node/src/raft/sim) over many seeds, in a release build:
#   scripts/sim-soak.sh --seeds N [--first-seed S] [--parallel P]
# Runs seeds S..S+N (S defaults to 200, past the 200 seeds the test command runs), P at a
# time (default 3), printing a line every 10 seeds. A failed seed is printed with its step list;
# re-run it alone with `scripts/sim-soak.sh --seeds 1 --first-seed SEED` (or
# `MEDLEDGER_SIM_SEED=SEED cargo test -p medledger-node --lib raft::sim::seeds_0_to_49`).
# Exits non-zero naming the failed seeds.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
SEEDS=""; FIRST=200; PARALLEL=3
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) SEEDS=${2:-}; shift 2 ;;
    --first-seed) FIRST=${2:-}; shift 2 ;;
    --parallel) PARALLEL=${2:-}; shift 2 ;;
    -h|--help) usage ;;
    *) echo "sim-soak: unknown argument $1" >&2; usage ;;
  esac
done
for v in "$SEEDS" "$FIRST" "$PARALLEL"; do
  case "$v" in ''|*[!0-9]*) echo "sim-soak: --seeds, --first-seed and --parallel take a number" >&2; usage ;; esac
done
[ "$SEEDS" -gt 0 ] || { echo "sim-soak: --seeds must be at least 1" >&2; exit 2; }

echo "sim-soak: seeds $FIRST..$((FIRST + SEEDS - 1)), $PARALLEL at a time (release build)"
MEDLEDGER_SIM_SEEDS=$SEEDS MEDLEDGER_SIM_FIRST_SEED=$FIRST MEDLEDGER_SIM_PARALLEL=$PARALLEL \
  cargo test --release --locked -p medledger-node --lib raft::sim::seeds_0_to_49 -- --exact --nocapture
