#!/usr/bin/env python3
"""Search what the agent kept, logged and printed for the lab's raw identifiers.

  privacy-scan.py RESULTS_DIR [extra files or directories...]

Identifiers: every MAC address of the lab (all radios, from RESULTS/identities.tsv, net/*-iw-dev.txt,
net/*-ip-link.txt, and the station/scan dumps) and every SSID (identities.tsv, hostapd-*.conf, scan dumps).
Spellings searched: aa:bb:cc:dd:ee:ff, aa-bb-cc-dd-ee-ff, aabb.ccdd.eeff, aabbccddeeff (any case), the 6 raw
bytes; an SSID as its raw bytes and as hex (any case).
Searched by default: RESULTS/agent/state/ (the agent's state dir), every agent log and output under
RESULTS/agent/ (*.stderr, *.stdout, *.log: the init run, the brackets, pseudonym calls, agent-run.log)
and the agent's JSON snapshots (agent/*/agent.json);
plus the extra paths given (the collector's SQLite database, copied request bodies, ...).
The lab's own iw dumps and captures are raw by design and are never searched unless named explicitly.
Exit status: 0 no hit, 1 hits (listed), 2 nothing to search or no identifiers found.
"""
import glob
import os
import re
import sys

MAC_RE = re.compile(r"\b([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})\b")
NOT_IDENTIFYING = {"00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"}


def lab_identifiers(results):
    macs, ssids = set(), set()
    sources = [os.path.join(results, "identities.tsv")]
    sources += glob.glob(os.path.join(results, "net", "*-iw-dev.txt"))
    sources += glob.glob(os.path.join(results, "net", "*-ip-link.txt"))
    sources += glob.glob(os.path.join(results, "dumps", "*", "*.txt"))
    sources += glob.glob(os.path.join(results, "agent", "*", "before-*.txt"))
    for path in sources:
        try:
            text = open(path, errors="replace").read()
        except OSError:
            continue
        for m in MAC_RE.finditer(text):
            mac = m.group(1).lower()
            if mac not in NOT_IDENTIFYING and not mac.startswith(("33:33:", "01:00:5e:")):
                macs.add(mac)
        for m in re.finditer(r"^\s*(?:ssid |SSID: )(.+)$", text, re.M):
            s = m.group(1).strip()
            if s:
                ssids.add(s)
    try:
        for line in open(os.path.join(results, "identities.tsv")).read().splitlines()[1:]:
            parts = line.split("\t")
            if len(parts) >= 6 and parts[5]:
                ssids.add(parts[5])
    except OSError:
        pass
    for conf in glob.glob(os.path.join(results, "hostapd-*.conf")):
        for line in open(conf, errors="replace"):
            if line.startswith("ssid="):
                ssids.add(line[5:].strip())
    return sorted(macs), sorted(ssids)


def mac_patterns(mac):
    h = mac.replace(":", "")
    pats = {
        "colon": mac, "dash": mac.replace(":", "-"), "cisco-dot": f"{h[0:4]}.{h[4:8]}.{h[8:12]}", "bare-hex": h,
    }
    out = [(name, re.compile(re.escape(p).encode(), re.I)) for name, p in pats.items()]
    if raw_searchable(mac):
        out.append(("raw-bytes", re.compile(re.escape(bytes.fromhex(h)))))
    return out


def raw_searchable(mac):
    """The 6 raw bytes of a low-entropy address (hwsim's 02:00:00:00:01:00, mostly zeros) occur by chance
    in any binary file (SQLite pages, secrets); such addresses are searched in their text spellings only."""
    b = bytes.fromhex(mac.replace(":", ""))
    return len(set(b)) >= 4 and b.count(0) <= 2


def ssid_patterns(ssid):
    raw = ssid.encode()
    return [("raw", re.compile(re.escape(raw))), ("hex", re.compile(re.escape(raw.hex()).encode(), re.I))]


def default_targets(results):
    a = os.path.join(results, "agent")
    t = []
    if os.path.isdir(os.path.join(a, "state")):
        t.append(os.path.join(a, "state"))
    for pat in ("*.stderr", "*.stdout", "*.log"):
        t += glob.glob(os.path.join(a, "**", pat), recursive=True)
    t += glob.glob(os.path.join(a, "*", "agent.json"))
    return t


def files_of(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                for n in sorted(names):
                    yield os.path.join(root, n)
        elif os.path.exists(p):
            yield p
        else:
            print(f"warning: {p} does not exist")


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 2
    results = argv[1]
    macs, ssids = lab_identifiers(results)
    if not macs:
        print(f"no MAC addresses found in {results} (identities.tsv, net/, dumps/): cannot scan")
        return 2
    targets = default_targets(results) + argv[2:]
    files = list(files_of(targets))
    if not files:
        print(f"nothing to search: no agent state, logs or JSON in {results}/agent and no extra files")
        return 2
    print(f"identifiers: {len(macs)} MAC addresses ({', '.join(macs)}), {len(ssids)} SSIDs ({', '.join(ssids)})")
    low = [m for m in macs if not raw_searchable(m)]
    if low:
        print(f"raw-byte search skipped for low-entropy addresses (text spellings still searched): {', '.join(low)}")
    print(f"searching {len(files)} files:")
    pats = [(f"MAC {m}", n, p) for m in macs for n, p in mac_patterns(m)]
    pats += [(f"SSID {s!r}", n, p) for s in ssids for n, p in ssid_patterns(s)]
    hits = 0
    for path in files:
        try:
            data = open(path, "rb").read()
        except OSError as e:
            print(f"  {path}: unreadable ({e})")
            continue
        file_hits = []
        for what, spelling, rx in pats:
            for m in rx.finditer(data):
                lo, hi = max(0, m.start() - 30), min(len(data), m.end() + 30)
                ctx = data[lo:hi].decode("utf-8", "replace").replace("\n", "\\n")
                file_hits.append(f"    HIT {what} as {spelling} at byte {m.start()}: ...{ctx}...")
        print(f"  {path} ({len(data)} bytes): {'CLEAN' if not file_hits else f'{len(file_hits)} HITS'}")
        for h in file_hits[:50]:
            print(h)
        hits += len(file_hits)
    print(f"\n{hits} hits in {len(files)} files")
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
