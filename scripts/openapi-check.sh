#!/usr/bin/env bash
# Checks docs/openapi.yaml against a real collector with schemathesis: a collector on SQLite in a temporary
# directory, a registered device with a few reports, settings and fleet cells, and an operator and an admin
# token; then schemathesis sends generated requests (valid and invalid) to every route and fails on any 5xx
# and on any answer whose status, content type or body the file does not describe.
#
# Troubleshooting sessions: the seeding walks one session through start, 409, long poll, a schema-3 report,
# list and stop, and checks each answer against the file. During the schemathesis runs a hook stops the
# session a generated POST started before the next POST (so that one gets 201 again, not 409), and sends
# the long poll's `wait` as 0 whatever was generated, so no request waits.
#
#   COLLECTOR_BIN   collector to test (default .build/debug/meetpunt-collector; this script never builds)
#   MAX_EXAMPLES    schemathesis --max-examples: generated cases per operation (default 50)
#   TIME_LIMIT      hard limit in seconds for each schemathesis run (default 600)
#   SEED            schemathesis seed, to repeat a run (default: a new one, printed)
#
# The schemathesis venv is made once, from PyPI, under /var/cache/meetpunt/venv-schemathesis/<version>.
source "$(dirname "$0")/lib.sh"

SCHEMATHESIS_VERSION=4.32.5
COLLECTOR_BIN=${COLLECTOR_BIN:-.build/debug/meetpunt-collector}
MAX_EXAMPLES=${MAX_EXAMPLES:-50}
TIME_LIMIT=${TIME_LIMIT:-600}
SPEC=$PWD/docs/openapi.yaml
# The device id of the file's examples, so the examples phase reads real data.
DEVICE=dev-7f3a

[ -x "$COLLECTOR_BIN" ] || { echo "collector binary $COLLECTOR_BIN not found: build it, or set COLLECTOR_BIN" >&2; exit 1; }
COLLECTOR_BIN=$(readlink -f "$COLLECTOR_BIN")

phase "schemathesis $SCHEMATHESIS_VERSION (venv under /var/cache/meetpunt)"
venv=/var/cache/meetpunt/venv-schemathesis/$SCHEMATHESIS_VERSION
# Made again when unfinished, or when the Python it was made with is gone.
if [ ! -f "$venv/.complete" ] || ! "$venv/bin/schemathesis" --version >/dev/null 2>&1; then
    python3 -c 'import ensurepip, venv' 2>/dev/null || ensure_packages python3 python3-venv
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    touch "$venv/.complete"
fi
"$venv/bin/schemathesis" --version

phase "starting the collector ($COLLECTOR_BIN) on SQLite"
work=$(mktemp -d /tmp/openapi-check.XXXXXX)
collector=""
finish() {
    local status=$?
    if [ -n "$collector" ]; then kill "$collector" 2>/dev/null || true; wait "$collector" 2>/dev/null || true; fi
    if [ "$status" -eq 0 ]; then rm -rf "$work"; else echo "kept $work (collector.log, schemathesis output)" >&2; fi
}
trap finish EXIT
cat > "$work/collector.yaml" <<YAML
listen: {host: 127.0.0.1, port: 0}
storage: {sqlite_path: collector.sqlite}
retention_file: $PWD/collector/retention.yaml
# One report is enough for a fleet cohort to be answered, so GET /v1/fleet has figures to check.
fleet: {min_reports: 1}
YAML
setup() { "$COLLECTOR_BIN" "$@" --config "$work/collector.yaml" >/dev/null 2>>"$work/setup.log" || { cat "$work/setup.log" >&2; exit 1; }; }
setup device add "$DEVICE" --token-file "$work/device.token"
setup token add --role operator --name openapi-operator --token-file "$work/operator.token"
setup token add --role admin --name openapi-admin --token-file "$work/admin.token"
"$COLLECTOR_BIN" serve --config "$work/collector.yaml" > "$work/collector.log" 2>&1 &
collector=$!
for _ in $(seq 100); do grep -q "listening on" "$work/collector.log" && break; sleep 0.1; done
port=$(grep -o "listening on [0-9.]*:[0-9]*" "$work/collector.log" | head -1 | cut -d: -f2)
[ -n "$port" ] || { cat "$work/collector.log"; exit 1; }
base=http://127.0.0.1:$port
echo "collector on $base, device $DEVICE"

