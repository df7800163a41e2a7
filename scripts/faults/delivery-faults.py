#!/usr/bin/env python3
"""Randomised delivery faults against a real agent and collector: the agent's durable spool must lose
nothing and the collector must store nothing twice.

    delivery-faults.py --mode kill    [--iterations N | --long] [--seed S]
    delivery-faults.py --mode netcut  [--cuts N] [--seed S]

kill:   the agent is started and killed with SIGKILL N times (random lifetimes) against one collector on
        SQLite; about every 10th iteration the collector is killed with SIGKILL as well (restarted at once,
        left down for one or more agent runs, or killed in the middle of an agent run). Then the agent runs
        once more, gracefully, until the collector holds everything, and stops on SIGTERM.
netcut: collector and agent in two network namespaces joined by a veth pair; the collector starts ~10 s
        late so a backlog ships in batches; the link is cut N times (packets dropped, so requests time out
        in flight), each time for 1-6 s. Then the agent stops on SIGTERM and drains.

Both compare every `report spooled` line of the agent's logs (a line is printed only once the record is
durable) with the collector's SQLite file: lost = spooled - stored must be empty; no (device, seq) in
reports and no (device, seq, data_class) in report_data may be stored twice; every stored report must
hold all its series (the series_count of its report_data rows adds up to its own), under one window; a
seq must never be spooled for two different windows. Exit 0 when all holds, 1 when not, 2 on a setup error.

Python 3 standard library only; runs as root (netcut needs network namespaces). Every random choice comes
from random.Random(seed); the seed is printed first. See README.md beside this file.
"""
import argparse
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEVICE = "fault-dev"

NS_COL, NS_AGT = "mpf-col", "mpf-agt"
IF_COL, IF_AGT = "mpfc0", "mpfa0"
IP_COL, IP_AGT = "10.77.0.1", "10.77.0.2"
NFT_TABLE = "mpf_cut"

T0 = time.monotonic()


def say(msg):
    print(f"[{time.monotonic() - T0:7.1f} s] {msg}", flush=True)


class SetupError(Exception):
    """Something around the test failed (not the property under test): exit 2."""


class Failure(Exception):
    """A process under test misbehaved (exited by itself, would not start again): exit 1."""


class Interrupted(Exception):
    pass


def _on_signal(signum, _frame):
    raise Interrupted(f"signal {signum}")


# ---------------------------------------------------------------------------------------------------
# Children: every process this script starts is registered, and killed (by pid) at exit.

CHILDREN = []


def spawn(argv, log_path, netns=None):
    if netns:
        argv = ["ip", "netns", "exec", netns] + argv  # `ip netns exec` execs: the pid is the program's
    log = open(log_path, "ab", buffering=0)
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    finally:
        log.close()
    CHILDREN.append(p)
    return p


def reap(p, timeout):
    """Waits at most timeout s; returns the exit status or None."""
    try:
        return p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def kill9(p, what):
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if reap(p, 10) is None:
        raise SetupError(f"{what} (pid {p.pid}) did not die within 10 s of SIGKILL")


def kill_all_children():
    for p in CHILDREN:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for p in CHILDREN:
        reap(p, 5)


def run_cmd(argv, what, timeout=30, check=True):
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SetupError(f"{what}: timed out after {timeout} s: {' '.join(argv)}")
    if check and r.returncode != 0:
        raise SetupError(f"{what}: exit {r.returncode}: {' '.join(argv)}\n{r.stdout}{r.stderr}")
    return r


def tail(path, n=15):
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join("    " + l for l in lines[-n:])


# ---------------------------------------------------------------------------------------------------
# Collector

