#!/usr/bin/env python3
"""tshark oracle for the packet analyser: runs tshark once per capture (cached) and writes the golden file.

  oracle.py [--pcaps DIR] [--cache DIR] [--out FILE] [--status FILE] [--timeout S] [--limit N]
            [--only SUBSTRING] [--no-write]

Normally started by generate.sh (which installs tshark first). Steps:
  1. capture list: every `file` of DIR/MANIFEST.tsv, plus every other regular file under DIR whose first
     bytes are a pcap/pcapng magic number (ERF has no magic: it comes from the manifest only);
  2. per file: sha256, then `capinfos` and ONE `tshark -T fields` run, each under a timeout, both cached in
     CACHE/<tshark package version>/<sha256>.<kind>-<command hash>.* (a rerun with the same tshark, the
     same command and the same bytes reads the cache and starts no process);
  3. summary per file -> the golden JSON (see README.md for every field).
Progress lines go to --status (default /tmp/pcap-oracle-status.txt).
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_PCAPS = "/work/shared/pcaps"
DEFAULT_CACHE = "/var/cache/meetpunt/pcap-oracle"
DEFAULT_OUT = os.path.join(REPO, "Tests/MeetpuntTests/Fixtures/pcap-golden/tshark-golden.json")
DEFAULT_STATUS = "/tmp/pcap-oracle-status.txt"
GOLDEN_LIMIT = 3 * 1024 * 1024  # above this the golden file is written gzipped (.json.gz)

# The one tshark invocation per file (FILE is substituted). Preferences are spelled out even where
# they equal tshark 4.0's defaults, so a changed default cannot change the oracle silently.
TSHARK_OPTIONS = [
    "-n",                                           # no name resolution of any kind
    "-o", "tcp.relative_sequence_numbers:TRUE",
    "-o", "tcp.analyze_sequence_numbers:TRUE",
    "-o", "tcp.calculate_timestamps:TRUE",
    "-o", "tcp.fastrt_supersedes_ooo:TRUE",        # default: fast retransmission tested before out-of-order
    "-o", "tcp.check_checksum:FALSE",              # default: bad checksums change nothing
    "-o", "ip.check_checksum:FALSE",
    "-o", "tcp.try_heuristic_first:FALSE",         # defaults: port/protocol tables before heuristics
    "-o", "udp.try_heuristic_first:FALSE",
    "-o", "ip.try_heuristic_first:FALSE",
    "-o", "ipv6.try_heuristic_first:FALSE",
    "-o", "ip.defragment:FALSE",                   # NOT the default: a header-only parser sees the TCP/UDP
    "-o", "ipv6.defragment:FALSE",                 # header in the first fragment, not in the last one
    "--disable-heuristic", "tte_eth",              # Ethernet heuristics tried BEFORE the EtherType:
    "--disable-heuristic", "fp_eth",               # TTEthernet, Cisco FabricPath and F5 file info could
    "--disable-heuristic", "f5fileinfo",           # claim an IP frame and hide its TCP header
    "--disable-heuristic", "stt_ip",               # STT looks like TCP (IP protocol 6)
]
FIELDS = [
    "frame.number", "frame.len", "frame.cap_len", "frame.time_epoch", "frame.encap_type", "frame.protocols",
    "ip.version", "ip.proto", "ipv6.nxt", "ip.flags.mf", "ip.frag_offset",
    "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport",
    "tcp.stream", "tcp.flags", "tcp.len", "tcp.seq", "tcp.ack", "tcp.seq_raw", "tcp.ack_raw",
    "tcp.window_size_value", "tcp.hdr_len",
    "tcp.analysis.initial_rtt",
    "tcp.analysis.retransmission", "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission", "tcp.analysis.out_of_order",
    "tcp.analysis.zero_window", "tcp.analysis.lost_segment",
    "tcp.analysis.duplicate_ack", "tcp.analysis.keep_alive", "tcp.analysis.zero_window_probe",
    "tcp.analysis.ack_lost_segment", "tcp.analysis.reused_ports",
    "udp.srcport", "icmp.type", "icmpv6.type",
]
FIELD_OPTIONS = ["-T", "fields", "-E", "header=n", "-E", "separator=/t", "-E", "occurrence=f", "-E", "quote=n"]
for _f in FIELDS:
    FIELD_OPTIONS += ["-e", _f]
COL = {name: i for i, name in enumerate(FIELDS)}

TSHARK_ARGV = ["tshark", "-r", "FILE"] + TSHARK_OPTIONS + FIELD_OPTIONS
CAPINFOS_ARGV = ["capinfos", "-E", "-c", "FILE"]
ANALYSIS_FLAGS = [  # golden key -> tshark field; each counted at most once per frame
    ("retransmission", "tcp.analysis.retransmission"),
    ("fast_retransmission", "tcp.analysis.fast_retransmission"),
    ("spurious_retransmission", "tcp.analysis.spurious_retransmission"),
    ("out_of_order", "tcp.analysis.out_of_order"),
    ("zero_window", "tcp.analysis.zero_window"),
    ("lost_segment", "tcp.analysis.lost_segment"),
    ("duplicate_ack", "tcp.analysis.duplicate_ack"),
    ("keep_alive", "tcp.analysis.keep_alive"),
]
TRANSPORTS = ("tcp", "udp", "icmp", "icmpv6")

PCAP_MAGICS = {
    bytes.fromhex("a1b2c3d4"), bytes.fromhex("d4c3b2a1"),   # pcap, microseconds
    bytes.fromhex("a1b23c4d"), bytes.fromhex("4d3cb2a1"),   # pcap, nanoseconds
    bytes.fromhex("a1b2cd34"), bytes.fromhex("34cdb2a1"),   # Kuznetsov's modified pcap
    bytes.fromhex("0a0d0d0a"),                              # pcapng section header block
}


def command_key(argv):
    return hashlib.sha256(json.dumps(argv).encode()).hexdigest()[:12]


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


class Status:
    def __init__(self, path):
        self.path = path

    def __call__(self, msg):
        line = f"{now_iso()} pcap-oracle: {msg}"
        print(line, flush=True)
        try:
            with open(self.path, "a") as f:
                f.write(line + "\n")
        except OSError:
            pass


def tshark_versions():
    out = subprocess.run(["tshark", "--version"], capture_output=True, text=True, timeout=60).stdout
    first = out.splitlines()[0] if out else ""
    m = re.search(r"TShark \(Wireshark\) (\S+)", first)
    upstream = m.group(1) if m else "unknown"
    package = ""
    try:
        package = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "tshark"], capture_output=True,
                                 text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return first.strip(), upstream, package or upstream


def package_version():
    """The installed tshark package version without starting tshark (dpkg only)."""
    try:
        return subprocess.run(["dpkg-query", "-W", "-f=${Version}", "tshark"], capture_output=True, text=True,
                              timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def discover(pcaps):
    """Relative paths: the manifest's files, plus unlisted regular files with a capture magic number."""
    listed, missing = [], []
    manifest = os.path.join(pcaps, "MANIFEST.tsv")
    if os.path.exists(manifest):
        with open(manifest) as f:
            header = f.readline().rstrip("\n").split("\t")
            col = header.index("file")
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) <= col or not parts[col]:
                    continue
                rel = parts[col]
                (listed if os.path.isfile(os.path.join(pcaps, rel)) else missing).append(rel)
    seen = set(listed)
    unlisted = []
    for root, dirs, files in os.walk(pcaps):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            rel = os.path.relpath(full, pcaps)
            if rel in seen or os.path.islink(full) or not os.path.isfile(full):
                continue
            with open(full, "rb") as f:
                if f.read(4) in PCAP_MAGICS:
                    unlisted.append(rel)
    return sorted(set(listed) | set(unlisted)), missing, unlisted


