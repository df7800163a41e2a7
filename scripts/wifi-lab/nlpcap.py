#!/usr/bin/env python3
"""Netlink captures of the Wi-Fi lab (nlmon + tcpdump, pcap link type 253 LINKTYPE_NETLINK).

  nlpcap.py split RESULTS_DIR      cut each namespace capture (RESULTS/pcap/<ns>.pcap) into one small
                                   pcap per iw call listed in RESULTS/dumps/index.tsv, keeping only the
                                   nl80211 messages of that call (request, replies, DONE/ERROR) and the
                                   nl80211 multicast events seen while it ran (deduplicated; at most 3
                                   FRAME events, which hostapd's beacon registration floods). Writes
                                   RESULTS/pcap/split/<ns>/<name>.pcap, RESULTS/pcap/split/index.json and
                                   RESULTS/pcap/split/nlctrl-nl80211.pcap (one GETFAMILY answer).
  nlpcap.py summary PCAP...        one line per netlink message (nl80211 command names, attributes).

Each pcap record is a 16-byte SLL-style header (big endian: packet type, ARPHRD_NETLINK=824, address
length, 8 address bytes, netlink protocol) followed by one or more netlink messages in host (little
endian) byte order. The nl80211 family id is dynamic; it is learnt from nlctrl's CTRL_CMD_NEWFAMILY reply.
Standard library only.
"""
import json
import os
import struct
import sys

LINKTYPE_NETLINK = 253
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE = 1, 2, 3
GENL_ID_CTRL = 0x10
NETLINK_GENERIC = 16
CTRL_CMD_NEWFAMILY, CTRL_CMD_GETFAMILY = 1, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2
NL80211_CMD_FRAME = 59
MAX_FRAME_EVENTS = 3

# enum nl80211_commands (include/uapi/linux/nl80211.h), the ones a lab capture shows.
NL80211_CMDS = {
    1: "GET_WIPHY", 2: "SET_WIPHY", 3: "NEW_WIPHY", 4: "DEL_WIPHY", 5: "GET_INTERFACE", 6: "SET_INTERFACE",
    7: "NEW_INTERFACE", 8: "DEL_INTERFACE", 15: "START_AP", 16: "STOP_AP", 17: "GET_STATION", 18: "SET_STATION",
    19: "NEW_STATION", 20: "DEL_STATION", 25: "SET_BSS", 26: "SET_REG", 27: "REQ_SET_REG", 31: "GET_REG",
    32: "GET_SCAN", 33: "TRIGGER_SCAN", 34: "NEW_SCAN_RESULTS", 35: "SCAN_ABORTED", 36: "REG_CHANGE",
    37: "AUTHENTICATE", 38: "ASSOCIATE", 39: "DEAUTHENTICATE", 40: "DISASSOCIATE", 42: "REG_BEACON_HINT",
    46: "CONNECT", 47: "ROAM", 48: "DISCONNECT", 49: "SET_WIPHY_NETNS", 50: "GET_SURVEY",
    51: "NEW_SURVEY_RESULTS", 58: "REGISTER_FRAME", 59: "FRAME", 60: "FRAME_TX_STATUS", 63: "SET_CQM",
    64: "NOTIFY_CQM", 65: "SET_CHANNEL", 88: "CH_SWITCH_NOTIFY", 130: "GET_FTM_RESPONDER_STATS",
}
NL80211_ATTR = {1: "WIPHY", 2: "WIPHY_NAME", 3: "IFINDEX", 4: "IFNAME", 5: "IFTYPE", 6: "MAC", 21: "STA_INFO",
                33: "REG_ALPHA2", 34: "REG_RULES", 38: "WIPHY_FREQ", 39: "WIPHY_CHANNEL_TYPE", 46: "GENERATION",
                47: "BSS", 52: "SSID", 84: "SURVEY_INFO", 98: "WIPHY_TX_POWER_LEVEL", 153: "WDEV",
                159: "CHANNEL_WIDTH", 160: "CENTER_FREQ1", 161: "CENTER_FREQ2", 265: "TXQ_STATS",
                290: "WIPHY_FREQ_OFFSET"}
