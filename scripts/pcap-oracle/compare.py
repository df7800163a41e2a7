#!/usr/bin/env python3
"""Accuracy of `meetpunt-agent analyze FILE --json` against the tshark golden file.

  compare.py GOLDEN_JSON AGENT_OUTPUT_DIR [--only-present] [--verbose] [--max-list N]
  compare.py --self-test            runs on testdata/ (a good sample, then broken copies of it)

GOLDEN_JSON is Tests/MeetpuntTests/Fixtures/pcap-golden/tshark-golden.json (or .json.gz). For every file
F in it the agent's output is AGENT_OUTPUT_DIR/F.json (F relative to the corpus root, e.g.
zeek/http__get.pcap -> DIR/zeek/http__get.pcap.json). Streams are matched by first_frame.

Fails (exit 1) when, on any file that tshark read without error (tshark_status "ok"):
  - the agent output is missing (unless --only-present), or packets or bytes differ;
or, on any compared file:
  - a stream's handshake RTT is off by more than 1 us (a value on one side and null on the other, or a
    tshark stream with an initial RTT that the agent did not report, is "off" too; where the golden
    stream has initial_rtt_hidden_us, null and that value within 1 us are both accepted);
or corpus-wide (all compared files):
  - agent retransmissions vs tshark's tcp.analysis.retransmission flag count, or agent out_of_order vs
    tcp.analysis.out_of_order, differ by more than 1 % (relative to tshark; 0 vs 0 is 0 %).
Exit 2 for unusable input (no golden, no agent output at all).
Everything else (ipv4/ipv6/tcp/udp/icmp/other, stream sets, fast retransmission, zero window, skipped
reasons) is printed for information.
"""
import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
RATIO_LIMIT_PCT = 1.0


def load_json(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)


def pct(agent, tshark):
    if tshark == 0:
        return 0.0 if agent == 0 else float("inf")
    return abs(agent - tshark) * 100.0 / tshark


def fmt_pct(p):
    return "inf" if p == float("inf") else f"{p:.2f} %"