def run_bounded(argv, timeout, out_path, err_path):
    """Runs argv at nice 10 with stdout/stderr to files; kills the process group after `timeout` s."""
    t0 = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = subprocess.Popen(["nice", "-n", "10"] + argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            rc = p.wait(timeout=30)
            timed_out = True
    return rc, timed_out, round(time.monotonic() - t0, 3)


def cached_run(kind, argv_template, path, sha, cache_dir, timeout):
    """Returns (meta, stdout_path, stderr_path, from_cache); meta = {"rc", "timeout", "seconds", "argv"}."""
    key = command_key(argv_template)
    base = os.path.join(cache_dir, f"{sha}.{kind}-{key}")
    meta_path, out_path, err_path = base + ".meta.json", base + ".out", base + ".err"
    if os.path.exists(meta_path) and os.path.exists(out_path):
        with open(meta_path) as f:
            return json.load(f), out_path, err_path, True
    argv = [path if a == "FILE" else a for a in argv_template]
    rc, timed_out, secs = run_bounded(argv, timeout, out_path + ".tmp", err_path + ".tmp")
    os.replace(out_path + ".tmp", out_path)
    os.replace(err_path + ".tmp", err_path)
    meta = {"rc": rc, "timeout": timed_out, "seconds": secs, "argv": argv_template}
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f)
    os.replace(meta_path + ".tmp", meta_path)
    return meta, out_path, err_path, False