class Collector:
    def __init__(self, binary, workdir, host, port, netns=None):
        self.binary, self.workdir, self.host, self.port, self.netns = binary, workdir, host, port, netns
        self.config = workdir / "collector.yaml"
        self.sqlite = workdir / "collector.sqlite"
        self.proc = None
        self.starts = 0
        self.kills = 0
        self.config.write_text(
            f"listen: {{host: {host}, port: {port}}}\n"
            f"storage: {{sqlite_path: {self.sqlite}}}\n"
            f"retention_file: {REPO / 'collector' / 'retention.yaml'}\n"
            f"purge: {{interval_seconds: 86400}}\n")

    def register(self, token_file):
        run_cmd([str(self.binary), "device", "add", DEVICE, "--config", str(self.config), "--token-file", str(token_file)],
                "registering the device")
        if not token_file.exists():
            raise SetupError(f"`device add` wrote no token file {token_file}")

    @property
    def up(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, deadline_s=30):
        """Starts `serve` and waits for `listening on HOST:PORT`; retries while the port is still taken."""
        assert not self.up
        end = time.monotonic() + deadline_s
        while True:
            self.starts += 1
            log = self.workdir / "logs" / f"collector-{self.starts:03d}.log"
            self.proc = spawn([str(self.binary), "serve", "--config", str(self.config)], log, self.netns)
            while time.monotonic() < end:
                text = log.read_text(errors="replace") if log.exists() else ""
                m = re.search(r"listening on (\S+):(\d+)", text)
                if m:
                    if int(m.group(2)) != self.port:
                        raise SetupError(f"collector listens on port {m.group(2)}, expected {self.port}")
                    return
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
            if self.proc.poll() is None:
                kill9(self.proc, "collector")
                raise SetupError(f"collector did not print `listening on` within {deadline_s} s; log {log}:\n{tail(log)}")
            text = log.read_text(errors="replace")
            if "in use" in text.lower() and time.monotonic() < end:
                time.sleep(0.5)  # the fixed port is still held (TIME_WAIT or a dying process): try again
                continue
            raise SetupError(f"collector exited with status {self.proc.returncode} at start; log {log}:\n{tail(log)}")

    def kill9(self):
        if self.up:
            self.kills += 1
        if self.proc is not None:
            kill9(self.proc, "collector")
        self.proc = None

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            if reap(self.proc, 15) is None:
                say("collector did not stop within 15 s of SIGTERM; SIGKILL")
                kill9(self.proc, "collector")
        self.proc = None


# ---------------------------------------------------------------------------------------------------
# Agent

def write_agent_config(workdir, url, request_timeout=3):
    path = workdir / "agent.yaml"
    path.write_text(f"""device_id: {DEVICE}
collector:
  url: "{url}"
  token_file: {workdir / 'agent.token'}
  insecure_demo: true
  request_timeout_seconds: {request_timeout}
state_dir: {workdir / 'agent-state'}
sampling: {{interval_seconds: 1, window_seconds: 1}}
link: {{interfaces: ["*"], include_loopback: true}}
lan_clients: {{enabled: false}}
wifi: {{enabled: false}}
spool: {{max_bytes: 8388608, fsync: always}}
shipping: {{max_reports_per_request: 8, backoff_initial_ms: 200, backoff_max_seconds: 2}}
logging: {{level: info}}
""")
    return path


class Agent:
    def __init__(self, binary, config, workdir, netns=None):
        self.binary, self.config, self.workdir, self.netns = binary, config, workdir, netns
        self.logs = []  # (name, path) in the order they were run

    def start(self, name, duration=None):
        log = self.workdir / "logs" / f"agent-{name}.log"
        argv = [str(self.binary), "run", "--config", str(self.config)]
        if duration is not None:
            argv += ["--duration", str(duration)]
        self.logs.append((name, log))
        return spawn(argv, log, self.netns), log

    def check_config(self):
        r = run_cmd([str(self.binary), "check-config", str(self.config)], "agent check-config", check=False)
        if r.returncode != 0:
            raise SetupError(f"the agent rejects {self.config}:\n{r.stdout}{r.stderr}")


# ---------------------------------------------------------------------------------------------------
# What the agent spooled and what the collector stored

SPOOLED_RE = re.compile(r"report spooled")
SEQ_RE = re.compile(r"(?<![\w.])report\.seq=(\d+)")
WEND_RE = re.compile(r"(?<![\w.])report\.window_end_ms=(-?\d+)")
OPENED_RE = re.compile(r"spool opened")
TORN_RE = re.compile(r"(?<![\w.])spool\.torn_records=(\d+)")
RANGE_RE = re.compile(r"(?<![\w.])report\.first_seq=(\d+).*?(?<![\w.])report\.last_seq=(\d+)")
RETRY_RE = re.compile(r"will retry")
RESENT_RE = re.compile(r"(?<![\w.])batch\.duplicates=(\d+)")
DROPPING_RE = re.compile(r"dropping it")


