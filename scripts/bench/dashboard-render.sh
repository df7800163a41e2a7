#!/usr/bin/env bash
# The dashboard's render time for a fleet of DEVICES (default 10,000) simulated devices (issue 16): a
# release collector on SQLite is filled by `meetpunt-collector loadtest --recent` (every device reporting,
# 92-series reports with Wi-Fi stations), its fleet aggregates flushed; then the fleet page and a device
# page are fetched RUNS times each (default 5) with a dashboard session, and the times printed.
source "$(dirname "$0")/../lib.sh"
DEVICES=${DEVICES:-10000}
RUNS=${RUNS:-5}
SECONDS_RUN=${SECONDS_RUN:-60}
ensure_packages curl sqlite3

work=$(mktemp -d /tmp/meetpunt-dashboard-render.XXXXXX)
collector=""
cleanup() {
    [ -n "$collector" ] && kill "$collector" 2>/dev/null && wait "$collector" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

phase "building meetpunt-collector (release)"
swift build -c release --product meetpunt-collector > "$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
bin=$(swift build -c release --show-bin-path)

phase "starting the collector (SQLite in $work)"
cat > "$work/collector.yaml" <<YAML
listen: {host: 127.0.0.1, port: 0}
storage: {sqlite_path: $work/collector.sqlite}
retention_file: $PWD/collector/retention.yaml
ingest: {max_reports_per_batch: 100}
YAML
"$bin/meetpunt-collector" serve --config "$work/collector.yaml" > "$work/collector.log" 2>&1 &
collector=$!
for _ in $(seq 100); do grep -q "listening on" "$work/collector.log" && break; sleep 0.1; done
port=$(grep -o "listening on [0-9.]*:[0-9]*" "$work/collector.log" | head -1 | cut -d: -f2)
[ -n "$port" ] || { echo "the collector did not start:" >&2; cat "$work/collector.log" >&2; exit 1; }

phase "filling: $DEVICES devices, at most $SECONDS_RUN s"
"$bin/meetpunt-collector" loadtest --config "$work/collector.yaml" --url "http://127.0.0.1:$port" --recent \
    --devices "$DEVICES" --seconds "$SECONDS_RUN" --reports-per-request 1 --device-prefix rd > "$work/loadtest.out" 2>&1 || true
grep '^loadtest-figures:' "$work/loadtest.out" | cut -c1-300 || tail -5 "$work/loadtest.out"
sleep 11   # the fleet aggregates are flushed every 10 s

link=$("$bin/meetpunt-collector" dashboard login-link --name render-bench --config "$work/collector.yaml")
cookie=$(curl -s -o /dev/null -D - "http://127.0.0.1:$port$link" | grep -io 'meetpunt_session=[A-Za-z0-9_-]*')
[ -n "$cookie" ] || { echo "no dashboard session" >&2; exit 1; }
devices=$(sqlite3 "$work/collector.sqlite" "SELECT COUNT(*) FROM devices" 2>/dev/null || echo "?")
reports=$(sqlite3 "$work/collector.sqlite" "SELECT COUNT(*) FROM reports" 2>/dev/null || echo "?")
device=$(sqlite3 "$work/collector.sqlite" "SELECT device_id FROM reports LIMIT 1" 2>/dev/null || echo rd-00000)

phase "rendering ($devices devices, $reports reports stored)"
for page in "ui/fleet" "ui/devices/$device?range=1h&reason=render+benchmark"; do
    times=()
    for _ in $(seq "$RUNS"); do
        t=$(curl -s -o "$work/page.html" -w '%{time_total} %{http_code} %{size_download}' -b "$cookie" "http://127.0.0.1:$port/$page")
        times+=("$t")
    done
    sorted=$(printf '%s\n' "${times[@]}" | sort -n)
    code=$(head -1 <<<"$sorted" | cut -d' ' -f2); size=$(head -1 <<<"$sorted" | cut -d' ' -f3)
    ms() { awk -v t="$1" 'BEGIN { printf "%.0f", t * 1000 }'; }
    median=$(sed -n "$(( (RUNS + 1) / 2 ))p" <<<"$sorted" | cut -d' ' -f1)
    printf '%-28s HTTP %s, %s bytes: median %s ms, min %s ms, max %s ms over %s fetches\n' "/${page%%\?*}" "$code" "$size" \
        "$(ms "$median")" "$(ms "$(head -1 <<<"$sorted" | cut -d' ' -f1)")" "$(ms "$(tail -1 <<<"$sorted" | cut -d' ' -f1)")" "$RUNS"
done
