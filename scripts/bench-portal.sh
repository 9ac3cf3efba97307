#!/usr/bin/env bash
# Portal page times on a node holding N transactions (issue 14: < 200 ms at 100,000).
#
#   scripts/bench-portal.sh [TXS] [ROUNDS]       # defaults: 100000 transactions, 50 rounds
#
# Starts a fresh node (release build) on a free port, fills it with `bench tx`, registers a
# hospital, a doctor and a patient, adds records, a grant and reads, opens a case with entries, starts `medledger portal`
# for the patient, the doctor, the hospital and the regulator, unlocks each over HTTP, and times every page ROUNDS
# times (a fresh connection per request, as a browser's first load). Prints one line per page:
# p50, p95 and max in ms. Everything stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
txs=${1:-100000}
rounds=${2:-50}
bin=${MEDLEDGER_BIN:-target/release/medledger}
[ -x "$bin" ] || cargo build --release -p medledger-cli
work=$(mktemp -d "${TMPDIR:-/tmp}/medledger-bench-portal.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export MEDLEDGER_PASSPHRASE="bench portal passphrase" MEDLEDGER_LOG=warn
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
node="http://127.0.0.1:$port"
export MEDLEDGER_NODE=$node
"$bin" up --data-dir "$work/data" --listen "127.0.0.1:$port" >"$work/node.log" 2>&1 &
pids+=($!)
for _ in $(seq 300); do
  python3 -c "import urllib.request as u; u.urlopen('$node/health')" 2>/dev/null && break
  sleep 0.1
done
reg="$work/data/regulator.wallet.json"
echo "filling the node with $txs transactions..."
"$bin" bench tx --wallet "$reg" --txs "$txs" >"$work/bench.log" 2>&1
field() { python3 -c 'import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1:]: v = v[k]
print(v)' "$@"; }
w() { "$bin" wallet create --out "$work/$1.wallet.json" --name "$2" --node "$node" >/dev/null; }
ident() { "$bin" wallet show --wallet "$work/$1.wallet.json" --identity-only; }
w hospital "St. Bench"; w doctor "Dr. Bench"; w patient "P. Bench"
"$bin" hospital admit --wallet "$reg" --identity "$(ident hospital)" --registration-id GOV-B \
  --name "St. Bench" --city Leeds --specialisation cardiology --contact "+44 0" >/dev/null
"$bin" doctor onboard --wallet "$work/hospital.wallet.json" --identity "$(ident doctor)" \
  --registration-number GMC-B --name "Dr. Bench" --specialisation cardiology >/dev/null
"$bin" patient register --wallet "$work/hospital.wallet.json" --identity "$(ident patient)" \
  --name "P. Bench" --date-of-birth 1980-01-02 --phone 0700 \
  --attendant-name "Q. Bench" --attendant-phone 0701 --attendant-relationship spouse >/dev/null
pid=$("$bin" wallet show --wallet "$work/patient.wallet.json" --ledger --json | field ledger patient_id)
doctor=$("$bin" wallet show --wallet "$work/doctor.wallet.json" --json | field account)
"$bin" consent grant --wallet "$work/patient.wallet.json" --grantee "$doctor" --scope all >/dev/null
head -c 200000 /dev/urandom >"$work/scan.bin"
for day in 01 02 03 04 05; do
  "$bin" record add --wallet "$work/doctor.wallet.json" --patient "$pid" --file "$work/scan.bin" \
    --category imaging --date "2021-01-$day" --title "scan $day" >/dev/null
done
pmr="${pid}01012021"
for _ in 1 2 3; do
  "$bin" record get "$pmr" --wallet "$work/doctor.wallet.json" -o "$work/out.bin" >/dev/null
  rm -f "$work/out.bin"
done
case="C${pid}-1"
"$bin" case open --wallet "$work/doctor.wallet.json" --patient "$pid" --title "Bench case" >/dev/null
for n in 1 2 3; do
  "$bin" case append "$case" --wallet "$work/doctor.wallet.json" --text "entry $n" >/dev/null
done
height=$(python3 -c "import json, urllib.request as u; print(json.load(u.urlopen('$node/health'))['height'])")
echo "node at height $height; starting the portals"
start_portal() {
  "$bin" portal --wallet "$work/$1.wallet.json" --listen 127.0.0.1:0 --json >"$work/$1.portal.json" &
  pids+=($!)
  for _ in $(seq 100); do [ -s "$work/$1.portal.json" ] && break; sleep 0.1; done
}
start_portal patient
start_portal doctor
start_portal hospital
cp "$reg" "$work/regulator.wallet.json"
start_portal regulator
python3 - "$work" "$rounds" "$pid" <<'EOF'
import http.client, json, re, statistics, sys, time, urllib.parse
work, rounds, patient_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def session(who):
    info = json.load(open(f"{work}/{who}.portal.json"))
    url = urllib.parse.urlparse(info["login_url"])
    host, port = url.netloc, url.port
    token = urllib.parse.parse_qs(url.query)["token"][0]
    cookie = f"medledger_portal={token}"
    def ask(method, path, body=None, headers=None):
        # To 127.0.0.1 with the portal's own name as Host, as a browser resolving *.localhost.
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        h = {"Host": host, "Cookie": cookie, "Origin": f"http://{host}"}
        h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data.decode("utf-8", "replace")
    status, page = ask("GET", "/unlock")
    csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page).group(1)
    body = urllib.parse.urlencode({"csrf": csrf, "passphrase": "bench portal passphrase"})
    status, _ = ask("POST", "/unlock", body, {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 303, status
    return ask
pages = {
    "patient": ["/", "/records", "/access-log", "/consent", "/cases", "/devices", "/emergency"],
    "doctor": [
        "/",
        f"/records?patient={patient_id}",
        f"/cases?patient={patient_id}",
        f"/devices?patient={patient_id}",
        "/emergency/doctor",
    ],
    "hospital": ["/staff"],
    "regulator": ["/regulator"],
}
for who, paths in pages.items():
    ask = session(who)
    for path in paths:
        times = []
        for _ in range(rounds):
            t = time.perf_counter()
            status, page = ask("GET", path)
            times.append((time.perf_counter() - t) * 1000)
            assert status == 200, (path, status, page[:300])
        times.sort()
        p95 = times[min(len(times) - 1, int(len(times) * 0.95))]
        print(f"{who:8} {path:32} p50 {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms   max {times[-1]:7.1f} ms")
EOF
