#!/usr/bin/env bash
# The collector under load (issue 15): a release build of meetpunt-collector serving a fresh SQLite database
# in a temporary folder, loaded by `meetpunt-collector loadtest` (200 simulated devices, 92 series per
# report, 10 reports per request, 8 requests in flight) for the given seconds; prints reports/s, request
# latency and database bytes per report and per series. Then, when Debian's victoria-metrics package can be
# installed, the same fleet's reports (same seed and devices, as many as the collector stored) go into a
# VictoriaMetrics on loopback as InfluxDB line protocol, and its bytes per report are printed beside ours.
#   scripts/bench/storage-load.sh [seconds]   (default 60)
# BACKEND=postgres stores in a new database of the PostgreSQL cluster scripts/postgres/cluster.sh runs on
# loopback (started --durable: fsync and synchronous commit on, as in production); COLLECTORS=2 (postgres
# only) runs two collector processes behind a round-robin TCP proxy (scripts/bench/rr-proxy.py).
# PREBUILT=N builds N reports' requests before the clock starts and sends only those (the timed part then
# measures the collector without the generator's CPU; the run ends when they are all sent).
# VICTORIA=skip leaves the VictoriaMetrics comparison out (it does not depend on our storage, and pushing ten
# minutes' reports into it takes about 18 minutes here).
# Environment: BACKEND (sqlite), COLLECTORS (1), PREBUILT (none), VICTORIA (run), DEVICES (200), CONCURRENCY (8), REPORTS_PER_REQUEST (10), SERIES (92), SEED (1),
# VM_PORT (18428; not 8428, which the packaged victoria-metrics service takes on a host that runs it).
# Everything it starts listens on 127.0.0.1 only and is stopped at the end; the temporary folder is removed.
source "$(dirname "$0")/../lib.sh"
SECONDS_RUN=${1:-60}
DEVICES=${DEVICES:-200}
CONCURRENCY=${CONCURRENCY:-8}
REPORTS_PER_REQUEST=${REPORTS_PER_REQUEST:-10}
SERIES=${SERIES:-92}
SEED=${SEED:-1}
VM_PORT=${VM_PORT:-18428}
PREFIX=lt-bench
BACKEND=${BACKEND:-sqlite}
COLLECTORS=${COLLECTORS:-1}
[ "$BACKEND" = sqlite ] || [ "$BACKEND" = postgres ] || { echo "BACKEND must be sqlite or postgres" >&2; exit 2; }
[ "$COLLECTORS" = 1 ] || [ "$BACKEND" = postgres ] || { echo "COLLECTORS > 1 needs BACKEND=postgres (SQLite is one process's file)" >&2; exit 2; }
ensure_packages "${BUILD_PACKAGES[@]}"
ensure_swift

