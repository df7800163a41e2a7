#!/usr/bin/env bash
# Packet-analysis benchmark (issue 13, acceptance item 4). One run:
#   input A  a capture of >= 2 M packets of real namespace traffic (scripts/bench/make-capture.sh, cached)
#   input B  the Ethernet traces of /work/shared/pcaps/zeek joined with `mergecap -a -F pcap`
# For each input, packets per second and peak RSS of: a no-op libpcap loop (C, below), `meetpunt-agent analyze`,
# `tcptrace -n -l -r` and `tshark -q -z conv,tcp`, one run each, sequentially, under `/usr/bin/time -v`.
# Then peak RSS of `meetpunt-agent analyze` over two synthetic SYN floods (10 k and 1 M distinct flows, 2 M
# packets each). Prints the table and rewrites the "Packet analysis" section of docs/benchmarks.md.
#
#   scripts/bench/traffic-analysis.sh
#
# Environment: AGENT (default .build/release/meetpunt-agent; waited for up to 20 min), BENCH_CACHE (default
# /var/cache/meetpunt/bench: captures, merged trace, compiled no-op loop, SYN floods, keyed on their
# generators' hashes), BENCH_STATUS (default /tmp/bench-status.txt), TSHARK_TIMEOUT (default 900 s),
# TOOL_TIMEOUT (default 900 s, every other measured tool), RUNS (default 11: runs of the no-op loop and analyze
# over input A and of tcptrace over both inputs, the median kept; a median of five once gave 0.49x inside the process where the
# same run's 15 rounds without wrappers gave 0.66x), RUNS_B (default 31: rounds of the no-op loop and analyze
# over input B, whose runs last 10-30 ms and move by a third from one to the next), RUNS_BARE_A and
# RUNS_BARE_B (default 31 and 101: rounds over A and over B without the timeout/time wrappers; five over A
# once gave 0.49x where A's other two figures of the same run gave 0.58x), DOCS (default docs/benchmarks.md).
# Needs root (make-capture.sh creates network namespaces); installs missing Debian packages.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
cd "$REPO"
CACHE=${BENCH_CACHE:-/var/cache/meetpunt/bench}
STATUS=${BENCH_STATUS:-/tmp/bench-status.txt}
AGENT=${AGENT:-$REPO/.build/release/meetpunt-agent}
TSHARK_TIMEOUT=${TSHARK_TIMEOUT:-900}
TOOL_TIMEOUT=${TOOL_TIMEOUT:-900}
RUNS=${RUNS:-11}
RUNS_B=${RUNS_B:-31}
RUNS_BARE_A=${RUNS_BARE_A:-31}
RUNS_BARE_B=${RUNS_BARE_B:-101}
DOCS=${DOCS:-$REPO/docs/benchmarks.md}
CORPUS=${CORPUS:-/work/shared/pcaps}
SYN_PACKETS=${SYN_PACKETS:-2000000}
export BENCH_CACHE=$CACHE BENCH_STATUS=$STATUS

note() { echo "$(date -Is) traffic-analysis: $*" | tee -a "$STATUS" >&2; }
script_t0=$(date +%s.%N)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
note "start (load average $LOAD_START)"

# ---------------------------------------------------------------------------------------------- packages
missing=()
for p in tshark wireshark-common tcptrace tcpdump iperf3 iputils-ping iproute2 ethtool libpcap-dev gcc libc6-dev time python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    note "installing ${missing[*]}"
    # wireshark-common's only debconf question (capture for non-superusers) is answered "no" beforehand.
    echo "wireshark-common wireshark-common/install-setuid boolean false" | timeout 60 debconf-set-selections
    timeout 300 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# ---------------------------------------------------------------------------------------------- the agent
for i in $(seq 0 40); do
    [ -x "$AGENT" ] && break
    [ "$i" -eq 40 ] && { note "no agent binary at $AGENT after 20 min"; exit 1; }
    note "waiting for $AGENT (build it with: swift build -c release --static-swift-stdlib --product meetpunt-agent, the form footprint.sh weighs)"
    sleep 30
done
no_streams=()
analyze_help=$(timeout 30 "$AGENT" analyze --help 2>&1 || true)
if grep -q -- "--no-streams" <<<"$analyze_help"; then no_streams=(--no-streams); fi
# The flow table's default bound, as analyze --help states it (explains the SYN-flood figures).
MAX_FLOWS=$(tr -s ' \n' ' ' <<<"$analyze_help" | grep -oP -- '--max-flows <max-flows>(?:(?!--).)*?\(default: \K[0-9]+' | head -1 || true)

mkdir -p "$CACHE"
exec 9>"$CACHE/.traffic-analysis.lock"
timeout 10 flock -n 9 || { echo "another traffic-analysis.sh is running ($CACHE/.traffic-analysis.lock)" >&2; exit 1; }
RUN=$CACHE/last-run
rm -rf "$RUN"; mkdir -p "$RUN"