def encap_names(cache_dir):
    """frame.encap_type number -> wiretap's name, from `tshark -G values` (cached per tshark version)."""
    path = os.path.join(cache_dir, "encap-values.json")
    if os.path.exists(path):
        with open(path) as f:
            return {int(k): v for k, v in json.load(f).items()}
    out = subprocess.run(["tshark", "-G", "values"], capture_output=True, text=True, timeout=300).stdout
    names = {}
    for line in out.splitlines():
        p = line.split("\t")
        if len(p) >= 4 and p[0] == "V" and p[1] == "frame.encap_type":
            names[int(p[2])] = p[3]
    with open(path + ".tmp", "w") as f:
        json.dump(names, f, indent=0, sort_keys=True)
    os.replace(path + ".tmp", path)
    return names


def error_text(err_path, abs_path, rel):
    """tshark's stderr in one line, without the root warning, with the corpus path made relative."""
    try:
        with open(err_path, errors="replace") as f:
            lines = [l.strip() for l in f if l.strip()]
    except OSError:
        return ""
    lines = [l.replace(abs_path, rel) for l in lines if not l.startswith("Running as user")]
    lines = [re.sub(r"^\*\* \(tshark:\d+\) [0-9:.]+ ", "", l) for l in lines]   # pid and clock of a warning
    return " ".join(lines)[:300]


def header_linktypes(path, max_blocks=100000):
    """(linktype, interfaces): the LINKTYPE_ number of a pcap file header (libpcap's LT_LINKTYPE: the
    FCS-length bits 26-31 masked off), or for pcapng the distinct link types of its interface description
    blocks in order of appearance plus the number of those blocks; (None, None) for other formats."""
    import struct
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        return None, None
    magic = data[:4]
    if magic in (bytes.fromhex("a1b2c3d4"), bytes.fromhex("a1b23c4d"), bytes.fromhex("a1b2cd34")):
        return struct.unpack(">I", data[20:24])[0] & 0x03FFFFFF, None
    if magic in (bytes.fromhex("d4c3b2a1"), bytes.fromhex("4d3cb2a1"), bytes.fromhex("34cdb2a1")):
        return struct.unpack("<I", data[20:24])[0] & 0x03FFFFFF, None
    if magic != bytes.fromhex("0a0d0d0a"):
        return None, None
    out, off, endian = [], 0, "<"
    for _ in range(max_blocks):
        if off + 12 > len(data):
            break
        btype = struct.unpack(endian + "I", data[off:off + 4])[0]
        if data[off:off + 4] == bytes.fromhex("0a0d0d0a"):
            endian = "<" if data[off + 8:off + 12] == bytes.fromhex("4d3c2b1a") else ">"
            btype = 0x0A0D0D0A
        blen = struct.unpack(endian + "I", data[off + 4:off + 8])[0]
        if btype == 1 and off + 10 <= len(data):
            out.append(struct.unpack(endian + "H", data[off + 8:off + 10])[0])
        if blen < 12 or blen % 4:
            break
        off += blen
    return list(dict.fromkeys(out)), len(out)


def secs_to_ns(text):
    d = Decimal(text)
    return int(d * 1_000_000_000)


def rtt_us(ns):
    """Integer microseconds, rounded half up (only differs from ns // 1000 for nanosecond captures)."""
    return (ns + 500) // 1000


def first_transport(protocols):
    for p in protocols.split(":"):
        if p in TRANSPORTS:
            return "icmp" if p == "icmpv6" else p
    return None