work=$(mktemp -d /tmp/meetpunt-storage-load.XXXXXX)
vm=""; extra=""; pgdb=""; proxy=""
pg() { PGPASSWORD=$(cat "$pg_password") psql -X -q -t -A -h 127.0.0.1 -p "$pg_port" -U meetpunt -d postgres -c "$1"; }
cleanup() {
    for p in $extra $proxy; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    [ -n "$pgdb" ] && pg "DROP DATABASE IF EXISTS $pgdb WITH (FORCE)" || true
    [ -n "$vm" ] && kill "$vm" 2>/dev/null && wait "$vm" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

phase "building meetpunt-collector (release)"
swift build -c release --product meetpunt-collector > "$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
bin=$(swift build -c release --show-bin-path)

if [ "$BACKEND" = postgres ]; then
    phase "starting PostgreSQL (scripts/postgres/cluster.sh start --durable) and a new database"
    server=$(scripts/postgres/cluster.sh start --durable | tail -1)
    pg_port=$(sed -n 's/.*port=\([0-9]*\).*/\1/p' <<< "$server")
    pg_password=$(sed -n 's/.*password_file=\([^ ]*\).*/\1/p' <<< "$server")
    pgdb="meetpunt_load_$(date +%s)_$$"
    pg "CREATE DATABASE $pgdb"
    storage="{backend: postgres, postgres: {host: 127.0.0.1, port: $pg_port, database: $pgdb, user: meetpunt, password_file: $pg_password, tls: disable, max_connections: 16}}"
    echo "PostgreSQL $(pg 'SHOW server_version'), fsync $(pg 'SHOW fsync'), synchronous_commit $(pg 'SHOW synchronous_commit'), database $pgdb"
else
    storage="{sqlite_path: $work/collector.sqlite}"
fi

phase "starting $COLLECTORS collector process(es) ($BACKEND)"
cat > "$work/collector.yaml" <<YAML
listen: {host: 127.0.0.1, port: 0}
storage: $storage
retention_file: $PWD/collector/retention.yaml
ingest: {max_reports_per_batch: 100}
logging: {level: info}
YAML
# Started from this shell (not a subshell), so cleanup knows every pid and `wait` works.
start_collector() {
    "$bin/meetpunt-collector" serve --config "$work/collector.yaml" > "$work/collector-$1.log" 2>&1 &
    started_pid=$!
    extra="$extra $started_pid"
    # Up to 40 s: a PostgreSQL store may take up to 30 s to answer before the collector gives up.
    for _ in $(seq 400); do grep -q "listening on" "$work/collector-$1.log" && break; kill -0 "$started_pid" 2>/dev/null || break; sleep 0.1; done
    started_port=$(grep -o "listening on [0-9.]*:[0-9]*" "$work/collector-$1.log" | head -1 | cut -d: -f2)
    [ -n "$started_port" ] || { echo "collector $1 did not start:" >&2; cat "$work/collector-$1.log" >&2; exit 1; }
    echo "collector $1 on 127.0.0.1:$started_port (pid $started_pid)"
}
start_collector 1
port=$started_port
ln -sf "$work/collector-1.log" "$work/collector.log"
if [ "$COLLECTORS" -gt 1 ]; then
    backends="127.0.0.1:$port"
    for i in $(seq 2 "$COLLECTORS"); do
        start_collector "$i"
        backends="$backends 127.0.0.1:$started_port"
    done
    python3 scripts/bench/rr-proxy.py --listen 127.0.0.1:0 --port-file "$work/proxy.port" $backends > "$work/proxy.log" 2>&1 &
    proxy=$!
    for _ in $(seq 50); do [ -s "$work/proxy.port" ] && break; sleep 0.1; done
    port=$(cat "$work/proxy.port")
    echo "round-robin proxy on 127.0.0.1:$port in front of: $backends"
fi

# CPU time (user + system, clock ticks) of the collector processes and, on PostgreSQL, of this cluster's
# server processes: what serving the load cost, apart from the generator sharing the machine.
ticks_of() { local t=0; for p in "$@"; do [ -r "/proc/$p/stat" ] && t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo "$t"; }
# This cluster's postmaster and its children (fields 16-17 of the postmaster hold the backends that exited).
pg_server_ticks() {
    [ "$BACKEND" = postgres ] || { echo 0; return; }
    local pm t p
    pm=$(head -1 "${MEETPUNT_PG_DIR:-/var/tmp/meetpunt-pg}/data/postmaster.pid" 2>/dev/null) || { echo 0; return; }
    t=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pm/stat" 2>/dev/null || echo 0)
    for p in $(pgrep -P "$pm"); do t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0))); done
    echo "$t"
}
collector_ticks_before=$(ticks_of $extra)
pg_ticks_before=$(pg_server_ticks)

phase "loadtest: $DEVICES devices for $SECONDS_RUN s"
set +e
"$bin/meetpunt-collector" loadtest --config "$work/collector.yaml" --url "http://127.0.0.1:$port" \
    --devices "$DEVICES" --seconds "$SECONDS_RUN" --concurrency "$CONCURRENCY" \
    --reports-per-request "$REPORTS_PER_REQUEST" --series "$SERIES" --seed "$SEED" --device-prefix "$PREFIX" \
    ${PREBUILT:+--prebuilt "$PREBUILT"} | tee "$work/loadtest.out"
loadtest_rc=${PIPESTATUS[0]}
set -e
figures=$(grep '^loadtest-figures:' "$work/loadtest.out" || true)
figure() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< " $figures"; }
stored=$(figure stored); stored_series=$(figure stored_series)
ours_report=$(figure bytes_per_report); ours_series=$(figure bytes_per_series)
collector_ticks=$(( $(ticks_of $extra) - collector_ticks_before ))
pg_ticks=$(( $(pg_server_ticks) - pg_ticks_before ))
hz=$(getconf CLK_TCK)
if [ "${stored:-0}" -gt 0 ]; then
    awk -v t="$collector_ticks" -v hz="$hz" -v n="$stored" 'BEGIN { ms = t / hz * 1000 / n; printf "collector CPU (user+system, all collector processes): %.1f s, %.2f ms per stored report, %.0f reports per collector core-second\n", t / hz, ms, 1000 / ms }'
    [ "$BACKEND" = postgres ] && awk -v t="$pg_ticks" -v hz="$hz" -v n="$stored" 'BEGIN { printf "PostgreSQL server CPU (all its processes, children included): %.1f s, %.2f ms per stored report\n", t / hz, t / hz * 1000 / n }'
fi
for p in $extra; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
extra=""
if [ "$COLLECTORS" -gt 1 ]; then
    kill "$proxy" 2>/dev/null; wait "$proxy" 2>/dev/null
    cat "$work/proxy.log"
fi
if [ -z "$figures" ] || [ "${stored:-0}" -eq 0 ]; then
    echo "loadtest stored nothing (exit $loadtest_rc); collector log:" >&2
    tail -20 "$work/collector.log" >&2
    exit 1