STA_INFO = {1: "INACTIVE_TIME", 2: "RX_BYTES", 3: "TX_BYTES", 7: "SIGNAL", 8: "TX_BITRATE", 9: "RX_PACKETS",
            10: "TX_PACKETS", 11: "TX_RETRIES", 12: "TX_FAILED", 13: "SIGNAL_AVG", 14: "RX_BITRATE",
            15: "BSS_PARAM", 16: "CONNECTED_TIME", 17: "STA_FLAGS", 18: "BEACON_LOSS", 23: "RX_BYTES64",
            24: "TX_BYTES64", 25: "CHAIN_SIGNAL", 26: "CHAIN_SIGNAL_AVG", 27: "EXPECTED_THROUGHPUT",
            28: "RX_DROP_MISC", 29: "BEACON_RX", 30: "BEACON_SIGNAL_AVG", 31: "TID_STATS", 32: "RX_DURATION",
            34: "ACK_SIGNAL", 35: "ACK_SIGNAL_AVG", 39: "TX_DURATION", 40: "AIRTIME_WEIGHT",
            42: "ASSOC_AT_BOOTTIME"}


def attrs(b):
    i = 0
    while i + 4 <= len(b):
        ln, t = struct.unpack_from("<HH", b, i)
        if ln < 4:
            break
        yield t & 0x3FFF, b[i + 4:i + ln]
        i += (ln + 3) & ~3


def read_pcap(path):
    """Returns (header bytes, [(ts_sec, ts_usec, sll_header, [netlink message bytes])])."""
    data = open(path, "rb").read()
    if len(data) < 24:
        return data, []
    magic = struct.unpack_from("<I", data, 0)[0]
    if magic not in (0xA1B2C3D4, 0xA1B23C4D):
        raise ValueError(f"{path}: not a little-endian pcap file (magic {magic:#x})")
    linktype = struct.unpack_from("<I", data, 20)[0]
    if linktype != LINKTYPE_NETLINK:
        raise ValueError(f"{path}: link type {linktype}, expected {LINKTYPE_NETLINK}")
    recs, off = [], 24
    while off + 16 <= len(data):
        sec, usec, incl, _orig = struct.unpack_from("<IIII", data, off)
        off += 16
        pkt = data[off:off + incl]
        off += incl
        head, body = pkt[:16], pkt[16:]
        msgs = []
        while len(body) >= 16:
            ln = struct.unpack_from("<I", body, 0)[0]
            if ln < 16 or ln > len(body):
                break
            msgs.append(body[:ln])
            body = body[(ln + 3) & ~3:]
        recs.append((sec, usec, head, msgs))
    return data[:24], recs


def write_pcap(path, header, recs):
    with open(path, "wb") as f:
        f.write(header)
        for sec, usec, head, msgs in recs:
            body = b""
            for m in msgs:
                body += m + b"\0" * (((len(m) + 3) & ~3) - len(m))
            pkt = head + body
            f.write(struct.pack("<IIII", sec, usec, len(pkt), len(pkt)))
            f.write(pkt)


def nlhdr(m):
    ln, typ, flags, seq, pid = struct.unpack_from("<IHHII", m, 0)
    return typ, flags, seq, pid


def protocol(head):
    return struct.unpack_from(">H", head, 14)[0] if len(head) >= 16 else None


def learn_family(recs, name=b"nl80211"):
    """nl80211's family id and one CTRL_CMD_NEWFAMILY record naming it."""
    for rec in recs:
        for m in rec[3]:
            typ = nlhdr(m)[0]
            if typ == GENL_ID_CTRL and len(m) >= 20 and m[16] == CTRL_CMD_NEWFAMILY:
                a = dict(attrs(m[20:]))
                if a.get(CTRL_ATTR_FAMILY_NAME, b"").rstrip(b"\0") == name and CTRL_ATTR_FAMILY_ID in a:
                    return struct.unpack("<H", a[CTRL_ATTR_FAMILY_ID][:2])[0], rec
    return None, None


