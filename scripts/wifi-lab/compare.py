#!/usr/bin/env python3
"""Compare the agent's Wi-Fi snapshot with the kernel's answers as `iw` printed them around it.

  compare.py RESULTS_DIR [--verbose]      RESULTS_DIR is run-lab.sh's --out directory
  compare.py --self-test                   runs on testdata/sample-results and a broken copy of it

For every bracket directory RESULTS/agent/<ctx>/ (root = the APs, ns1 = the router as a Wi-Fi client)
it reads agent.json (`meetpunt-agent sample --once --json`), the iw outputs taken just before and just
after it (before-<if>-station-dump.txt, -info, -survey-dump, -scan-dump, before-reg-get.txt, after-*),
times.txt, and RESULTS/agent/pseudonyms.tsv (raw MAC/SSID -> pseudonym, from `meetpunt-agent pseudonym`).

Verdicts per field:
  equal            agent == iw before == iw after (null == not printed by iw == attribute not sent)
  within-bracket   before and after differ and the agent's value lies between them (counters, times)
                   or equals one of them (rates, signal)
  moved            before != after and the agent matches neither (e.g. rate control changed the rate
                   twice between the reads), or a rate before == after that the agent does not match but
                   that the kernel's own reply to the agent held (the lab's netlink capture,
                   agent/pcap/<ctx>.pcap, read while the agent ran: minstrel sent some frames at another
                   rate between the reads): reported, not a failure
  differs          a real mismatch: exits 1
Neighbours: the count of BSS entries per frequency in `iw dev X scan dump`, never counting the
interface's own address; for a station interface the associated BSS is accepted either way (the line
says which count matched). Exit status: 0 all fine, 1 a real mismatch, 3 nothing to compare
(no agent.json: the lab ran without --agent).
"""
import json
import os
import re
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import nlpcap  # noqa: E402  (the lab's netlink capture reader, beside this file)

# (ctx, station MAC, "tx_bitrate" | "rx_bitrate") -> {(bitrate_kbps, mcs)} the kernel sent in NEW_STATION
# messages while the agent ran (load_kernel_rates).
KERNEL_RATES = {}
STA_INFO_RATE = {8: "tx_bitrate", 14: "rx_bitrate"}   # NL80211_STA_INFO_TX_BITRATE, _RX_BITRATE


def load_kernel_rates(ctx_dir, ctx, times):
    """The station rates in the kernel's NEW_STATION messages captured (nlmon) while the agent ran."""
    path = os.path.join(os.path.dirname(ctx_dir), "pcap", ctx + ".pcap")
    if not os.path.exists(path) or "agent_start_ms" not in times or "agent_end_ms" not in times:
        return
    lo, hi = int(times["agent_start_ms"]), int(times["agent_end_ms"])
    try:
        _, recs = nlpcap.read_pcap(path)
    except ValueError:
        return
    fam, _ = nlpcap.learn_family(recs)
    fam = fam if fam is not None else nlpcap.guess_family(recs)
    for sec, usec, _head, msgs in recs:
        if not lo <= sec * 1000 + usec // 1000 <= hi:
            continue
        for m in msgs:
            if nlpcap.nlhdr(m)[0] != fam or len(m) < 20 or m[16] != 19:   # NL80211_CMD_NEW_STATION
                continue
            top = dict(nlpcap.attrs(m[20:]))
            mac, info = top.get(6), top.get(21)                          # NL80211_ATTR_MAC, _STA_INFO
            if mac is None or info is None or len(mac) < 6:
                continue
            station = ":".join(f"{b:02x}" for b in mac[:6])
            for key, value in nlpcap.attrs(info):
                if key not in STA_INFO_RATE:
                    continue
                r = dict(nlpcap.attrs(value))
                if 5 in r and len(r[5]) >= 4:                            # NL80211_RATE_INFO_BITRATE32, 100 kbit/s
                    kbps = int.from_bytes(r[5][:4], "little") * 100
                elif 1 in r and len(r[1]) >= 2:                          # NL80211_RATE_INFO_BITRATE
                    kbps = int.from_bytes(r[1][:2], "little") * 100
                else:
                    continue
                mcs = r[2][0] if 2 in r and r[2] else None               # NL80211_RATE_INFO_MCS
                KERNEL_RATES.setdefault((ctx, station, STA_INFO_RATE[key]), set()).add((kbps, mcs))

# ---------------------------------------------------------------------------------------------------
# iw text parsers