def derived_initial_rtt(frames):
    """The initial-RTT rule of dissect_tcp() (packet-tcp.c, 4.0) replayed on one stream's frames.
    ts_mru_syn = time of the latest pure SYN (SYN set, ACK clear); the first later frame with ACK set and
    SYN clear (any direction, any other flags, any length) sets ts_first_rtt = its time - ts_mru_syn.
    Both are nstime_t where 0 means "unset": a SYN at time 0.000000 does not count, and an RTT of exactly 0
    stays unset (the next such ACK sets it again). Frames with a TCP header length < 20 leave dissect_tcp
    before this code. Returns ns or None."""
    mru_syn = 0
    first_rtt = 0
    for f in frames:
        flags = f["flags"]
        if flags is None or f["hlen"] < 20:
            continue
        if flags & 0x12 == 0x02:
            mru_syn = f["t_ns"]
        if flags & 0x12 == 0x10 and mru_syn != 0 and first_rtt == 0:
            first_rtt = f["t_ns"] - mru_syn
    return first_rtt or None


def summarize(tsv_path, names):
    s = {"packets": 0, "bytes": 0, "captured_bytes": 0, "ipv4": 0, "ipv6": 0, "tcp": 0, "udp": 0, "icmp": 0,
         "other": 0, "tcp_without_stream": 0, "tcp_tunnelled_or_quoted": 0}
    for key, _ in ANALYSIS_FLAGS:
        s[key] = 0
    encaps = {}
    streams = {}   # index -> dict
    stream_frames = {}
    bad_lines = 0
    with open(tsv_path, errors="replace") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) != len(FIELDS) or not p[0].isdigit():
                bad_lines += 1
                continue
            num = int(p[COL["frame.number"]])
            s["packets"] += 1
            s["bytes"] += int(p[COL["frame.len"]] or 0)
            s["captured_bytes"] += int(p[COL["frame.cap_len"]] or 0)
            enc = p[COL["frame.encap_type"]]
            encaps[enc] = encaps.get(enc, 0) + 1
            ipv = p[COL["ip.version"]]
            if ipv == "4":
                s["ipv4"] += 1
            elif ipv == "6":
                s["ipv6"] += 1
            protocols = p[COL["frame.protocols"]]
            tr = first_transport(protocols)
            if tr is None:
                s["other"] += 1
            else:
                s[tr] += 1
            if tr != "tcp":
                if "tcp" in protocols.split(":"):
                    s["tcp_tunnelled_or_quoted"] += 1
                continue
            for key, field in ANALYSIS_FLAGS:
                if p[COL[field]]:
                    s[key] += 1
            st = p[COL["tcp.stream"]]
            if st == "":
                s["tcp_without_stream"] += 1
                continue
            idx = int(st)
            flags = int(p[COL["tcp.flags"]], 16) if p[COL["tcp.flags"]] else None
            rec = streams.get(idx)
            if rec is None:
                rec = streams[idx] = {"stream": idx, "first_frame": num, "initial_rtt_us": None, "packets": 0,
                                      "syn_frame": None, "_rtt_ns": None, "_rtt_values": set()}
                stream_frames[idx] = []
            rec["packets"] += 1
            if flags is not None and flags & 0x12 == 0x02 and rec["syn_frame"] is None:
                rec["syn_frame"] = num
            rtt = p[COL["tcp.analysis.initial_rtt"]]
            if rtt:
                ns = secs_to_ns(rtt)
                rec["_rtt_values"].add(ns)
                if rec["_rtt_ns"] is None:
                    rec["_rtt_ns"] = ns
            stream_frames[idx].append({"flags": flags, "t_ns": secs_to_ns(p[COL["frame.time_epoch"]] or "0"),
                                       "hlen": int(p[COL["tcp.hdr_len"]] or 0)})
    if len(encaps) == 1:
        enc = next(iter(encaps))
        s["encapsulation"] = names.get(int(enc), enc) if enc.lstrip("-").isdigit() else enc
    elif encaps:
        s["encapsulation"] = "Per packet"
        s["encapsulations"] = {names.get(int(k), k) if k.lstrip("-").isdigit() else k: v
                               for k, v in sorted(encaps.items())}
    s["tcp_streams"] = len(streams)
    checks = {"rtt_rule_agrees": 0, "rtt_rule_differs": [], "rtt_inconsistent": [], "rtt_hidden": []}
    out_streams = []
    for idx in sorted(streams, key=lambda i: streams[i]["first_frame"]):
        rec = streams[idx]
        if rec["_rtt_ns"] is not None:
            rec["initial_rtt_us"] = rtt_us(rec["_rtt_ns"])
            if rec["_rtt_ns"] % 1000:
                rec["initial_rtt_ns"] = rec["_rtt_ns"]
        if len(rec["_rtt_values"]) > 1:
            checks["rtt_inconsistent"].append(idx)
        derived = derived_initial_rtt(stream_frames[idx])
        if derived == rec["_rtt_ns"]:
            checks["rtt_rule_agrees"] += 1
        elif rec["_rtt_ns"] is None:
            # tshark computed it but printed it on no frame (it prints tcp.analysis.initial_rtt only on
            # frames that carry a SEQ/ACK analysis record): keep tshark's null, record the hidden value
            rec["initial_rtt_hidden_us"] = rtt_us(derived)
            checks["rtt_hidden"].append({"stream": idx, "rule_ns": derived})
        else:
            checks["rtt_rule_differs"].append({"stream": idx, "tshark_ns": rec["_rtt_ns"], "rule_ns": derived})
        del rec["_rtt_ns"], rec["_rtt_values"]
        out_streams.append(rec)
    s["streams"] = out_streams
    s["_bad_lines"] = bad_lines
    return s, checks


