#!/usr/bin/env bash
# Generates the benchmark's input A (docs/benchmarks.md, "Packet analysis"): real traffic between two network
# namespaces joined by a veth pair, offloads off, captured with `tcpdump -s 128 -w`, and prints the file's path.
#
#   scripts/bench/make-capture.sh            # prints /var/cache/meetpunt/bench/capture-<hash>.pcap
#
# The mix, in two phases on one veth pair (10.213.0.1 <-> 10.213.0.2, fd00:213::1 <-> fd00:213::2):
#   1. together: SHORT_CONNS short TCP connections (request, response of 120 B to 40 kB, close), UDP_DATAGRAMS
#      datagrams echoed back, PINGS ICMP echo requests (ping -f) and PINGS6 ICMPv6 ones, and bulk TCP (iperf3)
#      limited to 300 Mbit/s;
#   2. bulk TCP (iperf3, BULK_RATE) until tcpdump has written PACKETS packets (tcpdump -c).
# Needs root (namespaces), iproute2, ethtool, tcpdump, iperf3, iputils-ping, python3; installs what is missing.
# The file is cached under BENCH_CACHE (default /var/cache/meetpunt/bench), keyed on the hash of this script
# and benchtraffic.py, so a rerun costs nothing. Progress goes to BENCH_STATUS (default /tmp/bench-status.txt).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${BENCH_CACHE:-/var/cache/meetpunt/bench}
STATUS=${BENCH_STATUS:-/tmp/bench-status.txt}
PACKETS=${PACKETS:-2100000}
SHORT_CONNS=${SHORT_CONNS:-12000}
UDP_DATAGRAMS=${UDP_DATAGRAMS:-60000}
PINGS=${PINGS:-30000}
PINGS6=${PINGS6:-10000}
BULK_RATE=${BULK_RATE:-1G}

note() { echo "$(date -Is) make-capture: $*" | tee -a "$STATUS" >&2; }

key=$( { cat "$HERE/make-capture.sh" "$HERE/benchtraffic.py"; echo "$PACKETS $SHORT_CONNS $UDP_DATAGRAMS $PINGS $PINGS6 $BULK_RATE"; } \
       | sha256sum | cut -c1-16)
out="$CACHE/capture-$key.pcap"
if [ -s "$out" ] && [ -s "$out.meta" ]; then
    note "cached: $out"
    echo "$out"
    exit 0
fi

[ "$(id -u)" -eq 0 ] || { echo "make-capture.sh needs root (network namespaces)" >&2; exit 1; }
missing=()
for p in iproute2 ethtool tcpdump iperf3 iputils-ping python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    note "installing ${missing[*]}"
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$CACHE"
exec 8>"$CACHE/.make-capture.lock"
timeout 10 flock -n 8 || { echo "another make-capture.sh is running ($CACHE/.make-capture.lock)" >&2; exit 1; }

A=mpbench-a; B=mpbench-b
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    timeout 20 ip netns del "$A" 2>/dev/null || true
    timeout 20 ip netns del "$B" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

timeout 20 ip netns del "$A" 2>/dev/null || true
timeout 20 ip netns del "$B" 2>/dev/null || true
timeout 20 ip netns add "$A"; timeout 20 ip netns add "$B"
timeout 20 ip link add mpbench0 netns "$A" type veth peer name mpbench1 netns "$B"
timeout 20 ip -n "$A" link set lo up; timeout 20 ip -n "$B" link set lo up
timeout 20 ip -n "$A" addr add 10.213.0.1/24 dev mpbench0; timeout 20 ip -n "$B" addr add 10.213.0.2/24 dev mpbench1
timeout 20 ip -n "$A" addr add fd00:213::1/64 dev mpbench0 nodad; timeout 20 ip -n "$B" addr add fd00:213::2/64 dev mpbench1 nodad
timeout 20 ip -n "$A" link set mpbench0 up; timeout 20 ip -n "$B" link set mpbench1 up
for ns_if in "$A mpbench0" "$B mpbench1"; do
    set -- $ns_if
    timeout 10 ip netns exec "$1" ethtool -K "$2" tso off gso off gro off
    note "offloads on $2: $(timeout 10 ip netns exec "$1" ethtool -k "$2" | grep -E '^(tcp-segmentation-offload|generic-segmentation-offload|generic-receive-offload):' | tr -s ' \n' ' ')"
done
timeout 10 ip netns exec "$A" ping -c 1 -W 2 10.213.0.2 >/dev/null

