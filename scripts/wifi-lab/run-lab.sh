#!/bin/bash
# Boots the Wi-Fi lab VM (QEMU, TCG) and runs guest-scenario.sh in it; results land in --out.
#
#   scripts/wifi-lab/run-lab.sh [--agent PATH] [--collector-url URL] [--out DIR]
#                               [--token-file FILE] [--agent-config FILE] [--duration S]
#                               [--timeout S] [--skip-fixtures] [--no-build]
#
#   --agent PATH         meetpunt-agent binary built on this host (runs unchanged in the guest: same
#                        Debian 12 libraries). Without it only the iw dumps and nlmon captures are made.
#   --collector-url URL  as the guest sees it, e.g. http://10.0.2.2:8080 (QEMU user networking maps
#                        10.0.2.2 to the host's 127.0.0.1). Enables the `agent run` phase.
#   --out DIR            results directory (default /tmp/meetpunt-wifi-lab/<timestamp>); emptied first.
#   --token-file FILE    bearer token for the collector (default: a placeholder).
#   --agent-config FILE  use this agent YAML instead of the built-in lab config.
#   --duration S         length of the `agent run` phase (default 40).
#   --timeout S          host-side limit for the whole VM (default 600; the guest watchdog fires 30 s
#                        earlier and powers off).
#   --skip-fixtures      skip the iw dump + nlmon capture phase (saves ~55 s when only the agent matters).
#   --no-build           fail instead of building a missing image.
#
# Exit status: 0 when the scenario finished (results/DONE exists) without problems.txt entries,
# 1 when it finished with problems, 2 when it did not finish (timeout, crash).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The whole script is one function, so bash has parsed all of it before running any: editing this file
# while a lab runs cannot break the run.
main() {
AGENT=""; COLLECTOR_URL=""; OUT=""; TOKEN_FILE=""; AGENT_CONFIG=""; DURATION=40; TIMEOUT=600; NO_BUILD=0; SKIP_FIXTURES=0
while [ $# -gt 0 ]; do
    case $1 in
        --agent) AGENT=$2; shift 2 ;;
        --collector-url) COLLECTOR_URL=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --token-file) TOKEN_FILE=$2; shift 2 ;;
        --agent-config) AGENT_CONFIG=$2; shift 2 ;;
        --duration) DURATION=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --no-build) NO_BUILD=1; shift ;;
        --skip-fixtures) SKIP_FIXTURES=1; shift ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[ -z "$AGENT" ] || [ -f "$AGENT" ] || { echo "--agent $AGENT: no such file" >&2; exit 2; }
[ -z "$TOKEN_FILE" ] || [ -f "$TOKEN_FILE" ] || { echo "--token-file $TOKEN_FILE: no such file" >&2; exit 2; }
[ -z "$AGENT_CONFIG" ] || [ -f "$AGENT_CONFIG" ] || { echo "--agent-config $AGENT_CONFIG: no such file" >&2; exit 2; }
OUT=${OUT:-/tmp/meetpunt-wifi-lab/$(date +%Y%m%d-%H%M%S)}
t_start=$(date +%s.%N)

phase "image"
IMAGE_DIR=$(bash "$LAB_DIR/build-image.sh" --print-dir)
if [ ! -s "$IMAGE_DIR/initrd.img" ]; then
    [ "$NO_BUILD" = 0 ] || { echo "image missing: $IMAGE_DIR (run build-image.sh)" >&2; exit 2; }
    bash "$LAB_DIR/build-image.sh" | sed 's/^/  [build] /'
fi
[ -s "$IMAGE_DIR/initrd.img" ] || { echo "image build failed" >&2; exit 2; }
ensure_host_packages qemu-system-x86 python3
# The same kernel and initramfs, decompressed once beside the image (boot-files.py): ~7 s less per boot.
BOOT_KERNEL=$IMAGE_DIR/vmlinuz BOOT_INITRD=$IMAGE_DIR/initrd.img
boot_files=$(python3 "$LAB_DIR/boot-files.py" "$IMAGE_DIR") && read -r BOOT_KERNEL BOOT_INITRD <<< "$boot_files" || true

