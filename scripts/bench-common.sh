# Sourced by the network benchmarks (scripts/bench-cluster.sh, bench-failover.sh,
# bench-replication.sh) after they set NAME: the release binary (BIN), the passphrase and log
# level of every process they start, a work directory removed on exit together with every
# process listed in PIDS, and two helpers.
BIN=${BIN:-target/release/medledger}
export MEDLEDGER_PASSPHRASE=${MEDLEDGER_PASSPHRASE:-bench-passphrase}
export MEDLEDGER_LOG=${MEDLEDGER_LOG:-warn}
WORK=$(mktemp -d "/tmp/medledger-$NAME.XXXXXX")
PIDS=()

cleanup() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

[ -x "$BIN" ] || { echo "no $BIN: cargo build --release -p medledger-cli" >&2; exit 1; }
command -v jq >/dev/null || { echo "jq is needed" >&2; exit 1; }

# The base URL of port $1 on 127.0.0.1.
url() { echo "http://127.0.0.1:$1"; }

# Waits (at most 60 s) for GET /health on port $1.
wait_health() {
  for _ in $(seq 600); do
    curl -sf "$(url "$1")/health" >/dev/null && return 0
    sleep 0.1
  done
  echo "nothing serves on port $1" >&2; return 1
}

# Waits (at most 120 s) until the network answering on port $1 has 3 voters; shows the log $2
# and fails otherwise.
wait_voters() {
  local n=0
  for _ in $(seq 1200); do
    n=$("$BIN" cluster status --node "$(url "$1")" --json 2>/dev/null |
      jq '[.members[] | select(.role == "voter")] | length' 2>/dev/null || echo 0)
    [ "$n" = 3 ] && return 0
    sleep 0.1
  done
  echo "the 3-node network did not form" >&2; cat "$2" >&2; return 1
}