class Spooled:
    def __init__(self):
        self.seqs = {}          # seq -> {window_end_ms or None: first log path}
        self.torn = 0
        self.opened = 0
        self.retries = 0        # "will retry" lines: a request failed or was not accepted
        self.resent = 0         # reports the collector already had (sent again after a lost answer)
        self.dropping = []      # (log, line) where the agent gave a report up
        self.lines_by_seq = {}  # seq -> [(log, line)] (every line naming the seq, for the failure report)

    @classmethod
    def read(cls, logs):
        s = cls()
        for _name, path in logs:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines():
                m = SEQ_RE.search(line)
                if m:
                    seq = int(m.group(1))
                    s.lines_by_seq.setdefault(seq, []).append((path, line))
                    if SPOOLED_RE.search(line):
                        w = WEND_RE.search(line)
                        s.seqs.setdefault(seq, {}).setdefault(int(w.group(1)) if w else None, path)
                if OPENED_RE.search(line):
                    s.opened += 1
                    t = TORN_RE.search(line)
                    if t:
                        s.torn += int(t.group(1))
                else:
                    r = RANGE_RE.search(line)
                    if r:
                        for seq in range(int(r.group(1)), min(int(r.group(2)), int(r.group(1)) + 100) + 1):
                            s.lines_by_seq.setdefault(seq, []).append((path, line))
                if RETRY_RE.search(line):
                    s.retries += 1
                d = RESENT_RE.search(line)
                if d:
                    s.resent += int(d.group(1))
                if DROPPING_RE.search(line):
                    s.dropping.append((path, line))
        return s

    def first_log(self, seq):
        return next(iter(self.seqs[seq].values()))


def db_connect(path):
    con = sqlite3.connect(str(path), timeout=10)
    con.execute("PRAGMA busy_timeout = 10000")
    return con


def stored_seqs(path):
    """{seq: window_end_ms} of the device's reports (while the collector may be running)."""
    if not Path(path).exists():
        return {}
    con = db_connect(path)
    try:
        return dict(con.execute("SELECT seq, window_end_ms FROM reports WHERE device_id = ?", (DEVICE,)).fetchall())
    except sqlite3.OperationalError:
        return {}  # no schema yet
    finally:
        con.close()


def compare(spooled, sqlite_path):
    """Schema 3: `reports` holds one row per report (window_end_ms, series_count), `report_data` one row per
    report and data class (its window, key epoch and series_count; the series are in a compressed payload,
    counted here by series_count, never decoded)."""
    con = db_connect(sqlite_path)
    try:
        rows = con.execute("SELECT seq, window_end_ms, series_count FROM reports WHERE device_id = ?", (DEVICE,)).fetchall()
        dup_reports = con.execute("""SELECT device_id, seq, COUNT(*) FROM reports
                                     GROUP BY device_id, seq HAVING COUNT(*) > 1""").fetchall()
        dup_data = con.execute("""SELECT device_id, seq, data_class, COUNT(*) FROM report_data
                                  GROUP BY device_id, seq, data_class HAVING COUNT(*) > 1""").fetchall()
        # Per stored seq: the series over every data class, and whether its rows agree on one window and epoch.
        data = {seq: rest for seq, *rest in con.execute(
            """SELECT seq, SUM(series_count), MIN(window_start_ms), MAX(window_start_ms),
                      MIN(window_end_ms), MAX(window_end_ms), COUNT(DISTINCT key_epoch)
               FROM report_data WHERE device_id = ? GROUP BY seq""", (DEVICE,)).fetchall()}
    except sqlite3.OperationalError as e:
        raise SetupError(f"{sqlite_path} is not in the collector's schema 3 (reports + report_data): {e}; "
                         f"a collector older than the v3-compact-report-data migration?")
    finally:
        con.close()
    stored = {seq: wend for seq, wend, _ in rows}
    series_counts = {seq: d[0] for seq, d in data.items()}
    r = {}
    r["stored"] = stored
    r["data"] = data
    r["lost"] = sorted(set(spooled.seqs) - set(stored))
    # A seq spooled for two different windows: the collector can hold only one of them.
    r["reused"] = sorted(seq for seq, w in spooled.seqs.items() if len({x for x in w if x is not None}) > 1)
    # Stored under the seq, but not the window the agent spooled under it.
    r["other_window"] = sorted(seq for seq, w in spooled.seqs.items()
                               if seq in stored and seq not in r["reused"]
                               and any(x is not None and x != stored[seq] for x in w))
    r["dup_reports"] = dup_reports
    r["dup_data"] = dup_data
    # Every stored report holds all its series (a torn ingest would not): the report_data rows of the seq
    # add up to the report's series_count.
    r["incomplete"] = sorted(seq for seq, _, n in rows if series_counts.get(seq, 0) != n)
    # The report_data rows of a stored report disagree on the window (start or end) or the key epoch, or
    # their window_end_ms is not the report's.
    r["window_mismatch"] = sorted(seq for seq, (_, s0, s1, e0, e1, epochs) in data.items()
                                  if seq in stored and (s0 != s1 or e0 != e1 or e0 != stored[seq] or epochs != 1))
    r["orphan_data"] = sorted(set(series_counts) - set(stored))
    r["extra"] = sorted(set(stored) - set(spooled.seqs))
    r["failed"] = bool(r["lost"] or r["reused"] or r["other_window"] or dup_reports or dup_data
                       or r["incomplete"] or r["window_mismatch"] or r["orphan_data"])
    return r


