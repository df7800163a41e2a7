#!/bin/bash
# Copies a lab run's per-call nl80211 captures and the matching iw text into the unit-test fixtures:
#   scripts/wifi-lab/install-fixtures.sh RESULTS_DIR
# Destination: Tests/MeetpuntTests/Fixtures/nl80211/ (replaced as a whole; README.md is regenerated).
# Needs RESULTS/pcap/split/ (run-lab.sh makes it with nlpcap.py split).
set -euo pipefail
LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$LAB_DIR/../.." && pwd)
DEST="$REPO/Tests/MeetpuntTests/Fixtures/nl80211"
R=${1:?usage: install-fixtures.sh RESULTS_DIR}
[ -f "$R/pcap/split/index.json" ] || python3 "$LAB_DIR/nlpcap.py" split "$R"
S="$R/pcap/split"
[ -f "$S/index.json" ] || { echo "no $S/index.json" >&2; exit 1; }

rm -rf "$DEST"; mkdir -p "$DEST"
python3 - "$R" "$DEST" <<'PY'
import json, os, shutil, sys
r, dest = sys.argv[1], sys.argv[2]
idx = json.load(open(os.path.join(r, "pcap", "split", "index.json")))
calls = []
SKIP = {"phy0-info"}   # GET_WIPHY: ~30 kB of capture + ~35 kB of text, not needed by the samplers
for c in idx["calls"]:
    if c["name"] in SKIP:
        continue
    src_pcap = os.path.join(r, "pcap", "split", c["pcap"])
    src_txt = os.path.join(r, "dumps", c["ns"], c["name"] + ".txt")
    os.makedirs(os.path.join(dest, c["ns"]), exist_ok=True)
    shutil.copy(src_pcap, os.path.join(dest, c["pcap"]))
    if os.path.exists(src_txt):
        shutil.copy(src_txt, os.path.join(dest, c["text"]))
    calls.append({k: c[k] for k in ("ns", "name", "command", "pcap", "text", "records", "bytes", "messages")})
shutil.copy(os.path.join(r, "pcap", "split", "nlctrl-nl80211.pcap"), os.path.join(dest, "nlctrl-nl80211.pcap"))
fam = sorted(set(idx["nl80211_family_id"].values()))
json.dump({"nl80211_family_id": fam[0] if len(fam) == 1 else idx["nl80211_family_id"], "calls": calls},
          open(os.path.join(dest, "index.json"), "w"), indent=1)
PY
cp "$R/identities.tsv" "$DEST/identities.tsv"
cp "$R/versions.txt" "$DEST/versions.txt"
for f in hostapd-ap24.conf hostapd-ap5.conf hostapd-apnbr.conf; do [ -f "$R/$f" ] && cp "$R/$f" "$DEST/"; done
for ns in ns1 ns2 ns3 ns4; do [ -f "$R/wpa_supplicant-$ns.conf" ] && cp "$R/wpa_supplicant-$ns.conf" "$DEST/wpa_supplicant-$ns.conf"; done
python3 "$LAB_DIR/nlpcap.py" summary $(cd "$DEST" && find . -name '*.pcap' | sort | sed "s|^\./|$DEST/|") |
    sed "s|$DEST/||" > "$DEST/pcap-summary.txt"

