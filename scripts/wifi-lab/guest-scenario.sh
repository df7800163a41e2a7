#!/bin/bash
# The Wi-Fi lab scenario, run inside the QEMU guest by /init (guest-init.sh). Brought in through the
# read-only 9p share /lab/in (so editing it needs no image rebuild); results go to /lab/out (the host's
# --out directory).
#
# Topology (mac80211_hwsim, 7 radios; every radio hears every other one on the same channel):
#   root namespace ("the router"):  wlan0 AP "meetpunt-lab-24"  2.4 GHz ch 6,  WPA2-PSK, HT20 (+HE)
#                                   wlan1 AP "meetpunt-lab-5"   5 GHz ch 36,   WPA2-PSK, VHT80 (+HE)
#   ns nbr:  wlan2 AP "neighbour-net" 2.4 GHz ch 1 (the neighbour the APs' scans should find)
#   ns ns1:  wlan3 client of meetpunt-lab-24 (HT/HE)        192.168.24.11
#   ns ns2:  wlan4 client of meetpunt-lab-24 (HT disabled: legacy rates)  192.168.24.12
#   ns ns3:  wlan5 client of meetpunt-lab-5 (VHT/HE)         192.168.5.13
#   ns ns4:  wlan6 client of meetpunt-lab-5 (VHT disabled if wpa_supplicant can: HT40)  192.168.5.14
# Phases: setup -> traffic -> fixture dumps with nlmon captures -> (agent) bracketed snapshots,
# pseudonyms -> (collector) agent run with a tx power change -> collect logs.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
IN=/lab/in
OUT=/lab/out
W=/tmp/lab                      # scratch (tmpfs)
mkdir -p "$W" "$OUT"
[ -f "$IN/lab.env" ] && . "$IN/lab.env"
COLLECTOR_URL=${COLLECTOR_URL:-}
RUN_DURATION=${RUN_DURATION:-40}
TXPOWER_CHANGE_AFTER=${TXPOWER_CHANGE_AFTER:-15}
PSK=meetpunt-lab-psk
NBR_PSK=neighbour-psk

up() { cut -d' ' -f1 /proc/uptime; }
ts() {
    local u; u=$(up)
    echo "=== [t=${u}s] $*"
    echo "$u $(date +%s.%N) $*" >> "$OUT/timeline.txt"
}
fail_note() { echo "!!! $*"; echo "$*" >> "$OUT/problems.txt"; }
# wait_for SECONDS CMD...: polls CMD every 0.2 s, bounded.
wait_for() {
    local limit=$1; shift
    local n=$((limit * 5)) i
    for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}
in_ns() { local ns=$1; shift; if [ "$ns" = root ]; then "$@"; else ip netns exec "$ns" "$@"; fi; }

ts "scenario start ($(uname -r))"
date -u +%Y-%m-%dT%H:%M:%SZ > "$OUT/guest-date.txt"
{
    echo "kernel: $(uname -r) ($(uname -v))"
    echo "hostapd: $(hostapd -v 2>&1 | head -1)"
    echo "wpa_supplicant: $(wpa_supplicant -v 2>&1 | head -1)"
    echo "iw: $(iw --version 2>&1)"
    echo "iperf3: $(iperf3 -v 2>&1 | head -1)"
    echo "tcpdump: $(tcpdump --version 2>&1 | head -1)"
    grep -E '^  (hostapd|wpasupplicant|iw|iproute2|tcpdump|iperf3|wireless-regdb|libnl-3-200) ' /etc/meetpunt-lab-manifest.txt
} > "$OUT/versions.txt" 2>&1
cp /etc/meetpunt-lab-manifest.txt "$OUT/image-manifest.txt"

# ---- radios, regulatory domain, namespaces ---------------------------------------------------------
ts "load mac80211_hwsim radios=7"
modprobe mac80211_hwsim radios=7 || fail_note "modprobe mac80211_hwsim failed"
wait_for 10 test -e /sys/class/net/wlan6 || fail_note "wlan6 did not appear"
for m in nlmon veth sch_netem; do modprobe -q "$m" || echo "module $m unavailable"; done
iw reg set NL
wait_for 10 sh -c 'iw reg get | grep -q "country NL"' || fail_note "regulatory domain NL not set"
ts "regdom: $(iw reg get | grep -m1 country)"