def parse_capinfos(out_path):
    info = {}
    try:
        with open(out_path, errors="replace") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    info[k.strip()] = v.strip()
    except OSError:
        pass
    res = {}
    if "File encapsulation" in info:
        res["encapsulation"] = info["File encapsulation"]
    if "Number of packets" in info:
        digits = re.sub(r"[^0-9]", "", info["Number of packets"])
        if digits and not re.search(r"[kMG]", info["Number of packets"]):
            res["packets"] = int(digits)
    return res


# ---------------------------------------------------------------------------------------------------
# golden file writer: one line per file header value group, one line per stream (small, diffable)

FILE_KEYS = ["sha256", "file_bytes", "linktype", "interfaces", "tshark_status", "tshark_message", "encapsulation", "encapsulations",
             "capinfos_encapsulation", "capinfos_packets",
             "packets", "bytes", "captured_bytes", "ipv4", "ipv6", "tcp", "udp", "icmp", "other",
             "tcp_without_stream", "tcp_tunnelled_or_quoted", "tcp_streams",
             "retransmission", "fast_retransmission", "spurious_retransmission", "out_of_order", "zero_window",
             "lost_segment", "duplicate_ack", "keep_alive", "streams"]


def dump_golden(doc):
    d = lambda v: json.dumps(v, separators=(",", ":"), ensure_ascii=False)
    lines = ["{"]
    head = [k for k in doc if k != "files"]
    for k in head:
        lines.append(f" {d(k)}: {json.dumps(doc[k], ensure_ascii=False)},")
    lines.append(' "files": {')
    names = sorted(doc["files"])
    for i, name in enumerate(names):
        e = doc["files"][name]
        parts = []
        for k in FILE_KEYS:
            if k not in e or k == "streams":
                continue
            parts.append(f"{d(k)}:{d(e[k])}")
        body = ",".join(parts)
        streams = e.get("streams", [])
        if streams:
            inner = ",\n".join("    " + d(s) for s in streams)
            body += f',"streams":[\n{inner}]'
        else:
            body += ',"streams":[]'
        lines.append(f"  {d(name)}: {{{body}}}" + ("," if i < len(names) - 1 else ""))
    lines.append(" }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def existing_golden_text(out):
    import gzip
    for path, opener in ((out, open), (out + ".gz", gzip.open)):
        if os.path.exists(path):
            try:
                with opener(path, "rt") as f:
                    return f.read()
            except (OSError, ValueError):
                return None
    return None


def same_but_date(a, b):
    strip = lambda t: re.sub(r'^ "generated_at": .*$', "", t, count=1, flags=re.M)
    return strip(a) == strip(b)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pcaps", default=DEFAULT_PCAPS)
    ap.add_argument("--cache", default=DEFAULT_CACHE)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--status", default=DEFAULT_STATUS)
    ap.add_argument("--timeout", type=float, default=60.0, help="per-file tshark timeout in seconds")
    ap.add_argument("--limit", type=int, default=0, help="only the first N files (testing)")
    ap.add_argument("--only", default="", help="only files whose path contains this (testing)")
    ap.add_argument("--no-write", action="store_true", help="do not write the golden file")
    ap.add_argument("--checks-out", default="", help="write the self-check details (JSON) here")
    args = ap.parse_args()
    status = Status(args.status)
    t_start = time.monotonic()

    version_line, upstream, package = tshark_versions()
    cache_dir = os.path.join(args.cache, package)
    os.makedirs(cache_dir, exist_ok=True)
    names = encap_names(cache_dir)

    files, missing, unlisted = discover(args.pcaps)
    if args.only:
        files = [f for f in files if args.only in f]
    if args.limit:
        files = files[: args.limit]
    status(f"start: {len(files)} capture files, tshark {package}, cache {cache_dir}, "
           f"timeout {args.timeout:g}s; manifest rows missing on disk: {len(missing)}, unlisted captures: {len(unlisted)}")

    golden = {}
    counts = {"ok": 0, "error": 0, "timeout": 0, "cached": 0, "ran": 0}
    all_checks = {}
    tshark_secs = 0.0
    last_note = time.monotonic()
    for n, rel in enumerate(files, 1):
        path = os.path.join(args.pcaps, rel)
        sha = sha256_file(path)
        cmeta, cout, _cerr, _ = cached_run("capinfos", CAPINFOS_ARGV, path, sha, cache_dir, 30)
        meta, out, err, from_cache = cached_run("tshark", TSHARK_ARGV, path, sha, cache_dir, args.timeout)
        counts["cached" if from_cache else "ran"] += 1
        if not from_cache:
            tshark_secs += meta["seconds"]
        summary, checks = summarize(out, names)
        linktype, interfaces = header_linktypes(path)
        entry = {"sha256": sha, "file_bytes": os.path.getsize(path), "linktype": linktype}
        if interfaces is not None:
            entry["interfaces"] = interfaces
        if meta["timeout"]:
            entry["tshark_status"] = "timeout"
            counts["timeout"] += 1
        elif meta["rc"] != 0:
            msg = error_text(err, path, rel)
            entry["tshark_status"] = f"error: {msg or 'exit status %d' % meta['rc']}"
            counts["error"] += 1
        else:
            entry["tshark_status"] = "ok"
            counts["ok"] += 1
            msg = error_text(err, path, rel)
            if msg:
                entry["tshark_message"] = msg
        ci = parse_capinfos(cout)
        if "encapsulation" not in summary:
            summary["encapsulation"] = ci.get("encapsulation", "unknown")
        if ci.get("encapsulation") and ci["encapsulation"] != summary["encapsulation"]:
            entry["capinfos_encapsulation"] = ci["encapsulation"]
        if "packets" in ci and ci["packets"] != summary["packets"]:
            entry["capinfos_packets"] = ci["packets"]
        if summary.pop("_bad_lines"):
            checks["unparsed_tshark_lines"] = True
        entry.update(summary)
        golden[rel] = entry
        if (checks["rtt_rule_differs"] or checks["rtt_inconsistent"] or checks["rtt_hidden"]
                or checks.get("unparsed_tshark_lines")):
            all_checks[rel] = checks
        all_checks.setdefault("_rtt_rule_agrees", 0)
        all_checks["_rtt_rule_agrees"] += checks["rtt_rule_agrees"]
        if time.monotonic() - last_note > 30 or n == len(files):
            status(f"{n}/{len(files)} files ({counts['ran']} run, {counts['cached']} cached; "
                   f"{counts['error']} errors, {counts['timeout']} timeouts) last={rel}")
            last_note = time.monotonic()

    doc = {
        "tshark_version": package,
        "tshark_version_line": version_line,
        "generated_at": now_iso(),
        "generator": "scripts/pcap-oracle/generate.sh (oracle.py)",
        "command": " ".join(shlex.quote(a) for a in TSHARK_ARGV),
        "capinfos_command": " ".join(CAPINFOS_ARGV),
        "corpus": args.pcaps,
        "notes": [
            "-E occurrence=f: every field is its FIRST occurrence in the frame, so tunnelled or ICMP-quoted "
            "inner headers are not counted twice",
            "ipv4/ipv6: version of the first IP header (ip.version, first occurrence)",
            "tcp/udp/icmp/other: first of tcp, udp, icmp, icmpv6 in frame.protocols (icmpv6 counts as icmp); "
            "IP-in-IP and GRE are walked through, tunnels over UDP count as udp, ICMP errors as icmp",
            "analysis flags, tcp_streams and streams only from frames whose first transport is TCP; each flag "
            "at most once per frame; tcp.analysis.retransmission is also present on every fast and every "
            "spurious retransmission (see scripts/pcap-oracle/README.md)",
            "streams are sorted by first_frame; initial_rtt_us = tcp.analysis.initial_rtt as tshark printed it, "
            "rounded to integer microseconds (initial_rtt_ns added only when not a whole microsecond); "
            "initial_rtt_hidden_us: tshark computed an initial RTT for the stream but printed it on no frame",
            "linktype: LINKTYPE_ number from the pcap file header (FCS bits masked as libpcap does); for pcapng "
            "the distinct link types of its interfaces in order, with interfaces = their count; "
            "encapsulation: wiretap's name for frame.encap_type ('Per packet' plus encapsulations when mixed)",
            "capinfos_packets / capinfos_encapsulation appear only where capinfos disagrees with tshark",
            "IP defragmentation is off: the first fragment carries the transport header",
        ],
        "files": golden,
    }
    totals = {k: sum(e.get(k, 0) for e in golden.values())
              for k in ["packets", "bytes", "captured_bytes", "ipv4", "ipv6", "tcp", "udp", "icmp", "other",
                        "tcp_streams", "retransmission", "fast_retransmission", "spurious_retransmission",
                        "out_of_order", "zero_window", "lost_segment", "duplicate_ack", "keep_alive"]}
    totals["streams_with_initial_rtt"] = sum(1 for e in golden.values() for s in e["streams"]
                                             if s["initial_rtt_us"] is not None)
    totals["files"] = len(golden)
    totals["tshark_ok"] = counts["ok"]
    totals["tshark_error"] = counts["error"]
    totals["tshark_timeout"] = counts["timeout"]
    doc["totals"] = totals
    # keep "files" last
    doc["files"] = doc.pop("files")

    text = dump_golden(doc)
    written = None
    previous = existing_golden_text(args.out)
    if previous is not None and same_but_date(previous, text):
        # nothing but generated_at would change: keep the committed file as it is (no diff on a rerun)
        written = args.out + (".gz" if os.path.exists(args.out + ".gz") else "")
        status("golden file unchanged apart from generated_at: not rewritten")
    elif not args.no_write:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        if len(text.encode()) > GOLDEN_LIMIT:
            import gzip
            written = args.out + ".gz"
            with gzip.GzipFile(written + ".tmp", "wb", mtime=0) as f:
                f.write(text.encode())
            os.replace(written + ".tmp", written)
        else:
            written = args.out
            with open(written + ".tmp", "w") as f:
                f.write(text)
            os.replace(written + ".tmp", written)
    if args.checks_out:
        with open(args.checks_out, "w") as f:
            json.dump(all_checks, f, indent=1)
    wall = time.monotonic() - t_start
    differs = sum(len(c["rtt_rule_differs"]) for k, c in all_checks.items() if not k.startswith("_"))
    hidden = sum(len(c["rtt_hidden"]) for k, c in all_checks.items() if not k.startswith("_"))
    status(f"done in {wall:.1f}s wall ({counts['ran']} tshark runs taking {tshark_secs:.1f}s, {counts['cached']} from the cache); "
           f"totals {json.dumps(totals)}; initial-RTT rule replay: {all_checks.get('_rtt_rule_agrees', 0)} "
           f"streams agree, {hidden} computed but never printed by tshark (initial_rtt_hidden_us), {differs} differ; golden {written} "
           f"({os.path.getsize(written) if written else 0} bytes)")
    if missing:
        status(f"manifest rows without a file: {missing[:10]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
