#!/usr/bin/env bash
# bench-replication.sh: issue 13's replication benchmark on this machine, with release nodes
# on 127.0.0.1 ports. One node: `bench records` encrypts and uploads a large record (MB/s).
# Then three nodes (`cluster up --nodes 3`, directories node-0..2): the same upload through
# node-1, and the time until every node's vault holds the record's ciphertext (published
# blobs of at least that size, on disk): the replication rate end to end, and how far it
# trails the bench. Prints a markdown table. Every process it starts is stopped on exit.
#
#   cargo build --release -p medledger-cli
#   scripts/bench-replication.sh                   # MIB=256 BASE_PORT=7500 by default
#   MIB=512 RUNS=2 scripts/bench-replication.sh
set -euo pipefail

MIB=${MIB:-256}
RUNS=${RUNS:-1}
BASE=${BASE_PORT:-7500}
NAME=bench-replication
. "$(dirname "$0")/bench-common.sh"

now() { date +%s.%N; }

# `bench records` of one large record through $2 with wallet $1; one JSON object.
upload() {
  "$BIN" bench records --wallet "$1" --node "$2" --large-mib "$MIB" --reads 0 \
    --trail-events 0 --json
}

ROWS=()
for run in $(seq "$RUNS"); do
  # --- One node ------------------------------------------------------------------------------
  ONE_PORT=$((BASE + 50))
  "$BIN" up --data-dir "$WORK/one-$run" --listen "127.0.0.1:$ONE_PORT" >"$WORK/one.log" 2>&1 &
  ONE_PID=$!
  PIDS+=("$ONE_PID")
  wait_health "$ONE_PORT"
  one=$(upload "$WORK/one-$run/regulator.wallet.json" "$(url $ONE_PORT)")
  kill -TERM "$ONE_PID"; wait "$ONE_PID" 2>/dev/null || true
  ROWS+=("$(printf '| %s | 1 node | %.0f | - | - |' "$run" "$(jq -r '.upload_mb_per_s' <<<"$one")")")

  # --- Three nodes ---------------------------------------------------------------------------
  "$BIN" cluster up --nodes 3 --data-dir "$WORK/three-$run" --base-port "$BASE" \
    >"$WORK/three.log" 2>&1 &
  THREE_PID=$!
  PIDS+=("$THREE_PID")
  wait_voters $((BASE + 1)) "$WORK/three.log"
  started=$(now)
  three=$(upload "$WORK/three-$run/regulator.wallet.json" "$(url $((BASE + 1)))")
  uploaded=$(now)
  replicated=""
  for _ in $(seq 6000); do
    # Every node's vault holds published blobs (named by their hashes) of at least the
    # record's size in all (a large record may be stored as several blobs).
    held=0
    for i in 0 1 2; do
      bytes=$( (find "$WORK/three-$run/node-$i/vault" -maxdepth 1 -type f -regextype \
        posix-extended -regex '.*/[0-9a-f]{64}' -printf '%s\n' 2>/dev/null || true) |
        awk '{ s += $1 } END { print s + 0 }')
      if [ "$bytes" -ge $((MIB * 1048576)) ]; then held=$((held + 1)); fi
    done
    if [ "$held" = 3 ]; then replicated=$(now); break; fi
    sleep 0.05
  done
  [ -n "$replicated" ] || { echo "replication did not complete" >&2; exit 1; }
  kill -TERM "$THREE_PID"; wait "$THREE_PID" 2>/dev/null || true
  # Replication ends when the last node holds the last blob (the bench also reads the record
  # back once, after its upload, through node 1).
  total_s=$(echo "$replicated - $started" | bc -l)
  trail_s=$(echo "$replicated - $uploaded" | bc -l)
  ROWS+=("$(printf '| %s | 3 nodes | %.0f | %.0f | %.1f |' "$run" \
    "$(jq -r '.upload_mb_per_s' <<<"$three")" \
    "$(echo "2 * $MIB * 1.048576 / $total_s" | bc -l)" "$trail_s")")
done

echo
echo "medledger bench-replication, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, one ${MIB} MiB record a run"
echo
echo "| run | network | encrypt + upload MB/s | replicated MB/s (2 replicas, upload start to last replica) | last replica after the bench ended, s |"
echo "|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"
