#!/usr/bin/env bash
# The delayed client / router / server lab in network namespaces (see README.md beside this file).
#
#   topology.sh up   PREFIX DELAY_MS_LAN DELAY_MS_WAN [JITTER_MS_LAN JITTER_MS_WAN]
#   topology.sh down PREFIX
#   topology.sh show PREFIX
#
# PREFIX: 1-12 characters [a-z0-9] (interface names are PREFIX + up to 3 characters, at most 15).
# NETLAB_SCHED=auto|fifo|nice|normal: the relays' CPU scheduling (default auto: SCHED_FIFO, see delay-relay.py).
#
#  ns ${P}c (client)        ns ${P}x (relays)                         ns ${P}r (router)            ns ${P}s (server)
#  ${P}c0 192.168.77.2 ── ${P}c1 ═[relay LAN]═ ${P}l1 ── ${P}lan 192.168.77.1
#                                                                      ${P}wan 203.0.113.1 ── ${P}w1 ═[relay WAN]═ ${P}s1 ── ${P}s0 203.0.113.2
#  (the WAN-side relay interfaces ${P}w1 and ${P}s1 are in ${P}x too)
#
# up: creates the namespaces and veth pairs, turns offloads off on every veth, starts the two relays
#     (pid files and logs in /run/netlab-PREFIX/), waits until the client pings the server. A lab with
#     the same PREFIX that is already there is removed first.
# down: stops the relays (SIGTERM; down prints their counters) and deletes the namespaces, which
#     deletes every veth, and /run/netlab-PREFIX/ (kept with its logs when NETLAB_KEEP_LOGS=1);
#     idempotent, never fails for what is not there.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATUS_FILE=${NETLAB_STATUS:-/tmp/netlab-status.txt}
note() { echo "$(date +%H:%M:%S) netlab: $*" >> "$STATUS_FILE" 2>/dev/null || true; }
die() { echo "topology.sh: $*" >&2; note "FAIL: $*"; exit 1; }

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