def is_getfamily(m, name=b"nl80211"):
    typ, flags, _, _ = nlhdr(m)
    if typ != GENL_ID_CTRL or len(m) < 20 or m[16] != CTRL_CMD_GETFAMILY:
        return False
    return dict(attrs(m[20:])).get(CTRL_ATTR_FAMILY_NAME, b"").rstrip(b"\0") == name


def sessions(recs, fam):
    """Netlink port ids of iw-like clients, in order: sockets whose first captured message is a
    GETFAMILY request for nl80211 (long-lived sockets of hostapd/wpa_supplicant never are)."""
    seen, order = set(), []
    for rec in recs:
        if protocol(rec[2]) != NETLINK_GENERIC:
            continue
        for m in rec[3]:
            typ, flags, seq, pid = nlhdr(m)
            if pid == 0 or pid in seen:
                continue
            seen.add(pid)
            if is_getfamily(m):
                order.append(pid)
    return order


def split(results):
    pdir = os.path.join(results, "pcap")
    index_path = os.path.join(results, "dumps", "index.tsv")
    rows = []
    with open(index_path) as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            if line.strip():
                rows.append(dict(zip(head, line.rstrip("\n").split("\t"))))
    rows.sort(key=lambda r: int(r["seq"]))   # listener rows are written when they end
    out_dir = os.path.join(pdir, "split")
    os.makedirs(out_dir, exist_ok=True)
    index, problems, family_ids = [], 0, {}
    for ns in sorted({r["ns"] for r in rows}):
        path = os.path.join(pdir, f"{ns}.pcap")
        if not os.path.exists(path):
            print(f"{ns}: no capture {path}")
            problems += 1
            continue
        header, recs = read_pcap(path)
        fam, fam_rec = learn_family(recs)
        if fam is None:
            print(f"{ns}: nl80211 family id not found in capture")
            problems += 1
            continue
        family_ids[ns] = fam
        if not os.path.exists(os.path.join(out_dir, "nlctrl-nl80211.pcap")):
            write_pcap(os.path.join(out_dir, "nlctrl-nl80211.pcap"), header, [fam_rec])
        cmds = [r for r in rows if r["ns"] == ns]
        pids = sessions(recs, fam)
        if len(pids) != len(cmds):
            print(f"{ns}: {len(cmds)} iw calls in index.tsv but {len(pids)} nl80211 client sockets in the capture; "
                  f"pairing the first {min(len(pids), len(cmds))} in order")
            problems += 1
        os.makedirs(os.path.join(out_dir, ns), exist_ok=True)
        for row, pid in zip(cmds, pids):
            kept, span, seen_mcast = [], [], set()
            # the session's time span: first to last message with this port id
            for sec, usec, head, msgs in recs:
                if any(nlhdr(m)[3] == pid for m in msgs):
                    span.append(sec + usec / 1e6)
            lo, hi = (min(span), max(span)) if span else (0, -1)
            try:   # the call's own start/end (same clock as the capture): events arrive until it ends
                lo, hi = min(lo, int(row["start_ms"]) / 1000), max(hi, int(row["end_ms"]) / 1000)
            except (KeyError, ValueError):
                pass
            frames = 0
            for sec, usec, head, msgs in recs:
                t = sec + usec / 1e6
                if protocol(head) != NETLINK_GENERIC:
                    continue
                keep = []
                for m in msgs:
                    typ, flags, seq, mpid = nlhdr(m)
                    if mpid == pid and (typ == fam or typ in (NLMSG_ERROR, NLMSG_DONE)):
                        keep.append(m)
                    elif mpid == 0 and typ == fam and lo <= t <= hi and m not in seen_mcast:
                        seen_mcast.add(m)
                        if m[16] == NL80211_CMD_FRAME:   # beacons multicast for hostapd: keep a few
                            frames += 1
                            if frames > MAX_FRAME_EVENTS:
                                continue
                        keep.append(m)
                if keep:
                    kept.append((sec, usec, head, keep))
            name = row["name"]
            dest = os.path.join(out_dir, ns, f"{name}.pcap")
            write_pcap(dest, header, kept)
            cmds_seen = []
            for rec in kept:
                for m in rec[3]:
                    typ = nlhdr(m)[0]
                    if typ == fam:
                        cmds_seen.append(NL80211_CMDS.get(m[16], str(m[16])))
                    elif typ == NLMSG_DONE:
                        cmds_seen.append("DONE")
                    elif typ == NLMSG_ERROR:
                        err = struct.unpack_from("<i", m, 16)[0]
                        cmds_seen.append("ACK" if err == 0 else f"ERROR({err})")
            index.append({"ns": ns, "name": name, "command": row["command"], "pcap": f"{ns}/{name}.pcap",
                          "text": f"{ns}/{name}.txt", "nl80211_family_id": fam, "port_id": pid,
                          "records": len(kept), "bytes": os.path.getsize(dest), "messages": summarise_counts(cmds_seen)})
            print(f"{ns}/{name}: {len(kept)} records, {os.path.getsize(dest)} bytes: {summarise_counts(cmds_seen)}")
    with open(os.path.join(out_dir, "index.json"), "w") as f:
        json.dump({"nl80211_family_id": family_ids, "calls": index}, f, indent=1)
    print(f"split {len(index)} iw calls; problems: {problems}")
    return 0 if problems == 0 else 1