fi
echo "collectors' errors and warnings: $(cat "$work"/collector-*.log | grep -ciE 'error|warning' || true) lines in their logs"

phase "VictoriaMetrics on loopback with the same reports"
vm_note=""
if [ "${VICTORIA:-run}" = skip ]; then
    vm_note="VICTORIA=skip"
elif ! command -v victoria-metrics >/dev/null 2>&1; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    if ! apt-cache show victoria-metrics >/dev/null 2>&1; then $sudo apt-get update -qq || true; fi
    if apt-cache show victoria-metrics >/dev/null 2>&1; then
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends victoria-metrics >/dev/null \
            || vm_note="apt-get install victoria-metrics failed"
    else
        vm_note="Debian has no victoria-metrics package here"
    fi
fi
if [ -z "$vm_note" ] && ! command -v victoria-metrics >/dev/null 2>&1; then vm_note="victoria-metrics is not on PATH after installing it"; fi

if [ -n "$vm_note" ]; then
    echo "$vm_note: skipping the comparison"
else
    vm_version=$(dpkg-query -W -f='${Version}' victoria-metrics 2>/dev/null || echo "?")
    # The same generator, seed and device ids as the run above, as many reports as the collector stored,
    # written as line protocol without sending them anywhere.
    "$bin/meetpunt-collector" loadtest --generate-only "$stored" --influx-out "$work/reports.lp" \
        --devices "$DEVICES" --reports-per-request "$REPORTS_PER_REQUEST" --series "$SERIES" --seed "$SEED" \
        --device-prefix "$PREFIX" | tee "$work/generate.out"
    generated=$(grep '^loadtest-generated:' "$work/generate.out")
    lp_fields=$(sed -n 's/.* fields=\([0-9]*\).*/\1/p' <<< "$generated")
    mkdir -p "$work/vm"
    victoria-metrics -storageDataPath "$work/vm" -httpListenAddr "127.0.0.1:$VM_PORT" -retentionPeriod 1 \
        -loggerLevel ERROR > "$work/vm.log" 2>&1 &
    vm=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$VM_PORT/health" >/dev/null 2>&1 && break; sleep 0.1; done
    curl -sf "http://127.0.0.1:$VM_PORT/health" >/dev/null || { echo "victoria-metrics did not start:" >&2; cat "$work/vm.log" >&2; exit 1; }
    curl -sf "http://127.0.0.1:$VM_PORT/internal/force_flush" >/dev/null
    sleep 1
    vm_empty=$(du -sb "$work/vm" | cut -f1)
    # In pieces of 50 000 lines (about 10 MB), each in one request.
    split -l 50000 "$work/reports.lp" "$work/lp."
    rm -f "$work/reports.lp"
    for piece in "$work"/lp.*; do
        curl -sf --data-binary @"$piece" "http://127.0.0.1:$VM_PORT/write?precision=ms" \
            || { echo "VictoriaMetrics refused $piece" >&2; exit 1; }
        rm -f "$piece"
    done
    curl -sf "http://127.0.0.1:$VM_PORT/internal/force_flush" >/dev/null
    sleep 3
    curl -sf "http://127.0.0.1:$VM_PORT/internal/force_flush" >/dev/null
    vm_rows=$(curl -sf "http://127.0.0.1:$VM_PORT/metrics" | awk '/^vm_rows_inserted_total\{type="influx"\}/ {print $2}')
    vm_bytes=$(( $(du -sb "$work/vm" | cut -f1) - vm_empty ))
    kill "$vm" 2>/dev/null && wait "$vm" 2>/dev/null || true
    vm=""
    vm_report=$(awk -v b="$vm_bytes" -v n="$stored" 'BEGIN { printf "%.0f", b / n }')
    vm_series=$(awk -v b="$vm_bytes" -v n="$stored_series" 'BEGIN { printf "%.1f", b / n }')
    echo "VictoriaMetrics $vm_version: ${vm_rows:-?} values inserted of $lp_fields written, data folder grew by $vm_bytes bytes after a flush"
fi

phase "figures"
printf '%-44s %16s %16s\n' "store" "bytes/report" "bytes/series"
printf '%-44s %16s %16s\n' "meetpunt-collector ($BACKEND, indexes included)" "$ours_report" "$ours_series"
if [ -z "$vm_note" ]; then
    printf '%-44s %16s %16s\n' "VictoriaMetrics $vm_version (data folder)" "$vm_report" "$vm_series"
    echo "($stored reports of $DEVICES devices, $SERIES series each; VictoriaMetrics holds each series field as its own"
    echo " time series: count, min, max, mean, last, sum and one per sketch bucket, tagged with device and labels)"
else
    echo "VictoriaMetrics: $vm_note"
fi
grep '^loadtest: [0-9]* devices' "$work/loadtest.out" || true
exit "$loadtest_rc"
