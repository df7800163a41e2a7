#!/usr/bin/env python3
"""Reads the per-boot console logs of scripts/faults/power-cut.sh and the collector's SQLite database.

  power-cut-check.py boot-line CONSOLE                    one line about one boot (spooled seqs, spool opened)
  power-cut-check.py pending --db DB --device D CONSOLE…  "missing=M spooled=S stored=T": spooled seqs not yet stored
  power-cut-check.py verdict --db DB --device D --seed S --boots N --seconds-per-boot X CONSOLE…
                                                          the comparison; exit 1 on any loss or duplicate

Spooled = every `report.seq=N` of a console line containing the spooled marker (default "report spooled";
--marker overrides it, only to exercise the plumbing with an agent that logs something else). Consoles are
given in boot order; the last one is the final (uncut) boot.
"""
import argparse
import os
import re
import sqlite3
import sys

SEQ = re.compile(r"(?<![\w.])report\.seq=(\d+)\b")
WEND = re.compile(r"(?<![\w.])report\.window_end_ms=(-?\d+)\b")
KV = re.compile(r"(?<![\w.])(spool\.[a-z_]+)=(\d+)\b")
RESENT = re.compile(r"(?<![\w.])batch\.duplicates=(\d+)\b")


def read_lines(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace").replace("\r", "").split("\n")


class Boot:
    """What one console says: spooled [(seq, window_end_ms or None, line)], `spool opened` metadata,
    reports sent again after a cut (the collector already had them), reports the agent gave up."""

    def __init__(self, path, marker):
        self.path, self.spooled, self.opened, self.resent, self.dropped = path, [], [], 0, []
        self.journal_replayed, self.fs_errors = False, []
        for line in read_lines(path):
            if marker in line:
                m = SEQ.search(line)
                if m:
                    w = WEND.search(line)
                    self.spooled.append((int(m.group(1)), int(w.group(1)) if w else None, line.strip()))
            if "spool opened" in line:
                self.opened.append({k: int(v) for k, v in KV.findall(line)})
            if "collector already had this report" in line:
                self.resent += 1
            r = RESENT.search(line)
            if r:
                self.resent += int(r.group(1))
            if "dropping it" in line or "collector rejected report" in line:
                self.dropped.append(line.strip())
            if "EXT4-fs (vda): recovery complete" in line:
                self.journal_replayed = True
            if "EXT4-fs error" in line or "EXT4-fs warning" in line:
                self.fs_errors.append(line.strip())

    @property
    def torn(self):
        return sum(o.get("spool.torn_records", 0) for o in self.opened)


def seq_ranges(seqs):
    seqs = sorted(set(seqs))
    out, start = [], None
    for i, s in enumerate(seqs):
        if start is None:
            start = s
        if i + 1 == len(seqs) or seqs[i + 1] != s + 1:
            out.append(str(start) if start == s else f"{start}–{s}")
            start = None
    return ", ".join(out) if out else "none"


def stored_seqs(db, device):
    if not os.path.exists(db):
        return set()
    con = sqlite3.connect(db, timeout=10)
    try:
        return {r[0] for r in con.execute("SELECT seq FROM reports WHERE device_id = ?", (device,))}
    except sqlite3.OperationalError:
        return set()  # collector still creating its schema
    finally:
        con.close()


def window_text(w):
    """(start or None, end, n) -> 'start–end'."""
    return f"{'?' if w[0] is None else w[0]}–{w[1]}"


def cmd_boot_line(a):
    b = Boot(a.console, a.marker)
    seqs = [seq for seq, _, _ in b.spooled]
    parts = [f"{len(seqs)} spooled ({'seq ' + seq_ranges(seqs) if seqs else 'none'})"]
    if b.journal_replayed:
        parts.append("ext4 journal replayed")
    for o in b.opened:
        parts.append("spool opened: torn %s, reports %s, last_seq %s" % (
            o.get("spool.torn_records", "?"), o.get("spool.reports", "?"), o.get("spool.last_seq", "?")))
    if b.resent:
        parts.append(f"{b.resent} re-sent (collector already had them)")
    if b.dropped:
        parts.append(f"{len(b.dropped)} DROPPED by the agent")
    print("; ".join(parts))


def cmd_pending(a):
    spooled = set()
    for c in a.consoles:
        spooled |= {seq for seq, _, _ in Boot(c, a.marker).spooled}
    stored = stored_seqs(a.db, a.device)
    print(f"missing={len(spooled - stored)} spooled={len(spooled)} stored={len(stored)}")


def cmd_verdict(a):
    boots = [Boot(c, a.marker) for c in a.consoles]
    where = {}          # seq -> [(console, window_end_ms or None, line)]
    for b in boots:
        for seq, wend, line in b.spooled:
            where.setdefault(seq, []).append((b.path, wend, line))
    spooled = set(where)
    torn = sum(b.torn for b in boots)
    resent = sum(b.resent for b in boots)

    # Schema 3: `reports` has one row per report (window_end_ms, series_count), `report_data` one row per
    # report and data class with the report's window (start and end), key epoch and its share of the
    # series (series_count; the series themselves are a compressed payload, not decoded here).
    con = sqlite3.connect(a.db, timeout=10)
    con.execute("PRAGMA busy_timeout = 10000")
    rows = con.execute("SELECT seq, window_end_ms, series_count FROM reports WHERE device_id = ?",
                       (a.device,)).fetchall()
    dup_reports = con.execute("""
        SELECT seq, COUNT(*) FROM reports WHERE device_id = ?
        GROUP BY seq HAVING COUNT(*) > 1 ORDER BY seq""", (a.device,)).fetchall()
    data = {seq: rest for seq, *rest in con.execute("""
        SELECT seq, SUM(series_count), MIN(window_start_ms), MAX(window_start_ms),
               MIN(window_end_ms), MAX(window_end_ms), COUNT(DISTINCT key_epoch)
        FROM report_data WHERE device_id = ? GROUP BY seq""", (a.device,)).fetchall()}
    dup_data = con.execute("""
        SELECT seq, data_class, COUNT(*) FROM report_data WHERE device_id = ?
        GROUP BY seq, data_class HAVING COUNT(*) > 1 ORDER BY seq""", (a.device,)).fetchall()
    con.close()
    series_rows = {seq: d[0] for seq, d in data.items()}
    # (window_start_ms from report_data, or None for a report without series; window_end_ms of the report;
    # series_count of the report)
    stored = {seq: (data[seq][1] if seq in data else None, end, n) for seq, end, n in rows}

    def line_of(seq):
        return [f"{c}: {line}" for c, _, line in where.get(seq, [])] or ["(no spooled line)"]

    # Lost: spooled and never stored; a seq spooled for two different windows (a restart reused the
    # number; the collector keeps one); stored with another window than the one spooled; stored with
    # fewer series than the report declared (a torn ingest).
    missing = sorted(spooled - set(stored))

    def reused(entries):
        wends = {w for _, w, _ in entries}
        return len(wends - {None}) > 1 or (None in wends and len(entries) > 1)
    reused_seqs = sorted(seq for seq, e in where.items() if reused(e))
    other_window = sorted(seq for seq, e in where.items() if seq in stored and seq not in reused_seqs
                          and any(w is not None and w != stored[seq][1] for _, w, _ in e))
    incomplete = sorted(seq for seq, (_, _, n) in stored.items() if series_rows.get(seq, 0) < n)
    # The report_data rows of a stored report disagree on the window or the key epoch, or end elsewhere
    # than the report: its series are not stored under the window the report declared.
    window_mismatch = sorted(seq for seq, (_, s0, s1, e0, e1, epochs) in data.items()
                             if seq in stored and (s0 != s1 or e0 != e1 or e0 != stored[seq][1] or epochs != 1))
    lost = sorted(set(missing) | set(reused_seqs) | set(other_window) | set(incomplete) | set(window_mismatch))
    # Duplicated: a seq twice in reports, a data class stored twice for one report, more series in
    # report_data than the report declared, report_data rows without their report, one window stored under
    # two seqs (re-emitted after a restart; a report without series has no start: its end alone counts).
    extra_rows = sorted(seq for seq, (_, _, n) in stored.items() if series_rows.get(seq, 0) > n)
    orphans = sorted(set(series_rows) - set(stored))
    by_window = {}
    for seq, (start, end, _) in stored.items():
        by_window.setdefault((start, end), []).append(seq)
    same_window = sorted(sorted(s) for s in by_window.values() if len(s) > 1)
    duplicated = len({seq for seq, _, _ in dup_data} | {seq for seq, _ in dup_reports} | set(extra_rows)
                     | set(orphans)) + len(same_window)

    failures = []
    for title, seqs in (("LOST: spooled, never stored", missing),
                        ("LOST: seq spooled for two different windows (number reused after a cut; the collector keeps one)", reused_seqs),
                        ("LOST: stored with another window than the one spooled", other_window),
                        ("LOST: fewer series in report_data than series_count (torn ingest)", incomplete),
                        ("LOST: report_data rows disagree on the window or key epoch, or with reports.window_end_ms", window_mismatch),
                        ("DUPLICATED: more series in report_data than series_count", extra_rows),
                        ("DUPLICATED: report_data rows without their report", orphans)):
        if seqs:
            failures.append(f"{title}: {len(seqs)}: seq {seq_ranges(seqs)}")
            for seq in seqs[:20]:
                extra = f" (collector: window {window_text(stored[seq])} ms)" if seq in stored else ""
                if seq in data:
                    n, s0, s1, e0, e1, epochs = data[seq]
                    extra += (f" (report_data: {n} series, start {s0 if s0 == s1 else f'{s0}..{s1}'}, "
                              f"end {e0 if e0 == e1 else f'{e0}..{e1}'}, {epochs} key epoch(s))")
                for l in line_of(seq):
                    failures.append(f"  seq {seq}{extra}: {l}")
    if dup_reports:
        failures.append(f"DUPLICATED: {len(dup_reports)} seq(s) stored more than once in reports")
        for seq, n in dup_reports[:20]:
            failures.append(f"  seq {seq}: {n} rows; " + line_of(seq)[0])
    if dup_data:
        failures.append(f"DUPLICATED: {len(dup_data)} (seq, data_class) stored more than once in report_data")
        for seq, data_class, n in dup_data[:20]:
            failures.append(f"  seq {seq} {data_class}: {n} rows; " + line_of(seq)[0])
    if same_window:
        failures.append(f"DUPLICATED: {len(same_window)} window(s) stored under more than one seq")
        for seqs in same_window[:20]:
            failures.append(f"  seqs {seqs}: window {window_text(stored[seqs[0]])} ms")
            for seq in seqs:
                failures.extend(f"    seq {seq}: {l}" for l in line_of(seq))
    if not spooled:
        failures.append(f"NOTHING SPOOLED: no console line contains '{a.marker}' with report.seq=N; "
                        "the run proves nothing (agent not starting? an agent without the disk spool?)")

    # Reports without series have no report_data row, hence no known start: left out of the overlap check.
    ordered = sorted(((seq, w) for seq, w in stored.items() if w[0] is not None), key=lambda kv: (kv[1][0], kv[0]))
    overlaps = [(p, q) for p, q in zip(ordered, ordered[1:]) if q[1][0] < p[1][1] and q[1][:2] != p[1][:2]]
    not_logged = sorted(set(stored) - spooled)
    print("spooled per boot: " + " ".join(str(len(b.spooled)) for b in boots[:-1]) + f"; final boot {len(boots[-1].spooled)}")
    if not_logged:
        print(f"note: {len(not_logged)} stored report(s) without a spooled line (durable before the cut, log line not yet "
              f"on the console): seq {seq_ranges(not_logged)}")
    if resent:
        print(f"note: {resent} report(s) sent again after a cut; the collector acknowledged them as duplicates (stored once)")
    for b in boots:
        for line in b.dropped:
            print(f"note: the agent gave a report up ({b.path}): {line}")
    for b in boots:
        for line in b.fs_errors[:5]:
            print(f"warning: ext4 on the state disk ({b.path}): {line}")
    if overlaps:
        worst = max(p[1][1] - q[1][0] for p, q in overlaps)
        (s1, w1), (s2, w2) = overlaps[0]
        print(f"warning: {len(overlaps)} pair(s) of consecutive stored windows overlap, by up to {worst} ms "
              f"(not counted as duplicates), e.g. seq {s1} [{w1[0]}, {w1[1]}) and seq {s2} [{w2[0]}, {w2[1]})")

    print(f"power cut: {a.boots} boots (seed {a.seed}): {len(spooled)} windows spooled, {len(stored)} stored, "
          f"{len(lost)} lost, {duplicated} duplicated, {torn} torn records recovered, {a.seconds_per_boot} s per boot")
    if failures:
        print("\n".join(failures))
        sys.exit(1)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--marker", default="report spooled")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("boot-line")
    b.add_argument("console")
    for name in ("pending", "verdict"):
        s = sub.add_parser(name)
        s.add_argument("--db", required=True)
        s.add_argument("--device", required=True)
        s.add_argument("consoles", nargs="+")
        if name == "verdict":
            s.add_argument("--seed", required=True)
            s.add_argument("--boots", required=True, type=int)
            s.add_argument("--seconds-per-boot", required=True)
    a = p.parse_args()
    {"boot-line": cmd_boot_line, "pending": cmd_pending, "verdict": cmd_verdict}[a.cmd](a)


if __name__ == "__main__":
    main()