phase "seeding: a gzip batch of reports, device settings, fleet cells, a troubleshooting session"
BASE=$base WORK=$work DEVICE=$DEVICE SPEC=$SPEC "$venv/bin/python" - <<'PY'
import gzip, json, os, time, requests
import schemathesis

base, work, device = os.environ["BASE"], os.environ["WORK"], os.environ["DEVICE"]
def token(name): return open(f"{work}/{name}.token").read().strip()
now = int(time.time()) * 1000
spec = schemathesis.openapi.from_path(os.environ["SPEC"])
def conform(r, method, path, status, code=None):
    """The answer has the status expected here, and the file describes its status, content type and body."""
    assert r.status_code == status, f"{method} {r.url}: expected {status}, got {r.status_code} {r.text}"
    try:
        spec[path][method].validate_response(r)
    except Exception as e:
        raise SystemExit(f"{method} {r.url} {r.status_code} {r.text}\ndoes not conform to {path}: {e}")
    if code is not None:
        assert r.json()["error"]["code"] == code, f"{method} {r.url}: expected {code}, got {r.text}"
    return r.json() if r.content else None
def report(seq, end):
    start = end - 60_000
    return {"schema": 2, "device": device, "seq": seq, "window_start_ms": start, "window_end_ms": end,
            "key_epoch": 680, "agent_version": "0.3.0", "series": [
        {"metric": "link.rx_bytes", "unit": "bytes", "labels": {"interface": "eth0"}, "count": 6,
         "min": 800, "max": 4100, "mean": 2000, "last": 1250, "sum": 12000},
        {"metric": "link.rx_rate", "unit": "bits_per_second", "labels": {"interface": "eth0"}, "count": 6,
         "min": 640, "max": 3280, "mean": 1600, "last": 1480, "sum": 9600,
         "sketch": {"alpha": 0.01, "zero": 0, "index": [324, 346, 365, 369, 405], "count": [1, 1, 1, 2, 1]}},
        {"metric": "wifi.station.signal_dbm", "unit": "dbm",
         "labels": {"interface": "wlan1", "band": "5", "peer": "cm_4k2tqmf7zy3xabv5r6wdsgnh"}, "count": 6,
         "min": -61, "max": -27, "mean": -41.666666666666664, "last": -61, "sum": -250,
         "sketch": {"alpha": 0.01, "zero": 0, "index": [], "count": [],
                    "neg_index": [165, 171, 191, 205, 206], "neg_count": [2, 1, 1, 1, 1]}},
        {"metric": "lan.client.reachable", "unit": "boolean",
         "labels": {"interface": "br-lan", "client": "cm_4k2tqmf7zy3xabv5r6wdsgnh", "mac_kind": "global", "oui": "00-1B-21"},
         "count": 6, "min": 1, "max": 1, "mean": 1, "last": 1, "sum": 6},
        {"metric": "traffic.tcp.rtt", "unit": "milliseconds", "labels": {"leg": "wan", "method": "handshake"},
         "count": 2, "min": 12, "max": 30, "mean": 21, "last": 30, "sum": 42,
         "sketch": {"alpha": 0.01, "zero": 0, "index": [125, 171], "count": [1, 1]}},
    ]}
batch = {"reports": [report(seq, now - (3 - seq) * 60_000) for seq in (1, 2, 3)]}
r = requests.post(f"{base}/v1/report-batches", data=gzip.compress(json.dumps(batch).encode()),
                  headers={"Authorization": f"Bearer {token('device')}", "Content-Type": "application/json",
                           "Content-Encoding": "gzip"}, timeout=10)