def parse_bitrate(text):
    """'14.4 MBit/s MCS 8 short GI', 'VHT-MCS 9 80MHz short GI VHT-NSS 2', 'HE-MCS 11 HE-NSS 2 HE-GI 0 HE-DCM 0'."""
    if text is None:
        return None
    r = {"bitrate_kbps": None, "legacy": True, "mcs": None, "vht_mcs": None, "he_mcs": None, "eht_mcs": None,
         "nss": None, "width_mhz": 20, "short_gi": False, "he_gi": None, "he_dcm": None, "he_ru_alloc": None}
    m = re.match(r"\s*(\d+)\.(\d) MBit/s", text)
    if m:
        r["bitrate_kbps"] = int(m.group(1)) * 1000 + int(m.group(2)) * 100
    for key, pat in (("mcs", r"(?<![-\w])MCS (\d+)"), ("vht_mcs", r"VHT-MCS (\d+)"), ("he_mcs", r"HE-MCS (\d+)"),
                     ("eht_mcs", r"EHT-MCS (\d+)"), ("he_gi", r"HE-GI (\d+)"), ("he_dcm", r"HE-DCM (\d+)"),
                     ("he_ru_alloc", r"HE-RU-ALLOC (\d+)")):
        m = re.search(pat, text)
        if m:
            r[key] = int(m.group(1))
    for pat in (r"VHT-NSS (\d+)", r"HE-NSS (\d+)", r"EHT-NSS (\d+)"):
        m = re.search(pat, text)
        if m:
            r["nss"] = int(m.group(1))
    m = re.search(r"\b(5|10|40|80|80P80|160|320)MHz", text)
    if m:
        r["width_mhz"] = {"80P80": 160}.get(m.group(1), None) or int(m.group(1))
        r["width_label"] = m.group(1)
    r["short_gi"] = "short GI" in text
    r["legacy"] = all(r[k] is None for k in ("mcs", "vht_mcs", "he_mcs", "eht_mcs"))
    return r


def _int(s):
    m = re.match(r"\s*(-?\d+)", s)
    return int(m.group(1)) if m else None


def parse_station_dump(text):
    """{mac: {field: value}} with the agent's field names; a field iw did not print is absent."""
    stations, cur = {}, None
    for line in text.splitlines():
        m = re.match(r"Station ([0-9a-f:]{17}) \(on (\S+)\)", line)
        if m:
            cur = stations.setdefault(m.group(1).lower(), {"_if": m.group(2)})
            continue
        if cur is None or ":" not in line:
            continue
        key, _, val = line.strip().partition(":")
        key, val = key.strip(), val.strip()
        simple = {"inactive time": "inactive_ms", "rx bytes": "rx_bytes", "tx bytes": "tx_bytes",
                  "rx packets": "rx_packets", "tx packets": "tx_packets", "tx retries": "tx_retries",
                  "tx failed": "tx_failed", "rx drop misc": "rx_drop_misc", "beacon loss": "beacon_loss",
                  "beacon rx": "beacon_rx", "connected time": "connected_s", "tx duration": "tx_duration_us",
                  "rx duration": "rx_duration_us", "beacon signal avg": "beacon_signal_avg_dbm",
                  "last ack signal": "ack_signal_dbm", "avg ack signal": "ack_signal_avg_dbm"}
        if key in simple:
            cur[simple[key]] = _int(val)
        elif key in ("signal", "signal avg"):
            name = "signal_dbm" if key == "signal" else "signal_avg_dbm"
            cur[name] = _int(val)
            m = re.search(r"\[([^\]]*)\]", val)
            if m:
                cur["chain_" + name] = [int(x) for x in m.group(1).split(",") if x.strip()]
        elif key in ("tx bitrate", "rx bitrate"):
            cur[key.replace(" ", "_")] = parse_bitrate(val)
        elif key == "expected throughput":
            m = re.match(r"(\d+)\.(\d+)Mbps", val)
            if m:
                cur["expected_throughput_kbps"] = int(m.group(1)) * 1000 + int(m.group(2))
        elif key in ("authorized", "authenticated", "associated"):
            cur.setdefault("flags", {})[key] = val == "yes"
        elif key == "preamble":
            cur.setdefault("flags", {})["short_preamble"] = val == "short"
        elif key == "WMM/WME":
            cur.setdefault("flags", {})["wme"] = val == "yes"
        elif key == "MFP":
            cur.setdefault("flags", {})["mfp"] = val == "yes"
        elif key == "TDLS peer":
            cur.setdefault("flags", {})["tdls_peer"] = val == "yes"
    return stations


