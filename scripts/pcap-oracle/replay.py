#!/usr/bin/env python3
"""Executable form of README.md's rules: replays Wireshark 4.0's TCP sequence analysis
(epan/dissectors/packet-tcp.c: dissect_tcp + tcp_analyze_sequence_number) on the header fields that
generate.sh cached, and compares every flag, frame by frame, with what tshark printed.

  replay.py [--pcaps DIR] [--cache DIR] [--only SUBSTRING] [--examples N]

Reads only the cache (run generate.sh first). Input per frame, all from tshark's own dissection:
time, tcp.stream, endpoints, raw flags, tcp.len (= the segment length Wireshark computed from the IP
length), raw seq/ack, raw 16-bit window, header length. The stream split (tcp.stream, which already
includes Wireshark's "SYN with a new ISN starts a new conversation" rule) is taken from tshark.
If this script agrees with tshark on the corpus, the README's rules are a complete description of
what the golden file counts (up to the exceptions it prints).
Exit status 0 when every flag agrees, 1 otherwise.
"""
import argparse
import json
import os
import sys
from decimal import Decimal

sys.dont_write_bytecode = True   # no __pycache__ in the repository
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import oracle  # noqa: E402

M32 = 0xFFFFFFFF
M64 = (1 << 64) - 1
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# ta->flags bits (packet-tcp.c, TCP_A_*)
A_RETRANSMISSION = 0x0001
A_LOST_PACKET = 0x0002
A_ACK_LOST_PACKET = 0x0004
A_KEEP_ALIVE = 0x0008
A_DUPLICATE_ACK = 0x0010
A_ZERO_WINDOW = 0x0020
A_ZERO_WINDOW_PROBE = 0x0040
A_ZERO_WINDOW_PROBE_ACK = 0x0080
A_KEEP_ALIVE_ACK = 0x0100
A_WINDOW_UPDATE = 0x0800
A_OUT_OF_ORDER = 0x0200
A_FAST_RETRANSMISSION = 0x0400
A_SPURIOUS_RETRANSMISSION = 0x4000

# printed field -> predicate on ta->flags (tcp_sequence_number_analysis_print_*)
PRINTED = {
    "tcp.analysis.retransmission": lambda f: bool(f & (A_RETRANSMISSION | A_FAST_RETRANSMISSION | A_SPURIOUS_RETRANSMISSION)),
    "tcp.analysis.fast_retransmission": lambda f: bool(f & A_FAST_RETRANSMISSION),
    "tcp.analysis.spurious_retransmission": lambda f: bool(f & A_SPURIOUS_RETRANSMISSION),
    "tcp.analysis.out_of_order": lambda f: bool(f & A_OUT_OF_ORDER),
    "tcp.analysis.zero_window": lambda f: bool(f & A_ZERO_WINDOW),
    "tcp.analysis.lost_segment": lambda f: bool(f & A_LOST_PACKET),
    "tcp.analysis.duplicate_ack": lambda f: bool(f & A_DUPLICATE_ACK),
    "tcp.analysis.keep_alive": lambda f: bool(f & A_KEEP_ALIVE),
    "tcp.analysis.zero_window_probe": lambda f: bool(f & A_ZERO_WINDOW_PROBE),
    "tcp.analysis.ack_lost_segment": lambda f: bool(f & A_ACK_LOST_PACKET),
}


def s32(x):
    x &= M32
    return x - (1 << 32) if x & 0x80000000 else x


def GT_SEQ(x, y):
    return s32(y - x) < 0


def LT_SEQ(x, y):
    return s32(x - y) < 0


def LE_SEQ(x, y):
    return s32(x - y) <= 0


class Flow:
    """tcp_flow_t + tcp_analyze_seq_flow_info_t (the fields the flags depend on)."""

    def __init__(self):
        self.base_seq_set = False
        self.base_seq = 0
        self.window = M32          # G_MAXUINT32 until the first segment of this direction
        self.nextseq = 0           # 0 means "not known yet" (a real nextseq of 0 is treated the same)
        self.nextseqtime = 0
        self.maxseqtobeacked = 0   # same 0 convention
        self.lastack = 0           # same 0 convention in the spurious test
        self.lastacktime = 0
        self.dupacknum = 0         # guint32 in Wireshark (see ACKED LOST PACKET)
        self.lastsegmentflags = 0
        self.segments = []         # unacked segments, newest first: [seq, nextseq]
        self.valid_bif = True      # bytes-in-flight valid (decides whether a data segment gets a record)


