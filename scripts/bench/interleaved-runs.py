#!/usr/bin/env python3
"""Wall time of short commands, run in turn so that each sees the same state of a shared machine.

    scripts/bench/interleaved-runs.py N NAME=COMMAND [NAME=COMMAND ...]

Runs every COMMAND once per round, N rounds, in the order given (fork, exec, wait; standard output and
standard error to /dev/null), and prints each one's median, quartiles and the first command's median
divided by its own, and its median CPU time (user + system, from wait4). Exits with status 1, after
the figures, when a run of any command exited non-zero (each such command named on standard error). docs/benchmarks.md ("Input B phase by phase") compares builds of `meetpunt-agent
analyze` with it: on this 2-core VM a sub-10 ms process moves by a third between minutes, so only runs
taken in turn compare. The harness's own fork and exec are in every figure alike. COMMAND is split on
spaces; its first word is an absolute path.
"""
import os
import statistics
import sys
import time


def main():
    if len(sys.argv) < 3 or not sys.argv[1].isdigit():
        sys.exit(__doc__)
    rounds = int(sys.argv[1])
    commands = [a.split("=", 1) for a in sys.argv[2:]]
    times = {name: [] for name, _ in commands}
    cpu = {name: [] for name, _ in commands}
    failed = {name: [] for name, _ in commands}
    devnull = os.open(os.devnull, os.O_WRONLY)
    for _ in range(rounds):
        for name, command in commands:
            argv = command.split()
            start = time.perf_counter_ns()
            pid = os.fork()
            if pid == 0:
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
                try:
                    os.execv(argv[0], argv)
                finally:
                    os._exit(127)
            _, status, usage = os.wait4(pid, 0)
            code = os.waitstatus_to_exitcode(status)
            if code == 127:
                sys.exit(f"{name}: cannot run {argv[0]}")
            if code != 0:
                failed[name].append(code)
            times[name].append((time.perf_counter_ns() - start) / 1e6)
            cpu[name].append((usage.ru_utime + usage.ru_stime) * 1e3)
    first = statistics.median(times[commands[0][0]])
    for name, _ in commands:
        t = sorted(times[name])
        m = statistics.median(t)
        print(f"{name:10s} median {m:8.2f} ms  p25 {t[len(t) // 4]:8.2f}  p75 {t[3 * len(t) // 4]:8.2f}  "
              f"first / this {first / m:5.3f}  CPU median {statistics.median(cpu[name]):7.2f} ms")

    bad = {name: codes for name, codes in failed.items() if codes}
    for name, codes in bad.items():
        print(f"{name}: {len(codes)} of {rounds} runs failed (exit status {sorted(set(codes))})", file=sys.stderr)
    if bad:
        sys.exit(1)


if __name__ == "__main__":
    main()
