#!/usr/bin/env bash
# bench-cluster.sh: the network benchmarks of issue 12 on this machine, with release nodes on
# 127.0.0.1 ports: committed tx/s at peak and p99 commit latency at half of peak, for one node
# and for three nodes (`cluster up --nodes 3`, load spread over all three) in the same run;
# then a fourth node joins the loaded network and the time to reach the tip is measured
# (transactions' worth of state per second caught up, by snapshot); then each node's Raft log
# size. Prints a markdown table. Every process it starts is stopped on exit (trap).
#
#   cargo build --release -p medledger-cli
#   scripts/bench-cluster.sh                       # TXS=100000 BASE_PORT=7400 by default
#   TXS=300000 scripts/bench-cluster.sh
set -euo pipefail

TXS=${TXS:-100000}
BASE=${BASE_PORT:-7400}
NAME=bench-cluster
. "$(dirname "$0")/bench-common.sh"

# `bench tx` with the wallet $1 over the nodes $2, extra options after; one JSON object.
bench() {
  local wallet=$1 nodes=$2; shift 2
  "$BIN" bench tx --wallet "$wallet" --node "$nodes" --txs "$TXS" --hospitals 1024 \
    --concurrency 64 --batch 64 --json "$@"
}

row() { # label, report JSON
  printf '| %s | %s | %.0f | %.1f | %.1f |\n' "$1" "$(jq -r '.offered_rate' <<<"$2")" \
    "$(jq -r '.tx_per_s' <<<"$2")" "$(jq -r '.p50_ms' <<<"$2")" "$(jq -r '.p99_ms' <<<"$2")"
}

ROWS=()

# --- One node -------------------------------------------------------------------------------
ONE_PORT=$((BASE + 50))
"$BIN" up --data-dir "$WORK/one" --listen "127.0.0.1:$ONE_PORT" >"$WORK/one.log" 2>&1 &
ONE_PID=$!
PIDS+=("$ONE_PID")
wait_health "$ONE_PORT"
peak1=$(bench "$WORK/one/regulator.wallet.json" "$(url $ONE_PORT)")
ROWS+=("$(row "1 node, peak" "$peak1")")
half1_rate=$(jq -r '.tx_per_s / 2 | floor' <<<"$peak1")
half1=$(bench "$WORK/one/regulator.wallet.json" "$(url $ONE_PORT)" --rate "$half1_rate")
ROWS+=("$(row "1 node, half of peak" "$half1")")
kill -TERM "$ONE_PID"; wait "$ONE_PID" 2>/dev/null || true

# --- Three nodes ----------------------------------------------------------------------------
"$BIN" cluster up --nodes 3 --data-dir "$WORK/three" --base-port "$BASE" >"$WORK/three.log" 2>&1 &
PIDS+=("$!")
wait_voters "$BASE" "$WORK/three.log"
WALLET3="$WORK/three/regulator.wallet.json"
NODES3="$(url "$BASE"),$(url $((BASE + 1))),$(url $((BASE + 2)))"
peak3=$(bench "$WALLET3" "$NODES3")
ROWS+=("$(row "3 nodes, peak" "$peak3")")
half3_rate=$(jq -r '.tx_per_s / 2 | floor' <<<"$peak3")
half3=$(bench "$WALLET3" "$NODES3" --rate "$half3_rate")
ROWS+=("$(row "3 nodes, half of peak" "$half3")")

# --- A fourth node joins the loaded network -------------------------------------------------
JOIN_PORT=$((BASE + 3))
JOIN_DIR="$WORK/three/joiner"
key=$("$BIN" node init --data-dir "$JOIN_DIR" --json | jq -r '.node_key')
hospital=$("$BIN" node list --node "$(url "$BASE")" --json | jq -r '.[1].hospital')
"$BIN" node admit --wallet "$WALLET3" --node "$(url "$BASE")" --node-key "$key" \
  --address "$(url "$JOIN_PORT")" --hospital "$hospital" --json >/dev/null
tip=$(curl -sf "$(url "$BASE")/health")
tip_height=$(jq -r '.height' <<<"$tip")
tip_txs=$(jq -r '.log_size' <<<"$tip")
started=$(date +%s.%N)
MEDLEDGER_LOG=info,openraft=warn "$BIN" up --data-dir "$JOIN_DIR" \
  --listen "127.0.0.1:$JOIN_PORT" --join "$(url "$BASE")" >"$WORK/joiner.log" 2>&1 &
PIDS+=("$!")
caught=""
for _ in $(seq 6000); do
  h=$(curl -sf "$(url "$JOIN_PORT")/health" 2>/dev/null | jq -r '.height' 2>/dev/null || echo 0)
  if [ "${h:-0}" -ge "$tip_height" ] 2>/dev/null; then caught=$(date +%s.%N); break; fi
  sleep 0.1
done
[ -n "$caught" ] || { echo "the joining node did not reach the tip" >&2; exit 1; }
join_s=$(echo "$caught - $started" | bc -l)

echo
echo "medledger bench-cluster, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $((TXS)) transactions a run"
echo
echo "| run | offered tx/s | committed tx/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
printf 'A node joining after %s transactions (height %s): at the tip after %.1f s = %.0f transactions of state per second\n' \
  "$tip_txs" "$tip_height" "$join_s" "$(echo "$tip_txs / $join_s" | bc -l)"
grep -h "installed a snapshot" "$WORK/joiner.log" | head -1 || echo "(the joining node installed no snapshot)"
echo
echo "Raft log files (raft-log.redb) after the run:"
for d in "$WORK"/three/node-*/ "$JOIN_DIR"; do
  printf '  %s: %s\n' "$(basename "$d")" "$(du -h "$d/raft-log.redb" | cut -f1)"
done