fam=$(python3 -c "import json;print(json.load(open('$DEST/index.json'))['nl80211_family_id'])")
kernel=$(sed -n 's/^kernel: //p' "$R/versions.txt")
{
cat <<EOF
# nl80211 fixtures from the Wi-Fi lab

Real kernel replies to nl80211 requests, captured with nlmon in a QEMU guest running Debian 12's own
kernel with mac80211_hwsim, one pcap per \`iw\` call, next to the text that \`iw\` printed for the same
call. Made by \`scripts/wifi-lab/run-lab.sh\` and copied here by
\`scripts/wifi-lab/install-fixtures.sh RESULTS_DIR\` (this README is generated; rerun it to refresh
everything). Lab run: $(cat "$R/guest-date.txt" 2>/dev/null).

## Versions
\`\`\`
$(cat "$R/versions.txt")
\`\`\`

## Scenario (scripts/wifi-lab/guest-scenario.sh)
mac80211_hwsim with 7 radios, \`iw reg set NL\`; every radio hears every other one on the same channel.
\`identities.tsv\` lists each interface, namespace, MAC and role:

- root namespace (the router): \`wlan0\` AP \`meetpunt-lab-24\` 2.4 GHz channel 6, WPA2-PSK, HT20 + HE
  (\`hostapd-ap24.conf\`); \`wlan1\` AP \`meetpunt-lab-5\` 5 GHz channel 36, VHT 80 MHz (centre 5210) + HE
  (\`hostapd-ap5.conf\`).
- namespace nbr: \`wlan2\` AP \`neighbour-net\` 2.4 GHz channel 1 (the neighbour).
- ns1: \`wlan3\` client of meetpunt-lab-24 (HT/HE); ns2: \`wlan4\` client of meetpunt-lab-24 with
  \`disable_ht=1\` (legacy OFDM rates); ns3: \`wlan5\` client of meetpunt-lab-5 (VHT/HE); ns4: \`wlan6\`
  client of meetpunt-lab-5 with \`disable_vht=1\` (HT40). Interface MACs are set by the scenario.
- iperf3 (8 Mbit/s, 5 s, two uplink and two downlink) then pings every 0.2 s from every client, so
  counters, inactive times and rates are real.
- Calls in order: root namespace \`iw dev\`, \`iw reg get\` (\`iw phy phy0 info\` is in the lab results,
  left out here for size), per AP \`info\`,
  \`station dump\`, \`survey dump\` and \`scan dump\` before any scan (survey and scan dumps EMPTY on
  wlan0; wlan1's survey holds only the channels hostapd's 20/40 MHz check scanned), then per AP a full
  \`scan trigger ap-force\` (all bands) with an \`iw event -t\` listener around it, \`survey dump\`
  (\`*-survey-dump-after-full-scan\`: 65 channels with data), a second scan of the lab channels only
  (2412 2437 5180; hwsim clears its survey when a scan starts), then \`scan dump\`, \`survey dump\` (the
  three lab channels) and \`station dump\` again.
  Then per client namespace: \`iw dev\`, \`info\`, \`link\`, \`station dump\` (a station-mode interface's
  one entry: its AP, with beacon loss/rx, beacon signal), \`survey dump\`, \`scan dump\`; ns1 and ns3 then
  scan (ns1 all bands, ns3 lab channels) and dump again.

## Files
- \`<ns>/<name>.pcap\`: pcap, link type 253 (LINKTYPE_NETLINK). Each record: a 16-byte SLL-style header
  (big-endian packet type, ARPHRD_NETLINK = 824, address length, 8 address bytes, netlink protocol = 16
  for generic netlink) followed by one or more netlink messages in little-endian host order. Kept: that
  call's nl80211 request(s), every reply (a dump's multi-part NEW_* messages, NLMSG_DONE), NLMSG_ERROR
  acks, and the nl80211 multicast events seen while the call ran (deduplicated; at most three NL80211_CMD_FRAME
  beacon events). Dropped: nlctrl family resolution and other processes' traffic.
- \`<ns>/<name>.txt\`: what iw printed for the same call (stdout + stderr).
- \`index.json\`: every call with its command line, files, record count and message sequence.
- \`nlctrl-nl80211.pcap\`: one CTRL_CMD_NEWFAMILY reply naming nl80211 (family id, ops, multicast groups).
- \`pcap-summary.txt\`: one line per message (\`nlpcap.py summary\`).
- The nl80211 generic-netlink family id in every capture here is **$fam** (it is assigned at boot; read
  it from \`index.json\` rather than hard-coding it in a parser).

## What hwsim gives (and real hardware would not)
- signal = sender's tx power - 50 dB, identical for signal, signal avg and beacon signal avg; no
  chain signals (no CHAIN_SIGNAL attributes); no ack signal.
- noise is always -92 dBm; channel busy time = active time / 8; no extension-busy/rx/tx times.
- tx retries are always 0 (hwsim reports no retry counts); tx failed is small but not always 0 (frames
  to a station while its AP is off-channel scanning are not acked); a client's beacon loss and rx drop
  misc move a little (scans, TCG delays); tx/rx duration are present but always 0.
- rates come from minstrel_ht: HT MCS and VHT-MCS rates appear (often low MCS, 20 MHz even on the
  80 MHz AP, because the traffic is light and TCG slow); HE rates never appear (minstrel_ht has no HE
  rates in 6.1), even though the associations are HE (wifi_generation=6).
- the survey never marks any channel "[in use]"; an AP's survey is empty until it scans.
- \`scan dump\` lists a BSS only for 30 s after it was last seen; the APs never see themselves.

## Files by what they show
EOF
python3 - "$DEST" <<'PY'
import json, sys
d = json.load(open(sys.argv[1] + "/index.json"))
for c in d["calls"]:
    print(f"- `{c['pcap']}` ({c['bytes']} B): `{c['command']}` in {c['ns']}: {c['messages']}")
PY
} > "$DEST/README.md"
du -sh "$DEST"; find "$DEST" -type f | wc -l
echo "fixtures installed in $DEST"
