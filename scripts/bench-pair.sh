#!/usr/bin/env bash
# One load-generator run against a fresh node:
#   scripts/bench-pair.sh BIN PORT [tx|records|cases|devices] [options of that generator]
# Starts `BIN up` on 127.0.0.1:PORT over a temporary data directory, waits for /health (at most
# 30 s), runs `BIN bench [generator] ... --json` against it, stops the node with SIGTERM and removes the
# directory. Run it for two builds in turn to compare them in one session (docs/benchmarks.md).
set -euo pipefail
BIN=$1; PORT=$2; shift 2
export MEDLEDGER_PASSPHRASE=${MEDLEDGER_PASSPHRASE:-bench-passphrase}
D=$(mktemp -d /tmp/bench-pair.XXXX)
"$BIN" up --data-dir "$D/data" --listen "127.0.0.1:$PORT" > "$D/node.log" 2>&1 &
NODE=$!
trap 'kill -TERM $NODE 2>/dev/null; wait $NODE 2>/dev/null; rm -rf "$D"' EXIT
for _ in $(seq 1 60); do
  curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break
  sleep 0.5
done
"$BIN" bench "$@" --wallet "$D/data/regulator.wallet.json" --node "http://127.0.0.1:$PORT" --json