def compare(golden, agent_dir, only_present=False, verbose=False, max_list=20):
    files = golden["files"]
    r = {
        "files_golden": len(files), "compared": 0, "missing": [], "missing_ok": [], "unreadable": [],
        "agent_error": [], "agent_error_tshark_ok": [], "tshark_failed": 0,
        "packets_match": 0, "bytes_match": 0, "captured_match": 0,
        "packets_differ_ok": [], "bytes_differ_ok": [], "counts_differ_failed": [],
        "field_match": {k: 0 for k in ("ipv4", "ipv6", "tcp", "udp", "icmp", "other", "tcp_streams")},
        "streams_golden": 0, "streams_agent": 0, "streams_matched": 0, "streams_missing": 0,
        "streams_extra": 0, "stream_packets_match": 0, "syn_frame_match": 0,
        "rtt_both_none": 0, "rtt_hidden_accepted": 0, "rtt_exact": 0, "rtt_within_1us": 0, "rtt_off": [],
        "totals": {k: [0, 0] for k in ("retransmissions", "fast_retransmissions", "out_of_order", "zero_window")},
        "skipped": {},
    }
    tshark_key = {"retransmissions": "retransmission", "fast_retransmissions": "fast_retransmission",
                  "out_of_order": "out_of_order", "zero_window": "zero_window"}
    for rel in sorted(files):
        g = files[rel]
        tshark_ok = g.get("tshark_status") == "ok"
        path = os.path.join(agent_dir, rel + ".json")
        if not os.path.exists(path):
            (r["missing_ok"] if tshark_ok else r["missing"]).append(rel)
            continue
        try:
            a = load_json(path)
        except (OSError, ValueError) as e:
            r["unreadable"].append(f"{rel}: {e}")
            continue
        r["compared"] += 1
        if not tshark_ok:
            r["tshark_failed"] += 1
        if a.get("error"):
            r["agent_error"].append(rel)
            if tshark_ok:
                msg = a["error"].get("message", "") if isinstance(a["error"], dict) else str(a["error"])
                r["agent_error_tshark_ok"].append(f"{rel}: {msg}")
        for reason, n in (a.get("skipped") or {}).items():
            r["skipped"][reason] = r["skipped"].get(reason, 0) + int(n)
        pk = a.get("packets") == g["packets"]
        by = a.get("bytes") == g["bytes"]
        r["packets_match"] += pk
        r["bytes_match"] += by
        r["captured_match"] += a.get("captured_bytes") == g["captured_bytes"]
        if not pk or not by:
            line = (f"{rel}: packets agent {a.get('packets')} tshark {g['packets']}, "
                    f"bytes agent {a.get('bytes')} tshark {g['bytes']}")
            if tshark_ok:
                (r["packets_differ_ok"] if not pk else r["bytes_differ_ok"]).append(line)
            else:
                r["counts_differ_failed"].append(line + f" ({g['tshark_status']})")
        for k in r["field_match"]:
            r["field_match"][k] += a.get(k) == g.get(k)
        for k, gk in tshark_key.items():
            r["totals"][k][0] += int(a.get(k) or 0)
            r["totals"][k][1] += int(g.get(gk) or 0)
        # streams by first_frame
        astreams = {}
        for s in a.get("streams") or []:
            astreams.setdefault(s.get("first_frame"), s)
        r["streams_golden"] += len(g["streams"])
        r["streams_agent"] += len(astreams)
        seen = set()
        for gs in g["streams"]:
            s = astreams.get(gs["first_frame"])
            grtt = gs.get("initial_rtt_us")
            if s is None:
                r["streams_missing"] += 1
                skipped = a.get("skipped") or {}
                if grtt is not None and skipped.get("unsupported_link_type", 0) == a.get("packets", -1) and a.get("packets"):
                    # The agent does not analyse this link type (ARCnet, IPoIB …): it counted every frame as
                    # skipped, which the issue allows ("skipped link types counted"); listed, not a failure.
                    r.setdefault("rtt_link_skipped", []).append(f"{rel} stream@{gs['first_frame']}: link type {a.get('link_type')} skipped and counted")
                elif grtt is not None:
                    r["rtt_off"].append(f"{rel} stream@{gs['first_frame']}: tshark {grtt} us, agent has no such stream")
                continue
            seen.add(gs["first_frame"])
            r["streams_matched"] += 1
            r["stream_packets_match"] += s.get("packets") == gs["packets"]
            r["syn_frame_match"] += s.get("syn_frame") == gs.get("syn_frame")
            artt = s.get("handshake_rtt_us")
            hidden = gs.get("initial_rtt_hidden_us")
            if grtt is None and hidden is not None and artt is not None and abs(artt - hidden) <= 1:
                # tshark computed this RTT but printed it on no frame (README: "initial RTT"): either is fine
                r["rtt_hidden_accepted"] += 1
            elif grtt is None and artt is None:
                r["rtt_both_none"] += 1
            elif grtt is not None and artt is not None and artt == grtt:
                r["rtt_exact"] += 1
            elif grtt is not None and artt is not None and abs(artt - grtt) <= 1:
                r["rtt_within_1us"] += 1
            else:
                r["rtt_off"].append(f"{rel} stream@{gs['first_frame']}: tshark {grtt} us, agent {artt} us")
        r["streams_extra"] += len(set(astreams) - seen)
    return r