phy_of() { cat "/sys/class/net/$1/phy80211/name"; }
declare -A NS_OF=([wlan0]=root [wlan1]=root [wlan2]=nbr [wlan3]=ns1 [wlan4]=ns2 [wlan5]=ns3 [wlan6]=ns4)
CLIENT_NS=(ns1 ns2 ns3 ns4)
declare -A IF_OF=([ns1]=wlan3 [ns2]=wlan4 [ns3]=wlan5 [ns4]=wlan6 [nbr]=wlan2)
declare -A PHY
for i in 0 1 2 3 4 5 6; do PHY[wlan$i]=$(phy_of wlan$i); done
# Distinctive, vendor-like MACs instead of hwsim's 02:00:00:00:0N:00, so that the privacy scan's search
# for raw addresses (also as 6 raw bytes) cannot match runs of zeros by chance. LAB_HWSIM_MACS=1 keeps
# hwsim's own addresses.
declare -A LAB_MAC=([wlan0]=f4:92:bf:a1:24:01 [wlan1]=f4:92:bf:a1:05:02 [wlan2]=3c:84:6a:7e:11:03
                    [wlan3]=d8:3a:dd:41:9c:13 [wlan4]=5c:cf:7f:2b:e6:14 [wlan5]=a8:5e:45:90:3d:15
                    [wlan6]=b0:be:76:c2:58:16)
if [ "${LAB_HWSIM_MACS:-0}" != 1 ]; then
    for i in 0 1 2 3 4 5 6; do
        ip link set "wlan$i" down
        ip link set "wlan$i" address "${LAB_MAC[wlan$i]}" || fail_note "cannot set the MAC of wlan$i"
    done
fi
for ns in nbr "${CLIENT_NS[@]}"; do
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    iw phy "${PHY[${IF_OF[$ns]}]}" set netns name "$ns" || fail_note "moving ${IF_OF[$ns]} to $ns failed"
done

# ---- access points ---------------------------------------------------------------------------------
cat > "$W/ap24.conf" <<EOF
interface=wlan0
driver=nl80211
ctrl_interface=/run/hostapd
ssid=meetpunt-lab-24
country_code=NL
ieee80211d=1
hw_mode=g
channel=6
ieee80211n=1
ht_capab=[SHORT-GI-20]
wmm_enabled=1
ieee80211ax=1
wpa=2
wpa_key_mgmt=WPA-PSK
rsn_pairwise=CCMP
wpa_passphrase=$PSK
EOF
cat > "$W/ap5.conf" <<EOF
interface=wlan1
driver=nl80211
ctrl_interface=/run/hostapd
ssid=meetpunt-lab-5
country_code=NL
ieee80211d=1
hw_mode=a
channel=36
ieee80211n=1
ht_capab=[HT40+][SHORT-GI-20][SHORT-GI-40]
ieee80211ac=1
vht_capab=[SHORT-GI-80]
vht_oper_chwidth=1
vht_oper_centr_freq_seg0_idx=42
wmm_enabled=1
ieee80211ax=1
he_oper_chwidth=1
he_oper_centr_freq_seg0_idx=42
wpa=2
wpa_key_mgmt=WPA-PSK
rsn_pairwise=CCMP
wpa_passphrase=$PSK
EOF
cat > "$W/apnbr.conf" <<EOF
interface=wlan2
driver=nl80211
ctrl_interface=/run/hostapd-nbr
ssid=neighbour-net
country_code=NL
hw_mode=g
channel=1
ieee80211n=1
wmm_enabled=1
wpa=2
wpa_key_mgmt=WPA-PSK
rsn_pairwise=CCMP
wpa_passphrase=$NBR_PSK
EOF

# start_ap NS NAME: starts hostapd; if it rejects the HE (802.11ax) lines, retries without them.
start_ap() {
    local ns=$1 name=$2 conf="$W/$2.conf" ifname ctrl
    ifname=$(sed -n 's/^interface=//p' "$conf"); ctrl=$(sed -n 's/^ctrl_interface=//p' "$conf")
    in_ns "$ns" hostapd -B -t -P "$W/hostapd-$name.pid" -f "$W/hostapd-$name.log" "$conf" > "$W/hostapd-$name.start" 2>&1
    if ! wait_for 25 sh -c "$( [ "$ns" = root ] || echo "ip netns exec $ns ") hostapd_cli -p $ctrl -i $ifname status | grep -q state=ENABLED"; then
        if grep -q 'ieee80211ax\|he_oper' "$W/hostapd-$name.log" "$W/hostapd-$name.start" 2>/dev/null; then
            echo "$name: hostapd rejected 802.11ax, retrying without it" | tee -a "$OUT/ap-notes.txt"
            [ -f "$W/hostapd-$name.pid" ] && kill "$(cat "$W/hostapd-$name.pid")" 2>/dev/null
            sed -i '/^ieee80211ax=/d;/^he_oper/d' "$conf"
            in_ns "$ns" hostapd -B -t -P "$W/hostapd-$name.pid" -f "$W/hostapd-$name.log" "$conf" >> "$W/hostapd-$name.start" 2>&1
            wait_for 25 sh -c "$( [ "$ns" = root ] || echo "ip netns exec $ns ") hostapd_cli -p $ctrl -i $ifname status | grep -q state=ENABLED" ||
                fail_note "$name: hostapd not ENABLED"
        else
            fail_note "$name: hostapd not ENABLED"
        fi
    fi
    in_ns "$ns" hostapd_cli -p "$ctrl" -i "$ifname" status > "$OUT/hostapd-$name-status.txt" 2>&1
    cp "$conf" "$OUT/hostapd-$name.conf"
    echo "$name: $(grep -E '^(state|freq|channel|ieee80211n|ieee80211ac|ieee80211ax)=' "$OUT/hostapd-$name-status.txt" | tr '\n' ' ')" | tee -a "$OUT/ap-notes.txt"
}
ts "start APs"
ip addr add 192.168.24.1/24 dev wlan0
ip addr add 192.168.5.1/24 dev wlan1
start_ap root ap24 &
start_ap root ap5 &
start_ap nbr apnbr &
wait
ts "APs started"

