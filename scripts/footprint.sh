#!/usr/bin/env bash
# Prints the agent's weight against its budget (DEVELOPERS.md): stripped static release binary, xz size,
# heavy-library symbols, and peak RSS (total and anonymous) while sampling with every sampler on.
source "$(dirname "$0")/lib.sh"
ensure_packages "${BUILD_PACKAGES[@]}" xz-utils binutils bc
ensure_swift

phase "building the agent (release, static Swift stdlib)"
swift build -c release --static-swift-stdlib --product meetpunt-agent
swift build --product meetpunt-collector
release=$(swift build -c release --show-bin-path)
debug=$(swift build --show-bin-path)

phase "size"
work=$(mktemp -d)
cp "$release/meetpunt-agent" "$work/agent" && strip "$work/agent"
stripped=$(stat -c %s "$work/agent")
xzbytes=$(xz -6 -T1 -c "$work/agent" | wc -c)
heavy=$(nm "$release/meetpunt-agent" 2>/dev/null | grep -cE 'NIOCore|NIOPosix|Hummingbird|GRDB|PostgresNIO|FoundationInternationalization|CCryptoBoringSSL|Yams' || true)
echo "dynamic libraries: $(ldd "$work/agent" | awk '{print $1}' | tr '\n' ' ')"

phase "peak RSS while sampling (every sampler on: link, LAN clients, Wi-Fi (idle here: no radios), health, capture on lo with traffic; 1 s interval, 20 s)"
cat > "$work/collector.yaml" <<YAML
listen: {host: 127.0.0.1, port: 0}
storage: {sqlite_path: $work/c.sqlite}
retention_file: $PWD/collector/retention.yaml
YAML
"$debug/meetpunt-collector" device add footprint --config "$work/collector.yaml" --token-file "$work/token" >/dev/null 2>&1
"$debug/meetpunt-collector" serve --config "$work/collector.yaml" > "$work/collector.log" 2>&1 &
collector=$!
trap 'kill $collector 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$work/collector.log" && break; sleep 0.1; done
port=$(grep -o "listening on [0-9.]*:[0-9]*" "$work/collector.log" | head -1 | cut -d: -f2)
cat > "$work/agent.yaml" <<YAML
device_id: footprint
collector: {url: "http://127.0.0.1:$port", token_file: $work/token, insecure_demo: true}
state_dir: $work/state
sampling: {interval_seconds: 1, window_seconds: 5}
link: {interfaces: ["*"], include_loopback: true}
lan_clients: {interfaces: ["*"]}
wifi: {enabled: true}
health: {enabled: true}
capture: {enabled: true, interfaces: ["lo"]}
YAML
"$work/agent" run --config "$work/agent.yaml" --duration 20 2> "$work/agent.log" &
agent=$!
# Traffic for the capture sampler: the agent's own uploads plus a steady ping on loopback.
( timeout 20 ping -q -i 0.05 127.0.0.1 > /dev/null 2>&1 || true ) &
peak=0; anon=0
while kill -0 $agent 2>/dev/null; do
    hwm=$(awk '/VmHWM/ {print $2}' /proc/$agent/status 2>/dev/null || echo 0)
    a=$(awk '/RssAnon/ {print $2}' /proc/$agent/status 2>/dev/null || echo 0)
    [ "${hwm:-0}" -gt "$peak" ] && peak=$hwm
    [ "${a:-0}" -gt "$anon" ] && anon=$a
    sleep 0.2
done
delivered=$(grep -c "report spooled" "$work/agent.log" || true)

phase "figures"
printf '%-34s %10s %10s\n' "measure" "value" "goal"
printf '%-34s %8.1f MB %7s MB\n' "stripped static binary" "$(echo "$stripped/1000000" | bc -l)" "20"
printf '%-34s %8.2f MB %7s MB\n' "xz -6 compressed" "$(echo "$xzbytes/1000000" | bc -l)" "5"
printf '%-34s %8.1f MB %7s MB\n' "peak RSS (VmHWM)" "$(echo "$peak/1000" | bc -l)" "16"
printf '%-34s %8.1f MB %7s MB\n' "peak anonymous RSS (RssAnon)" "$(echo "$anon/1000" | bc -l)" "6"
printf '%-34s %10s %10s\n' "heavy-library symbols" "$heavy" "0"
printf '%-34s %10s\n' "reports spooled during the run" "$delivered"
echo "baseline for comparison (DEVELOPERS.md, same host): node_exporter 13.7 MB binary, 4.0 MB xz, RSS 20 MB, 6.6 MB anonymous"