WIDTHS = {"20 MHz (no HT)": "20_noht", "20 MHz": "20", "40 MHz": "40", "80 MHz": "80", "80+80 MHz": "80p80",
          "160 MHz": "160", "320 MHz": "320", "5 MHz": "5", "10 MHz": "10"}
IFTYPES = {"AP": "ap", "managed": "station", "mesh point": "mesh_point", "monitor": "monitor"}


def parse_info(text):
    r = {}
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("Interface "):
            r["name"] = s.split()[1]
        elif s.startswith("ifindex "):
            r["ifindex"] = int(s.split()[1])
        elif s.startswith("addr "):
            r["addr"] = s.split()[1].lower()
        elif s.startswith("ssid "):
            r["ssid_raw"] = s[5:]
        elif s.startswith("type "):
            r["type"] = IFTYPES.get(s[5:], "other")
        elif s.startswith("wiphy "):
            r["wiphy"] = int(s.split()[1])
        elif s.startswith("channel "):
            m = re.match(r"channel (\d+) \((\d+) MHz\)(?:, width: ([^,]+))?(?:, center1: (\d+) MHz)?(?:, center2: (\d+) MHz)?", s)
            if m:
                r["channel"], r["frequency_mhz"] = int(m.group(1)), int(m.group(2))
                if m.group(3):
                    r["channel_width"] = WIDTHS.get(m.group(3).strip(), "other")
                r["center_freq1_mhz"] = int(m.group(4)) if m.group(4) else None
                r["center_freq2_mhz"] = int(m.group(5)) if m.group(5) else None
        elif s.startswith("txpower "):
            r["tx_power_dbm"] = float(s.split()[1])
    return r


SURVEY_KEYS = {"channel active time": "active_ms", "channel busy time": "busy_ms",
               "extension channel busy time": "ext_busy_ms", "channel receive time": "rx_ms",
               "channel transmit time": "tx_ms", "channel scan time": "scan_ms",
               "channel BSS receive time": "bss_rx_ms"}


def parse_survey(text):
    """{frequency: {field: value}}; in_use is always present (iw prints "[in use]" or nothing)."""
    out, cur = {}, None
    for line in text.splitlines():
        s = line.strip()
        m = re.match(r"frequency:\s+(\d+) MHz( \[in use\])?", s)
        if m:
            cur = out.setdefault(int(m.group(1)), {"in_use": bool(m.group(2))})
            continue
        if cur is None or ":" not in s:
            continue
        key, _, val = s.partition(":")
        key = key.strip()
        if key == "noise":
            cur["noise_dbm"] = _int(val)
        elif key in SURVEY_KEYS:
            cur[SURVEY_KEYS[key]] = _int(val)
    return out


def parse_scan(text):
    """[{bssid, freq, signal, ssid, associated}]"""
    out, cur = [], None
    for line in text.splitlines():
        m = re.match(r"BSS ([0-9a-f:]{17})\(on \S+\)( -- associated)?", line)
        if m:
            cur = {"bssid": m.group(1).lower(), "associated": bool(m.group(2)), "freq": None, "signal": None, "ssid": None}
            out.append(cur)
            continue
        if cur is None:
            continue
        s = line.strip()
        if s.startswith("freq:"):
            cur["freq"] = int(float(s.split()[1]))
        elif s.startswith("signal:"):
            cur["signal"] = float(s.split()[1])
        elif s.startswith("SSID:") and cur["ssid"] is None:
            cur["ssid"] = s[5:].strip()
    return out


def parse_reg(text):
    m = re.search(r"^country (\S\S):", text, re.M)
    return m.group(1) if m else None


def channel_of(freq):
    if freq == 2484:
        return 14
    if 2412 <= freq <= 2472:
        return (freq - 2407) // 5
    if 5000 <= freq <= 5900:
        return (freq - 5000) // 5
    if 5955 <= freq <= 7115:
        return (freq - 5950) // 5
    return None


# ---------------------------------------------------------------------------------------------------
# comparison


