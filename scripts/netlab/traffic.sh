#!/usr/bin/env bash
# Traffic from the netlab client to its server, through the delaying relays (python3 only).
#
#   traffic.sh PREFIX MARKER SECONDS
#
# For SECONDS seconds, from ${PREFIX}c (192.168.77.2) to ${PREFIX}s (203.0.113.2):
#   - short TCP connections to port 5001, one every 0.5 s: request and answer lines hold MARKER;
#   - one bulk TCP transfer on port 5002 whose payload is MARKER repeated (a payload canary);
#   - UDP datagrams holding MARKER to port 5003, one every 0.1 s, echoed by the server.
# Environment: BULK_DIR=down|up (default down: server -> client), BULK_RATE bytes/s (default 0: as
# fast as TCP and the relays go), SHORT_INTERVAL, UDP_INTERVAL (seconds), PORT_BASE (default 5001).
# Prints the client's and the server's counters (one JSON line each); exits 1 when a kind of traffic
# did not get through. The lab must be up (topology.sh up PREFIX ...).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -eq 3 ] || { sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
P=$1 MARKER=$2 SECONDS_=$3
[[ "$P" =~ ^[a-z0-9]{1,12}$ ]] || { echo "traffic.sh: bad PREFIX '$P'" >&2; exit 2; }
ip netns pids "${P}s" >/dev/null 2>&1 && ip netns pids "${P}c" >/dev/null 2>&1 ||
    { echo "traffic.sh: the lab $P is not up (topology.sh up $P ...)" >&2; exit 1; }

PORT_BASE=${PORT_BASE:-5001}
run=/run/netlab-$P
mkdir -p "$run"
slog="$run/traffic-server.log"

ip netns exec "${P}s" python3 -u "$HERE/traffic.py" server --marker "$MARKER" --seconds "$SECONDS_" \
    --port-base "$PORT_BASE" < /dev/null > "$slog" 2>&1 &
spid=$!
cleanup() { kill -TERM "$spid" 2>/dev/null || true; }
trap cleanup EXIT

for _ in $(seq 1 100); do
    grep -q "traffic server ready" "$slog" 2>/dev/null && break
    kill -0 "$spid" 2>/dev/null || { cat "$slog" >&2; echo "traffic.sh: the server died" >&2; exit 1; }
    sleep 0.05
done
grep -q "traffic server ready" "$slog" || { echo "traffic.sh: the server did not start" >&2; exit 1; }

status=0
ip netns exec "${P}c" python3 -u "$HERE/traffic.py" client --server 203.0.113.2 --marker "$MARKER" \
    --seconds "$SECONDS_" --port-base "$PORT_BASE" --bulk-dir "${BULK_DIR:-down}" --bulk-rate "${BULK_RATE:-0}" \
    --short-interval "${SHORT_INTERVAL:-0.5}" --udp-interval "${UDP_INTERVAL:-0.1}" || status=$?

kill -TERM "$spid" 2>/dev/null || true
wait "$spid" 2>/dev/null || true
trap - EXIT
grep "traffic server counters" "$slog" || true
exit "$status"