# ---- clients ---------------------------------------------------------------------------------------
# write_sta NS SSID FREQ [override-line]
write_sta() {
    cat > "$W/wpas-$1.conf" <<EOF
ctrl_interface=/run/wpa_supplicant-$1
update_config=0
country=NL
network={
    ssid="$2"
    psk="$PSK"
    key_mgmt=WPA-PSK
    scan_freq=$3
    ${4:-}
}
EOF
}
write_sta ns1 meetpunt-lab-24 2437
write_sta ns2 meetpunt-lab-24 2437 "disable_ht=1"
write_sta ns3 meetpunt-lab-5 5180
write_sta ns4 meetpunt-lab-5 5180 "disable_vht=1"
declare -A STA_IP=([ns1]=192.168.24.11 [ns2]=192.168.24.12 [ns3]=192.168.5.13 [ns4]=192.168.5.14)
declare -A AP_IP=([ns1]=192.168.24.1 [ns2]=192.168.24.1 [ns3]=192.168.5.1 [ns4]=192.168.5.1)
start_sta() {
    local ns=$1 ifname=${IF_OF[$1]}
    ip netns exec "$ns" ip addr add "${STA_IP[$ns]}/24" dev "$ifname"
    if ! ip netns exec "$ns" wpa_supplicant -B -t -P "$W/wpas-$ns.pid" -f "$W/wpas-$ns.log" -i "$ifname" -c "$W/wpas-$ns.conf" > "$W/wpas-$ns.start" 2>&1; then
        # An override this wpa_supplicant build does not know (disable_he needs CONFIG_HE_OVERRIDES).
        echo "$ns: wpa_supplicant refused its config ($(tr '\n' ' ' < "$W/wpas-$ns.start")), retrying without overrides" | tee -a "$OUT/sta-notes.txt"
        sed -i '/disable_/d' "$W/wpas-$ns.conf"
        ip netns exec "$ns" wpa_supplicant -B -t -P "$W/wpas-$ns.pid" -f "$W/wpas-$ns.log" -i "$ifname" -c "$W/wpas-$ns.conf" >> "$W/wpas-$ns.start" 2>&1
    fi
}
ts "start clients"
for ns in "${CLIENT_NS[@]}"; do start_sta "$ns"; done
for ns in "${CLIENT_NS[@]}"; do
    wait_for 40 sh -c "ip netns exec $ns wpa_cli -p /run/wpa_supplicant-$ns -i ${IF_OF[$ns]} status | grep -q wpa_state=COMPLETED" ||
        fail_note "$ns: not associated"
    ip netns exec "$ns" wpa_cli -p "/run/wpa_supplicant-$ns" -i "${IF_OF[$ns]}" status > "$OUT/wpa-$ns-status.txt" 2>&1
    cp "$W/wpas-$ns.conf" "$OUT/wpa_supplicant-$ns.conf"
    echo "$ns: $(grep -E '^(wpa_state|freq|ssid|bssid|wifi_generation)=' "$OUT/wpa-$ns-status.txt" | tr '\n' ' ')" | tee -a "$OUT/sta-notes.txt"
done
ts "clients associated"

# ---- identities: every interface and MAC of the lab, per namespace ---------------------------------
mkdir -p "$OUT/net"
for ns in root nbr "${CLIENT_NS[@]}"; do
    in_ns "$ns" iw dev > "$OUT/net/$ns-iw-dev.txt" 2>&1
    in_ns "$ns" ip -o link > "$OUT/net/$ns-ip-link.txt" 2>&1
    in_ns "$ns" ip -o addr > "$OUT/net/$ns-ip-addr.txt" 2>&1