class Report:
    def __init__(self, verbose):
        self.verbose, self.rows, self.failures, self.moved = verbose, [], 0, 0

    def add(self, scope, field, verdict, agent, before, after, note=""):
        self.rows.append((scope, field, verdict, agent, before, after, note))
        if verdict == "differs":
            self.failures += 1
        elif verdict == "moved":
            self.moved += 1

    def print(self):
        by_scope = {}
        for r in self.rows:
            by_scope.setdefault(r[0], []).append(r)
        for scope, rows in by_scope.items():
            counts = {}
            for r in rows:
                counts[r[2]] = counts.get(r[2], 0) + 1
            print(f"\n## {scope}: {len(rows)} fields compared (" +
                  ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")")
            print(f"   {'field':34} {'verdict':15} {'agent':>22} {'iw before':>22} {'iw after':>22}")
            for _, field, verdict, agent, before, after, note in rows:
                if self.verbose or verdict not in ("equal",):
                    print(f"   {field:34} {verdict:15} {fmt(agent):>22} {fmt(before):>22} {fmt(after):>22}"
                          + (f"  {note}" if note else ""))
            if not self.verbose and counts.get("equal"):
                print(f"   ({counts['equal']} equal fields not listed; --verbose lists them)")


def fmt(v):
    if v is MISSING:
        return "-"
    if isinstance(v, float):
        return f"{v:g}"
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= 22 else s[:19] + "..."


class _Missing:
    pass


MISSING = _Missing()   # iw did not print the field (kernel did not send the attribute)


def norm(v):
    return None if v is MISSING else v


def cmp_exact(rep, scope, field, agent, before, after):
    a, b, c = norm(agent), norm(before), norm(after)
    if a == b == c:
        rep.add(scope, field, "equal", agent, before, after)
    elif a in (b, c) and b != c:
        rep.add(scope, field, "within-bracket", agent, before, after)
    elif b != c:
        rep.add(scope, field, "moved", agent, before, after, "iw changed between the reads")
    else:
        rep.add(scope, field, "differs", agent, before, after)


def cmp_range(rep, scope, field, agent, before, after):
    """Monotonic value (counter, connected time): before <= agent <= after."""
    a, b, c = norm(agent), norm(before), norm(after)
    if a is None or b is None or c is None:
        cmp_exact(rep, scope, field, agent, before, after)
        return
    if a == b == c:
        rep.add(scope, field, "equal", agent, before, after)
    elif min(b, c) <= a <= max(b, c):
        rep.add(scope, field, "within-bracket", agent, before, after)
    else:
        rep.add(scope, field, "differs", agent, before, after, "outside [before, after]")


def cmp_between(rep, scope, field, agent, before, after):
    """Non-monotonic value that can only move between the reads (signal average, survey times)."""
    a, b, c = norm(agent), norm(before), norm(after)
    if a is None or b is None or c is None:
        cmp_exact(rep, scope, field, agent, before, after)
        return
    if a == b == c:
        rep.add(scope, field, "equal", agent, before, after)
    elif min(b, c) <= a <= max(b, c):
        rep.add(scope, field, "within-bracket", agent, before, after)
    else:
        rep.add(scope, field, "differs", agent, before, after)


def cmp_inactive(rep, scope, field, agent, before, after, gap_ms):
    a, b, c = norm(agent), norm(before), norm(after)
    if a is None or b is None or c is None:
        cmp_exact(rep, scope, field, agent, before, after)
        return
    if a == b == c:
        rep.add(scope, field, "equal", agent, before, after)
    elif 0 <= a <= max(b, c) + gap_ms:
        rep.add(scope, field, "within-bracket", agent, before, after, f"<= max(iw)+{gap_ms} ms")
    else:
        rep.add(scope, field, "differs", agent, before, after, f"> max(iw)+{gap_ms} ms")


RATE_KEYS = ("bitrate_kbps", "legacy", "mcs", "vht_mcs", "he_mcs", "eht_mcs", "nss", "width_mhz", "short_gi",
             "he_gi", "he_dcm", "he_ru_alloc")