def summarise_counts(names):
    out, last, n = [], None, 0
    for x in names + [None]:
        if x == last:
            n += 1
            continue
        if last is not None:
            out.append(f"{last}x{n}" if n > 1 else last)
        last, n = x, 1
    return " ".join(out)


def summary(paths):
    for path in paths:
        header, recs = read_pcap(path)
        fam, _ = learn_family(recs)
        if fam is None:
            fam = guess_family(recs)
        print(f"## {path}: {len(recs)} records, nl80211 family id {fam}")
        for i, (sec, usec, head, msgs) in enumerate(recs, 1):
            for m in msgs:
                typ, flags, seq, pid = nlhdr(m)
                if typ == fam and len(m) >= 20:
                    cmd = m[16]
                    line = f"#{i} nl80211 {NL80211_CMDS.get(cmd, cmd)} flags={flags:#x} seq={seq} pid={pid} len={len(m)}"
                    top = list(attrs(m[20:]))
                    line += " attrs=" + ",".join(NL80211_ATTR.get(t, str(t)) for t, _ in top)
                    for t, v in top:
                        if t == 21:
                            line += " STA_INFO=" + ",".join(STA_INFO.get(k, str(k)) for k, _ in attrs(v))
                    print(line)
                elif typ == GENL_ID_CTRL:
                    print(f"#{i} nlctrl cmd={m[16] if len(m) > 16 else '?'} pid={pid} len={len(m)}")
                elif typ in (NLMSG_ERROR, NLMSG_DONE, NLMSG_NOOP):
                    extra = f" error={struct.unpack_from('<i', m, 16)[0]}" if typ == NLMSG_ERROR else ""
                    print(f"#{i} {['', 'NOOP', 'ERROR', 'DONE'][typ]} seq={seq} pid={pid}{extra}")
                else:
                    print(f"#{i} type={typ} proto={protocol(head)} pid={pid} len={len(m)}")


def guess_family(recs):
    """Without the nlctrl answer (split files): the generic-netlink type that is not nlctrl/control."""
    for rec in recs:
        for m in rec[3]:
            typ = nlhdr(m)[0]
            if typ > GENL_ID_CTRL:
                return typ
    return None


def main(argv):
    if len(argv) >= 3 and argv[1] == "split":
        return split(argv[2])
    if len(argv) >= 3 and argv[1] == "summary":
        summary(argv[2:])
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
