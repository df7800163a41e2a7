#!/usr/bin/env bash
# Self-test of the netlab: brings the lab up with LAN 5 ms / WAN 20 ms each way, measures
#   client -> server       ping -c 20 -i 0.2   expected 50 ms (2 x 5 + 2 x 20)
#   client -> router LAN   ping -c 20 -i 0.2   expected 10 ms (2 x 5)
#   router -> server       ping -c 20 -i 0.2   expected 40 ms (2 x 20, the WAN relay alone)
# then runs traffic.sh for a few seconds (short TCP, bulk TCP, UDP with a marker), tears down and
# exits non-zero when an average RTT is more than 15 % away from its expected value, when the
# traffic did not get through, or when a relay dropped frames at low rate.
#   check.sh [PREFIX]      (default nlck<pid>; needs root)
# Environment: CHECK_TRAFFIC_SECONDS (default 4, 0 skips the traffic run), NETLAB_SCHED (see topology.sh).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
P=${1:-nlck$$}
LAN_MS=5 WAN_MS=20 TOL=0.15
STATUS_FILE=${NETLAB_STATUS:-/tmp/netlab-status.txt}
note() { echo "$(date +%H:%M:%S) netlab: $*" >> "$STATUS_FILE" 2>/dev/null || true; }

trap '"$HERE/topology.sh" down "$P" >/dev/null 2>&1 || true' EXIT
"$HERE/topology.sh" up "$P" "$LAN_MS" "$WAN_MS"

fail=0
results=()
# measure NAME NS TARGET EXPECTED_MS
measure() {
    local name=$1 ns=$2 target=$3 expected=$4 out line avg verdict
    out=$(ip netns exec "$ns" ping -n -c 20 -i 0.2 -q "$target" 2>&1) || true
    line=$(grep -E '^(rtt|round-trip)' <<< "$out" || true)
    avg=$(sed -E 's|.*= [0-9.]+/([0-9.]+)/.*|\1|' <<< "$line")
    if ! [[ "$avg" =~ ^[0-9.]+$ ]]; then
        echo "FAIL $name: no RTT ($out)"; fail=1; results+=("$name: no RTT"); return
    fi
    if awk -v a="$avg" -v e="$expected" -v t="$TOL" 'BEGIN{exit !(a >= e*(1-t) && a <= e*(1+t))}'; then
        verdict=ok
    else
        verdict=FAIL; fail=1
    fi
    printf '%-4s %-24s expected %5.1f ms, measured avg %s ms  (%s)\n' "$verdict" "$name" "$expected" "$avg" "$line"
    results+=("$name avg $avg ms (expected $expected) $verdict")
}

measure "client -> server"     "${P}c" 203.0.113.2  $((2 * LAN_MS + 2 * WAN_MS))
measure "client -> router LAN" "${P}c" 192.168.77.1 $((2 * LAN_MS))
measure "router -> server"     "${P}r" 203.0.113.2  $((2 * WAN_MS))

# Relay counters after the pings (low rate): nothing may be dropped.
for r in lan wan; do
    kill -USR1 "$(cat "/run/netlab-$P/relay-$r.pid")"
done
sleep 0.3
for r in lan wan; do
    c=$(grep "delay-relay counters" "/run/netlab-$P/relay-$r.log" | tail -1 | sed 's/^delay-relay counters: //')
    python3 - "$r" "$c" <<'EOF' || fail=1
import json, sys
name, c = sys.argv[1], json.loads(sys.argv[2])
bad = 0
for d in ("a_to_b", "b_to_a"):
    s = c[d]
    print(f"relay {name} {d}: {s['tx_frames']} frames, lateness mean {s['late_mean_us']} us, max {s['late_max_us']} us, "
          f">1 ms late {s['late_over_1ms']}, dropped {s['dropped_queue_full']}+{s['dropped_by_kernel']}, send errors {s['send_errors']}"
          f" (scheduling {c['sched']})")
    bad += s["dropped_queue_full"] + s["dropped_by_kernel"] + s["send_errors"] + s["truncated"]
sys.exit(1 if bad else 0)
EOF
done

secs=${CHECK_TRAFFIC_SECONDS:-4}
if [ "$secs" != 0 ]; then
    if "$HERE/traffic.sh" "$P" "NETLAB-CANARY-CHECK" "$secs"; then
        results+=("traffic ok")
    else
        echo "FAIL traffic.sh"; fail=1; results+=("traffic FAIL")
    fi
fi

echo "== relay counters at teardown"
trap - EXIT
"$HERE/topology.sh" down "$P"
note "check.sh $P: $(IFS=';'; echo "${results[*]}") -> $([ $fail -eq 0 ] && echo PASS || echo FAIL)"
if [ $fail -eq 0 ]; then echo "check.sh: PASS"; else echo "check.sh: FAIL"; fi
exit $fail