def rate_view(agent_rate, iw_rate):
    """The agent's rate reduced to what iw shows (HT: iw prints no NSS; legacy: width may be null)."""
    if agent_rate is None or iw_rate is None:
        return agent_rate
    v = {k: agent_rate.get(k) for k in RATE_KEYS}
    if "legacy" not in agent_rate and "phy" in agent_rate:   # the agent says which PHY; iw shows "legacy" as no MCS
        v["legacy"] = agent_rate["phy"] == "legacy"
    if iw_rate.get("mcs") is not None and iw_rate.get("nss") is None and v.get("nss") in (None, iw_rate["mcs"] // 8 + 1):
        v["nss"] = None
    if iw_rate.get("legacy") and v.get("width_mhz") is None:
        v["width_mhz"] = 20
    return v


def cmp_rate(rep, scope, field, agent_rate, before, after):
    b = {k: before.get(k) for k in RATE_KEYS} if isinstance(before, dict) else before
    c = {k: after.get(k) for k in RATE_KEYS} if isinstance(after, dict) else after
    a = rate_view(norm(agent_rate), b if isinstance(b, dict) else c if isinstance(c, dict) else None)
    label = lambda r: "-" if r in (None, MISSING) else (
        f"{r['bitrate_kbps']}k " + ("legacy" if r["legacy"] else
                                   f"M{r['mcs']}" if r["mcs"] is not None else
                                   f"V{r['vht_mcs']}x{r['nss']}" if r["vht_mcs"] is not None else
                                   f"HE{r['he_mcs']}x{r['nss']}" if r["he_mcs"] is not None else
                                   f"EHT{r['eht_mcs']}x{r['nss']}") + f" {r['width_mhz']}" + (" sgi" if r["short_gi"] else ""))
    an, bn, cn = norm(a), norm(b), norm(c)
    note = ""
    if an == bn == cn:
        verdict = "equal"
    elif an in (bn, cn) and bn != cn:
        verdict = "within-bracket"
    elif bn != cn:
        verdict = "moved"
    elif isinstance(an, dict) and (an.get("bitrate_kbps"), an.get("mcs")) in KERNEL_RATES.get(
            (scope.split("/")[0], scope.split()[-1].lower(), field), ()):
        verdict = "moved"
        note = "the kernel's reply to the agent held this rate (netlink capture); iw read another before and after"
    else:
        verdict = "differs"
    if verdict == "differs" and isinstance(an, dict) and isinstance(bn, dict):
        note = "fields: " + ",".join(k for k in RATE_KEYS if an.get(k) != bn.get(k))
    rep.add(scope, field, verdict, label(an), label(bn), label(cn), note)
    return 1


STATION_RANGE = ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets", "tx_retries", "tx_failed", "rx_drop_misc",
                 "beacon_loss", "beacon_rx", "connected_s", "tx_duration_us", "rx_duration_us")
STATION_BETWEEN = ("signal_dbm", "signal_avg_dbm", "beacon_signal_avg_dbm", "ack_signal_dbm", "ack_signal_avg_dbm",
                   "expected_throughput_kbps")
FLAGS = ("authorized", "authenticated", "associated", "wme", "mfp", "short_preamble", "tdls_peer")


def compare_station(rep, scope, agent_sta, b, c, gap_ms):
    g = lambda d, k: d.get(k, MISSING) if d is not None else MISSING
    cmp_inactive(rep, scope, "inactive_ms", agent_sta.get("inactive_ms"), g(b, "inactive_ms"), g(c, "inactive_ms"), gap_ms)
    for k in STATION_RANGE:
        cmp_range(rep, scope, k, agent_sta.get(k), g(b, k), g(c, k))
    for k in STATION_BETWEEN:
        if k == "expected_throughput_kbps":   # follows the tx rate: may move like it
            # iw prints the kernel's kbit/s scaled by 1000/1024 ("Mbps"); the agent keeps the kernel's value.
            av = agent_sta.get(k)
            cmp_exact(rep, scope, k, None if av is None else av * 1000 // 1024, g(b, k), g(c, k))
        else:
            cmp_between(rep, scope, k, agent_sta.get(k), g(b, k), g(c, k))
    for k in ("chain_signal_dbm", "chain_signal_avg_dbm"):
        av = agent_sta.get(k)
        av = None if av == [] else av
        cmp_exact(rep, scope, k, av, g(b, k), g(c, k))
    for k in ("tx_bitrate", "rx_bitrate"):
        cmp_rate(rep, scope, k, agent_sta.get(k), g(b, k), g(c, k))
    af = agent_sta.get("flags") or {}
    for k in FLAGS:
        bf = g(b, "flags")
        cf = g(c, "flags")
        cmp_exact(rep, scope, "flags." + k, af.get(k), bf.get(k, MISSING) if isinstance(bf, dict) else MISSING,
                  cf.get(k, MISSING) if isinstance(cf, dict) else MISSING)


def load_pseudonyms(path):
    by_pseudonym = {}
    if not os.path.exists(path):
        return by_pseudonym
    with open(path) as f:
        f.readline()
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) >= 3 and parts[2]:
                by_pseudonym[parts[2]] = (parts[0].lower() if parts[1] != "ssid" else parts[0], parts[1])
    return by_pseudonym


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return None


