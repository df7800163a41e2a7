#!/bin/bash
# A stand-in for meetpunt-agent, for exercising the lab's plumbing (guest-scenario.sh's agent phases,
# compare.py, privacy-scan.py) before the real agent has its Wi-Fi sampler. It implements only what the
# lab calls: check-config, sample --once --json, pseudonym, run --duration. Its JSON is built from `iw`
# output (so it is exactly as good as iw's text), in the shape the real agent prints.
#   scripts/wifi-lab/run-lab.sh --agent scripts/wifi-lab/testdata/mock-agent.sh [--collector-url ...]
# It never sends anything anywhere: `run` only samples and writes a log.
set -u
cmd=${1:-}; shift || true
CFG=/etc/meetpunt/agent.yaml; MAC=""; KIND=client; SSID=""; DURATION=""; ONCE=0; JSON=0
while [ $# -gt 0 ]; do
    case $1 in
        --config|-c) CFG=$2; shift 2 ;;
        --kind) KIND=$2; shift 2 ;;
        --ssid) SSID=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --once) ONCE=1; shift ;;
        --json) JSON=1; shift ;;
        *) MAC=$1; shift ;;
    esac
done
STATE=$(sed -n 's/^state_dir: *"\{0,1\}\([^"]*\)"\{0,1\} *$/\1/p' "$CFG" 2>/dev/null | head -1)
STATE=${STATE:-/var/lib/meetpunt-agent}
SECRET="$STATE/device-secret"
EPOCH=$(( $(date +%s) / (30 * 86400) ))

log() { echo "$(date -u +%Y-%m-%dT%H:%M:%S%z) trace meetpunt.agent : $*" >&2; }
ensure_secret() {
    mkdir -p "$STATE"; chmod 700 "$STATE"
    [ -s "$SECRET" ] || { head -c 32 /dev/urandom > "$SECRET"; chmod 600 "$SECRET"; }
}
norm_mac() { echo "$1" | tr -d ':.-' | tr 'A-F' 'a-f'; }
pseudo() {   # pseudo KIND VALUE -> prefix_<24 base32>
    local prefix
    case $1 in client) prefix=cm ;; bssid) prefix=bs ;; neighbour) prefix=nb ;; ssid) prefix=ss ;; esac
    local h
    # (hex digits mapped into the base32 alphabet: the real agent's format, not its algorithm)
    h=$( { cat "$SECRET"; printf '%s|%s|%s' "$1" "$EPOCH" "$2"; } | sha256sum | cut -c1-24 | tr '0-9a-f' 'a-p')
    echo "${prefix}_$h"
}

case $cmd in
    check-config) echo "${MAC:-$CFG}: valid (mock agent)"; exit 0 ;;
    pseudonym)
        [ -s "$SECRET" ] || { echo "no device secret in $STATE (run the agent once)" >&2; exit 1; }
        if [ -n "$SSID" ]; then echo "$(pseudo ssid "$SSID")  epoch $EPOCH"
        else echo "$(pseudo "$KIND" "$(norm_mac "$MAC")")  epoch $EPOCH"; fi
        exit 0 ;;
    sample) [ -s "$SECRET" ] || { echo "meetpunt-agent sample: no device secret at $SECRET (mock: only run creates it)" >&2; exit 1; } ;;
    run) ensure_secret ;;
    *) echo "mock agent: unknown command $cmd" >&2; exit 2 ;;
esac