def print_failures(r, spooled):
    def explain(title, seqs):
        if not seqs:
            return
        print(f"  {title}: {len(seqs)}: {compact(seqs)}")
        for seq in seqs[:20]:
            logs = sorted({str(p) for p in spooled.seqs.get(seq, {}).values()})
            print(f"    seq {seq}: spooled in {', '.join(logs) or '(no spool line)'}"
                  + (f"; collector has window_end_ms={r['stored'][seq]}" if seq in r["stored"] else "")
                  + (data_note(r["data"][seq]) if seq in r["data"] else ""))
            lines = spooled.lines_by_seq.get(seq, [])
            direct = [x for x in lines if SEQ_RE.search(x[1])]       # spooled, rejected, ...
            ranged = [x for x in lines if not SEQ_RE.search(x[1])]   # batches that carried it
            for path, line in direct[:4] + ranged[-3:]:
                print(f"      {path.name}: {shorten(line)}")
            if len(ranged) > 3:
                print(f"      ({len(ranged) - 3} earlier lines about batches with it)")
        if len(seqs) > 20:
            print(f"    ... {len(seqs) - 20} more")

    explain("LOST (spooled, never stored)", r["lost"])
    explain("SEQ REUSED (spooled for two different windows)", r["reused"])
    explain("STORED WITH ANOTHER WINDOW than the one spooled", r["other_window"])
    explain("INCOMPLETE (report_data series_count of the report does not add up to reports.series_count)", r["incomplete"])
    explain("WINDOW MISMATCH (report_data rows disagree on window or key epoch, or with reports.window_end_ms)",
            r["window_mismatch"])
    explain("ORPHAN report_data rows (no report)", r["orphan_data"])
    for d, seq, n in r["dup_reports"]:
        print(f"  DUPLICATE report: device {d} seq {seq} stored {n} times")
    for d, seq, data_class, n in r["dup_data"][:50]:
        print(f"  DUPLICATE report data: device {d} seq {seq} class {data_class} stored {n} times"
              + (f" (spooled in {spooled.first_log(seq)})" if seq in spooled.seqs else ""))


def data_note(d):
    n, s0, s1, e0, e1, epochs = d
    start = s0 if s0 == s1 else f"{s0}..{s1}"
    end = e0 if e0 == e1 else f"{e0}..{e1}"
    return (f"; report_data: {n} series, window_start_ms={start}, window_end_ms={end}"
            + (f", {epochs} key epochs" if epochs != 1 else ""))


