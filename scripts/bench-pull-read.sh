#!/usr/bin/env bash
# bench-pull-read.sh: issue 13's target "an audited 1 MiB read from a node that must first
# fetch the blob from a peer: p50 < 50 ms", with release nodes on 127.0.0.1 ports. A 3-node
# network (`cluster up --nodes 3`, directories node-0..2); `bench records --pull-reads N`
# adds N records of 1 MiB through node 1 and reads each once, one at a time, through node 2:
# first with node 2's copies intact (reads served from its own vault), then, in a new network,
# with node 2's copy of every record's ciphertext damaged on disk just before the reads, so
# that each read finds its copy bad and fetches a good one from a peer before it is served.
# Prints a markdown table. Every process it starts is stopped on exit.
#
#   cargo build --release -p medledger-cli
#   scripts/bench-pull-read.sh                     # N=200 BASE_PORT=7600 by default
#   N=500 TLS=1 scripts/bench-pull-read.sh          # the nodes with --tls
set -euo pipefail

# Called back by `bench records --before-reads`: damages the copy in vault $DAMAGE_VAULT of
# every blob named in $MEDLEDGER_BENCH_BLOBS (one byte in the middle inverted, so the hash
# check fails), once the copy is there (replication runs in the background).
if [ "${1:-}" = "--damage" ]; then
  vault=$DAMAGE_VAULT
  while read -r hash; do
    [ -n "$hash" ] || continue
    for _ in $(seq 600); do [ -s "$vault/$hash" ] && break; sleep 0.05; done
    [ -s "$vault/$hash" ] || { echo "no copy of $hash in $vault" >&2; exit 1; }
    at=$(($(stat -c %s "$vault/$hash") / 2))
    byte=$(od -An -tu1 -j "$at" -N1 "$vault/$hash" | tr -d ' ')
    printf "\\$(printf '%03o' $((255 - byte)))" |
      dd of="$vault/$hash" bs=1 seek="$at" conv=notrunc status=none
  done <"$MEDLEDGER_BENCH_BLOBS"
  exit 0
fi

N=${N:-200}
BASE=${BASE_PORT:-7600}
TLS=${TLS:-}
NAME=bench-pull-read
. "$(dirname "$0")/bench-common.sh"
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
scheme=http
tls_flag=()
if [ -n "$TLS" ]; then scheme=https; tls_flag=(--tls); fi
node_url() { echo "$scheme://127.0.0.1:$1"; }

# One network, one bench; $1: intact|damaged. Writes the bench's JSON to $WORK/$1.json.
run() {
  local dir=$WORK/$1 before=() n=0
  "$BIN" cluster up --nodes 3 --data-dir "$dir" --base-port "$BASE" "${tls_flag[@]}" \
    >"$WORK/$1.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  # wait_voters asks over plain HTTP: ask the same question in the network's scheme.
  for _ in $(seq 1200); do
    n=$("$BIN" cluster status --node "$(node_url $((BASE + 1)))" --json 2>/dev/null |
      jq '[.members[] | select(.role == "voter")] | length' 2>/dev/null || echo 0)
    [ "$n" = 3 ] && break
    sleep 0.1
  done
  [ "$n" = 3 ] || { echo "the network did not form" >&2; cat "$WORK/$1.log" >&2; exit 1; }
  if [ "$1" = damaged ]; then
    export DAMAGE_VAULT=$dir/node-2/vault
    before=(--before-reads "$(printf '%q' "$SELF") --damage")
  fi
  "$BIN" bench records --wallet "$dir/regulator.wallet.json" --node "$(node_url $((BASE + 1)))" \
    --large-mib 0 --reads 0 --trail-events 0 --small-kib 1024 --pull-reads "$N" \
    --read-node "$(node_url $((BASE + 2)))" "${before[@]}" --json >"$WORK/$1.json"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}

run intact
run damaged
intact=$(cat "$WORK/intact.json")
damaged=$(cat "$WORK/damaged.json")
# Every damaged copy was replaced from a peer during the reads.
replaced=$(grep -c "replaced with a good copy from a peer" "$WORK/damaged/node-2.log" || true)
if [ "$replaced" != "$N" ]; then
  echo "node 2 replaced $replaced damaged copies, not $N: not every read fetched first" >&2
  exit 1
fi

echo
echo "medledger bench-pull-read, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $N single audited reads of 1 MiB records through node 2 of 3${TLS:+ (TLS)}"
echo
echo "| node 2's copies | reads | p50 ms | p99 ms |"
echo "|---|---|---|---|"
for row in "intact:$intact" "damaged, fetched from a peer first:$damaged"; do
  json=${row#*:}
  printf '| %s | %s | %.1f | %.1f |\n' "${row%%:*}" "$(jq -r .pull_reads <<<"$json")" \
    "$(jq -r .pull_read_p50_ms <<<"$json")" "$(jq -r .pull_read_p99_ms <<<"$json")"
done
echo
echo "node 2 replaced all $replaced damaged copies from a peer"