def compare_bracket(rep, ctx_dir, ctx, pseudo):
    agent = json.load(open(os.path.join(ctx_dir, "agent.json")))
    times = dict(line.strip().split("=", 1) for line in open(os.path.join(ctx_dir, "times.txt")) if "=" in line)
    gap_ms = int(times.get("after_end_ms", 0)) - int(times.get("before_start_ms", 0))
    load_kernel_rates(ctx_dir, ctx, times)
    wifi = agent.get("wifi") or {}
    scope0 = f"{ctx}"
    cmp_exact(rep, scope0, "wifi.status", wifi.get("status"), "ok", "ok")
    rb, rc = read(os.path.join(ctx_dir, "before-reg-get.txt")), read(os.path.join(ctx_dir, "after-reg-get.txt"))
    if rb is not None:
        cmp_exact(rep, scope0, "regulatory_country", wifi.get("regulatory_country"), parse_reg(rb), parse_reg(rc or ""))
    ifaces = [x.strip() for x in times.get("interfaces", "").split()]
    agent_ifs = {i.get("name"): i for i in wifi.get("interfaces") or []}
    for name in ifaces:
        scope = f"{ctx}/{name}"
        ai = agent_ifs.get(name)
        if ai is None:
            rep.add(scope, "interface", "differs", None, name, name, "interface missing from agent.json")
            continue
        ib = parse_info(read(os.path.join(ctx_dir, f"before-{name}-info.txt")) or "")
        ic = parse_info(read(os.path.join(ctx_dir, f"after-{name}-info.txt")) or "")
        for k in ("ifindex", "type", "wiphy", "frequency_mhz", "channel", "channel_width", "center_freq1_mhz",
                  "center_freq2_mhz", "tx_power_dbm"):
            av = ai.get(k)
            if k == "tx_power_dbm" and isinstance(av, (int, float)):
                av = round(float(av), 2)
            cmp_exact(rep, scope, k, av, ib.get(k, MISSING), ic.get(k, MISSING))
        # pseudonymised identity of the interface
        ssid_p = ai.get("ssid")
        raw_ssid = pseudo.get(ssid_p, (None,))[0] if ssid_p else None
        cmp_exact(rep, scope, "ssid (via pseudonym)", raw_ssid if ssid_p else None, ib.get("ssid_raw"), ic.get("ssid_raw"))
        bss_p = ai.get("bssid")
        if ib.get("type") == "ap":
            raw_bssid = pseudo.get(bss_p, (None,))[0] if bss_p else None
            cmp_exact(rep, scope, "bssid (via pseudonym)", raw_bssid, ib.get("addr"), ic.get("addr"))
        # stations
        sb = parse_station_dump(read(os.path.join(ctx_dir, f"before-{name}-station-dump.txt")) or "")
        sc = parse_station_dump(read(os.path.join(ctx_dir, f"after-{name}-station-dump.txt")) or "")
        if ib.get("type") == "station":
            sta_bssids = set(sb) | set(sc)
            if len(sta_bssids) == 1 and bss_p:
                cmp_exact(rep, scope, "bssid (via pseudonym)", pseudo.get(bss_p, (None,))[0], next(iter(sta_bssids)), next(iter(sta_bssids)))
        agent_stas = ai.get("stations") or []
        seen = set()
        for st in agent_stas:
            p = st.get("client")
            raw = pseudo.get(p, (None, None))[0]
            sscope = f"{scope} station {raw or p}"
            if raw is None:
                rep.add(sscope, "client pseudonym", "differs", p, "-", "-", "pseudonym not in pseudonyms.tsv")
                continue
            seen.add(raw)
            b, c = sb.get(raw), sc.get(raw)
            if b is None and c is None:
                rep.add(sscope, "station", "differs", raw, None, None, "iw does not list this station")
                continue
            compare_station(rep, sscope, st, b, c, gap_ms)
        for raw in sorted((set(sb) & set(sc)) - seen):
            rep.add(f"{scope} station {raw}", "station", "differs", None, raw, raw, "station missing from agent.json")
        # survey
        vb = parse_survey(read(os.path.join(ctx_dir, f"before-{name}-survey-dump.txt")) or "")
        vc = parse_survey(read(os.path.join(ctx_dir, f"after-{name}-survey-dump.txt")) or "")
        asv = {e.get("frequency_mhz"): e for e in ai.get("survey") or []}
        sscope = f"{scope} survey"
        freqs = sorted(set(vb) | set(vc) | set(asv))
        cmp_exact(rep, sscope, "entries", len(asv), len(vb), len(vc))
        # the interface's noise: the survey entry marked in use (hwsim never marks one: null expected);
        # the operating frequency's entry is accepted too
        in_use = lambda v: next((e.get("noise_dbm") for e in v.values() if e.get("in_use")), None)
        nb_, nc_ = in_use(vb), in_use(vc)
        op = ib.get("frequency_mhz")
        op_noise = [e.get("noise_dbm") for e in (vb.get(op), vc.get(op)) if e]
        if ai.get("noise_dbm") is not None and ai.get("noise_dbm") in op_noise and nb_ is None and nc_ is None:
            rep.add(scope, "noise_dbm", "equal", ai.get("noise_dbm"), op_noise[0], op_noise[-1], "operating channel's survey entry (none in use)")
        else:
            cmp_exact(rep, scope, "noise_dbm", ai.get("noise_dbm"), nb_, nc_)
        for fq in freqs:
            ae, be, ce = asv.get(fq), vb.get(fq), vc.get(fq)
            if ae is None or (be is None and ce is None):
                if be is not None and ce is not None:
                    rep.add(sscope, f"{fq}", "differs", None, "present", "present", "frequency missing from agent")
                elif ae is not None and be is None and ce is None:
                    rep.add(sscope, f"{fq}", "differs", "present", None, None, "frequency not in iw survey")
                continue
            cmp_exact(rep, sscope, f"{fq}.in_use", ae.get("in_use"), (be or ce).get("in_use"), (ce or be).get("in_use"))
            cmp_exact(rep, sscope, f"{fq}.noise_dbm", ae.get("noise_dbm"), (be or {}).get("noise_dbm", MISSING), (ce or {}).get("noise_dbm", MISSING))
            for k in SURVEY_KEYS.values():
                cmp_range(rep, sscope, f"{fq}.{k}", ae.get(k), (be or {}).get(k, MISSING), (ce or {}).get(k, MISSING))
        # neighbours
        nb = parse_scan(read(os.path.join(ctx_dir, f"before-{name}-scan-dump.txt")) or "")
        nc = parse_scan(read(os.path.join(ctx_dir, f"after-{name}-scan-dump.txt")) or "")
        nscope = f"{scope} neighbours"
        # The router's own BSSes are not neighbours: every wireless interface of this namespace is skipped.
        own_set = {row.get("mac") for row in identities(os.path.dirname(os.path.dirname(ctx_dir))) if row.get("ns") == ctx} | {ib.get("addr")}
        an = {e.get("frequency_mhz"): e for e in ai.get("neighbours") or []}

        def per_freq(entries, drop_assoc):
            d = {}
            for e in entries:
                if e["bssid"] in own_set or (drop_assoc and e["associated"]):
                    continue
                d.setdefault(e["freq"], []).append(e)
            return d
        variants = [("all but own", False)] + ([("without associated BSS", True)] if ib.get("type") == "station" else [])
        best = None
        for label, drop in variants:
            pb, pc = per_freq(nb, drop), per_freq(nc, drop)
            ok = all(an.get(f, {}).get("bss_count", 0) in (len(pb.get(f, [])), len(pc.get(f, [])))
                     for f in set(pb) | set(pc) | set(an))
            if best is None or ok:
                best = (label, pb, pc, ok)
            if ok:
                break
        label, pb, pc, _ = best
        for fq in sorted(set(pb) | set(pc) | set(an)):
            ae = an.get(fq, {})
            cmp_exact(rep, nscope, f"{fq}.bss_count", ae.get("bss_count", 0), len(pb.get(fq, [])), len(pc.get(fq, [])))
            if ae:
                cmp_exact(rep, nscope, f"{fq}.channel", ae.get("channel"), channel_of(fq), channel_of(fq))
            raw_b = {e["bssid"]: e for e in pb.get(fq, [])}
            raw_c = {e["bssid"]: e for e in pc.get(fq, [])}
            for bss in ae.get("bsses") or []:
                raw = pseudo.get(bss.get("bssid"), (None,))[0]
                eb, ec = raw_b.get(raw), raw_c.get(raw)
                if raw is None or (eb is None and ec is None):
                    rep.add(nscope, f"{fq}.bss {bss.get('bssid')}", "differs", bss.get("bssid"), None, None,
                            "unknown pseudonym or BSS not in scan dump")
                    continue
                sig = lambda e: None if e is None or e["signal"] is None else round(e["signal"])
                cmp_between(rep, nscope, f"{fq}.{raw}.signal_dbm", bss.get("signal_dbm"), sig(eb or ec), sig(ec or eb))
                ssid_raw = pseudo.get(bss.get("ssid"), (None,))[0] if bss.get("ssid") else None
                cmp_exact(rep, nscope, f"{fq}.{raw}.ssid (via pseudonym)", ssid_raw, (eb or ec)["ssid"], (ec or eb)["ssid"])
        rep.rows.append((nscope, "(neighbour counting)", "note", label, "", "", "the router's own BSSIDs (this namespace's interfaces) never counted"))