statuses = [x["status"] if x["status"] == "stored" else x for x in r.json()["results"]] if r.ok else r.text
assert r.ok and statuses == ["stored"] * 3, f"seeding reports: {r.status_code} {statuses}"
r = requests.put(f"{base}/v1/devices/{device}/config", json={"sampling": {"interval_seconds": 10, "window_seconds": 60}},
                 headers={"Authorization": f"Bearer {token('operator')}", "X-Meetpunt-Reason": "openapi-check"}, timeout=10)
assert r.ok, f"seeding settings: {r.status_code} {r.text}"
# Fleet cells reach the store every 10 s.
for _ in range(40):
    r = requests.get(f"{base}/v1/fleet", params={"metric": "link.rx_rate"},
                     headers={"Authorization": f"Bearer {token('operator')}"}, timeout=10)
    if r.ok and r.json()["cohorts"]:
        break
    time.sleep(0.5)
else:
    raise SystemExit(f"fleet cells never appeared: {r.status_code} {r.text}")

# A troubleshooting session from start to stop, every answer checked against the file.
op = {"Authorization": f"Bearer {token('operator')}", "X-Meetpunt-Reason": "openapi-check"}
dev = {"Authorization": f"Bearer {token('device')}"}
sessions = f"{base}/v1/devices/{device}/sessions"
S, SID, POLL, REPORTS = "/v1/devices/{id}/sessions", "/v1/devices/{id}/sessions/{sid}", "/v1/session", "/v1/reports"
def start(body, status, code=None, url=sessions):
    return conform(requests.post(url, json=body, headers=op, timeout=10), "POST", S, status, code)
def poll(params, status=200, code=None, headers=dev):
    return conform(requests.get(f"{base}/v1/session", params=params, headers=headers, timeout=10), "GET", POLL, status, code)
s = start({"reason": "openapi-check", "seconds": 600}, 201)
assert s["device"] == device and "stopped_at_ms" not in s, s
assert 0 < s["remaining_ms"] <= 600_000 and s["ends_at_ms"] - s["started_at_ms"] == 600_000, s
start({"reason": "again"}, 409, "session_running")
start({"reason": "too short", "seconds": 5}, 422, "bad_duration")
start({"reason": "both", "seconds": 60, "minutes": 1}, 422, "bad_duration")
start({"reason": " \t "}, 422, "missing_reason")
start({"minutes": 5}, 400, "malformed_request")
start({"reason": "x"}, 404, "unknown_device", url=f"{base}/v1/devices/no-such-device/sessions")
assert poll({"wait": 0, "known": 0})["session"]["id"] == s["id"]
assert poll({"wait": 0, "known": s["id"]})["session"]["id"] == s["id"]
poll({"wait": 31}, 400, "bad_parameter")
poll({"known": -1}, 400, "bad_parameter")
poll({}, 403, "forbidden", headers=op)
# A schema-3 report of the session is stored in the troubleshooting class; schema 2 with the field, or
# a session the device never had, gets 422.
now = int(time.time()) * 1000
v3 = dict(report(4, now), schema=3, window_start_ms=now - 10_000, troubleshooting_session=s["id"])
ack = conform(requests.post(f"{base}/v1/reports", json=v3, headers=dev, timeout=10), "POST", REPORTS, 200)
assert ack["stored_series"] == len(v3["series"]) and not ack["duplicate"], ack
for wrong in (dict(v3, seq=5, schema=2), dict(v3, seq=5, troubleshooting_session=s["id"] + 1000)):
    r = requests.post(f"{base}/v1/reports", json=wrong, headers=dev, timeout=10)
    assert conform(r, "POST", REPORTS, 422, "invalid_report")["error"]["path"] == "troubleshooting_session", r.text
windows = conform(requests.get(f"{base}/v1/devices/{device}/series", params={"from": now - 5_000}, headers=op, timeout=10),
                  "GET", "/v1/devices/{id}/series", 200)["windows"]