done
{
    printf 'ns\tifname\tphy\tmac\ttype\tssid\trole\n'
    for ifname in wlan0 wlan1 wlan2 wlan3 wlan4 wlan5 wlan6; do
        ns=${NS_OF[$ifname]}
        info=$(in_ns "$ns" iw dev "$ifname" info 2>/dev/null)
        mac=$(echo "$info" | awk '/addr/{print $2; exit}')
        type=$(echo "$info" | awk '/type/{print $2; exit}')
        ssid=$(echo "$info" | sed -n 's/^\tssid //p' | head -1)
        case $ifname in wlan0|wlan1) role=ap ;; wlan2) role=neighbour-ap ;; *) role=client ;; esac
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$ns" "$ifname" "${PHY[$ifname]}" "$mac" "$type" "$ssid" "$role"
    done
} > "$OUT/identities.tsv"
cat "$OUT/identities.tsv"

# ---- traffic -------------------------------------------------------------------------------------
ts "traffic: iperf3 + background pings"
port=5201
for ns in "${CLIENT_NS[@]}"; do
    iperf3 -s -D -1 -p $port -B "${AP_IP[$ns]}" --logfile "$W/iperf3-server-$ns.log" 2>/dev/null
    port=$((port + 1))
done
sleep 1
port=5201; ipids=()
for ns in "${CLIENT_NS[@]}"; do
    rev=""; [ "$ns" = ns2 ] || [ "$ns" = ns4 ] && rev="-R"     # downlink for two of them
    timeout 30 ip netns exec "$ns" iperf3 -c "${AP_IP[$ns]}" -p $port -t 5 -b 8M $rev > "$OUT/iperf3-$ns.txt" 2>&1 &
    ipids+=($!); port=$((port + 1))
done
wait "${ipids[@]}"
PING_PIDS=()
for ns in "${CLIENT_NS[@]}"; do
    ip netns exec "$ns" ping -q -i 0.2 -s 400 -w $((RUN_DURATION + 300)) "${AP_IP[$ns]}" > "$W/ping-$ns.txt" 2>&1 &
    PING_PIDS+=($!)
done
ts "traffic done, pings running"