snapshot_json() {
    local tmp; tmp=$(mktemp -d)
    iw dev 2>/dev/null | awk '/Interface/{print $2}' > "$tmp/ifaces"
    : > "$tmp/pseudo"
    local ifname mac
    for ifname in $(cat "$tmp/ifaces"); do
        iw dev "$ifname" info > "$tmp/$ifname.info" 2>/dev/null
        iw dev "$ifname" station dump > "$tmp/$ifname.sta" 2>/dev/null
        iw dev "$ifname" survey dump > "$tmp/$ifname.survey" 2>/dev/null
        iw dev "$ifname" scan dump > "$tmp/$ifname.scan" 2>/dev/null
        type=$(awk '/type/{print $2; exit}' "$tmp/$ifname.info")
        for mac in $(awk '/^Station/{print $2}' "$tmp/$ifname.sta"); do
            if [ "$type" = AP ]; then echo "$mac $(pseudo client "$(norm_mac "$mac")")"; else echo "$mac $(pseudo bssid "$(norm_mac "$mac")")"; fi
        done >> "$tmp/pseudo"
        for mac in $(awk '/^BSS/{sub(/\(.*/, "", $2); print $2}' "$tmp/$ifname.scan"); do
            echo "nb:$mac $(pseudo neighbour "$(norm_mac "$mac")")"
        done >> "$tmp/pseudo"
        mac=$(awk '/addr/{print $2; exit}' "$tmp/$ifname.info")
        echo "own:$ifname $(pseudo bssid "$(norm_mac "$mac")")" >> "$tmp/pseudo"
        awk -F'\t' '/^\tssid /{sub(/^\tssid /, ""); print}' "$tmp/$ifname.info" | while IFS= read -r s; do echo "ssid:$s $(pseudo ssid "$s")"; done >> "$tmp/pseudo"
        grep -E '^\s+SSID: ' "$tmp/$ifname.scan" | sed 's/^\s*SSID: //' | sort -u | while IFS= read -r s; do echo "ssid:$s $(pseudo ssid "$s")"; done >> "$tmp/pseudo"
    done
    country=$(iw reg get 2>/dev/null | awk '/^country/{sub(":", "", $2); print $2; exit}')
    cat > "$tmp/prog.awk" <<'AWK'
function q(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }
function num(v) { return (v == "" ? "null" : v + 0) }
function rate(s,    r, kbps, w, parts) {
    if (s == "") return "null"
    kbps = "null"; if (match(s, /^[0-9]+\.[0-9] MBit\/s/)) { split(substr(s, 1, RLENGTH), parts, " "); kbps = int(parts[1] * 1000 + 0.5) }
    mcs = field(s, "(^| )MCS [0-9]+"); vmcs = field(s, "VHT-MCS [0-9]+"); hmcs = field(s, "HE-MCS [0-9]+"); emcs = field(s, "EHT-MCS [0-9]+")
    nss = field(s, "VHT-NSS [0-9]+"); if (nss == "") nss = field(s, "HE-NSS [0-9]+"); if (nss == "") nss = field(s, "EHT-NSS [0-9]+")
    w = 20; if (match(s, / (5|10|40|80|160|320)MHz/)) w = substr(s, RSTART + 1, RLENGTH - 4) + 0; if (s ~ /80P80MHz/) w = 160
    legacy = (mcs == "" && vmcs == "" && hmcs == "" && emcs == "") ? "true" : "false"
    return "{\"bitrate_kbps\":" kbps ",\"legacy\":" legacy ",\"mcs\":" num(mcs) ",\"vht_mcs\":" num(vmcs) ",\"he_mcs\":" num(hmcs) \
        ",\"eht_mcs\":" num(emcs) ",\"nss\":" num(nss) ",\"width_mhz\":" w ",\"short_gi\":" (s ~ /short GI/ ? "true" : "false") \
        ",\"he_gi\":" num(field(s, "HE-GI [0-9]+")) ",\"he_dcm\":" num(field(s, "HE-DCM [0-9]+")) ",\"he_ru_alloc\":" num(field(s, "HE-RU-ALLOC [0-9]+")) "}"
}
function field(s, re,    t, n) { if (match(s, re)) { t = substr(s, RSTART, RLENGTH); n = split(t, a, " "); return a[n] } return "" }
function yn(v) { return v == "yes" ? "true" : (v == "" ? "null" : "false") }
function val(line,    v) { v = line; sub(/^[^:]*:[ \t]*/, "", v); return v }
BEGIN {
    while ((getline l < (dir "/pseudo")) > 0) { np = split(l, p, " "); k = l; sub(/ [^ ]*$/, "", k); P[k] = p[np] }
    n = split(ifaces, IF, " ")
    printf "{\"wifi\":{\"status\":\"%s\",\"message\":\"mock agent\",\"regulatory_country\":%s,\"interfaces\":[", (n ? "ok" : "no_wireless_interfaces"), (country == "" ? "null" : q(country))
    for (i = 1; i <= n; i++) {
        ifn = IF[i]; delete I; ssid = ""
        while ((getline l < (dir "/" ifn ".info")) > 0) {
            if (l ~ /^\tifindex /) I["ifindex"] = substr(l, 10) + 0
            else if (l ~ /^\taddr /) I["addr"] = substr(l, 7)
            else if (l ~ /^\tssid /) ssid = substr(l, 7)
            else if (l ~ /^\ttype /) I["type"] = substr(l, 7)
            else if (l ~ /^\twiphy /) I["wiphy"] = substr(l, 8) + 0
            else if (l ~ /^\tchannel /) {
                split(l, c, /[ \t(),:]+/); I["channel"] = c[3]; I["freq"] = c[4]
                wl = l; sub(/.*width: /, "", wl); sub(/,.*/, "", wl)
                I["width"] = (wl == "20 MHz (no HT)") ? "20_noht" : (wl == "80+80 MHz" ? "80p80" : wl); sub(/ MHz/, "", I["width"])
                I["cf1"] = (l ~ /center1/) ? field(l, "center1: [0-9]+") : ""
                I["cf2"] = (l ~ /center2/) ? field(l, "center2: [0-9]+") : ""
            } else if (l ~ /^\ttxpower /) { split(l, t, " "); I["txp"] = t[2] }
        }
        type = (I["type"] == "AP") ? "ap" : (I["type"] == "managed" ? "station" : "other")
        printf "%s{\"ifindex\":%s,\"name\":%s,\"type\":\"%s\",\"wiphy\":%s,\"frequency_mhz\":%s,\"channel\":%s,\"channel_width\":%s,\"center_freq1_mhz\":%s,\"center_freq2_mhz\":%s,\"tx_power_dbm\":%s,\"ssid\":%s,\"bssid\":%s,\"noise_dbm\":null,\"noise_plausible\":false", \
            (i > 1 ? "," : ""), num(I["ifindex"]), q(ifn), type, num(I["wiphy"]), num(I["freq"]), num(I["channel"]), (I["width"] == "" ? "null" : q(I["width"])), num(I["cf1"]), num(I["cf2"]), num(I["txp"]), \
            (ssid == "" ? "null" : q(P["ssid:" ssid])), (type == "ap" ? q(P["own:" ifn]) : "null")
        # survey
        printf ",\"survey\":["; ns = 0; cur = 0
        while ((getline l < (dir "/" ifn ".survey")) > 0) {
            if (l ~ /frequency:/) { if (cur) emit_s(); cur = 1; delete S; S["f"] = field(l, "[0-9]+ MHz"); split(l, ff, /[ \t]+/); S["f"] = ff[3]; S["use"] = (l ~ /in use/) ? "true" : "false" }
            else if (l ~ /noise:/) S["noise"] = field(val(l), "^-?[0-9]+")
            else if (l ~ /channel active time/) S["act"] = val(l) + 0
            else if (l ~ /extension channel busy time/) S["ext"] = val(l) + 0
            else if (l ~ /channel busy time/) S["busy"] = val(l) + 0
            else if (l ~ /channel receive time/) S["rx"] = val(l) + 0
            else if (l ~ /channel transmit time/) S["tx"] = val(l) + 0
        }
        if (cur) emit_s()
        printf "]"
        # stations
        printf ",\"stations\":["; nst = 0; cur = 0
        while ((getline l < (dir "/" ifn ".sta")) > 0) {
            if (l ~ /^Station /) { if (cur) emit_sta(); cur = 1; delete T; split(l, s, " "); T["mac"] = s[2]; continue }
            k = l; sub(/^\t/, "", k); sub(/:.*/, "", k); T[k] = val(l)
        }
        if (cur) emit_sta()
        printf "]"
        # neighbours
        delete NB; delete NBC; delete NBL; nf = 0; own = I["addr"]; cur = 0
        while ((getline l < (dir "/" ifn ".scan")) > 0) {
            if (l ~ /^BSS /) { if (cur) add_nb(); cur = 1; b = l; sub(/^BSS /, "", b); sub(/\(.*/, "", b); B["mac"] = b; B["f"] = ""; B["sig"] = ""; B["ssid"] = ""; continue }
            if (l ~ /^\tfreq: /) B["f"] = val(l) + 0
            else if (l ~ /^\tsignal: /) { B["sig"] = val(l); sub(/ dBm/, "", B["sig"]); B["sig"] = int(B["sig"] + (B["sig"] < 0 ? -0.5 : 0.5)) }
            else if (l ~ /^\tSSID: / && B["ssid"] == "") B["ssid"] = val(l)
        }
        if (cur) add_nb()
        printf ",\"neighbours\":["
        for (j = 1; j <= nf; j++) { f = NBL[j]; ch = (f < 3000) ? (f - 2407) / 5 : (f < 5950 ? (f - 5000) / 5 : (f - 5950) / 5)
            printf "%s{\"frequency_mhz\":%d,\"channel\":%d,\"bss_count\":%d,\"signal_dbm\":[%s],\"bsses\":[%s]}", (j > 1 ? "," : ""), f, ch, NBC[f], NBS[f], NB[f] }
        printf "]}"
    }
    printf "]},\"links\":[],\"health\":{}}\n"
}
function add_nb() {
    if (B["mac"] == own || index(owns, " " B["mac"] " ")) return
    if (!(B["f"] in NBC)) { NBL[++nf] = B["f"]; NBC[B["f"]] = 0; NB[B["f"]] = ""; NBS[B["f"]] = "" }
    NBC[B["f"]]++
    NBS[B["f"]] = NBS[B["f"]] (NBS[B["f"]] == "" ? "" : ",") num(B["sig"])
    NB[B["f"]] = NB[B["f"]] (NB[B["f"]] == "" ? "" : ",") "{\"bssid\":" q(P["nb:" B["mac"]]) ",\"ssid\":" (B["ssid"] == "" ? "null" : q(P["ssid:" B["ssid"]])) ",\"signal_dbm\":" num(B["sig"]) "}"
}
function emit_s() {
    printf "%s{\"frequency_mhz\":%s,\"in_use\":%s,\"noise_dbm\":%s,\"active_ms\":%s,\"busy_ms\":%s,\"ext_busy_ms\":%s,\"rx_ms\":%s,\"tx_ms\":%s,\"bss_rx_ms\":null,\"scan_ms\":null}", \
        (ns++ ? "," : ""), S["f"], S["use"], num(S["noise"]), num(S["act"]), num(S["busy"]), num(S["ext"]), num(S["rx"]), num(S["tx"])
}
function sig(v) { return v == "" ? "null" : field(v, "^-?[0-9]+") + 0 }
function emit_sta(    key, tp) {
    key = (type == "ap") ? P[T["mac"]] : P[T["mac"]]
    tp = T["expected throughput"]; if (tp != "") { sub(/Mbps/, "", tp); split(tp, tt, "."); tp = int(((tt[1] * 1000 + tt[2]) * 1024 + 999) / 1000) }  # iw shows the kernel's value x 1000/1024; the agent keeps the kernel's
    printf "%s{\"client\":%s,\"inactive_ms\":%s,\"connected_s\":%s,\"rx_bytes\":%s,\"tx_bytes\":%s,\"rx_packets\":%s,\"tx_packets\":%s,\"tx_retries\":%s,\"tx_failed\":%s,\"rx_drop_misc\":%s,\"beacon_loss\":%s,\"beacon_rx\":%s", \
        (nst++ ? "," : ""), q(key), num(T["inactive time"] + 0), num(T["connected time"] + 0), num(T["rx bytes"]), num(T["tx bytes"]), num(T["rx packets"]), num(T["tx packets"]), num(T["tx retries"]), num(T["tx failed"]), num(T["rx drop misc"]), num(T["beacon loss"]), num(T["beacon rx"])
    printf ",\"signal_dbm\":%s,\"signal_avg_dbm\":%s,\"chain_signal_dbm\":null,\"chain_signal_avg_dbm\":null,\"beacon_signal_avg_dbm\":%s,\"ack_signal_dbm\":%s,\"ack_signal_avg_dbm\":%s", \
        sig(T["signal"]), sig(T["signal avg"]), sig(T["beacon signal avg"]), sig(T["last ack signal"]), sig(T["avg ack signal"])
    printf ",\"tx_bitrate\":%s,\"rx_bitrate\":%s,\"expected_throughput_kbps\":%s,\"tx_duration_us\":%s,\"rx_duration_us\":%s", \
        rate(T["tx bitrate"]), rate(T["rx bitrate"]), num(tp), num(T["tx duration"] == "" ? "" : T["tx duration"] + 0), num(T["rx duration"] == "" ? "" : T["rx duration"] + 0)
    printf ",\"flags\":{\"authorized\":%s,\"authenticated\":%s,\"associated\":%s,\"wme\":%s,\"mfp\":%s,\"short_preamble\":%s,\"tdls_peer\":%s},\"snr_db\":null}", \
        yn(T["authorized"]), yn(T["authenticated"]), yn(T["associated"]), yn(T["WMM/WME"]), yn(T["MFP"]), (T["preamble"] == "" ? "null" : (T["preamble"] == "short" ? "true" : "false")), yn(T["TDLS peer"])
}
AWK
    # The router's own BSSIDs (every interface of this namespace) are never neighbours, as in the agent.
    local owns=""
    for ifname in $(cat "$tmp/ifaces"); do owns="$owns $(awk '/addr/{print $2; exit}' "$tmp/$ifname.info")"; done
    awk -v country="$country" -v dir="$tmp" -v ifaces="$(tr '\n' ' ' < "$tmp/ifaces")" -v owns="$owns " -f "$tmp/prog.awk"
    rm -rf "$tmp"
}

if [ "$cmd" = sample ]; then
    log "sample --once: reading nl80211 (mock)"
    snapshot_json
    exit 0
fi
# run: sample every 2 s for DURATION seconds; logs carry no identifiers.
end=$(( $(date +%s) + ${DURATION:-10} ))
seq=0
while [ "$(date +%s)" -lt "$end" ]; do
    seq=$((seq + 1))
    snapshot_json > "$STATE/last-snapshot.json"
    log "sampled wifi (mock), sample $seq"
    echo "$seq" > "$STATE/sequence"
    sleep 2
done
rm -f "$STATE/last-snapshot.json"
log "run finished after ${DURATION:-10} s (mock: nothing shipped)"