phase "prepare shares"
rm -rf "$OUT"; mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
IN=$(mktemp -d /tmp/meetpunt-wifi-lab-in.XXXXXX)
trap 'rm -rf "$IN"' EXIT
cp "$LAB_DIR/guest-scenario.sh" "$IN/"
{
    printf 'COLLECTOR_URL=%q\n' "$COLLECTOR_URL"
    printf 'RUN_DURATION=%q\n' "$DURATION"
    printf 'SKIP_FIXTURES=%q\n' "$SKIP_FIXTURES"
} > "$IN/lab.env"
if [ -n "$AGENT" ]; then
    cp "$AGENT" "$IN/meetpunt-agent"; chmod 0755 "$IN/meetpunt-agent"
    ldd "$AGENT" > "$OUT/agent-ldd-host.txt" 2>&1 || true
fi
if [ -n "$TOKEN_FILE" ]; then cp "$TOKEN_FILE" "$IN/token"; else echo "lab-placeholder-token" > "$IN/token"; fi
[ -z "$AGENT_CONFIG" ] || cp "$AGENT_CONFIG" "$IN/agent.yaml"
cp "$IMAGE_DIR/manifest.txt" "$OUT/image-manifest-host.txt"

phase "qemu (TCG) scenario"
note "run-lab: VM starting from $(basename "$BOOT_KERNEL") and $(basename "$BOOT_INITRD") (out=$OUT, agent=${AGENT:-none}, collector=${COLLECTOR_URL:-none})"
WATCHDOG=$((TIMEOUT - 30))
set +e
timeout --kill-after=15 "$TIMEOUT" qemu-system-x86_64 \
    -accel tcg,thread=multi -cpu max -smp 2 -m 2048 \
    -nographic -no-reboot -nodefaults -serial stdio \
    -kernel "$BOOT_KERNEL" -initrd "$BOOT_INITRD" \
    -append "console=ttyS0 rdinit=/init panic=-1 loglevel=4 quiet lab.watchdog=$WATCHDOG" \
    -virtfs "local,path=$IN,mount_tag=labin,security_model=none,readonly=on,id=labin" \
    -virtfs "local,path=$OUT,mount_tag=labout,security_model=none,id=labout" \
    -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
    -device virtio-rng-pci \
    < /dev/null > "$OUT/console.raw" 2> "$OUT/qemu.stderr"
qrc=$?
set -e
tr -d '\r' < "$OUT/console.raw" > "$OUT/console.log" && rm -f "$OUT/console.raw"
[ -s "$OUT/qemu.stderr" ] || rm -f "$OUT/qemu.stderr"
echo "qemu exit status $qrc$([ $qrc = 124 ] && echo ' (host timeout)')"
grep -a '^=== ' "$OUT/console.log" | sed 's/^/  /' | tail -40

phase "post-process captures"
if [ -d "$OUT/pcap" ]; then
    python3 "$LAB_DIR/nlpcap.py" split "$OUT" > "$OUT/pcap/split.log" 2>&1 || echo "pcap split failed (see $OUT/pcap/split.log)"
    tail -3 "$OUT/pcap/split.log"
fi
phase ""
total=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
status=0
if [ ! -f "$OUT/DONE" ]; then
    echo "!!! scenario did not finish (see $OUT/console.log)"; status=2
elif [ -s "$OUT/problems.txt" ]; then
    echo "!!! scenario finished with problems:"; sed 's/^/    /' "$OUT/problems.txt"; status=1
fi
echo "==> lab run took ${total} s; results in $OUT"
note "run-lab: finished in ${total}s status=$status out=$OUT"
return $status
}
main "$@"