# ---------------------------------------------------------------------------------------------- inputs
note "input A: make-capture.sh"
INPUT_A=$(timeout 1200 "$HERE/make-capture.sh")

note "input B: merging the Ethernet traces of $CORPUS/zeek"
mapfile -t zeek_files < <(awk -F'\t' 'NR > 1 && $1 == "zeek" && $7 == "ether" { print $2 }' "$CORPUS/MANIFEST.tsv")
[ ${#zeek_files[@]} -gt 0 ] || { note "no Ethernet zeek traces in $CORPUS/MANIFEST.tsv"; exit 1; }
zkey=$( { sha256sum "$HERE/traffic-analysis.sh"; (cd "$CORPUS" && sha256sum "${zeek_files[@]}"); } | sha256sum | cut -c1-16)
INPUT_B=$CACHE/zeek-ether-$zkey.pcap
# pcap, not mergecap's default pcapng: the traces' interfaces have different snapshot lengths and libpcap
# (hence the agent and tcptrace) refuses a pcapng file whose interfaces differ in snapshot length.
if [ ! -s "$INPUT_B" ]; then
    (cd "$CORPUS" && timeout 300 mergecap -a -F pcap -w "$INPUT_B.partial" "${zeek_files[@]}")
    mv "$INPUT_B.partial" "$INPUT_B"
fi
# tcptrace 6.6.7 dies of SIGSEGV on the one truncated 8-byte frame of trunc__trunc-hdr.pcap inside the merged
# file (alone, that file reads as empty). If it crashes on B, it is also timed on B without that file.
TCPTRACE_SKIP=zeek/trunc__trunc-hdr.pcap
INPUT_B_TT=$CACHE/zeek-ether-$zkey-tcptrace.pcap
if [ ! -s "$INPUT_B_TT" ]; then
    mapfile -t tt_files < <(printf '%s\n' "${zeek_files[@]}" | grep -vxF "$TCPTRACE_SKIP")
    (cd "$CORPUS" && timeout 300 mergecap -a -F pcap -w "$INPUT_B_TT.partial" "${tt_files[@]}")
    mv "$INPUT_B_TT.partial" "$INPUT_B_TT"
fi

# ---------------------------------------------------------------------------------------------- no-op loop
NOOP_SRC='#include <pcap/pcap.h>
#include <stdio.h>
#include <time.h>
/* The floor: open offline, pcap_next_ex until the end, count packets and bytes, nothing else. The time
   from open to the end of the loop is printed on stderr (process start-up excluded). */
int main(int argc, char **argv) {
    char err[PCAP_ERRBUF_SIZE];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pcap_t *p = argc > 1 ? pcap_open_offline(argv[1], err) : NULL;
    if (!p) { fprintf(stderr, "noop: %s\n", argc > 1 ? err : "usage: noop FILE"); return 2; }
    struct pcap_pkthdr *h; const u_char *d; unsigned long long n = 0, wire = 0, cap = 0; int rc;
    while ((rc = pcap_next_ex(p, &h, &d)) == 1) { n++; wire += h->len; cap += h->caplen; }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc == PCAP_ERROR) fprintf(stderr, "noop: %s\n", pcap_geterr(p));
    printf("%llu packets %llu wire_bytes %llu captured_bytes\n", n, wire, cap);
    fprintf(stderr, "analysis_ns %lld\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
    pcap_close(p);
    return rc == PCAP_ERROR;
}'
nkey=$(printf '%s' "$NOOP_SRC" | sha256sum | cut -c1-16)
NOOP=$CACHE/noop-$nkey
if [ ! -x "$NOOP" ]; then
    printf '%s\n' "$NOOP_SRC" > "$CACHE/noop-$nkey.c"
    timeout 120 gcc -O2 -o "$NOOP.partial" "$CACHE/noop-$nkey.c" -lpcap
    mv "$NOOP.partial" "$NOOP"
fi

# ---------------------------------------------------------------------------------------------- SYN floods
skey=$(sha256sum "$HERE/benchtraffic.py" | cut -c1-16)
SYN_10K=$CACHE/synflood-10k-$SYN_PACKETS-$skey.pcap
SYN_100K=$CACHE/synflood-100k-$SYN_PACKETS-$skey.pcap
SYN_1M=$CACHE/synflood-1M-$SYN_PACKETS-$skey.pcap
for pair in "10000 $SYN_10K" "100000 $SYN_100K" "1000000 $SYN_1M"; do
    set -- $pair
    if [ ! -s "$2" ]; then
        note "writing SYN flood: $1 flows, $SYN_PACKETS packets"
        timeout 600 python3 "$HERE/benchtraffic.py" synflood "$2.partial" "$1" "$SYN_PACKETS"
        mv "$2.partial" "$2"
    fi
done

# ---------------------------------------------------------------------------------------------- measuring
# measure NAME TIMEOUT CMD...: one run under /usr/bin/time -v and `timeout`; stdout/stderr/time -v in $RUN.
# Sets M_SECONDS (wall, from a nanosecond clock around the run), M_CPU (user+sys), M_RSS_KB, M_RC, M_STATE.
measure() {
    local name=$1 limit=$2; shift 2
    local t0 t1
    note "run $name: $*"
    t0=$(date +%s%N)
    set +e
    /usr/bin/time -v -o "$RUN/$name.time" timeout "$limit" "$@" >"$RUN/$name.out" 2>"$RUN/$name.err"
    M_RC=$?
    set -e
    t1=$(date +%s%N)
    M_SECONDS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) / 1e9 }')
    M_RSS_KB=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$RUN/$name.time")
    M_CPU=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.2f", u + s }' "$RUN/$name.time")
    if [ "$M_RC" -eq 124 ]; then M_STATE="timed out"
    elif grep -q "Command terminated by signal" "$RUN/$name.time"; then
        M_STATE="crashed ($(grep -o 'signal [0-9]*' "$RUN/$name.time"))"
    elif [ "$M_RC" -ne 0 ]; then M_STATE="exit $M_RC"
    else M_STATE="ok"; fi
    # Microseconds: input B's runs last a few milliseconds, where rounding to the millisecond moved its
    # ratio by a tenth.
    M_INNER=$(awk '/^analysis_ns / { printf "%.6f", $2 / 1e9 }' "$RUN/$name.err")
    echo "WALL $M_SECONDS" > "$RUN/$name.wall"
    echo "$M_STATE" > "$RUN/$name.state"
    note "  $name: $M_STATE, ${M_SECONDS} s wall${M_INNER:+ (${M_INNER} s inside the process)}, ${M_CPU} s CPU, ${M_RSS_KB} kB max RSS"
}

