#!/usr/bin/env bash
# Issue 12's acceptance on real kernel radios: boots the Wi-Fi lab (mac80211_hwsim under QEMU) with the
# statically linked release agent and a real collector on this host, then checks
#   1. every station, survey, interface and neighbour field of `sample --once --json` against `iw` read
#      at the same moment (compare.py), and that a tx-power change shows in the collector's next window;
#   4. no raw MAC, BSSID or SSID of the lab in anything the agent wrote or the collector stored
#      (privacy-scan.py).
# Prints each phase's time and the agent's memory on real radios. Needs root.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/lib.sh
lab_start=$(date +%s)

phase "Wi-Fi lab: image (cached under /var/cache/meetpunt/wifi-lab)"
scripts/wifi-lab/build-image.sh > var/wifi-lab-image.log 2>&1 || { tail -30 var/wifi-lab-image.log; exit 1; }
tail -1 var/wifi-lab-image.log

phase "Wi-Fi lab: release agent (static Swift stdlib, as shipped)"
swift build -c release --static-swift-stdlib --product meetpunt-agent 2>&1 | tail -1
agent="$(swift build -c release --show-bin-path)/meetpunt-agent"
collector="$(swift build --show-bin-path)/meetpunt-collector"
[ -x "$collector" ] || swift build --product meetpunt-collector

phase "Wi-Fi lab: collector on this host (the guest reaches it as 10.0.2.2)"
work=var/wifi-lab; rm -rf "$work"; mkdir -p "$work"; work=$(cd "$work" && pwd)
cat > "$work/collector.yaml" <<YAML
listen: {host: 127.0.0.1, port: 0}
storage: {sqlite_path: $work/collector.sqlite}
retention_file: $PWD/collector/retention.yaml
YAML
"$collector" device add wifi-lab --config "$work/collector.yaml" --token-file "$work/token" > /dev/null
"$collector" serve --config "$work/collector.yaml" > "$work/collector.log" 2>&1 &
cpid=$!
trap 'kill $cpid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$work/collector.log" && break; sleep 0.1; done
port=$(grep -o "listening on [0-9.]*:[0-9]*" "$work/collector.log" | head -1 | awk -F: '{print $NF}')
echo "collector on 127.0.0.1:$port"

phase "Wi-Fi lab: QEMU run (hostapd, 4 clients, traffic, agent snapshot bracketed by iw, 40 s agent run)"
scripts/wifi-lab/run-lab.sh --agent "$agent" --collector-url "http://10.0.2.2:$port" --token-file "$work/token" \
    --out "$work/results" --skip-fixtures > "$work/run-lab.log" 2>&1 || { tail -40 "$work/run-lab.log"; exit 1; }
grep "lab run took" "$work/run-lab.log" || true
kill $cpid; wait $cpid 2>/dev/null || true

phase "Wi-Fi lab: agent vs iw"
python3 scripts/wifi-lab/compare.py "$work/results" | tee "$work/compare.txt" | grep -E "^## |fields compared, " 

phase "Wi-Fi lab: tx-power change in the collector's windows"
python3 - "$work" "$collector" <<'PY'
import json, subprocess, sys, os
work, collector = sys.argv[1], sys.argv[2]
res = os.path.join(work, "results")
times = dict(l.strip().split("=", 1) for l in open(os.path.join(res, "agent/run/times.txt")) if "=" in l)
change_ms, mac = int(times["txpower_change_ms"]), times["txpower_change_mac"].lower()
peer = None
for line in open(os.path.join(res, "agent/pseudonyms.tsv")):
    parts = line.rstrip("\n").split("\t")
    if len(parts) >= 3 and parts[0].lower() == mac and parts[1] == "client":
        peer = parts[2]
assert peer, f"no client pseudonym recorded for {mac}"
export = json.loads(subprocess.run([collector, "export", "wifi-lab", "--config", os.path.join(work, "collector.yaml")],
                                   capture_output=True, text=True, check=True).stdout)
wins = sorted((w for w in export["classes"]["wifi"]["windows"]
               if w["metric"] == "wifi.station.signal_dbm" and w["labels"].get("peer") == peer), key=lambda w: w["window_end_ms"])
before = [w for w in wins if w["window_end_ms"] <= change_ms]
after = [w for w in wins if w["window_end_ms"] > change_ms]
assert before and after, f"windows around the change: {len(before)} before, {len(after)} after"
print(f"signal of {peer[:12]}… before the change: last {before[-1]['last']} dBm; first window after: min {after[0]['min']}, last {after[0]['last']} dBm")
assert after[0]["min"] <= before[-1]["last"] - 5, "the tx-power drop does not show in the next window"
print(f"{len(export['classes']['wifi']['windows'])} wifi windows stored; tx-power change visible in the next window: yes")
# A client that dropped off for 3 s and came back: counted from nl80211 events and from dump differences.
dc_ms = int(times["disconnect_ms"])
wifi = export["classes"]["wifi"]["windows"]
def total(metric, after=dc_ms - 10_000):
    return sum(w["sum"] for w in wifi if w["metric"] == metric and w["labels"].get("interface") == "wlan0" and w["window_end_ms"] > after)
dis = [w for w in wifi if w["metric"] == "wifi.radio.disassociations" and w["labels"].get("interface") == "wlan0" and w["window_end_ms"] > dc_ms]
reasons = sorted({w["labels"]["reason"] for w in dis})
print(f"disconnect at +{(dc_ms - int(times['agent_run_start_ms'])) / 1000:.1f} s: disassociations {sum(w['sum'] for w in dis):.0f} (reason codes {reasons}), "
      f"associations {total('wifi.radio.associations'):.0f} (events); stations gone {total('wifi.radio.stations_gone'):.0f}, new {total('wifi.radio.stations_new'):.0f} (dump differences)")
assert sum(w["sum"] for w in dis) >= 1, "the disassociation is not counted"
assert total("wifi.radio.associations") >= 1, "the reassociation is not counted"
PY

phase "Wi-Fi lab: privacy scan (agent state, trace log, JSON, collector database and log)"
python3 scripts/wifi-lab/privacy-scan.py "$work/results" "$work/collector.sqlite" $(ls "$work"/collector.sqlite-wal 2>/dev/null) "$work/collector.log" | tail -3

phase "Wi-Fi lab: agent memory on real radios"
sort -k3 -n "$work/results/agent/run/agent-memory.txt" 2>/dev/null | tail -1 | sed 's/^/peak sample: /' || echo "no memory samples"
echo "Wi-Fi lab total: $(( $(date +%s) - lab_start )) s"