def report(r, only_present, verbose, max_list):
    out = []
    p = out.append

    def lst(title, items):
        if items:
            p(f"  {title}:")
            for it in items[:max_list]:
                p(f"    {it}")
            if len(items) > max_list:
                p(f"    ... {len(items) - max_list} more")

    n = r["compared"]
    p(f"{'files in golden':48} {r['files_golden']}")
    p(f"{'files compared':48} {n}")
    p(f"{'  of which tshark failed or timed out':48} {r['tshark_failed']}")
    p(f"{'agent output missing (tshark ok / failed)':48} {len(r['missing_ok'])} / {len(r['missing'])}")
    if r["unreadable"]:
        p(f"{'agent output unreadable':48} {len(r['unreadable'])}")
        lst("unreadable", r["unreadable"])
    p(f"{'agent error (tshark ok / tshark failed too)':48} {len(r['agent_error_tshark_ok'])} / "
      f"{len(r['agent_error']) - len(r['agent_error_tshark_ok'])}")
    p(f"{'packets exact':48} {r['packets_match']}/{n}")
    p(f"{'bytes exact':48} {r['bytes_match']}/{n}")
    p(f"{'captured bytes exact':48} {r['captured_match']}/{n}")
    for k, v in r["field_match"].items():
        p(f"{('  ' + k + ' exact (info)'):48} {v}/{n}")
    p(f"{'TCP streams (tshark / agent)':48} {r['streams_golden']} / {r['streams_agent']}")
    p(f"{'  matched by first_frame':48} {r['streams_matched']}  (missing in agent {r['streams_missing']}, "
      f"extra in agent {r['streams_extra']})")
    p(f"{'  packets per stream exact':48} {r['stream_packets_match']}/{r['streams_matched']}")
    p(f"{'  syn_frame exact':48} {r['syn_frame_match']}/{r['streams_matched']}")
    with_rtt = r["rtt_exact"] + r["rtt_within_1us"] + len(r["rtt_off"])
    p(f"{'handshake RTT: exact / within 1 us / off':48} {r['rtt_exact']} / {r['rtt_within_1us']} / "
      f"{len(r['rtt_off'])}   (both none: {r['rtt_both_none']}, compared: {with_rtt})")
    if r["rtt_hidden_accepted"]:
        p(f"{'  agent = RTT tshark computed but never printed':48} {r['rtt_hidden_accepted']}")
    p(f"{'corpus totals':48} {'agent':>8} {'tshark':>8}   difference")
    labels = {"retransmissions": "retransmissions (vs tshark's flag)",
              "fast_retransmissions": "fast retransmissions",
              "out_of_order": "out-of-order", "zero_window": "zero window"}
    for k, (av, tv) in r["totals"].items():
        p(f"  {labels[k]:46} {av:>8} {tv:>8}   {fmt_pct(pct(av, tv))}")
    if r["skipped"]:
        p("agent skipped (info): " + ", ".join(f"{k} {v}" for k, v in sorted(r["skipped"].items())))

    failures = []
    if r["missing_ok"] and not only_present:
        failures.append(f"{len(r['missing_ok'])} files that tshark read have no agent output")
    if r["packets_differ_ok"] or r["bytes_differ_ok"]:
        failures.append(f"{len(r['packets_differ_ok']) + len(r['bytes_differ_ok'])} files that tshark read "
                        f"have other packet/byte totals")
    if r["rtt_off"]:
        failures.append(f"{len(r['rtt_off'])} streams with a handshake RTT off by more than 1 us")
    for k in ("retransmissions", "out_of_order"):
        av, tv = r["totals"][k]
        if pct(av, tv) > RATIO_LIMIT_PCT:
            failures.append(f"corpus {k} differ by {fmt_pct(pct(av, tv))} (> {RATIO_LIMIT_PCT:g} %)")
    if r["compared"] == 0:
        failures.append("nothing compared")

    lst("missing agent output, tshark ok", r["missing_ok"] if (verbose or not only_present) else [])
    lst("agent error where tshark read the file", r["agent_error_tshark_ok"])
    lst("packets differ (tshark ok)", r["packets_differ_ok"])
    lst("bytes differ (tshark ok)", r["bytes_differ_ok"])
    lst("RTT off", r["rtt_off"])
    lst("streams in link types the agent skips (counted, not compared)", r.get("rtt_link_skipped", []))
    if verbose:
        lst("counts differ where tshark failed too (info)", r["counts_differ_failed"])
        lst("agent error where tshark failed too (info)",
            [x for x in r["agent_error"] if not any(y.startswith(x + ":") for y in r["agent_error_tshark_ok"])])
    if failures:
        p("FAIL: " + "; ".join(failures))
    else:
        p("OK: agent equals tshark on every criterion")
    return "\n".join(out), (1 if failures else 0)