# ---- fixture phase: iw dumps with nlmon captures, one capture per namespace -------------------------
# Every iw call is recorded in dumps/index.tsv (order matters: the host splits each namespace's capture
# into one pcap per iw call by netlink port id, in this order).
CAP_NS=(root "${CLIENT_NS[@]}")
CAP_PIDS=()
start_captures() {   # start_captures TAG
    local tag=$1 ns
    CAP_PIDS=()
    for ns in "${CAP_NS[@]}"; do
        in_ns "$ns" ip link add "nlmon-$ns" type nlmon 2>/dev/null
        in_ns "$ns" ip link set "nlmon-$ns" up
        in_ns "$ns" tcpdump -Z root -U -s 0 -i "nlmon-$ns" -w "$W/$tag-$ns.pcap" 2> "$W/tcpdump-$tag-$ns.err" &
        CAP_PIDS+=($!)
    done
    for ns in "${CAP_NS[@]}"; do
        wait_for 10 grep -q 'listening on' "$W/tcpdump-$tag-$ns.err" || fail_note "tcpdump $tag/$ns did not start"
    done
}
stop_captures() {    # stop_captures TAG DESTDIR
    local tag=$1 dest=$2 ns p
    sleep 1
    for p in "${CAP_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${CAP_PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done
    wait "${CAP_PIDS[@]}" 2>/dev/null
    mkdir -p "$dest"
    for ns in "${CAP_NS[@]}"; do
        cp "$W/$tag-$ns.pcap" "$dest/$ns.pcap" 2>/dev/null
        cat "$W/tcpdump-$tag-$ns.err" >> "$dest/tcpdump.err"
        in_ns "$ns" ip link del "nlmon-$ns" 2>/dev/null
    done
}
SEQ=0
mkdir -p "$OUT/dumps"
printf 'seq\tns\tname\tcommand\tstart_ms\tend_ms\trc\n' > "$OUT/dumps/index.tsv"
# dump NS NAME CMD...: runs CMD in NS, output to dumps/NS/NAME.txt, one row in dumps/index.tsv.
dump() {
    local ns=$1 name=$2; shift 2
    SEQ=$((SEQ + 1))
    mkdir -p "$OUT/dumps/$ns"
    local t0; t0=$(date +%s%3N)
    in_ns "$ns" timeout 30 "$@" > "$OUT/dumps/$ns/$name.txt" 2>&1
    local rc=$?
    printf '%d\t%s\t%s\t%s\t%s\t%s\t%d\n' "$SEQ" "$ns" "$name" "$*" "$t0" "$(date +%s%3N)" "$rc" >> "$OUT/dumps/index.tsv"
}
# Scanning. `iw dev X scan` (trigger + wait + dump on one socket) hangs here: it joins the "mlme"
# multicast group, hostapd's beacon registration multicasts every beacon an AP radio hears, the socket
# fills, and the GET_SCAN dump that follows is refused with ENOBUFS (-105), which iw never recovers from.
# So: a separate `iw event` listener, `iw dev X scan trigger`, wait for "scan finished", then dump.
# Scan results expire 30 s after they were last seen (cfg80211), so dump within that. Under TCG hostapd
# often answers a probe request after the 30 ms active dwell, so one full scan can miss an AP: a second,
# quick scan of the lab's three channels follows it (results of both stay in the BSS table).
LAB_FREQS="2412 2437 5180"
# scan_run NS RECORD IF LABEL [trigger args...]: RECORD=1 puts the listener and the trigger into
# dumps/index.tsv (inside a capture window every iw call must be listed, in order).
scan_run() {
    local ns=$1 record=$2 ifname=$3 label=$4; shift 4
    local out="$W/events-$ns-$ifname-$label.txt" lseq lt0 lpid i
    if [ "$record" = 1 ]; then SEQ=$((SEQ + 1)); lseq=$SEQ; lt0=$(date +%s%3N); mkdir -p "$OUT/dumps/$ns"; fi
    in_ns "$ns" timeout 60 iw event -t > "$out" 2>&1 &
    lpid=$!
    sleep 1      # the listener must have resolved nl80211 before the trigger (capture order)
    local ap=""; [ "$ns" = root ] && ap=ap-force
    if [ "$record" = 1 ]; then
        dump "$ns" "$ifname-scan-trigger-$label" iw dev "$ifname" scan trigger "$@" $ap
    else
        in_ns "$ns" timeout 30 iw dev "$ifname" scan trigger "$@" $ap > /dev/null 2>&1
    fi
    for ((i = 0; i < 200; i++)); do
        grep -qE "^[0-9.]*: $ifname \(phy #[0-9]+\): scan (finished|aborted)" "$out" && break
        sleep 0.2
    done
    [ "$i" -lt 200 ] || fail_note "$ns/$ifname: no 'scan finished' event within 40 s ($label)"
    kill -TERM "$lpid" 2>/dev/null; wait "$lpid" 2>/dev/null
    if [ "$record" = 1 ]; then
        cp "$out" "$OUT/dumps/$ns/$ifname-events-during-scan-$label.txt"
        printf '%d\t%s\t%s\t%s\t%s\t%s\t%d\n' "$lseq" "$ns" "$ifname-events-during-scan-$label" "iw event -t" "$lt0" "$(date +%s%3N)" 0 >> "$OUT/dumps/index.tsv"
    fi
}
# fresh_scans NS IF...: unrecorded scans of the lab channels until every interface lists the other
# lab APs (bounded: 3 tries), for the agent snapshots.
fresh_scans() {
    local ns=$1; shift
    local ifname try want n own
    for ifname in "$@"; do
        own=$(in_ns "$ns" iw dev "$ifname" info | awk '/addr/{print $2}')
        want=2; [ "$ns" = root ] || want=3
        for try in 1 2 3; do
            scan_run "$ns" 0 "$ifname" fresh freq $LAB_FREQS
            n=$(in_ns "$ns" iw dev "$ifname" scan dump | grep '^BSS' | grep -vc "$own")
            [ "$n" -ge "$want" ] && break
        done
        echo "$ns/$ifname: $n BSS in scan dump after $try lab-channel scan(s)"
    done
}

if [ "${SKIP_FIXTURES:-0}" != 1 ]; then
    ts "fixture phase: start nlmon captures"
    start_captures fix
    ts "fixture phase: root namespace dumps"
    dump root iw-dev iw dev
    dump root reg-get iw reg get
    dump root phy0-info iw phy "${PHY[wlan0]}" info
    for ifname in wlan0 wlan1; do
        dump root "$ifname-info" iw dev "$ifname" info
        dump root "$ifname-station-dump" iw dev "$ifname" station dump
        dump root "$ifname-survey-dump-before-scan" iw dev "$ifname" survey dump
        dump root "$ifname-scan-dump-before-scan" iw dev "$ifname" scan dump
    done
    ts "fixture phase: AP scans (ap-force), one AP after the other"
    # hwsim clears its survey when a scan starts: the survey after the full scan has every channel, the one
    # after the lab-channel scan only those three.
    for ifname in wlan0 wlan1; do
        scan_run root 1 "$ifname" full
        dump root "$ifname-survey-dump-after-full-scan" iw dev "$ifname" survey dump
        scan_run root 1 "$ifname" lab-channels freq $LAB_FREQS
    done
    for ifname in wlan0 wlan1; do
        dump root "$ifname-scan-dump" iw dev "$ifname" scan dump
        dump root "$ifname-survey-dump" iw dev "$ifname" survey dump
        dump root "$ifname-station-dump-2" iw dev "$ifname" station dump
    done
    ts "fixture phase: client namespace dumps"
    for ns in "${CLIENT_NS[@]}"; do
        ifname=${IF_OF[$ns]}
        dump "$ns" iw-dev iw dev
        dump "$ns" "$ifname-info" iw dev "$ifname" info
        dump "$ns" "$ifname-link" iw dev "$ifname" link
        dump "$ns" "$ifname-station-dump" iw dev "$ifname" station dump
        dump "$ns" "$ifname-survey-dump-before-scan" iw dev "$ifname" survey dump
        dump "$ns" "$ifname-scan-dump-before-scan" iw dev "$ifname" scan dump
    done
    ts "fixture phase: client scans (ns1 all bands, ns3 lab channels)"
    for ns in ns1 ns3; do
        ifname=${IF_OF[$ns]}
        if [ "$ns" = ns1 ]; then
            scan_run "$ns" 1 "$ifname" full
            dump "$ns" "$ifname-survey-dump-after-full-scan" iw dev "$ifname" survey dump
        fi
        scan_run "$ns" 1 "$ifname" lab-channels freq $LAB_FREQS
        dump "$ns" "$ifname-scan-dump" iw dev "$ifname" scan dump
        dump "$ns" "$ifname-survey-dump" iw dev "$ifname" survey dump
        dump "$ns" "$ifname-station-dump-2" iw dev "$ifname" station dump
    done
    ts "fixture phase: stop captures"
    stop_captures fix "$OUT/pcap"
    ts "fixture phase done"
    sync
    echo "fixture phase complete" > "$OUT/FIXTURE_PHASE_DONE"