assert {w["data_class"] for w in windows if w["seq"] == 4} == {"troubleshooting"}, windows
listed = conform(requests.get(sessions, headers=op, timeout=10), "GET", S, 200)["sessions"]
assert [x["id"] for x in listed] == [s["id"]], listed
stopped = conform(requests.delete(f"{sessions}/{s['id']}", headers=op, timeout=10), "DELETE", SID, 200)
assert stopped == {"stopped": s["id"]}, stopped
conform(requests.delete(f"{sessions}/{s['id']}", headers=op, timeout=10), "DELETE", SID, 404, "no_running_session")
conform(requests.delete(f"{sessions}/x", headers=op, timeout=10), "DELETE", SID, 400, "bad_parameter")
listed = conform(requests.get(sessions, headers=op, timeout=10), "GET", S, 200)["sessions"]
assert listed[0]["stopped_at_ms"] >= listed[0]["started_at_ms"] and listed[0]["remaining_ms"] == 0, listed
assert poll({"wait": 0, "known": s["id"]}) == {"session": None}
print(f"3 reports stored, settings version 1, fleet cells flushed; session {s['id']} started, reported on, listed, stopped")
PY

# Hooks for the schemathesis runs (see the top of this file).
cat > "$work/hooks.py" <<'PY'
import os, re
import requests
import schemathesis

def no_wait(value):
    """0 for any value the collector reads as a wait of 1-30 s (Swift's Int(): a sign and ASCII digits)."""
    if isinstance(value, list):
        return [no_wait(v) for v in value]
    if value is None or isinstance(value, (bool, dict)):
        return value
    text = str(value)
    return 0 if re.fullmatch(r"[+-]?[0-9]+", text) and 1 <= int(text) <= 30 else value

started = []  # (device, id) of the last session a generated POST started; one worker, so no lock

def is_start(case):
    return case.operation.path == "/v1/devices/{id}/sessions" and case.method.upper() == "POST"

@schemathesis.hook
def before_call(context, case, kwargs):
    if case.operation.path == "/v1/session" and isinstance(case.query, dict) and "wait" in case.query:
        wait = no_wait(case.query["wait"])
        if wait != case.query["wait"]:
            with open(os.environ["MP_HOOK_LOG"], "a") as log:
                print(f"wait {case.query['wait']!r} sent as {wait!r}", file=log)
        case.query["wait"] = wait
    # The session the previous POST started is stopped before the next POST (404 when a linked DELETE
    # or erasure did it already), so POSTs are not all answered 409 and, in between, the long poll and
    # DELETE meet a running session.
    while is_start(case) and started:
        device, sid = started.pop()
        r = requests.delete(f"{os.environ['MP_BASE']}/v1/devices/{device}/sessions/{sid}", timeout=10,
                            headers={"Authorization": f"Bearer {os.environ['MP_ADMIN_TOKEN']}", "X-Meetpunt-Reason": "openapi-check cleanup"})
        with open(os.environ["MP_HOOK_LOG"], "a") as log:
            print(f"stop session {sid} of {device}: {r.status_code}", file=log)

@schemathesis.hook
def after_call(context, case, response):
    if is_start(case) and response.status_code == 201:
        s = response.json()
        started.append((s["device"], s["id"]))
PY