# measure_median NAME TIMEOUT CMD...: RUNS runs, the one with the median wall time kept as NAME (the
# machine's two cores are shared; a single run of a sub-second tool moves by ±30 %).
measure_median() {
    local name=$1 limit=$2; shift 2
    local i walls=()
    for i in $(seq "$RUNS"); do
        measure "$name-run$i" "$limit" "$@"
        walls+=("$M_SECONDS $i")
    done
    keep_median "$name" "${walls[@]}"
}

# keep_median NAME "WALL I"...: keeps run I with the median wall time as NAME and loads its figures.
keep_median() {
    local name=$1 i; shift
    i=$(printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p" | cut -d' ' -f2)
    for ext in out err time wall state; do cp "$RUN/$name-run$i.$ext" "$RUN/$name.$ext"; done
    measure_load "$name" "$RUN/$name"
}

# measure_against_noop INPUT FILE: RUNS rounds (RUNS_B over input B) of (no-op loop, analyze) in turn, so that both see the same
# state of this shared machine (the no-op loop's own median moved from 0.11 to 0.21 s between two runs of
# the script); the run with the median wall time of each is kept, and beside it the median of the time
# inside the process over the rounds that ended ok (until 2026-12-04 the kept run's own, one sample: B's
# moved from 0.50x to 0.73x between runs of the script). Leaves the analyze run's figures in M_*, that
# median included.
measure_against_noop() {
    local input=$1 f=$2 i noop=() analyze=() noop_inner=() analyze_inner=() rounds=$RUNS
    [ "$input" = B ] && rounds=$RUNS_B
    for i in $(seq "$rounds"); do
        measure "$input-noop-run$i" "$TOOL_TIMEOUT" "$NOOP" "$f"
        noop+=("$M_SECONDS $i")
        [ "$M_STATE" = ok ] && noop_inner+=("$M_INNER")
        measure "$input-analyze-run$i" "$TOOL_TIMEOUT" "$AGENT" analyze --timing "$f"
        analyze+=("$M_SECONDS $i")
        [ "$M_STATE" = ok ] && analyze_inner+=("$M_INNER")
    done
    # Written before keep_median, whose measure_load reads them.
    median_of "${noop_inner[@]}" > "$RUN/$input-noop.inner"
    median_of "${analyze_inner[@]}" > "$RUN/$input-analyze.inner"
    keep_median "$input-noop" "${noop[@]}"
    keep_median "$input-analyze" "${analyze[@]}"
}

# median_of X...: the median of the non-empty values (the middle one; the lower of the two middle ones for
# an even count), nothing when there are none.
median_of() {
    printf '%s\n' "$@" | awk 'NF' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

# Re-reads a kept run's figures into M_* (as `measure` set them).
measure_load() {
    local name=$1 base=$2
    M_RSS_KB=$(awk -F': ' '/Maximum resident set size/ { print $2 }' "$base.time")
    M_CPU=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { printf "%.2f", u + s }' "$base.time")
    M_SECONDS=$(cut -d' ' -f2 "$base.wall")
    M_INNER=$(awk '/^analysis_ns / { printf "%.6f", $2 / 1e9 }' "$base.err")
    # The median over the rounds, where `measure_against_noop` kept one.
    if [ -s "$base.inner" ]; then M_INNER=$(cat "$base.inner"); fi
    M_STATE=$(cat "$base.state")
}

ROWS=$RUN/rows.tsv   # input, tool, state, seconds, cpu, packets, rss_kb, seconds inside the process
: > "$ROWS"
declare -A PACKETS WIRE CAPTURED FILEBYTES
for input in A B; do
    if [ $input = A ]; then f=$INPUT_A; else f=$INPUT_B; fi
    FILEBYTES[$input]=$(stat -c %s "$f")
    measure_against_noop "$input" "$f"
    measure_load "$input-noop" "$RUN/$input-noop"
    read -r n _ w _ c _ < "$RUN/$input-noop.out"
    PACKETS[$input]=$n; WIRE[$input]=$w; CAPTURED[$input]=$c
    printf '%s\tno-op libpcap loop\t%s\t%s\t%s\t%s\t%s\t%s\n' $input "$M_STATE" "$M_SECONDS" "$M_CPU" "$n" "$M_RSS_KB" "$M_INNER" >> "$ROWS"

    measure_load "$input-analyze" "$RUN/$input-analyze"
    printf '%s\tmeetpunt-agent analyze\t%s\t%s\t%s\t%s\t%s\t%s\n' $input "$M_STATE" "$M_SECONDS" "$M_CPU" "$n" "$M_RSS_KB" "$M_INNER" >> "$ROWS"
    if [ ${#no_streams[@]} -gt 0 ]; then   # the on-router shape: no per-stream list (not used in the ratios)
        measure "$input-analyze-no-streams" "$TOOL_TIMEOUT" "$AGENT" analyze --no-streams "$f"
        printf '%s\tmeetpunt-agent analyze --no-streams\t%s\t%s\t%s\t%s\t%s\n' $input "$M_STATE" "$M_SECONDS" "$M_CPU" "$n" "$M_RSS_KB" >> "$ROWS"
    fi

    measure_median "$input-tcptrace" "$TOOL_TIMEOUT" tcptrace -n -l -r "$f"
    printf '%s\ttcptrace -n -l -r\t%s\t%s\t%s\t%s\t%s\n' $input "$M_STATE" "$M_SECONDS" "$M_CPU" "$n" "$M_RSS_KB" >> "$ROWS"
    if [ $input = B ] && [ "$M_STATE" != ok ]; then
        tt_n=$(timeout "$TOOL_TIMEOUT" "$NOOP" "$INPUT_B_TT" | awk '{ print $1 }')
        measure "B-tcptrace-without-crasher" "$TOOL_TIMEOUT" tcptrace -n -l -r "$INPUT_B_TT"
        printf '%s\ttcptrace -n -l -r (B without %s)\t%s\t%s\t%s\t%s\t%s\n' $input "${TCPTRACE_SKIP#zeek/}" "$M_STATE" "$M_SECONDS" "$M_CPU" "$tt_n" "$M_RSS_KB" >> "$ROWS"
    fi

    measure "$input-tshark" "$TSHARK_TIMEOUT" tshark -q -z conv,tcp -r "$f"
    printf '%s\ttshark -q -z conv,tcp\t%s\t%s\t%s\t%s\t%s\n' $input "$M_STATE" "$M_SECONDS" "$M_CPU" "$n" "$M_RSS_KB" >> "$ROWS"
done

# The no-op loop and analyze again without the `timeout` and `time -v` wrappers, whose start-up (about
# 3 ms a run here) is inside the wall figures above on both sides, a fifth of input B's: fork and exec
# only (interleaved-runs.py), in turn, medians. RUNS_BARE_A rounds over A, RUNS_BARE_B over B.
declare -A BARE
for input in A B; do
    if [ $input = A ]; then f=$INPUT_A; rounds=$RUNS_BARE_A; else f=$INPUT_B; rounds=$RUNS_BARE_B; fi
    if bare=$(timeout "$TOOL_TIMEOUT" python3 "$HERE/interleaved-runs.py" "$rounds" noop="$NOOP $f" analyze="$AGENT analyze $f" 2>"$RUN/$input-bare.err"); then
        BARE[$input]="$rounds $(awk '$1 == "noop" { print $3 }' <<<"$bare") $(awk '$1 == "analyze" { print $3 }' <<<"$bare")"
        note "  $input without wrappers ($rounds rounds): ${BARE[$input]#* } ms (no-op loop, analyze; medians)"
    else
        BARE[$input]="$rounds - -"   # a run failed or timed out: no ratio (the reason is in the .err file)
        note "  $input without wrappers: failed or timed out ($(tr '\n' ' ' < "$RUN/$input-bare.err"))"
    fi
    printf '%s\n' "$bare" > "$RUN/$input-bare.txt"
done

SYN=$RUN/syn.tsv   # flows, state, seconds, rss_kb, tcp streams
: > "$SYN"
for pair in "10000 $SYN_10K" "100000 $SYN_100K" "1000000 $SYN_1M"; do
    set -- $pair
    measure "syn-$1" "$TOOL_TIMEOUT" "$AGENT" analyze "${no_streams[@]}" "$2"
    streams=$(grep -o 'TCP: [0-9]* streams' "$RUN/syn-$1.out" | awk '{ print $2 }' || true)
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$M_STATE" "$M_SECONDS" "$M_RSS_KB" "${streams:-?}" >> "$SYN"
done

# ---------------------------------------------------------------------------------------------- report
script_t1=$(date +%s.%N)
export BARE_A="${BARE[A]}" BARE_B="${BARE[B]}"
export TSHARK_TIMEOUT RUNS RUNS_B RUNS_BARE_A RUNS_BARE_B RUN ROWS SYN DOCS INPUT_A INPUT_B AGENT REPO CORPUS SYN_PACKETS TCPTRACE_SKIP
export A_PACKETS=${PACKETS[A]} A_WIRE=${WIRE[A]} A_CAPTURED=${CAPTURED[A]} A_FILE=${FILEBYTES[A]}
export B_PACKETS=${PACKETS[B]} B_WIRE=${WIRE[B]} B_CAPTURED=${CAPTURED[B]} B_FILE=${FILEBYTES[B]}
export B_FILES=${#zeek_files[@]} NO_STREAMS="${no_streams[*]}" MAX_FLOWS="${MAX_FLOWS:-}"
export SCRIPT_SECONDS=$(awk -v a="$script_t0" -v b="$script_t1" 'BEGIN { printf "%.0f", b - a }')
export CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
export NPROC=$(nproc) KERNEL=$(uname -r) MEM_TOTAL=$(awk '/MemTotal/ { printf "%.1f GB", $2 / 1e6 }' /proc/meminfo)
export LOAD_START
export LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
export V_AGENT=$(timeout 30 "$AGENT" --version 2>&1 | head -1)
export V_TSHARK=$(timeout 30 tshark --version 2>/dev/null | head -1)
export V_TCPTRACE=$(timeout 30 tcptrace -v 2>&1 | grep -o 'version [0-9.]*' | head -1)
export V_LIBPCAP=$(dpkg-query -W -f='${Version}' libpcap0.8 2>/dev/null || echo '?')
export V_GCC=$(timeout 30 gcc --version | head -1)
export V_TCPDUMP=$(timeout 30 tcpdump --version 2>&1 | head -1)
export V_MERGECAP=$(timeout 30 mergecap --version 2>/dev/null | head -1)
export AGENT_SIZE=$(stat -c %s "$AGENT") AGENT_MTIME=$(date -u -r "$AGENT" +%Y-%m-%dT%H:%MZ)
export COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')
export DIRTY=$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null | grep -qv ' docs/benchmarks.md$' && echo ", with uncommitted changes" || true)
export A_META=$(cat "$INPUT_A.meta" 2>/dev/null | tr '\n' ' ')
export A_SUMMARY=$(head -5 "$RUN/A-analyze.out" | sed "s|$CACHE/||") B_SUMMARY=$(head -5 "$RUN/B-analyze.out" | sed "s|$CACHE/||")
export B_ANALYZE_ERR=$(grep -h "meetpunt-agent analyze" "$RUN/B-analyze.err" 2>/dev/null | head -3 || true)
export A_ANALYZE_ERR=$(grep -h "meetpunt-agent analyze" "$RUN/A-analyze.err" 2>/dev/null | head -3 || true)

timeout 120 python3 - <<'PY'
import os, re

E = os.environ
rows = [(l.rstrip("\n").split("\t") + [""])[:8] for l in open(E["ROWS"]) if l.strip()]
syn = [l.rstrip("\n").split("\t") for l in open(E["SYN"]) if l.strip()]
CPU_MIN = 0.05  # /usr/bin/time reports CPU time in 10 ms steps: below this a per-CPU-second rate means little

def sp(x, d=0):
    return f"{x:,.{d}f}".replace(",", " ")

def mb(kb):
    return f"{int(kb) / 1000:.1f} MB" if kb and kb.isdigit() else "?"

def pps(row):
    _, _, state, sec, _, n, _, _ = row
    return int(n) / float(sec) if state == "ok" and float(sec) > 0 else None

def cpps(row):
    _, _, state, _, cpu, n, _, _ = row
    return int(n) / float(cpu) if state == "ok" and float(cpu) >= CPU_MIN else None

def ipps(row):
    """Packets per second timed inside the process (open to end of analysis: start-up excluded)."""
    _, _, state, _, _, n, _, inner = row
    return int(n) / float(inner) if state == "ok" and inner and float(inner) > 0 else None

def find(inp, tool):
    return next((r for r in rows if r[0] == inp and r[1] == tool), None)

md, txt = [], []
for inp, title in (("A", "Input A: namespace traffic"), ("B", "Input B: zeek Ethernet traces, merged")):
    md += [f"\n#### {title}\n",
           "| tool | result | wall s | packets/s (wall) | s inside the process | packets/s (inside) | CPU s (user+sys) | packets per CPU-second | max RSS |",
           "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    txt += [title, f"  {'tool':<54} {'result':<19} {'wall s':>8} {'packets/s':>11} {'CPU s':>7} {'pkts/CPU-s':>11} {'max RSS':>10}"]
    for r in rows:
        if r[0] != inp:
            continue
        p, c, i = pps(r), cpps(r), ipps(r)
        ps, cs, is_ = (sp(p) if p else "–"), (sp(c) if c else "–"), (sp(i) if i else "–")
        md.append(f"| `{r[1]}` | {r[2]} | {r[3]} | {ps} | {r[7] or '–'} | {is_} | {r[4]} | {cs} | {mb(r[6])} |")
        txt.append(f"  {r[1]:<54} {r[2]:<19} {r[3]:>8} {ps:>11} {r[4]:>7} {cs:>11} {mb(r[6]):>10}")

ratio_md, ratio_txt = [], []
def ratio(inp, label, an, other, goal, ok, wall=pps):
    def one(f):
        a, o = f(an), (f(other) if other else None)
        if a is None or o is None:
            bad = other if other and other[2] != "ok" else an
            return (f"n/a ({bad[1].split()[0]} {bad[2]})" if bad[2] != "ok" else "n/a (too short)"), "–"
        return f"{a / o:.2f}×", ("met" if ok(a / o) else "missed")
    w, wm = one(wall)
    c, cm = one(cpps) if wall is pps else ("(as above)", "–")
    ratio_md.append(f"| {inp} | {label} | {w} | {wm} | {c} | {cm} | {goal} |")
    ratio_txt.append(f"  {inp}: {label:<56} {goal:<14} wall {w:>7} {wm:<7} CPU {c:>7} {cm}")

for inp in ("A", "B"):
    an = find(inp, "meetpunt-agent analyze")
    ratio(inp, "analyze / no-op loop", an, find(inp, "no-op libpcap loop"), "≥ 0.5×", lambda x: x >= 0.5)
    ratio(inp, "analyze / no-op loop, timed inside each process", an, find(inp, "no-op libpcap loop"), "≥ 0.5×",
          lambda x: x >= 0.5, wall=ipps)
    rounds, bare_noop, bare_an = E[f"BARE_{inp}"].split()
    label = f"analyze / no-op loop, without wrappers ({rounds} rounds)"
    if "-" in (bare_noop, bare_an):
        bw, bm = "n/a (a run failed or timed out)", "–"
    else:
        b = float(bare_noop) / float(bare_an)
        bw, bm = f"{b:.2f}×", ("met" if b >= 0.5 else "missed")
    ratio_md.append(f"| {inp} | {label} | {bw} | {bm} | (as above) | – | ≥ 0.5× |")
    ratio_txt.append(f"  {inp}: {label:<56} {'≥ 0.5×':<14} wall {bw:>7} {bm:<7} CPU (as above) –")
    ratio(inp, "analyze / tshark", an, find(inp, "tshark -q -z conv,tcp"), "≥ 10×", lambda x: x >= 10)
    tt = find(inp, "tcptrace -n -l -r")
    ratio(inp, "analyze / tcptrace", an, tt, "> 1× (faster)", lambda x: x > 1)
    alt = next((r for r in rows if r[0] == inp and r[1].startswith("tcptrace -n -l -r (B without")), None)
    if alt:
        ratio(inp, f"analyze / tcptrace on B without {E['TCPTRACE_SKIP'].split('/')[-1]}", an, alt, "> 1× (faster)", lambda x: x > 1)

syn_md, syn_txt, rss = [], [], {}
for flows, state, sec, kb, streams in syn:
    rss[flows] = int(kb) if kb.isdigit() else None
    p = int(E["SYN_PACKETS"]) / float(sec) if state == "ok" and float(sec) > 0 else None
    syn_md.append(f"| {sp(int(flows))} | {state} | {sec} | {sp(p) if p else '–'} | {sp(int(streams)) if streams.isdigit() else streams} | {mb(kb)} |")
    syn_txt.append(f"  {sp(int(flows)):>9} flows: {state:<8} {sec:>7} s  {mb(kb):>9} max RSS  ({streams} TCP streams reported)")
r10k, r1m = rss.get("10000"), rss.get("1000000")
flat = bool(r10k and r1m and abs(r1m / r10k - 1) <= 0.10)
syn_ratio = (f"{r1m / r10k:.2f}× (1 M flows / 10 k flows); goal flat within ±10 %: {'met' if flat else 'missed'}"
             if r10k and r1m else "n/a")

print("\nPacket analysis benchmark (one run of each tool; wall clock and CPU time; the cores are shared)")
print("\n".join(txt))
print("\nRatios (packets per second of analyze / of the other tool; by wall clock and by CPU time)")
print("\n".join(ratio_txt))
print(f"\nSYN flood ({sp(int(E['SYN_PACKETS']))} packets each): meetpunt-agent analyze {E['NO_STREAMS']}".rstrip())
print("\n".join(syn_txt))
print(f"  peak RSS: {syn_ratio}")
print(f"\nscript wall time {E['SCRIPT_SECONDS']} s; outputs in {E['RUN']}; figures written to {E['DOCS']}")

if E["NO_STREAMS"]:
    streams_note = (f"`analyze` ran with `--no-streams` (no per-TCP-stream list) and its default `--max-flows` "
                    f"({E['MAX_FLOWS'] or '?'}; the live agent's `capture.max_flows`, 4096 by default, sets the same limit): "
                    "past that many flows the least recently seen is evicted, so a flow's second SYN may start a "
                    "new stream, hence more streams than flows. The flow table is mapped whole at start, in "
                    "transparent huge pages where the kernel gives them; `analyze` makes the slots of its first "
                    "2 MiB page resident on a second thread while the first packets are read, and the rest on that "
                    "thread once those are all in use, so 10 k flows cost what a million do (the live agent makes "
                    "its whole table resident before it captures).")
    if not flat and E["MAX_FLOWS"].isdigit() and int(E["MAX_FLOWS"]) > 10000:
        streams_note += (f" 10 k flows do not fill a table of {E['MAX_FLOWS']}, 100 k and 1 M do: the growth "
                         "from 10 k to 100 k is the table filling up to its bound, and from 100 k to 1 M the "
                         "figure is flat.")
else:
    streams_note = ("`analyze` ran without a flag to drop its per-TCP-stream record list: it keeps one record "
                    "per TCP stream (up to 2 M, for the tshark comparison of `--json`), so its peak RSS grows "
                    "with the number of flows. **The ±10 % goal is missed for that reason.**")

def sz(n):
    return f"{int(n):,}".replace(",", " ") if str(n).isdigit() else str(n)

section = f"""## Packet analysis

Issue 13, acceptance item 4. Reproduce with:

```sh
scripts/bench/traffic-analysis.sh
```

(as root on Debian 12; it installs tshark, tcptrace, tcpdump, iperf3, libpcap-dev and gcc when missing, waits
for `.build/release/meetpunt-agent` built as `footprint.sh` weighs it, `swift build -c release --static-swift-stdlib
--product meetpunt-agent`, prints the tables and rewrites this section. Inputs and the compiled no-op
loop are cached in `/var/cache/meetpunt/bench/`, keyed on the hashes of their generators.) Tools run
sequentially under `/usr/bin/time -v` and `timeout` (tshark {E['TSHARK_TIMEOUT']} s); the no-op loop and `analyze`
run {E['RUNS']} times each over input A and {E['RUNS_B']} times each over input B (its runs last milliseconds), in turn (no-op, analyze, no-op, …, so that both see the same state of this shared 2-core
machine, where a sub-second run moves by ±30 % and the no-op loop's median on input A has been anywhere from 0.11
to 0.21 s), tcptrace {E['RUNS']} times, and the run with the median wall time is kept; tshark runs once. Wall seconds come from a nanosecond clock around the run, so process
start-up is included: on input B, which is small, it is most of the figure. That clock also holds the start-up of
the `timeout` and `time -v` wrappers, about 3 ms a run here on both sides, which flatters input B's ratio; the
rows "without wrappers" run the no-op loop and `analyze` again by fork and exec alone (`scripts/bench/interleaved-runs.py`,
{E['RUNS_BARE_A']} rounds over A and {E['RUNS_BARE_B']} over B, in turn, medians), and they are the figures to read the goal on. "Inside the process" is the time
from opening the file to the end of the analysis as the process itself measures it (`analyze --timing`; the
no-op loop times its own open-and-read loop), to the microsecond, the median over the rounds that ended ok: it leaves out start-up and printing. Packets per CPU-second (user
+ system time from `time -v`, 10 ms steps, left out under 50 ms) are given beside packets per wall-clock second.
`analyze` reads and parses on one thread, analyses on a second and folds intervals into windows on a third (the no-op loop has one), so its CPU
seconds can exceed its wall seconds; the goals are read on wall time as the issue states them.

Last run: agent commit `{E['COMMIT']}`{E['DIRTY']}, binary built {E['AGENT_MTIME']} ({sz(E['AGENT_SIZE'])} bytes,
not stripped); script wall time {E['SCRIPT_SECONDS']} s; load average {E['LOAD_START']} at the start,
{E['LOADAVG']} at the end.

### Machine and tools

- {E['NPROC']} CPUs (`nproc`), CPU model `{E['CPU_MODEL']}` (/proc/cpuinfo), {E['MEM_TOTAL']} RAM, kernel {E['KERNEL']}
- meetpunt-agent {E['V_AGENT']} (release build)
- no-op loop: a dozen lines of C inside the script (`pcap_open_offline`, `pcap_next_ex` until the end, count
  packets and bytes), {E['V_GCC']}, `-O2`, libpcap {E['V_LIBPCAP']}
- tcptrace {E['V_TCPTRACE'].replace('version ', '')} (`tcptrace -n -l -r FILE`)
- {E['V_TSHARK']} (`tshark -q -z conv,tcp -r FILE`)
- {E['V_TCPDUMP']}, {E['V_MERGECAP']}

### Inputs

| input | what | packets | bytes on the wire | bytes captured | file bytes |
| --- | --- | ---: | ---: | ---: | ---: |
| A | `scripts/bench/make-capture.sh`: two network namespaces joined by a veth pair, TSO/GSO/GRO off on both ends, captured on one end with `tcpdump -s 128 -w`; 12 000 short TCP connections (responses of 120 B to 40 kB), 60 000 UDP datagrams echoed back, 30 000 ICMP and 10 000 ICMPv6 echo requests (`ping -f`), bulk TCP (iperf3, 300 Mbit/s during that mix, then 1 Gbit/s until `tcpdump -c` stops) | {sz(E['A_PACKETS'])} | {sz(E['A_WIRE'])} | {sz(E['A_CAPTURED'])} | {sz(E['A_FILE'])} |
| B | the {E['B_FILES']} Ethernet traces of `{E['CORPUS']}/zeek` (link type `ether` in MANIFEST.tsv) joined with `mergecap -a -F pcap` | {sz(E['B_PACKETS'])} | {sz(E['B_WIRE'])} | {sz(E['B_CAPTURED'])} | {sz(E['B_FILE'])} |

Input B is written as pcap: mergecap's default, pcapng, keeps one interface per trace with its own snapshot
length, and libpcap (so the agent, tcptrace and the no-op loop alike) refuses such a file ("an interface has a
snapshot length 65535 different from the snapshot length of the first interface"). tcptrace 6.6.7 dies of
SIGSEGV on input B, at the one truncated 8-byte frame of `{E['TCPTRACE_SKIP']}` (alone, that file reads as
empty); it is therefore also timed on B without that file.

Capture of input A (`make-capture.sh`'s notes): {E['A_META']}

What `meetpunt-agent analyze` printed first (errors on standard error — A: {E['A_ANALYZE_ERR'] or 'none'};
B: {E['B_ANALYZE_ERR'] or 'none'}):

```
{E['A_SUMMARY']}
{E['B_SUMMARY']}
```

### Throughput and memory
{chr(10).join(md)}

The `--no-streams` rows (the on-router shape: no per-stream list) are for comparison; the ratios use the full
`analyze FILE`.

### Ratios

Packets per second of `meetpunt-agent analyze FILE` divided by the other tool's.

| input | ratio | by wall clock | | by CPU time | | goal |
| --- | --- | ---: | --- | ---: | --- | --- |
{chr(10).join(ratio_md)}

### Memory under a SYN flood

Synthetic captures written by `scripts/bench/benchtraffic.py synflood` (Python `struct`; Ethernet/IPv4/TCP SYN,
valid IP and TCP checksums, 10 µs apart), {sz(E['SYN_PACKETS'])} packets each, packet *i* in flow *i* mod *F*:
a distinct source address (198.18.0.0/15) and port per flow, one destination. `meetpunt-agent analyze
{E['NO_STREAMS'] + ' ' if E['NO_STREAMS'] else ''}FILE` under `/usr/bin/time -v`; the goal compares 10 k and 1 M
flows, 100 k is shown for the shape.

| distinct flows | result | wall s | packets/s | TCP streams reported | max RSS |
| ---: | --- | ---: | ---: | ---: | ---: |
{chr(10).join(syn_md)}

Peak RSS: {syn_ratio}. {streams_note}
"""

path = E["DOCS"]
text = open(path).read() if os.path.exists(path) else "# Benchmarks\n\nFigures measured on the project's machine, each with the command that produced it.\n"
m = re.search(r"^## Packet analysis\n.*?(?=^## |\Z)", text, flags=re.S | re.M)
if m:
    text = text[: m.start()] + section + ("\n" if text[m.end():] else "") + text[m.end():]
else:
    text = text.rstrip("\n") + "\n\n" + section
open(path, "w").write(text)
PY
note "done in $SCRIPT_SECONDS s"
