#!/usr/bin/env bash
# bench-failover.sh: issue 12's failover figure on this machine: a 3-node network
# (`cluster up`, release nodes on 127.0.0.1 ports) under a steady paced load spread over all
# three nodes (`bench tx --rate`); the leader is killed with SIGKILL in the middle of the
# measured phase, and `bench tx` reports the longest time between two commits (of any client):
# the failover as clients see it, leader kill to the first new commit. RUNS runs (default 3),
# each on a fresh network. Prints a markdown table. Every process it starts is stopped on exit.
#
#   cargo build --release -p medledger-cli
#   scripts/bench-failover.sh                  # RUNS=3 RATE=200 BASE_PORT=7500 by default
set -euo pipefail

RUNS=${RUNS:-3}
RATE=${RATE:-200}
SECONDS_MEASURED=${SECONDS_MEASURED:-30}
KILL_AFTER=${KILL_AFTER:-12}
BASE=${BASE_PORT:-7500}
NAME=bench-failover
. "$(dirname "$0")/bench-common.sh"

status() { "$BIN" cluster status --node "$(url "$1")" --json 2>/dev/null; }

ROWS=()
for run in $(seq "$RUNS"); do
  dir="$WORK/run-$run"
  "$BIN" cluster up --nodes 3 --data-dir "$dir" --base-port "$BASE" >"$WORK/cluster-$run.log" 2>&1 &
  cluster_pid=$!
  PIDS+=("$cluster_pid")
  wait_voters "$BASE" "$WORK/cluster-$run.log"
  nodes=$(status "$BASE" | jq -r '[.members[].url] | join(",")')
  txs=$((RATE * SECONDS_MEASURED))
  # One transaction per request, paced: every commit is one acknowledgement in the timeline.
  "$BIN" bench tx --wallet "$dir/regulator.wallet.json" --node "$nodes" --txs "$txs" \
    --hospitals 32 --concurrency 8 --batch 1 --rate "$RATE" --json \
    >"$WORK/bench-$run.json" 2>"$WORK/bench-$run.err" &
  bench_pid=$!
  PIDS+=("$bench_pid")
  # The set-up (admitting 32 hospitals) takes a few seconds; the kill lands mid-run.
  sleep "$KILL_AFTER"
  leader=$(status "$BASE" | jq -r '.leader')
  leader_url=$(status "$BASE" | jq -r --argjson id "$leader" '.members[] | select(.id == $id) | .url')
  leader_port=${leader_url##*:}
  leader_pid=$(pgrep -f -- "--listen 127.0.0.1:$leader_port" | head -1)
  [ -n "$leader_pid" ] || { echo "run $run: no process for the leader on port $leader_port" >&2; exit 1; }
  kill -KILL "$leader_pid"
  wait "$bench_pid" 2>/dev/null || true   # errors are expected: requests to the killed node
  report=$(cat "$WORK/bench-$run.json")
  [ -n "$report" ] || { echo "run $run: bench tx printed no report" >&2; cat "$WORK/bench-$run.err" >&2; exit 1; }
  ROWS+=("$(printf '| %s | %s | %.0f | %.1f | %s | %s |' "$run" "$leader" \
    "$(jq -r '.longest_gap_ms' <<<"$report")" "$(jq -r '.longest_gap_at_s' <<<"$report")" \
    "$(jq -r '.committed' <<<"$report")" "$(jq -r '.errors' <<<"$report")")")
  kill -TERM "$cluster_pid" 2>/dev/null || true
  wait "$cluster_pid" 2>/dev/null || true
  PIDS=()
done

echo
echo "medledger bench-failover, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $RATE tx/s offered, leader killed ${KILL_AFTER} s after bench start"
echo
echo "| run | leader killed | longest gap between commits, ms | gap began at, s | committed | errors |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