phase "schemathesis against $base"
# Credentials per security scheme of the file: device, operator (the operator role) and admin tokens.
cat > "$work/schemathesis.toml" <<'TOML'
[auth.openapi.deviceToken]
bearer = "${MP_DEVICE_TOKEN}"
[auth.openapi.operatorToken]
bearer = "${MP_OPERATOR_TOKEN}"
[auth.openapi.adminToken]
bearer = "${MP_ADMIN_TOKEN}"
TOML
export MP_DEVICE_TOKEN MP_OPERATOR_TOKEN MP_ADMIN_TOKEN MP_BASE=$base MP_HOOK_LOG=$work/hooks.log SCHEMATHESIS_HOOKS=$work/hooks.py
MP_DEVICE_TOKEN=$(cat "$work/device.token")
MP_OPERATOR_TOKEN=$(cat "$work/operator.token")
MP_ADMIN_TOKEN=$(cat "$work/admin.token")
checks=not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance
seed=${SEED:-$RANDOM$RANDOM}
failed=0
# Three runs: erasure and token revocation last, so they do not empty the data or revoke the tokens the
# other operations read with.
run() {
    local name=$1; shift
    echo "--- $name"
    # Run from $work, so nothing schemathesis writes lands in the repository. One worker: with two,
    # CPython 3.11's ast.parse (Hypothesis describing its strategies) fails now and then across threads.
    local status=0
    (cd "$work" && timeout "$TIME_LIMIT" "$venv/bin/schemathesis" --config-file "$work/schemathesis.toml" --no-color \
            run "$SPEC" --url "$base" --checks "$checks" --mode all --max-examples "$MAX_EXAMPLES" --seed "$seed" \
            --workers 1 --request-timeout 10 --generation-database none \
            --header "X-Meetpunt-Reason: openapi-check" "$@") > "$work/$name.out" 2>&1 || status=$?
    [ "$status" -eq 0 ] || failed=1
    [ "$status" -ne 124 ] || echo "schemathesis did not finish within TIME_LIMIT=$TIME_LIMIT s"
    # Failures, errors, warnings and the summary, without Python tracebacks (they stay in $name.out).
    sed -n '/^=* \(FAILURES\|ERRORS\|WARNINGS\|SUMMARY\) =*$/,$p' "$work/$name.out" | grep -v '^ *[|+]' | cut -c1-400 | head -400 || true
}
run reads-and-writes --exclude-operation-id eraseDeviceData --exclude-operation-id revokeToken
# One operation each: no links to follow (schemathesis calls a stateful phase without them an error).
run erasure --include-operation-id eraseDeviceData --phases examples,coverage,fuzzing
run revocation --include-operation-id revokeToken --phases examples,coverage,fuzzing

touch "$work/hooks.log"
echo "hooks: $(grep -c '^stop session .*: 200$' "$work/hooks.log") sessions of generated POSTs stopped before the next POST," \
     "$(grep -c '^stop session .*: 404$' "$work/hooks.log") found stopped already; $(grep -c '^wait ' "$work/hooks.log") long polls sent with wait 0"

if grep -q "Swift runtime failure\|Fatal error" "$work/collector.log" || ! kill -0 "$collector" 2>/dev/null; then
    echo "the collector crashed:"; grep -m5 -A12 "Swift runtime failure\|Fatal error" "$work/collector.log" || true
    failed=1
fi

phase "summary"
# One line from schemathesis' closing figures of the three runs.
"$venv/bin/python" - "$work" "$seed" "$failed" <<'PY'
import re, sys
work, seed, failed = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
tested = generated = found = 0
for name in ("reads-and-writes", "erasure", "revocation"):
    text = open(f"{work}/{name}.out").read()
    m = re.search(r"^\s*Tested: (\d+)", text, re.M)
    tested += int(m.group(1)) if m else 0
    m = re.search(r"^\s*(\d+) generated, (.*)$", text, re.M)
    if m:
        generated += int(m.group(1))
        f = re.search(r"(\d+) unique failures?", m.group(2))
        found += int(f.group(1)) if f else 0
    found += sum(int(n) for n in re.findall(r"^\s*🚫 .*: (\d+)$", text, re.M))  # errors
verdict = "FAILED" if failed or found else "ok"
print(f"openapi-check: {verdict}: {tested} operations tested, {generated} test cases, {found} unique failures or errors (seed {seed})")
PY
[ "$failed" -eq 0 ] || { echo "openapi-check: details above; files in $work" >&2; exit 1; }