# Servers in B.
ip netns exec "$B" timeout 900 iperf3 -s -p 5201 >"$work/iperf-s1.log" 2>&1 & pids+=($!)
ip netns exec "$B" timeout 900 iperf3 -s -p 5202 >"$work/iperf-s2.log" 2>&1 & pids+=($!)
ip netns exec "$B" timeout 900 python3 "$HERE/benchtraffic.py" tcp-server 8080 >"$work/tcp-s.log" 2>&1 & pids+=($!)
ip netns exec "$B" timeout 900 python3 "$HERE/benchtraffic.py" udp-echo 5300 >"$work/udp-s.log" 2>&1 & pids+=($!)

# Capture on B's end of the pair; the kernel buffer is large so bursts are not dropped.
partial="$out.partial"
rm -f "$partial"
ip netns exec "$B" timeout 900 tcpdump -i mpbench1 -n -s 128 -B 131072 -c "$PACKETS" -w "$partial" 2>"$work/tcpdump.log" &
tcpdump_pid=$!; pids+=($tcpdump_pid)
for _ in $(seq 100); do grep -q "listening on" "$work/tcpdump.log" 2>/dev/null && break; sleep 0.1; done
sleep 0.5   # servers up

t0=$(date +%s)
note "phase 1: $SHORT_CONNS short TCP connections, $UDP_DATAGRAMS UDP datagrams, $PINGS+$PINGS6 pings, bulk TCP at 300M"
ip netns exec "$A" timeout 600 iperf3 -c 10.213.0.2 -p 5202 -t 600 -b 300M -l 1448 >"$work/iperf-c1.log" 2>&1 & bulk1=$!; pids+=($bulk1)
ip netns exec "$A" timeout 600 python3 "$HERE/benchtraffic.py" tcp-client 10.213.0.2 8080 "$SHORT_CONNS" 2>"$work/tcp-c.log" & g1=$!
ip netns exec "$A" timeout 600 python3 "$HERE/benchtraffic.py" udp-client 10.213.0.2 5300 "$UDP_DATAGRAMS" 2>"$work/udp-c.log" & g2=$!
ip netns exec "$A" timeout 600 ping -f -q -c "$PINGS" -s 56 10.213.0.2 >"$work/ping.log" 2>&1 & g3=$!
ip netns exec "$A" timeout 600 ping -6 -f -q -c "$PINGS6" -s 100 fd00:213::2 >"$work/ping6.log" 2>&1 & g4=$!
rc=0
for g in $g1 $g2 $g3 $g4; do wait "$g" || rc=$?; done
[ "$rc" -eq 0 ] || { note "a phase-1 generator failed (rc $rc)"; cat "$work"/tcp-c.log "$work"/udp-c.log "$work"/ping*.log >&2; exit 1; }
kill "$bulk1" 2>/dev/null || true
note "phase 1 done in $(( $(date +%s) - t0 )) s: $(cat "$work/tcp-c.log"); $(cat "$work/udp-c.log"); $(grep -h 'packets transmitted' "$work"/ping*.log | tr '\n' ';')"
kill -0 "$tcpdump_pid" 2>/dev/null || { note "tcpdump reached $PACKETS packets during phase 1: raise PACKETS"; exit 1; }

note "phase 2: bulk TCP at $BULK_RATE until tcpdump has $PACKETS packets"
ip netns exec "$A" timeout 600 iperf3 -c 10.213.0.2 -p 5201 -t 590 -b "$BULK_RATE" -l 1448 >"$work/iperf-c2.log" 2>&1 & bulk2=$!; pids+=($bulk2)
for _ in $(seq 1200); do kill -0 "$tcpdump_pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$tcpdump_pid" 2>/dev/null; then note "tcpdump did not reach $PACKETS packets in 600 s"; exit 1; fi
wait "$tcpdump_pid" || true
kill "$bulk2" 2>/dev/null || true
note "capture done in $(( $(date +%s) - t0 )) s: $(grep -E 'captured|received|dropped' "$work/tcpdump.log" | tr '\n' ';')"

{
    echo "packets_requested=$PACKETS"
    echo "tcpdump=\"$(grep -E 'captured|received|dropped' "$work/tcpdump.log" | tr '\n' ';')\""
    echo "tcp_client=\"$(cat "$work/tcp-c.log")\""
    echo "udp_client=\"$(cat "$work/udp-c.log")\""
    echo "ping=\"$(grep -h 'packets transmitted' "$work"/ping*.log | tr '\n' ';')\""
    echo "kernel=$(uname -r)"
    echo "tcpdump_version=\"$(tcpdump --version 2>&1 | head -1)\""
    echo "iperf3_version=\"$(iperf3 --version 2>&1 | head -1)\""
} >"$out.meta"
mv "$partial" "$out"
# Older captures of this generator are left to the operator; only the newest is named by its key.
note "wrote $out ($(stat -c %s "$out") bytes)"
echo "$out"
