#!/usr/bin/env bash
# Memory and restart after a long history (issue 17 item 4), for one build:
#
#   scripts/bench-restart.sh fill BIN DATA PORT TXS   # a fresh node on DATA, TXS transactions
#                                                     # of `bench tx`; prints its throughput,
#                                                     # then the node's peak and current RSS
#   scripts/bench-restart.sh restart BIN DATA PORT    # `up` on DATA, timed until /health
#                                                     # answers and until the background check
#                                                     # of the ledger is logged; RSS; SIGTERM
#
# DATA is kept (restart it with several builds, each on its own copy). One line per step.
set -euo pipefail
MODE=$1 BIN=$2 DATA=$3 PORT=$4
export MEDLEDGER_PASSPHRASE=${MEDLEDGER_PASSPHRASE:-bench-passphrase}
export MEDLEDGER_LOG=${MEDLEDGER_LOG:-info}
URL="http://127.0.0.1:$PORT"
LOG="$DATA.node.log"

rss() { # peak and current resident memory of process $1, MiB
  awk '/VmHWM|VmRSS/ { printf "%s %d MiB  ", $1, $2 / 1024 }' "/proc/$1/status"; echo
}

start=$(date +%s.%N)
"$BIN" up --data-dir "$DATA" --listen "127.0.0.1:$PORT" >"$LOG" 2>&1 &
PID=$!
trap 'kill -TERM $PID 2>/dev/null || true; wait $PID 2>/dev/null || true' EXIT
for _ in $(seq 1200); do
  curl -sf "$URL/health" >/dev/null && break
  kill -0 $PID 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 0.05
done
serving=$(date +%s.%N)
echo "serving after $(echo "$serving - $start" | bc) s"

case "$MODE" in
  fill)
    "$BIN" bench tx --wallet "$DATA/regulator.wallet.json" --node "$URL" --txs "$5" \
      --hospitals 1024 --concurrency 64 --batch 64 --json |
      jq -c "{tx_per_s, p50_ms, p99_ms, committed, refused, errors}"
    rss $PID
    ;;
  restart)
    # The build that checks the ledger in the background logs its verdict.
    for _ in $(seq 1200); do
      grep -q "stored ledger checked out\|failed its check" "$LOG" && {
        echo "background check done after $(echo "$(date +%s.%N) - $start" | bc) s"
        break
      }
      sleep 0.05
    done
    rss $PID
    ;;
esac
kill -TERM $PID
wait $PID || true
trap - EXIT