class Conv:
    def __init__(self):
        self.flows = {}            # direction key -> Flow
        self.ts_mru_syn = 0        # ns since the epoch; 0 = none (nstime_is_zero)
        self.ts_first_rtt = 0      # ns; 0 = none

    def pair(self, src, dst):
        """(fwd, rev). Any antisymmetric order of the two endpoints works (Wireshark: cmp_address, then ports).
        Ports first here: the addresses are the FIRST IP header's, which for a tunnel (ERSPAN, GRE) are the
        tunnel's and the same in both directions."""
        d = (src[1], src[0]) > (dst[1], dst[0])
        for k in (True, False):
            self.flows.setdefault(k, Flow())
        return self.flows[d], self.flows[not d]


def analyze(c, fwd, rev, seq, ack, seglen, flags, window, now, ta_exists):
    """tcp_analyze_sequence_number() of Wireshark 4.0.17, minus MPTCP and window-full.
    Returns (ta->flags, whether the frame has a tcp_acked record: only such frames print SEQ/ACK analysis
    fields, tcp.analysis.initial_rtt included)."""
    ta = 0
    if flags & ACK:
        rev.valid_bif = True
    zwp = False
    # ZERO WINDOW PROBE
    if seglen == 1 and seq == fwd.nextseq and rev.window == 0:
        ta |= A_ZERO_WINDOW_PROBE
        zwp = True
    if not zwp:
        # ZERO WINDOW
        if window == 0 and not flags & (RST | FIN | SYN):
            ta |= A_ZERO_WINDOW
        # LOST PACKET
        if fwd.nextseq and GT_SEQ(seq, fwd.nextseq) and not flags & RST:
            ta |= A_LOST_PACKET
            fwd.valid_bif = False
        # KEEP ALIVE
        if seglen in (0, 1) and seq == (fwd.nextseq - 1) & M32 and not flags & (SYN | FIN | RST):
            ta |= A_KEEP_ALIVE
        same = (seglen == 0 and seq == fwd.nextseq and ack == fwd.lastack and not flags & (SYN | FIN | RST))
        # WINDOW UPDATE (only matters here because it gives the frame an analysis record)
        if same and window and window != fwd.window:
            ta |= A_WINDOW_UPDATE
        skip_dup = False
        # KEEP ALIVE ACK
        if same and window and window == fwd.window and rev.lastsegmentflags & A_KEEP_ALIVE:
            ta |= A_KEEP_ALIVE_ACK
            skip_dup = True
        # ZERO WINDOW PROBE ACK
        elif same and window == 0 and window == fwd.window and rev.lastsegmentflags & A_ZERO_WINDOW_PROBE:
            ta |= A_ZERO_WINDOW_PROBE_ACK
            skip_dup = True
        # DUPLICATE ACK
        if not skip_dup and same and window and window == fwd.window:
            fwd.dupacknum = 1 if fwd.dupacknum == M32 else (fwd.dupacknum + 1) & M32
            ta |= A_DUPLICATE_ACK
    # finished_fwd:
    if ack != fwd.lastack:
        fwd.dupacknum = 0
    # ACKED LOST PACKET
    if rev.maxseqtobeacked and GT_SEQ(ack, rev.maxseqtobeacked) and flags & ACK:
        ta_exists = True           # the record is created before deciding whether to flag
        if LT_SEQ(rev.maxseqtobeacked, rev.nextseq):
            rev.maxseqtobeacked = rev.nextseq
            ta |= A_ACK_LOST_PACKET
        else:
            if rev.dupacknum == 0:
                ta |= A_ACK_LOST_PACKET
            rev.dupacknum = M32    # "-1" stored in a guint32: counts as >= 2 in the fast-retransmission test
    # RETRANSMISSION / FAST RETRANSMISSION / SPURIOUS / OUT-OF-ORDER
    if seglen > 0 or flags & (SYN | FIN):
        seq_not_advanced = bool(fwd.nextseq) and LT_SEQ(seq, fwd.nextseq)
        if not ta & A_KEEP_ALIVE:
            if seglen > 1 and (fwd.nextseq - 1) & M32 == seq:
                seq_not_advanced = False
            if seglen > 0 and rev.lastack and LE_SEQ((seq + seglen) & M32, rev.lastack):
                ta |= A_SPURIOUS_RETRANSMISSION
            else:
                done = False
                # fast retransmission first (tcp.fastrt_supersedes_ooo TRUE)
                t = (now - rev.lastacktime) & M64
                if seq_not_advanced and rev.dupacknum >= 2 and rev.lastack == seq and t < 20_000_000:
                    ta |= A_FAST_RETRANSMISSION
                    done = True
                if not done:
                    t = (now - fwd.nextseqtime) & M64
                    thres = 3_000_000 if c.ts_first_rtt == 0 else c.ts_first_rtt & M64
                    syn_fin = 1 if flags & (SYN | FIN) else 0
                    if seq_not_advanced and t < thres and fwd.nextseq != (seq + seglen + syn_fin) & M32:
                        ta |= A_OUT_OF_ORDER
                        done = True
                if not done and seq_not_advanced:
                    ta |= A_RETRANSMISSION
    # finished_checking_retransmission_type:
    nextseq = (seq + seglen) & M32
    if (seglen or flags & (SYN | FIN)) and len(fwd.segments) < 10000:   # TCP_MAX_UNACKED_SEGMENTS
        if flags & (SYN | FIN):
            nextseq = (nextseq + 1) & M32
        fwd.segments.insert(0, [seq, nextseq])
    if GT_SEQ(nextseq, fwd.nextseq) or not fwd.nextseq:
        if not ta & A_ZERO_WINDOW_PROBE:
            fwd.nextseq = nextseq
            fwd.nextseqtime = now
    if seq == fwd.maxseqtobeacked or not fwd.maxseqtobeacked:
        if not ta & A_ZERO_WINDOW_PROBE:
            fwd.maxseqtobeacked = fwd.nextseq
    fwd.window = window
    fwd.lastack = ack
    fwd.lastacktime = now
    fwd.lastsegmentflags = ta
    # drop what this ACK covers from the reverse list (the ACK field is used even without the ACK flag)
    keep = []
    for ual in rev.segments:
        if ack == ual[1]:
            ta_exists = True       # tcp_analyze_get_acked_struct(): frame_acked / ack_rtt
            continue
        if GT_SEQ(ack, ual[0]) and LE_SEQ(ack, ual[1]):
            ual[0] = ack
        if GT_SEQ(ual[1], ack):
            keep.append(ual)
    rev.segments = keep
    # bytes in flight (tcp_track_bytes_in_flight TRUE, payload based): any data segment while valid_bif
    if seglen != 0 and fwd.segments and fwd.valid_bif:
        ta_exists = True
    return ta, ta_exists or ta != 0