def identities(results):
    """identities.tsv of the run: ns, ifname, phy, mac, type, ssid, role per interface."""
    text = read(os.path.join(results, "identities.tsv")) or ""
    lines = [l.split("\t") for l in text.splitlines() if l.strip()]
    if not lines:
        return []
    head = lines[0]
    return [dict(zip(head, l)) for l in lines[1:]]


def run(results, verbose):
    adir = os.path.join(results, "agent")
    ctxs = sorted(d for d in (os.listdir(adir) if os.path.isdir(adir) else [])
                  if os.path.exists(os.path.join(adir, d, "agent.json")))
    if not ctxs:
        print(f"agent.json MISSING: {results} has no agent/<ctx>/agent.json (the lab ran without --agent, "
              f"or the agent failed: see {adir}/*/agent.stderr). Nothing compared.")
        return 3
    pseudo = load_pseudonyms(os.path.join(adir, "pseudonyms.tsv"))
    if not pseudo:
        print(f"warning: {adir}/pseudonyms.tsv missing or empty: stations cannot be matched")
    rep = Report(verbose)
    for ctx in ctxs:
        try:
            compare_bracket(rep, os.path.join(adir, ctx), ctx, pseudo)
        except (ValueError, KeyError, json.JSONDecodeError) as e:
            rep.add(ctx, "agent.json", "differs", None, None, None, f"cannot read: {e}")
    rep.rows = [r for r in rep.rows if r[2] != "note"] + [r for r in rep.rows if r[2] == "note"]
    notes = [r for r in rep.rows if r[2] == "note"]
    rep.rows = [r for r in rep.rows if r[2] != "note"]
    rep.print()
    for r in notes:
        print(f"note: {r[0]}: counted {r[3]} ({r[6]})")
    n = len(rep.rows)
    print(f"\n{n} fields compared, {rep.failures} differ, {rep.moved} moved between the iw reads")
    return 1 if rep.failures else 0


