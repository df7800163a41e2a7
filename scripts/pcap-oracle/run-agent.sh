#!/usr/bin/env bash
# Runs `meetpunt-agent analyze FILE --json` over every capture of ../shared/pcaps (MANIFEST.tsv) into
# OUT/<relative path>.json, then compares with the committed tshark golden file. Exit status: the
# comparison's. A crash or a hang (60 s) of the analyser on any file fails it too.
set -uo pipefail
agent=${1:?usage: run-agent.sh AGENT_BINARY OUT_DIR}
out=${2:?usage: run-agent.sh AGENT_BINARY OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
pcaps=${PCAPS:-$here/../../../shared/pcaps}
rm -rf "$out"; mkdir -p "$out"
crashes=0
start=$(date +%s)
while read -r f; do
    mkdir -p "$out/$(dirname "$f")"
    timeout 60 "$agent" analyze "$pcaps/$f" --json > "$out/$f.json" 2> "$out/$f.err"
    rc=$?
    if [ $rc -gt 1 ]; then
        crashes=$((crashes + 1))
        echo "CRASH or HANG (exit $rc): $f" >&2
    fi
done < <(tail -n +2 "$pcaps/MANIFEST.tsv" | cut -f2)
echo "analysed $(tail -n +2 "$pcaps/MANIFEST.tsv" | wc -l) files in $(( $(date +%s) - start )) s; crashes or hangs: $crashes"
python3 "$here/compare.py" "$here/../../Tests/MeetpuntTests/Fixtures/pcap-golden/tshark-golden.json" "$out"
status=$?
[ $crashes -eq 0 ] || status=1
exit $status