def replay_file(tsv_path):
    """Yields (frame, printed-fields dict from tshark, replayed ta flags or None, stream, conv) per TCP frame."""
    C = oracle.COL
    convs = {}
    with open(tsv_path, errors="replace") as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) != len(oracle.FIELDS) or not p[0].isdigit():
                continue
            if oracle.first_transport(p[C["frame.protocols"]]) != "tcp" or p[C["tcp.stream"]] == "":
                continue
            stream = int(p[C["tcp.stream"]])
            c = convs.setdefault(stream, Conv())
            src_addr = p[C["ip.src"]] or p[C["ipv6.src"]]
            dst_addr = p[C["ip.dst"]] or p[C["ipv6.dst"]]
            src = (src_addr, int(p[C["tcp.srcport"]] or 0))
            dst = (dst_addr, int(p[C["tcp.dstport"]] or 0))
            fwd, rev = c.pair(src, dst)
            now = int(Decimal(p[C["frame.time_epoch"]]) * 1_000_000_000)
            flags = int(p[C["tcp.flags"]], 16) if p[C["tcp.flags"]] else 0
            seq = int(p[C["tcp.seq_raw"]] or 0)
            ack = int(p[C["tcp.ack_raw"]] or 0)
            window = int(p[C["tcp.window_size_value"]] or 0)
            hlen = int(p[C["tcp.hdr_len"]] or 0)
            printed = {k: bool(p[C[k]]) for k in PRINTED}
            printed_rtt = p[C["tcp.analysis.initial_rtt"]]
            ta = None
            ta_exists = bool(p[C["tcp.analysis.reused_ports"]])   # new conversation for a reused port pair
            # dissect_tcp: a retransmitted SYN (same ISN as the conversation's) restores nextseq
            if flags & (SYN | ACK) == SYN and fwd.base_seq_set and seq == fwd.base_seq:
                fwd.nextseq = fwd.maxseqtobeacked
                ta_exists = True
            # a SYN/ACK with another ISN than the one seen: base_seq follows it (REUSED_PORTS flag)
            if flags & (SYN | ACK) == SYN | ACK and fwd.base_seq_set and seq != fwd.base_seq:
                fwd.base_seq = seq
                ta_exists = True
            if p[C["tcp.len"]] != "":
                seglen = int(p[C["tcp.len"]])
                if not fwd.base_seq_set:
                    fwd.base_seq = seq if flags & SYN else (seq - 1) & M32
                    fwd.base_seq_set = True
                if not rev.base_seq_set and flags & ACK:
                    rev.base_seq = (ack - 1) & M32
                    rev.base_seq_set = True
                ta, ta_exists = analyze(c, fwd, rev, seq, ack, seglen, flags, window, now, ta_exists)
            if hlen >= 20:
                if flags & SYN and not flags & ACK:
                    c.ts_mru_syn = now
                if flags & (SYN | ACK) == ACK and c.ts_mru_syn != 0 and c.ts_first_rtt == 0:
                    c.ts_first_rtt = now - c.ts_mru_syn
            # tcp_print_sequence_number_analysis(): iRTT is printed on frames with a record, once it is set
            expect_rtt = c.ts_first_rtt if (ta_exists and c.ts_first_rtt != 0) else None
            yield int(p[0]), stream, printed, printed_rtt, ta, c, expect_rtt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pcaps", default=oracle.DEFAULT_PCAPS)
    ap.add_argument("--cache", default=oracle.DEFAULT_CACHE)
    ap.add_argument("--only", default="")
    ap.add_argument("--examples", type=int, default=5)
    args = ap.parse_args()
    package = oracle.package_version()
    cache_dir = os.path.join(args.cache, package)
    files, _, _ = oracle.discover(args.pcaps)
    files = [f for f in files if args.only in f]
    key = oracle.command_key(oracle.TSHARK_ARGV)
    stats = {k: {"both": 0, "tshark_only": 0, "replay_only": 0} for k in PRINTED}
    rtt = {"agree": 0, "differ": 0}
    rtt_frames = {"agree": 0, "differ": 0}
    examples = {}
    missing = 0
    for rel in files:
        sha = oracle.sha256_file(os.path.join(args.pcaps, rel))
        tsv = os.path.join(cache_dir, f"{sha}.tshark-{key}.out")
        if not os.path.exists(tsv):
            missing += 1
            continue
        convs = {}
        rtt_printed = {}
        for frame, stream, printed, printed_rtt, ta, c, expect_rtt in replay_file(tsv):
            convs[stream] = c
            got = int(Decimal(printed_rtt) * 1_000_000_000) if printed_rtt else None
            if got == expect_rtt:
                rtt_frames["agree"] += 1
            else:
                rtt_frames["differ"] += 1
                ex = examples.setdefault("initial_rtt per frame", [])
                if len(ex) < args.examples:
                    ex.append(f"{rel} frame {frame}: tshark {got} ns, replay {expect_rtt} ns")
            if printed_rtt and stream not in rtt_printed:
                rtt_printed[stream] = int(Decimal(printed_rtt) * 1_000_000_000)
            for k, pred in PRINTED.items():
                mine = ta is not None and pred(ta)
                if mine and printed[k]:
                    stats[k]["both"] += 1
                elif mine or printed[k]:
                    kind = "replay_only" if mine else "tshark_only"
                    stats[k][kind] += 1
                    ex = examples.setdefault(k, [])
                    if len(ex) < args.examples:
                        ex.append(f"{kind}: {rel} frame {frame}")
        for stream, c in convs.items():
            mine = c.ts_first_rtt or None
            theirs = rtt_printed.get(stream)
            if mine == theirs or theirs is None:   # None: computed but printed on no frame (checked per frame)
                rtt["agree"] += 1
            else:
                rtt["differ"] += 1
                ex = examples.setdefault("initial_rtt", [])
                if len(ex) < args.examples:
                    ex.append(f"{rel} stream {stream}: tshark {theirs} ns, replay {mine} ns")
    ok = rtt_frames["differ"] == 0 and all(v["tshark_only"] == 0 and v["replay_only"] == 0 for v in stats.values())
    print(f"files {len(files)} (not in cache: {missing})")
    print(f"{'field':40} {'agree':>7} {'tshark only':>12} {'replay only':>12}")
    for k, v in stats.items():
        print(f"{k:40} {v['both']:>7} {v['tshark_only']:>12} {v['replay_only']:>12}")
    print(f"{'tcp.analysis.initial_rtt (streams)':40} {rtt['agree']:>7} {rtt['differ']:>12}")
    print(f"{'tcp.analysis.initial_rtt (every frame)':40} {rtt_frames['agree']:>7} {rtt_frames['differ']:>12}")
    for k, ex in examples.items():
        print(f"  {k}:")
        for e in ex:
            print(f"    {e}")
    print("replay agrees with tshark on every flag" if ok else "replay differs from tshark (see above)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