def self_test():
    sample = os.path.join(HERE, "testdata", "sample-results")
    print(f"== self-test 1: {sample} must compare clean")
    rc1 = run(sample, False)
    tmp = tempfile.mkdtemp()
    try:
        broken = os.path.join(tmp, "r")
        shutil.copytree(sample, broken)
        p = os.path.join(broken, "agent", "root", "agent.json")
        j = json.load(open(p))
        sta = j["wifi"]["interfaces"][0]["stations"][0]
        sta["signal_dbm"] -= 7
        sta["rx_bytes"] = 1
        sta["tx_bitrate"]["mcs"] = 31
        json.dump(j, open(p, "w"))
        print("\n== self-test 2: broken copy (signal, rx_bytes, tx MCS changed) must fail")
        rc2 = run(broken, False)
        print("\n== self-test 3: no agent.json must say so")
        shutil.rmtree(os.path.join(broken, "agent"))
        rc3 = run(broken, False)
    finally:
        shutil.rmtree(tmp)
    ok = rc1 == 0 and rc2 == 1 and rc3 == 3
    print(f"\nself-test {'passed' if ok else 'FAILED'} (clean={rc1}, broken={rc2}, missing={rc3})")
    return 0 if ok else 1


def main(argv):
    if "--self-test" in argv:
        return self_test()
    args = [a for a in argv[1:] if not a.startswith("-")]
    if len(args) != 1:
        print(__doc__)
        return 2
    return run(args[0], "--verbose" in argv or "-v" in argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