# ---------------------------------------------------------------------------------------------------
# self-test on testdata/: golden-sample.json + agent-sample/ (hand-made), then broken copies

def self_test():
    td = os.path.join(HERE, "testdata")
    golden = os.path.join(td, "golden-sample.json")
    agent = os.path.join(td, "agent-sample")
    me = os.path.abspath(__file__)

    def run(gpath, adir, *extra):
        p = subprocess.run([sys.executable, me, gpath, adir, *extra], capture_output=True, text=True, timeout=120)
        return p.returncode, p.stdout + p.stderr

    results = []
    rc, out = run(golden, agent)
    results.append(("good sample passes", rc == 0, out))

    tmp = tempfile.mkdtemp(prefix="pcap-oracle-selftest-")
    try:
        def broken(name, mutate, want_rc=1, want_text=""):
            d = os.path.join(tmp, name)
            shutil.copytree(agent, d)
            mutate(d)
            rc, out = run(golden, d)
            results.append((name, rc == want_rc and want_text in out, out))

        def edit(d, rel, fn):
            p = os.path.join(d, rel + ".json")
            with open(p) as f:
                a = json.load(f)
            fn(a)
            with open(p, "w") as f:
                json.dump(a, f)

        g = load_json(golden)
        tcp_file = next(k for k, v in g["files"].items()
                        if v["tshark_status"] == "ok" and any(s["initial_rtt_us"] is not None for s in v["streams"]))
        retx_file = max(g["files"], key=lambda k: g["files"][k]["retransmission"])

        def rtt_plus(n):
            def fn(a):
                s = next(s for s in a["streams"] if s["handshake_rtt_us"] is not None)
                s["handshake_rtt_us"] += n
            return lambda d: edit(d, tcp_file, fn)

        broken("rtt off by 2 us fails", rtt_plus(2), 1, "RTT off")
        broken("rtt off by 1 us passes", rtt_plus(1), 0, "OK")
        broken("bytes differ fails", lambda d: edit(d, tcp_file, lambda a: a.update(bytes=a["bytes"] + 1)), 1,
               "bytes differ")
        broken("missing output fails", lambda d: os.remove(os.path.join(d, tcp_file + ".json")), 1,
               "no agent output")
        broken("retransmissions 1 low fails",
               lambda d: edit(d, retx_file, lambda a: a.update(retransmissions=a["retransmissions"] - 1)), 1,
               "retransmissions differ")
        broken("missing rtt stream fails",
               lambda d: edit(d, tcp_file, lambda a: a.update(streams=[s for s in a["streams"]
                                                                       if s["handshake_rtt_us"] is None])), 1,
               "agent has no such stream")
        rc, out = run(golden, os.path.join(tmp, "does-not-exist"))
        results.append(("no agent dir is unusable input", rc == 2, out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    bad = 0
    for name, ok, out in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
        if not ok:
            bad += 1
            print("    " + out.replace("\n", "\n    "))
    print(f"{len(results) - bad} passed, {bad} failed")
    return 1 if bad else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("golden", nargs="?")
    ap.add_argument("agent_dir", nargs="?")
    ap.add_argument("--only-present", action="store_true",
                    help="compare only files that have an agent output (a missing one is not a failure)")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--max-list", type=int, default=20)
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if not args.golden or not args.agent_dir:
        ap.error("GOLDEN_JSON and AGENT_OUTPUT_DIR are required")
    try:
        golden = load_json(args.golden)
    except (OSError, ValueError) as e:
        print(f"cannot read golden file {args.golden}: {e}", file=sys.stderr)
        return 2
    if not os.path.isdir(args.agent_dir):
        print(f"no agent output directory {args.agent_dir}", file=sys.stderr)
        return 2
    print(f"golden: tshark {golden.get('tshark_version')}, generated {golden.get('generated_at')}")
    r = compare(golden, args.agent_dir, args.only_present, args.verbose, args.max_list)
    text, rc = report(r, args.only_present, args.verbose, args.max_list)
    print(text)
    return rc


if __name__ == "__main__":
    sys.exit(main())
