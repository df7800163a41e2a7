#!/usr/bin/env python3
"""Why some runs of `analyze` are slow: runs it beside the no-op loop and splits its runs by wall time.

    scripts/bench/split-runs.py N AGENT NOOP FILE

Runs `NOOP FILE` and then `AGENT analyze --timing FILE` once per round, N rounds (fork, exec, wait4;
standard output to /dev/null). For each run of `analyze` it keeps the wall time, what `--timing` prints
(the time inside the process and the CPU time of each thread) and `getrusage` (system CPU, voluntary
switches, page faults). It prints the wall times in round order (no-op / analyze, ms), so that slow
stretches show, then the medians of the fastest quarter, the middle half and the slowest quarter of the
`analyze` runs. docs/benchmarks.md ("One slow vCPU at times") shows what it found. Exits with status 1
when a run exited non-zero.
"""
import os
import statistics
import sys
import time


def run(argv, devnull):
    """One run: wall ms, its rusage, its standard error, its exit status."""
    read_end, write_end = os.pipe()
    start = time.perf_counter_ns()
    pid = os.fork()
    if pid == 0:
        os.dup2(devnull, 1)
        os.dup2(write_end, 2)
        os.execv(argv[0], argv)
    os.close(write_end)
    err = b""
    while chunk := os.read(read_end, 65536):
        err += chunk
    os.close(read_end)
    _, status, usage = os.wait4(pid, 0)
    wall = (time.perf_counter_ns() - start) / 1e6
    return wall, usage, err.decode(errors="replace"), os.waitstatus_to_exitcode(status)


def main():
    if len(sys.argv) != 5 or not sys.argv[1].isdigit():
        sys.exit(__doc__)
    rounds, agent, noop, capture = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    devnull = os.open(os.devnull, os.O_WRONLY)
    series, runs, failures = [], [], 0
    for _ in range(rounds):
        noop_wall, _, _, noop_status = run([noop, capture], devnull)
        wall, usage, err, status = run([agent, "analyze", "--timing", capture], devnull)
        failures += noop_status != 0 or status != 0
        r = {"wall": wall, "system": usage.ru_stime * 1e3, "switches": usage.ru_nvcsw, "faults": usage.ru_minflt}
        for line in err.splitlines():
            words = line.split()
            if words[:1] == ["analysis_ns"]:
                r["inside"] = int(words[1]) / 1e6
            elif words[:1] == ["cpu_ns"]:
                # cpu_ns process N analysing N reader N other N ("n/a" when a clock could not be read)
                for key, value in zip(words[1::2], words[2::2]):
                    if value.isdigit():
                        r[key] = int(value) / 1e6
        series.append(f"{noop_wall:.1f}/{wall:.1f}")
        runs.append(r)
    print("rounds in order, no-op loop / analyze (ms):", " ".join(series))
    runs.sort(key=lambda r: r["wall"])
    quarter = max(1, len(runs) // 4)
    keys = ["wall", "inside", "analysing", "reader", "other", "system", "switches", "faults"]
    print("part             " + " ".join(f"{k:>10}" for k in keys))
    for name, part in (("fastest quarter", runs[:quarter]), ("middle half", runs[quarter:-quarter] or runs),
                       ("slowest quarter", runs[-quarter:])):
        medians = [statistics.median([r[k] for r in part if k in r] or [float("nan")]) for k in keys]
        print(f"{name:16} " + " ".join(f"{m:10.2f}" for m in medians))
    if failures:
        print(f"{failures} round(s) had a run that exited non-zero", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