else
    ts "fixture phase skipped (--skip-fixtures)"
fi

# ---- agent phase ---------------------------------------------------------------------------------
AGENT=""
if [ -f "$IN/meetpunt-agent" ]; then
    install -m 0755 "$IN/meetpunt-agent" /usr/local/bin/meetpunt-agent
    AGENT=/usr/local/bin/meetpunt-agent
fi
if [ -n "$AGENT" ]; then
    ts "agent phase"
    A="$OUT/agent"; mkdir -p "$A"
    ldd "$AGENT" > "$OUT/agent-ldd.txt" 2>&1
    if grep -q 'not found' "$OUT/agent-ldd.txt"; then fail_note "agent: missing shared libraries: $(grep 'not found' "$OUT/agent-ldd.txt" | tr '\n' ' ')"; fi
    # libcurl is opened with dlopen when the agent ships, so ldd does not list it (libcurl4 in lib.sh).
    if ! ldconfig -p | grep -q 'libcurl\.so\.4 '; then fail_note "agent: libcurl.so.4 is not installed (the agent opens it to ship)"; fi
    install -m 0600 "$IN/token" /lab/token 2>/dev/null || { echo lab-placeholder-token > /lab/token; chmod 600 /lab/token; }
    CFG=/lab/agent.yaml
    if [ -f "$IN/agent.yaml" ]; then
        cp "$IN/agent.yaml" "$CFG"
    else
        cat > "$CFG" <<EOF