def shorten(line, n=260):
    line = line.strip()
    return line if len(line) <= n else line[:n // 2] + " ... " + line[-(n // 2):]


def compact(seqs):
    """[1,2,3,7,9,10] -> '1-3, 7, 9-10'."""
    out, i = [], 0
    while i < len(seqs):
        j = i
        while j + 1 < len(seqs) and seqs[j + 1] == seqs[j] + 1:
            j += 1
        out.append(str(seqs[i]) if i == j else f"{seqs[i]}-{seqs[j]}")
        i = j + 1
    return ", ".join(out)


def wait_until_stored(agent_proc, agent, sqlite_path, min_s, max_s):
    """Waits until every seq spooled so far is stored (at least min_s, at most max_s); False on timeout."""
    start = time.monotonic()
    while True:
        elapsed = time.monotonic() - start
        if agent_proc.poll() is not None:
            return False
        if elapsed >= min_s:
            missing = set(Spooled.read(agent.logs).seqs) - set(stored_seqs(sqlite_path))
            if not missing:
                return True
        if elapsed >= max_s:
            return False
        time.sleep(0.5)


def graceful_stop(proc, log, what, timeout=45):
    """SIGTERM and wait (the agent's own graceful limit is 30 s); SetupError-free: returns a problem or None."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    rc = reap(proc, timeout)
    if rc is None:
        kill9(proc, what)
        return f"{what} did not exit within {timeout} s of SIGTERM (killed); log {log}"
    if rc != 0:
        return f"{what} exited with status {rc} after SIGTERM; log {log}:\n{tail(log, 8)}"
    return None


def drain(agent, collector, netns_note="", rounds=3, first_round_max_s=60):
    """Runs the agent gracefully until the collector holds every spooled seq, then SIGTERM. Repeats (a
    fresh agent each time) while something is still missing, at most `rounds` times. Returns problems."""
    problems = []
    for k in range(1, rounds + 1):
        proc, log = agent.start(f"drain-{k}")
        held = wait_until_stored(proc, agent, collector.sqlite, min_s=2, max_s=first_round_max_s if k == 1 else 20)
        if proc.poll() is not None:
            problems.append(f"drain agent exited by itself with status {proc.returncode}; log {log}:\n{tail(log, 8)}")
            break
        p = graceful_stop(proc, log, f"drain agent {k}")
        if p:
            problems.append(p)
        missing = set(Spooled.read(agent.logs).seqs) - set(stored_seqs(collector.sqlite))
        say(f"drain round {k}: collector {'held everything before SIGTERM' if held else 'still missed windows before SIGTERM'}; "
            f"{len(missing)} spooled windows not stored after the agent stopped{netns_note}")
        if not missing:
            break
    return problems


# ---------------------------------------------------------------------------------------------------
# kill mode

def pick_port(rng_unseeded):
    """A free port below the ephemeral range, so no outgoing connection takes it while the collector is down."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = rng_unseeded.randint(20000, max(20001, low - 1))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise SetupError("no free port found")


def mode_kill(args, rng, workdir):
    port = args.port or pick_port(random.Random())  # not the seeded one: a port is no random choice of the test
    collector = Collector(args.collector, workdir, "127.0.0.1", port)
    collector.register(workdir / "agent.token")
    agent = Agent(args.agent, write_agent_config(workdir, f"http://127.0.0.1:{port}"), workdir)
    agent.check_config()
    collector.start()
    say(f"collector on 127.0.0.1:{port} (SQLite {collector.sqlite}); {args.iterations} agent runs killed with SIGKILL")

    down_runs = 0  # agent runs left with the collector down
    events = {"restart": 0, "down": 0, "midrun": 0}
    for i in range(1, args.iterations + 1):
        lifetime = rng.uniform(args.min_life, args.max_life)
        fault = None
        if down_runs == 0 and rng.random() < args.collector_fault_rate:
            fault = rng.choices(["restart", "down", "midrun"], weights=[40, 35, 25])[0]
        midrun_at = rng.uniform(0.0, lifetime) if fault == "midrun" else None
        down_for = rng.randint(1, 3) if fault == "down" else 0

        if fault == "restart":
            collector.kill9()
            collector.start()
        elif fault == "down":
            collector.kill9()
            down_runs = down_for
        if fault:
            events[fault] += 1
            say(f"iteration {i}: collector fault `{fault}`"
                + (f" (down for {down_for} agent run(s))" if fault == "down" else "")
                + (f" (SIGKILL {midrun_at:.2f} s into the agent run)" if fault == "midrun" else ""))

        proc, log = agent.start(f"{i:04d}")
        start = time.monotonic()
        while True:
            now = time.monotonic() - start
            if proc.poll() is not None:
                raise Failure(f"iteration {i}: the agent exited by itself with status {proc.returncode} "
                                 f"(after {now:.2f} s, before its SIGKILL); log {log}:\n{tail(log)}")
            if midrun_at is not None and now >= midrun_at:
                collector.kill9()
                midrun_at = None
            if now >= lifetime:
                break
            time.sleep(min(0.02, lifetime - now))
        kill9(proc, "agent")
        if args.verbose:
            say(f"iteration {i}: agent killed after {lifetime:.2f} s; log {log.name}")

        if fault == "midrun":
            collector.start()
        if down_runs > 0:
            down_runs -= 1
            if down_runs == 0:
                collector.start()
        if not collector.up and down_runs == 0:
            raise Failure(f"iteration {i}: the collector died by itself; log {tail(workdir / 'logs' / f'collector-{collector.starts:03d}.log')}")
        if i % 10 == 0 or i == args.iterations:
            s = Spooled.read(agent.logs)
            say(f"iteration {i}/{args.iterations}: {len(s.seqs)} windows spooled so far, "
                f"{len(stored_seqs(collector.sqlite))} stored, {s.torn} torn records recovered, "
                f"collector killed {collector.kills} times")

    if not collector.up:
        collector.start()
    problems = drain(agent, collector)
    collector.stop()

    spooled = Spooled.read(agent.logs)
    r = compare(spooled, collector.sqlite)
    lost = len(r["lost"]) + len(r["reused"]) + len(r["other_window"]) + len(r["incomplete"]) + len(r["window_mismatch"])
    dups = len(r["dup_reports"]) + len(r["dup_data"]) + len(r["orphan_data"])
    print(f"collector faults: {events['restart']} restarted at once, {events['down']} left down for agent runs, "
          f"{events['midrun']} killed during an agent run; {collector.kills} SIGKILLs in all; "
          f"{spooled.opened} spool openings")
    print(delivery_note(spooled))
    print(f"stored but never logged as spooled (allowed): {len(r['extra'])}"
          + (f" ({compact(r['extra'][:40])}{' ...' if len(r['extra']) > 40 else ''})" if r["extra"] else ""))
    print(f"kill -9: {args.iterations} iterations (seed {args.seed}): {len(spooled.seqs)} windows spooled, "
          f"{len(r['stored'])} stored, {lost} lost, {dups} duplicated, {spooled.torn} torn records recovered")
    return report_outcome(r, spooled, problems, agent)


def delivery_note(spooled):
    return (f"the agent logged {spooled.retries} requests to retry, {spooled.resent} reports the collector already had "
            f"(sent again after a lost answer) and {len(spooled.dropping)} reports given up")


def report_outcome(r, spooled, problems, agent):
    failed = r["failed"]
    if not spooled.seqs:
        print("FAIL: no `report spooled` line in any agent log; is this the agent with the disk spool?")
        print(f"  first agent log {agent.logs[0][1] if agent.logs else '-'}:\n{tail(agent.logs[0][1]) if agent.logs else ''}")
        failed = True
    if r["failed"]:
        print("FAIL:")
        print_failures(r, spooled)
        for path, line in spooled.dropping[:20]:
            print(f"  agent gave up a report: {path.name}: {shorten(line)}")
    for p in problems:
        print(f"problem: {p}")
    return 1 if failed else 0


# ---------------------------------------------------------------------------------------------------
# netcut mode

def ns_cleanup():
    for ns in (NS_COL, NS_AGT):
        subprocess.run(["ip", "netns", "del", ns], stdin=subprocess.DEVNULL, capture_output=True, timeout=30)


def ns_setup():
    ns_cleanup()
    for ns in (NS_COL, NS_AGT):
        run_cmd(["ip", "netns", "add", ns], f"creating namespace {ns}")
        run_cmd(["ip", "-n", ns, "link", "set", "lo", "up"], f"lo up in {ns}")
    run_cmd(["ip", "link", "add", IF_COL, "netns", NS_COL, "type", "veth", "peer", "name", IF_AGT, "netns", NS_AGT],
            "creating the veth pair")
    run_cmd(["ip", "-n", NS_COL, "addr", "add", f"{IP_COL}/24", "dev", IF_COL], "collector address")
    run_cmd(["ip", "-n", NS_AGT, "addr", "add", f"{IP_AGT}/24", "dev", IF_AGT], "agent address")
    run_cmd(["ip", "-n", NS_COL, "link", "set", IF_COL, "up"], "collector link up")
    run_cmd(["ip", "-n", NS_AGT, "link", "set", IF_AGT, "up"], "agent link up")
    for _ in range(50):
        if run_cmd(["ip", "netns", "exec", NS_AGT, "ping", "-c1", "-W1", "-q", IP_COL], "ping", check=False).returncode == 0:
            return
        time.sleep(0.1)
    if shutil.which("ping") is None:
        return  # nothing to check with; the collector start will tell
    raise SetupError(f"{NS_AGT} cannot ping {IP_COL} over the veth pair")


class LinkCutter:
    """Drops every packet between the namespaces (requests then time out in flight) and restores."""

    def __init__(self, method):
        if method == "auto":
            method = "nft" if shutil.which("nft") else "iptables" if shutil.which("iptables") else "link"
        if method != "link" and shutil.which(method) is None:
            raise SetupError(f"--cut-method {method}: `{method}` is not installed")
        self.method = method
        self.cut_now = False

    def describe(self):
        return {"nft": f"nftables in {NS_COL}: drop everything in and out of {IF_COL}",
                "iptables": f"iptables in {NS_COL}: DROP in INPUT and OUTPUT on {IF_COL}",
                "link": f"`ip link set {IF_COL} down` in {NS_COL} (the agent's side keeps its address and "
                        f"route; its packets are dropped by the veth without a carrier)"}[self.method]

    def cut(self):
        if self.method == "nft":
            rules = (f'table inet {NFT_TABLE} {{\n'
                     f'  chain input {{ type filter hook input priority -200; policy accept; iifname "{IF_COL}" drop; }}\n'
                     f'  chain output {{ type filter hook output priority -200; policy accept; oifname "{IF_COL}" drop; }}\n'
                     f'}}\n')
            try:
                r = subprocess.run(["ip", "netns", "exec", NS_COL, "nft", "-f", "-"], input=rules, text=True,
                                   capture_output=True, timeout=10)
            except subprocess.TimeoutExpired:
                raise SetupError("nft timed out")
            if r.returncode != 0:
                raise SetupError(f"nft failed: {r.stderr}")
        elif self.method == "iptables":
            run_cmd(["ip", "netns", "exec", NS_COL, "iptables", "-w", "-I", "INPUT", "1", "-i", IF_COL, "-j", "DROP"], "iptables")
            run_cmd(["ip", "netns", "exec", NS_COL, "iptables", "-w", "-I", "OUTPUT", "1", "-o", IF_COL, "-j", "DROP"], "iptables")
        else:
            run_cmd(["ip", "-n", NS_COL, "link", "set", IF_COL, "down"], "link down")
        self.cut_now = True

    def restore(self):
        if not self.cut_now:
            return
        if self.method == "nft":
            run_cmd(["ip", "netns", "exec", NS_COL, "nft", "delete", "table", "inet", NFT_TABLE], "nft delete")
        elif self.method == "iptables":
            run_cmd(["ip", "netns", "exec", NS_COL, "iptables", "-w", "-D", "INPUT", "-i", IF_COL, "-j", "DROP"], "iptables")
            run_cmd(["ip", "netns", "exec", NS_COL, "iptables", "-w", "-D", "OUTPUT", "-o", IF_COL, "-j", "DROP"], "iptables")
        else:
            run_cmd(["ip", "-n", NS_COL, "link", "set", IF_COL, "up"], "link up")
        self.cut_now = False


def rx_packets(pid):
    """Packets received on the collector's veth, read from /proc/PID/net/dev (that process's namespace)."""
    try:
        for line in Path(f"/proc/{pid}/net/dev").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name.strip() == IF_COL:
                return int(rest.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def mode_netcut(args, rng, workdir):
    if os.geteuid() != 0:
        raise SetupError("netcut needs root (network namespaces)")
    if shutil.which("ip") is None:
        raise SetupError("`ip` (iproute2) is missing")
    cutter = LinkCutter(args.cut_method)
    ns_setup()
    port = args.port or 8080
    collector = Collector(args.collector, workdir, IP_COL, port, netns=NS_COL)
    collector.register(workdir / "agent.token")
    agent = Agent(args.agent, write_agent_config(workdir, f"http://{IP_COL}:{port}"), workdir, netns=NS_AGT)
    agent.check_config()
    say(f"namespaces {NS_COL} ({IP_COL}) and {NS_AGT} ({IP_AGT}) over veth {IF_COL}/{IF_AGT}; cuts by {cutter.describe()}")

    try:
        late = rng.uniform(8.0, 12.0)
        proc, log = agent.start("run")
        say(f"agent running in {NS_AGT} (log {log}); the collector starts {late:.1f} s late")
        deadline = time.monotonic() + late
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SetupError(f"the agent exited by itself with status {proc.returncode}; log {log}:\n{tail(log)}")
            time.sleep(0.1)
        collector.start()
        say(f"collector listening on {IP_COL}:{port} in {NS_COL}; backlog of "
            f"{len(Spooled.read(agent.logs).seqs)} spooled windows")

        on_traffic = 0
        for c in range(1, args.cuts + 1):
            # Most cuts wait for the agent's next request to start arriving (the cut then lands between its
            # first packets and the collector's answer); the rest fall at a random moment.
            trigger = rng.random() < 0.75
            after_packets = rng.randint(1, 6)
            blind_delay = rng.uniform(0.0, 1.0)
            hold = rng.uniform(1.0, 6.0)
            pause = rng.uniform(1.0, 4.0)
            how = "blind"
            if trigger:
                base = rx_packets(collector.proc.pid)
                end = time.monotonic() + 5.0
                while base is not None and time.monotonic() < end:
                    n = rx_packets(collector.proc.pid)
                    if n is not None and n >= base + after_packets:
                        how = f"after {n - base} packet(s) of a request"
                        on_traffic += 1
                        break
                    time.sleep(0.001)
                else:
                    how = "no request within 5 s"
            else:
                time.sleep(blind_delay)
            cutter.cut()
            stored_at_cut = len(stored_seqs(collector.sqlite))
            time.sleep(hold)
            cutter.restore()
            say(f"cut {c}/{args.cuts}: {how}, held {hold:.1f} s, then {pause:.1f} s connected "
                f"({stored_at_cut} windows stored at the cut)")
            if proc.poll() is not None:
                raise Failure(f"the agent exited by itself with status {proc.returncode} during the cuts; log {log}:\n{tail(log)}")
            if not collector.up:
                raise Failure(f"the collector died during the cuts; log {collector.workdir / 'logs' / f'collector-{collector.starts:03d}.log'}")
            time.sleep(pause)

        problems = []
        p = graceful_stop(proc, log, "agent")
        if p:
            problems.append(p)
        missing = set(Spooled.read(agent.logs).seqs) - set(stored_seqs(collector.sqlite))
        say(f"agent stopped on SIGTERM; {len(missing)} spooled windows not stored yet")
        if missing:
            problems += drain(agent, collector, rounds=2, first_round_max_s=20)
    finally:
        cutter.restore()
    collector.stop()

    spooled = Spooled.read(agent.logs)
    r = compare(spooled, collector.sqlite)
    lost = len(r["lost"]) + len(r["reused"]) + len(r["other_window"]) + len(r["incomplete"]) + len(r["window_mismatch"])
    dups = len(r["dup_reports"]) + len(r["dup_data"]) + len(r["orphan_data"])
    print(f"{on_traffic} of {args.cuts} cuts were timed on a request's first packets")
    print(delivery_note(spooled))
    print(f"stored but never logged as spooled (allowed): {len(r['extra'])}")
    print(f"network cut: {args.cuts} cuts (seed {args.seed}): {len(spooled.seqs)} windows spooled, "
          f"{len(r['stored'])} stored, {lost} lost, {dups} duplicated")
    return report_outcome(r, spooled, problems, agent)


# ---------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="See scripts/faults/README.md.")
    ap.add_argument("--mode", choices=["kill", "netcut"], required=True)
    ap.add_argument("--seed", type=int, help="replay a run: every random choice comes from this seed")
    ap.add_argument("--iterations", type=int, default=None, help="kill: agent runs killed with SIGKILL (default 200)")
    ap.add_argument("--long", action="store_true", help="kill: 1000 iterations")
    ap.add_argument("--cuts", type=int, default=10, help="netcut: link cuts (default 10)")
    ap.add_argument("--cut-method", choices=["auto", "nft", "iptables", "link"], default="auto",
                    help="netcut: how packets are dropped (auto: nft, else iptables, else link down)")
    ap.add_argument("--bin-dir", type=Path, default=REPO / ".build" / "debug",
                    help="where meetpunt-agent and meetpunt-collector are (default .build/debug)")
    ap.add_argument("--agent", type=Path, help="meetpunt-agent binary (default BIN_DIR/meetpunt-agent)")
    ap.add_argument("--collector", type=Path, help="meetpunt-collector binary (default BIN_DIR/meetpunt-collector)")
    ap.add_argument("--workdir", type=Path,
                    help="work directory (must be empty or absent; kept). Default: a new temporary directory, "
                         "removed on success and kept on failure")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory on success too")
    ap.add_argument("--port", type=int, default=0, help="collector port (kill: default a free port below the "
                    "ephemeral range; netcut: 8080)")
    ap.add_argument("--min-life", type=float, default=0.2, help="kill: shortest agent lifetime, s (default 0.2)")
    ap.add_argument("--max-life", type=float, default=2.2, help="kill: longest agent lifetime, s (default 2.2)")
    ap.add_argument("--collector-fault-rate", type=float, default=0.1,
                    help="kill: share of iterations with a collector SIGKILL (default 0.1)")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per iteration")
    args = ap.parse_args()

    if args.iterations is None:
        args.iterations = 1000 if args.long else 200
    if args.seed is None:
        args.seed = int.from_bytes(os.urandom(4), "big")
    args.agent = (args.agent or args.bin_dir / "meetpunt-agent").resolve()
    args.collector = (args.collector or args.bin_dir / "meetpunt-collector").resolve()
    rng = random.Random(args.seed)
    print(f"seed {args.seed}; replay with --seed {args.seed}", flush=True)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    own_tmp = args.workdir is None
    if own_tmp:
        workdir = Path(tempfile.mkdtemp(prefix=f"meetpunt-faults-{args.mode}-"))
    else:
        workdir = args.workdir.resolve()
        if workdir.exists() and any(workdir.iterdir()):
            print(f"--workdir {workdir} is not empty", file=sys.stderr)
            return 2
        workdir.mkdir(parents=True, exist_ok=True)
    os.chmod(workdir, 0o700)
    (workdir / "logs").mkdir()
    say(f"work dir {workdir}; agent {args.agent}; collector {args.collector}")

    status = 2
    try:
        for b in (args.agent, args.collector):
            if not os.access(b, os.X_OK):
                raise SetupError(f"{b} is not an executable (build it, or pass --agent/--collector/--bin-dir)")
        status = mode_kill(args, rng, workdir) if args.mode == "kill" else mode_netcut(args, rng, workdir)
    except Failure as e:
        print(f"FAIL: {e}", flush=True)
        status = 1
    except SetupError as e:
        print(f"SETUP ERROR: {e}", flush=True)
        status = 2
    except Interrupted as e:
        print(f"interrupted ({e})", flush=True)
        status = 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # cleanup must not be interrupted half way
        kill_all_children()
        if args.mode == "netcut":
            ns_cleanup()
        say(f"done in {time.monotonic() - T0:.0f} s")
        if status == 0 and own_tmp and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"work dir kept: {workdir} (agent logs in {workdir / 'logs'}, SQLite {workdir / 'collector.sqlite'})",
                  flush=True)
        if status != 0:
            print(f"replay with --seed {args.seed}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
