#!/usr/bin/env bash
# The Raft log, ledger and snapshot on disk as history grows (issue 12's "Raft log size
# bounded, report it after 1 M transactions"):
#
#   scripts/bench-raft-log.sh [RUNS] [TXS]   # RUNS runs (default 5) of TXS (default 200000)
#                                            # transactions of `bench tx` into one node
#
# After each run: the sizes of raft-log.redb, ledger.redb and snapshots/, and the node's RSS;
# then the node is stopped with SIGTERM and `medledger verify` runs on its data directory.
set -euo pipefail
NAME=raft-log
source "$(dirname "$0")/bench-common.sh"
RUNS=${1:-5} TXS=${2:-200000} PORT=7398
DATA="$WORK/data"
"$BIN" up --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$WORK/node.log" 2>&1 &
NODE=$!
PIDS+=("$NODE")
wait_health $PORT

sizes() {
  printf '%-16s raft log %12s B  ledger %12s B  snapshots %12s B  RSS %s KiB\n' "$1" \
    "$(du -b "$DATA/raft-log.redb" | cut -f1)" "$(du -b "$DATA/ledger.redb" | cut -f1)" \
    "$(du -sb "$DATA/snapshots" | cut -f1)" "$(ps -o rss= -p "$NODE" 2>/dev/null || echo -)"
}
sizes start
for run in $(seq "$RUNS"); do
  "$BIN" bench tx --wallet "$DATA/regulator.wallet.json" --node "$(url $PORT)" --txs "$TXS" \
    --hospitals 1024 --concurrency 64 --batch 64 --json |
    jq -c '{run: '"$run"', tx_per_s, committed, p50_ms, p99_ms}'
  sizes "after run $run"
done
kill -TERM "$NODE"
wait "$NODE" || true
sizes stopped
"$BIN" verify --data-dir "$DATA"