device_id: "wifi-lab"
collector: {url: "${COLLECTOR_URL:-http://127.0.0.1:9}", token_file: /lab/token, insecure_demo: true}
state_dir: /lab/state
sampling: {interval_seconds: 2, window_seconds: 10}
link: {interfaces: ["*"]}
lan_clients: {interfaces: ["*"]}
wifi: {enabled: true, interfaces: ["*"]}
privacy: {guard_ssids: ["meetpunt-lab-24", "meetpunt-lab-5", "neighbour-net"]}
logging: {level: trace}
EOF
    fi
    cp "$CFG" "$A/agent.yaml"
    timeout 30 "$AGENT" check-config "$CFG" > "$A/check-config.txt" 2>&1 || fail_note "agent check-config failed: $(head -3 "$A/check-config.txt" | tr '\n' ' ')"
    # `sample` and `pseudonym` never create the device secret; a first short `run` does. It ships to a
    # closed local port (same config, collector url replaced) so the collector gets no extra window.
    sed -E 's#url: *"?[^",} ]+"?#url: "http://127.0.0.1:9"#' "$CFG" > /lab/agent-init.yaml
    ts "agent: first run (2 s, nothing shipped) to create the device secret"
    timeout 60 "$AGENT" run --config /lab/agent-init.yaml --duration 2 > "$A/init-run.stdout" 2> "$A/init-run.log"
    echo "init run exit status $?" >> "$A/init-run.log"
    [ -s /lab/state/device-secret ] || ls /lab/state/* >/dev/null 2>&1 || fail_note "agent: no state after the first run: $(tail -3 "$A/init-run.log" | tr '\n' ' ')"

    # bracket NS DIR IFACES...: iw reads, one agent snapshot, the same iw reads again.
    bracket() {
        local ns=$1 dir=$2; shift 2
        local ifname
        mkdir -p "$dir"
        reads() {   # reads before|after IF...
            local when=$1 ifname; shift
            for ifname in "$@"; do in_ns "$ns" iw dev "$ifname" station dump > "$dir/$when-$ifname-station-dump.txt" 2>&1; done
            for ifname in "$@"; do in_ns "$ns" iw dev "$ifname" info > "$dir/$when-$ifname-info.txt" 2>&1; done
            for ifname in "$@"; do in_ns "$ns" iw dev "$ifname" survey dump > "$dir/$when-$ifname-survey-dump.txt" 2>&1; done
            for ifname in "$@"; do in_ns "$ns" iw dev "$ifname" scan dump > "$dir/$when-$ifname-scan-dump.txt" 2>&1; done
            in_ns "$ns" iw reg get > "$dir/$when-reg-get.txt" 2>&1
        }
        local t0 t1 t2 t3
        t0=$(date +%s%3N); reads before "$@"
        t1=$(date +%s%3N)
        in_ns "$ns" timeout 60 "$AGENT" sample --once --json --config "$CFG" > "$dir/agent.json" 2> "$dir/agent.stderr"
        local rc=$?
        t2=$(date +%s%3N); reads after "$@"
        t3=$(date +%s%3N)
        printf 'ns=%s\ninterfaces=%s\nbefore_start_ms=%s\nagent_start_ms=%s\nagent_end_ms=%s\nafter_end_ms=%s\nagent_rc=%s\n' \
            "$ns" "$*" "$t0" "$t1" "$t2" "$t3" "$rc" > "$dir/times.txt"
        [ "$rc" = 0 ] || fail_note "agent sample in $ns exited $rc: $(tail -3 "$dir/agent.stderr" | tr '\n' ' ')"
    }
    # nlmon captures around the agent snapshots too (debugging aid for the lead; raw, unfiltered).
    CAP_NS=(root ns1)
    start_captures agent
    ts "agent: fresh AP scans, then bracketed snapshot, root namespace (APs)"
    fresh_scans root wlan0 wlan1
    bracket root "$A/root" wlan0 wlan1
    ts "agent: fresh scan, then bracketed snapshot, ns1 (router as a Wi-Fi client)"
    fresh_scans ns1 wlan3
    bracket ns1 "$A/ns1" wlan3
    stop_captures agent "$A/pcap"

    ts "agent: pseudonyms"
    printf 'raw\tkind\tpseudonym\tepoch\n' > "$A/pseudonyms.tsv"
    for mac in $(awk -F'\t' 'NR>1 && $4!="" {print $4}' "$OUT/identities.tsv"); do
        for kind in client bssid neighbour; do
            p=$(timeout 30 "$AGENT" pseudonym "$mac" --kind "$kind" --config "$CFG" 2>>"$A/pseudonym.stderr")
            printf '%s\t%s\t%s\t%s\n' "$mac" "$kind" "$(echo "$p" | awk '{print $1}')" "$(echo "$p" | awk '{print $3}')" >> "$A/pseudonyms.tsv"
        done
    done
    for ssid in meetpunt-lab-24 meetpunt-lab-5 neighbour-net; do
        p=$(timeout 30 "$AGENT" pseudonym --ssid "$ssid" --config "$CFG" 2>>"$A/pseudonym.stderr")
        printf '%s\t%s\t%s\t%s\n' "$ssid" ssid "$(echo "$p" | awk '{print $1}')" "$(echo "$p" | awk '{print $3}')" >> "$A/pseudonyms.tsv"
    done

    if [ -n "$COLLECTOR_URL" ]; then
        # Can the guest reach the collector? (bash /dev/tcp; QEMU user networking maps 10.0.2.2 to the
        # host's 127.0.0.1)
        hp=${COLLECTOR_URL#*://}; hp=${hp%%/*}; chost=${hp%%:*}; cport=${hp##*:}
        [ "$cport" != "$hp" ] || cport=80
        if timeout 5 bash -c "exec 3<>/dev/tcp/$chost/$cport" 2>/dev/null; then
            echo "collector $chost:$cport reachable from the guest" | tee "$A/collector-reachability.txt"
        else
            echo "collector $chost:$cport NOT reachable from the guest" | tee "$A/collector-reachability.txt"
        fi
        ts "agent run: ${RUN_DURATION}s shipping to $COLLECTOR_URL, tx power change after ${TXPOWER_CHANGE_AFTER}s"
        R="$A/run"; mkdir -p "$R/iw-timeline"
        timeout $((RUN_DURATION + 60)) "$AGENT" run --config "$CFG" --duration "$RUN_DURATION" > "$R/agent-run.stdout" 2> "$R/agent-run.log" &
        APID=$!
        run_t0=$(date +%s%3N)
        echo "agent_run_start_ms=$run_t0" > "$R/times.txt"
        # iw station dumps every 2 s during the run, so the collector's windows can be checked.
        (
            while kill -0 "$APID" 2>/dev/null; do
                t=$(date +%s%3N)
                iw dev wlan0 station dump > "$R/iw-timeline/$t-wlan0-station-dump.txt" 2>&1
                iw dev wlan1 station dump > "$R/iw-timeline/$t-wlan1-station-dump.txt" 2>&1
                # The agent's memory with the Wi-Fi sampler on real radios (peak and anonymous, kB).
                p=$(pgrep -n -f "$AGENT run" 2>/dev/null || true)
                [ -n "$p" ] && echo "$t $(grep -E '^(VmHWM|VmRSS|RssAnon):' /proc/$p/status 2>/dev/null | tr -s ' \t' ' ' | tr '\n' ' ')" >> "$R/agent-memory.txt"
                sleep 2
            done
        ) &
        TLPID=$!
        sleep "$TXPOWER_CHANGE_AFTER"
        tx_if=${IF_OF[ns1]}
        ip netns exec ns1 iw dev "$tx_if" info > "$R/txpower-before.txt" 2>&1
        t_change=$(date +%s%3N)
        ip netns exec ns1 iw dev "$tx_if" set txpower fixed 1000
        rc=$?
        ip netns exec ns1 iw dev "$tx_if" info > "$R/txpower-after.txt" 2>&1
        {
            echo "txpower_change_ms=$t_change"
            echo "txpower_change_uptime=$(up)"
            echo "txpower_change_iso=$(date -u -d @$((t_change / 1000)) +%Y-%m-%dT%H:%M:%SZ)"
            echo "txpower_change_ns=ns1"
            echo "txpower_change_interface=$tx_if"
            echo "txpower_change_mac=$(awk -F'\t' -v i="$tx_if" '$2==i{print $4}' "$OUT/identities.tsv")"
            echo "txpower_change_command=iw dev $tx_if set txpower fixed 1000"
            echo "txpower_change_rc=$rc"
            echo "txpower_from_dbm=$(awk '/txpower/{print $2; exit}' "$R/txpower-before.txt")"
            echo "txpower_to_dbm=$(awk '/txpower/{print $2; exit}' "$R/txpower-after.txt")"
        } >> "$R/times.txt"
        ts "tx power of ns1/$tx_if set to 10 dBm"
        # A client that drops off and comes back: the agent must count the disassociation and the
        # association from nl80211 events (and the dump differences).
        sleep 5
        dc_if=${IF_OF[ns2]}
        t_dc=$(date +%s%3N)
        ip netns exec ns2 wpa_cli -p /run/wpa_supplicant-ns2 -i "$dc_if" disconnect > "$R/disconnect.txt" 2>&1
        sleep 3
        ip netns exec ns2 wpa_cli -p /run/wpa_supplicant-ns2 -i "$dc_if" reconnect >> "$R/disconnect.txt" 2>&1
        wait_for 20 sh -c "ip netns exec ns2 wpa_cli -p /run/wpa_supplicant-ns2 -i $dc_if status | grep -q wpa_state=COMPLETED" ||
            fail_note "ns2 did not reassociate after the disconnect"
        {
            echo "disconnect_ms=$t_dc"
            echo "disconnect_mac=$(awk -F'\t' -v i="$dc_if" '$2==i{print $4}' "$OUT/identities.tsv")"
            echo "reconnected_ms=$(date +%s%3N)"
        } >> "$R/times.txt"
        ts "ns2/$dc_if disconnected for 3 s and reassociated"
        wait "$APID"; arc=$?
        echo "agent_run_end_ms=$(date +%s%3N)" >> "$R/times.txt"
        echo "agent_run_rc=$arc" >> "$R/times.txt"
        kill "$TLPID" 2>/dev/null; wait "$TLPID" 2>/dev/null
        [ "$arc" = 0 ] || fail_note "agent run exited $arc: $(tail -3 "$R/agent-run.log" | tr '\n' ' ')"
        ts "agent run finished (rc=$arc)"
    fi
    cp -a /lab/state "$A/state" 2>/dev/null
    ls -la /lab/state > "$A/state-listing.txt" 2>&1
fi

# ---- wrap up -------------------------------------------------------------------------------------
ts "collect logs"
for p in "${PING_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
sleep 0.5
mkdir -p "$OUT/logs"
cp "$W"/hostapd-*.log "$W"/wpas-*.log "$W"/ping-*.txt "$W"/iperf3-server-*.log "$OUT/logs/" 2>/dev/null
for ns in root "${CLIENT_NS[@]}"; do in_ns "$ns" ip -s link > "$OUT/net/$ns-ip-s-link-end.txt" 2>&1; done
dmesg > "$OUT/logs/dmesg.txt"
ts "scenario done"
echo ok > "$OUT/DONE"
sync
