#!/usr/bin/env bash
# The main job on this host: a collector on SQLite (under var/demo), a registered device, and an agent
# sampling this host's interfaces; the dashboard's URL and a one-time login link are printed, and both
# keep running until Ctrl-C (or DURATION seconds, when set); then a summary of what the collector holds.
source "$(dirname "$0")/lib.sh"
DURATION=${DURATION:-}

phase "installing Debian packages (when missing)"
ensure_packages "${BUILD_PACKAGES[@]}"
ensure_swift

phase "building"
swift build --product meetpunt-agent
swift build --product meetpunt-collector
bin=$(swift build --show-bin-path)

phase "starting the collector (SQLite in var/demo)"
demo=var/demo
rm -rf "$demo"; mkdir -p "$demo"
cat > "$demo/collector.yaml" <<YAML
listen: {host: 127.0.0.1, port: 0}
storage: {sqlite_path: collector.sqlite}
retention_file: $PWD/collector/retention.yaml
purge: {interval_seconds: 600}
# One device on this host: fleet figures are shown from a single report (a real fleet keeps the default
# of 10, so that no fleet figure describes one household).
fleet: {min_reports: 1}
YAML
"$bin/meetpunt-collector" device add demo-host --config "$demo/collector.yaml" --token-file "$demo/agent.token" >/dev/null
"$bin/meetpunt-collector" serve --config "$demo/collector.yaml" > "$demo/collector.log" 2>&1 &
collector=$!
trap 'kill $collector 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$demo/collector.log" && break; sleep 0.1; done
port=$(grep -o "listening on [0-9.]*:[0-9]*" "$demo/collector.log" | head -1 | cut -d: -f2)
[ -n "$port" ] || { cat "$demo/collector.log"; exit 1; }
echo "collector on 127.0.0.1:$port, log in $demo/collector.log"

# Every interface including loopback, so the demo shows traffic even on an idle machine (the
# agent's own reports travel over lo). A router's config excludes lo (agent-config/agent.yaml).
cat > "$demo/agent.yaml" <<YAML
device_id: demo-host
# insecure_demo: plain http on loopback, so the demo needs no certificate; the token travels in clear.
collector: {url: "http://127.0.0.1:$port", token_file: $PWD/$demo/agent.token, insecure_demo: true}
state_dir: $PWD/$demo/agent-state
sampling: {interval_seconds: 2, window_seconds: 10}
link: {interfaces: ["*"], include_loopback: true}
lan_clients: {interfaces: ["*"]}
YAML
"$bin/meetpunt-agent" check-config "$demo/agent.yaml"

if [ -n "$DURATION" ]; then
    phase "running the agent for ${DURATION} s (Ctrl-C to stop early)"
    "$bin/meetpunt-agent" run --config "$demo/agent.yaml" --duration "$DURATION" 2> "$demo/agent.log" &
else
    phase "running the agent until Ctrl-C"
    "$bin/meetpunt-agent" run --config "$demo/agent.yaml" 2> "$demo/agent.log" &
fi
agent=$!
link=$("$bin/meetpunt-collector" dashboard login-link --name demo-operator --minutes 60 --config "$demo/collector.yaml")
cat <<TEXT

  Dashboard:       http://127.0.0.1:$port/ui/
  One-time login:  http://127.0.0.1:$port$link
                   (works once, for 60 minutes; a new one: $bin/meetpunt-collector dashboard login-link --config $demo/collector.yaml)
  A troubleshooting session (1-second data for 5 minutes):
                   $bin/meetpunt-collector session start demo-host --reason "trying it" --minutes 5 --config $demo/collector.yaml
  The collector listens on 127.0.0.1 only: from another machine, ssh -L $port:127.0.0.1:$port this-host first.
  Windows arrive every 10 s; the first charts fill within a minute.

TEXT
trap 'kill -INT $agent 2>/dev/null || true' INT
while kill -0 "$agent" 2>/dev/null; do wait "$agent" || true; done
trap - INT
echo "agent log in $demo/agent.log ($(grep -c 'report spooled' "$demo/agent.log") reports spooled, $(grep -c 'reports not delivered' "$demo/agent.log" || true) retries)"

phase "summary of what the collector holds"
"$bin/meetpunt-collector" summary --config "$demo/collector.yaml"