check_prefix() {
    [[ "$1" =~ ^[a-z0-9]{1,12}$ ]] || die "PREFIX must be 1-12 characters of [a-z0-9] (got '$1')"
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

offloads_off() {
    local ns=$1 dev=$2
    in_ns "$ns" ethtool -K "$dev" tso off gso off gro off tx off rx off >/dev/null 2>&1 ||
        die "ethtool -K $dev (in $ns) failed"
    # VLAN tag offloads: a tag stays inside the frame, so the relay forwards it as it is.
    in_ns "$ns" ethtool -K "$dev" rxvlan off txvlan off >/dev/null 2>&1 || true
}

# veth_pair NS_A IF_A NS_B IF_B
veth_pair() {
    ip link add name "$2" netns "$1" type veth peer name "$4" netns "$3" || die "cannot create veth $2 <-> $4"
    offloads_off "$1" "$2"
    offloads_off "$3" "$4"
}

relay_pid_ok() {
    # The pid in FILE is alive and is one of our relays (never kill a recycled pid).
    local f=$1 pid
    [ -f "$f" ] || return 1
    pid=$(cat "$f" 2>/dev/null) || return 1
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -q "delay-relay.py" || return 1
    echo "$pid"
}

cmd_down() {
    local P=$1 run=/run/netlab-$1 pid f i
    check_prefix "$P"
    for f in "$run"/relay-lan.pid "$run"/relay-wan.pid; do
        if pid=$(relay_pid_ok "$f"); then
            kill -TERM "$pid" 2>/dev/null || true
            for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$f"
    done
    for f in "$run"/relay-lan.log "$run"/relay-wan.log; do
        [ -f "$f" ] && grep -h "delay-relay counters" "$f" | tail -1 || true
    done
    for ns in "${P}c" "${P}r" "${P}s" "${P}x"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    # Leftovers of an interrupted 'up' that created a link in the root namespace: none normally.
    for dev in "${P}c0" "${P}c1" "${P}l1" "${P}lan" "${P}wan" "${P}w1" "${P}s1" "${P}s0"; do
        ip link del "$dev" 2>/dev/null || true
    done
    # The relays' logs are kept only on request (their counters were printed just above).
    if [ "${NETLAB_KEEP_LOGS:-0}" = 1 ]; then rm -f "$run"/*.pid; else rm -rf "$run"; fi
    note "down $P"
    return 0
}

cmd_up() {
    local P=$1 lan_ms=$2 wan_ms=$3 lan_jit=${4:-0} wan_jit=${5:-0}
    local run=/run/netlab-$P ns i
    check_prefix "$P"
    [[ "$lan_ms" =~ ^[0-9]+([.][0-9]+)?$ && "$wan_ms" =~ ^[0-9]+([.][0-9]+)?$ ]] || die "delays must be numbers of ms"
    [ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
    command -v ethtool >/dev/null || die "ethtool is missing (apt-get install ethtool)"
    command -v ping >/dev/null || die "ping is missing (apt-get install iputils-ping)"

    cmd_down "$P" >/dev/null 2>&1 || true
    mkdir -p "$run"
    rm -f "$run"/relay-*.log

    for ns in "${P}c" "${P}r" "${P}s" "${P}x"; do
        ip netns add "$ns" || die "cannot create namespace $ns"
        in_ns "$ns" ip link set lo up
    done
    # The relay namespace has no addresses and no IPv6, so it sends nothing of its own.
    in_ns "${P}x" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1

    veth_pair "${P}c" "${P}c0"  "${P}x" "${P}c1"
    veth_pair "${P}r" "${P}lan" "${P}x" "${P}l1"
    veth_pair "${P}r" "${P}wan" "${P}x" "${P}w1"
    veth_pair "${P}s" "${P}s0"  "${P}x" "${P}s1"

    for dev in "${P}c1" "${P}l1" "${P}w1" "${P}s1"; do
        in_ns "${P}x" ip link set "$dev" promisc on up
    done

    in_ns "${P}c" ip addr add 192.168.77.2/24 dev "${P}c0"
    in_ns "${P}c" ip link set "${P}c0" up
    in_ns "${P}c" ip route add default via 192.168.77.1

    in_ns "${P}r" ip addr add 192.168.77.1/24 dev "${P}lan"
    in_ns "${P}r" ip addr add 203.0.113.1/24 dev "${P}wan"
    in_ns "${P}r" ip link set "${P}lan" up
    in_ns "${P}r" ip link set "${P}wan" up
    in_ns "${P}r" sysctl -qw net.ipv4.ip_forward=1

    in_ns "${P}s" ip addr add 203.0.113.2/24 dev "${P}s0"
    in_ns "${P}s" ip link set "${P}s0" up
    in_ns "${P}s" ip route add default via 203.0.113.1

    local jl=() jw=() sched=${NETLAB_SCHED:-auto}
    [ "$lan_jit" != 0 ] && jl=(--jitter-ms "$lan_jit" --seed 1)
    [ "$wan_jit" != 0 ] && jw=(--jitter-ms "$wan_jit" --seed 2)
    # 'ip netns exec' execs the command, so $! is the relay's own pid.
    ip netns exec "${P}x" python3 -u "$HERE/delay-relay.py" "${P}c1" "${P}l1" "$lan_ms" --sched "$sched" "${jl[@]}" \
        < /dev/null > "$run/relay-lan.log" 2>&1 &
    echo $! > "$run/relay-lan.pid"
    ip netns exec "${P}x" python3 -u "$HERE/delay-relay.py" "${P}w1" "${P}s1" "$wan_ms" --sched "$sched" "${jw[@]}" \
        < /dev/null > "$run/relay-wan.log" 2>&1 &
    echo $! > "$run/relay-wan.pid"

    for i in $(seq 1 100); do
        if in_ns "${P}c" ping -c1 -W1 -q 203.0.113.2 >/dev/null 2>&1; then
            note "up $P (LAN ${lan_ms} ms, WAN ${wan_ms} ms each way) after $i ping(s)"
            echo "netlab $P up: client ${P}c 192.168.77.2, router ${P}r (${P}lan 192.168.77.1, ${P}wan 203.0.113.1), server ${P}s 203.0.113.2; LAN +${lan_ms} ms, WAN +${wan_ms} ms each way (jitter ${lan_jit}/${wan_jit} ms)"
            return 0
        fi
        for f in "$run/relay-lan.pid" "$run/relay-wan.pid"; do
            relay_pid_ok "$f" >/dev/null || { cat "$run"/relay-*.log >&2; cmd_down "$P" >/dev/null; die "a relay died ($f)"; }
        done
        sleep 0.1
    done
    cat "$run"/relay-*.log >&2
    cmd_down "$P" >/dev/null
    die "the client cannot ping the server through the relays"
}

cmd_show() {
    local P=$1 ns
    check_prefix "$P"
    for ns in "${P}c" "${P}r" "${P}s" "${P}x"; do
        echo "== namespace $ns"
        in_ns "$ns" ip -br addr 2>/dev/null || echo "(absent)"
    done
    for f in /run/netlab-$P/relay-lan.pid /run/netlab-$P/relay-wan.pid; do
        if pid=$(relay_pid_ok "$f"); then echo "relay $(basename "$f" .pid): pid $pid"; else echo "relay $(basename "$f" .pid): not running"; fi
    done
}

[ $# -ge 2 ] || usage
case "$1" in
    up)   [ $# -ge 4 ] || usage; cmd_up "$2" "$3" "$4" "${5:-0}" "${6:-0}" ;;
    down) cmd_down "$2" ;;
    show) cmd_show "$2" ;;
    *) usage ;;
esac
