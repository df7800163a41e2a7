#!/usr/bin/env bash
# Power cut: proves that a power cut loses no window the agent reported as durably spooled and
# duplicates none. The agent runs in the Wi-Fi lab's QEMU guest (Debian kernel, TCG) with its state_dir
# on a second virtio disk backed by a raw file on this host; a collector runs on this host. Each boot:
# wait for the agent's first `report spooled` line on the serial console, wait a random 1–8 s more,
# SIGKILL QEMU (the guest's page cache is gone, what the guest flushed is in the file). After the last
# cut one final boot runs the agent until the collector holds every spooled window, then stops it with
# SIGTERM. Then: spooled (every report.seq of a `report spooled` console line, all boots) minus stored
# (the collector's reports table) must be empty, and nothing may be stored twice.
#
#   scripts/faults/power-cut.sh [--boots N | --long] [--seed S] [--agent PATH] [--collector PATH]
#                               [--port P] [--keep] [--first-spool-timeout S] [--final-timeout S]
#                               [--agent-config FILE] [--spooled-marker TEXT]
#
#   --boots N        power cuts (default 20); --long = 100.
#   --seed S         seed of every random choice (the cut delays); printed as "replay with --seed S".
#                    The guest's timing is not replayable, so a replay cuts at the same delays after
#                    the first spooled line, not at the same instruction.
#   --agent PATH     static release agent (default .build/release/meetpunt-agent, built with
#                    `swift build -c release --static-swift-stdlib --product meetpunt-agent`).
#   --collector PATH (default: the newer of .build/{release,debug}/meetpunt-collector).
#   --port P         collector port on this host (default 0: the kernel picks one; the guest reaches
#                    the host's 127.0.0.1 as 10.0.2.2 through QEMU user networking).
#   --keep           keep the work directory even on success (it is always kept on failure).
#   --first-spool-timeout S  per boot, from QEMU start to the first spooled line (default 60); a boot
#                    that reaches it is cut anyway and counted as "no window spooled".
#   --final-timeout S        the final boot's limit for the collector to hold everything (default 180).
#   --agent-config FILE      agent YAML instead of the built-in one; @COLLECTOR_URL@ is replaced.
#                    state_dir must be under /mnt/state (the disk), token_file /lab/in/agent.token.
#   --spooled-marker TEXT    what a durable-spool log line contains (default "report spooled"). Only
#                    to exercise the plumbing with an agent that logs something else (an in-memory
#                    "report queued" is not durable: expect losses).
#
# Needs root only when the lab image is not cached yet (build-image.sh). Writes nothing into the
# repository; the work directory (/tmp/meetpunt-power-cut.XXXXXX) is removed on success.
# Exit: 0 nothing lost or duplicated; 1 a loss, a duplicate, or an agent that died; 2 setup failure.
set -euo pipefail

# One function, parsed whole before it runs: editing this file during a run cannot break the run.
main() {
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
FAULTS=$REPO/scripts/faults
LAB=$REPO/scripts/wifi-lab
BOOTS=20 SEED="" AGENT=$REPO/.build/release/meetpunt-agent COLLECTOR="" PORT=0 KEEP=0
FIRST_TIMEOUT=60 FINAL_TIMEOUT=180 AGENT_CONFIG="" MARKER="report spooled"
MIN_DELAY_MS=1000 MAX_DELAY_MS=8000
DEVICE=power-dev
while [ $# -gt 0 ]; do
    case $1 in
        --boots) BOOTS=$2; shift 2 ;;
        --long) BOOTS=100; shift ;;
        --seed) SEED=$2; shift 2 ;;
        --agent) AGENT=$2; shift 2 ;;
        --collector) COLLECTOR=$2; shift 2 ;;
        --port) PORT=$2; shift 2 ;;
        --keep) KEEP=1; shift ;;
        --first-spool-timeout) FIRST_TIMEOUT=$2; shift 2 ;;
        --final-timeout) FINAL_TIMEOUT=$2; shift 2 ;;
        --agent-config) AGENT_CONFIG=$2; shift 2 ;;
        --spooled-marker) MARKER=$2; shift 2 ;;
        -h|--help) sed -n '2,36p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ $BOOTS =~ ^[0-9]+$ ]] && [ "$BOOTS" -ge 1 ] || { echo "--boots: a positive number" >&2; exit 2; }
[ -n "$SEED" ] || SEED=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
[[ $SEED =~ ^[0-9]+$ ]] || { echo "--seed: a non-negative integer" >&2; exit 2; }
if [ -z "$COLLECTOR" ]; then
    COLLECTOR=$(ls -t "$REPO"/.build/release/meetpunt-collector "$REPO"/.build/debug/meetpunt-collector 2>/dev/null | head -1 || true)
fi
[ -x "$AGENT" ] || { echo "no agent at $AGENT (swift build -c release --static-swift-stdlib --product meetpunt-agent)" >&2; exit 2; }
[ -n "$COLLECTOR" ] && [ -x "$COLLECTOR" ] || { echo "no collector (swift build --product meetpunt-collector, or --collector PATH)" >&2; exit 2; }
[ -z "$AGENT_CONFIG" ] || [ -f "$AGENT_CONFIG" ] || { echo "--agent-config $AGENT_CONFIG: no such file" >&2; exit 2; }
for tool in qemu-system-x86_64 mkfs.ext4 e2fsck modprobe python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install qemu-system-x86 e2fsprogs kmod python3)" >&2; exit 2; }
done
echo "seed $SEED; replay with --seed $SEED"

WORK=$(mktemp -d /tmp/meetpunt-power-cut.XXXXXX)
QEMU_PID="" COLLECTOR_PID="" STATUS=2
trap 'cleanup' EXIT
trap 'exit 130' INT TERM
IN=$WORK/in; mkdir -p "$IN/modules" "$WORK/console" "$WORK/guest-out"
CHECK=(python3 "$FAULTS/power-cut-check.py" --marker "$MARKER")

# ---- lab image (cached by the Wi-Fi lab; built the way acceptance.sh builds it when missing) --------
IMAGE_DIR=$(bash "$LAB/build-image.sh" --print-dir)
if [ ! -s "$IMAGE_DIR/initrd.img" ]; then
    echo "lab image missing: building it (needs root; log in $WORK/build-image.log)"
    bash "$LAB/build-image.sh" > "$WORK/build-image.log" 2>&1 || { tail -30 "$WORK/build-image.log"; exit 2; }
    IMAGE_DIR=$(tail -1 "$WORK/build-image.log")
fi
[ -s "$IMAGE_DIR/initrd.img" ] && [ -s "$IMAGE_DIR/vmlinuz" ] || { echo "no lab image in $IMAGE_DIR" >&2; exit 2; }
# The same kernel and initramfs, decompressed once beside the image: about 7 s less per boot under TCG.
BOOT_KERNEL=$IMAGE_DIR/vmlinuz BOOT_INITRD=$IMAGE_DIR/initrd.img
boot_files=$(python3 "$LAB/boot-files.py" "$IMAGE_DIR") && read -r BOOT_KERNEL BOOT_INITRD <<< "$boot_files" || true
echo "guest boots from $(basename "$BOOT_KERNEL") and $(basename "$BOOT_INITRD") in $IMAGE_DIR"

# ---- virtio_blk + ext4 for the guest, from the kernel package the image was built from -------------
# The lab image carries only the Wi-Fi lab's modules; adding these to its module list would change its
# cache key and rebuild it for everyone, so they travel over the 9p share and the guest insmods them.
krel=$(awk '/^kernel_release:/{print $2}' "$IMAGE_DIR/manifest.txt")
kver=$(awk '/^kernel_package:/{print $3}' "$IMAGE_DIR/manifest.txt")
kpkg=$(awk '/^kernel_package:/{print $2}' "$IMAGE_DIR/manifest.txt")
KDIR=$(dirname "$IMAGE_DIR")/kernel-${krel}_${kver}
if [ ! -d "$KDIR/lib/modules/$krel" ]; then
    deb=$(ls "$(dirname "$IMAGE_DIR")/dl/${kpkg}_${kver//:/%3a}_amd64.deb" 2>/dev/null | head -1 || true)
    [ -n "$deb" ] || { echo "kernel tree $KDIR and its .deb are gone: run scripts/wifi-lab/build-image.sh --force" >&2; exit 2; }
    KDIR=$WORK/kernel; dpkg-deb -x "$deb" "$KDIR"; depmod -b "$KDIR" "$krel"
fi
for m in virtio_blk ext4; do modprobe -d "$KDIR" -S "$krel" --show-depends "$m"; done | awk '$1=="insmod" && !seen[$2]++ {print $2}' |
    while read -r ko; do
        cp "$ko" "$IN/modules/"; basename "$ko" >> "$IN/modules/load-order"
    done
[ -s "$IN/modules/load-order" ] || { echo "cannot resolve virtio_blk/ext4 modules in $KDIR" >&2; exit 2; }

# ---- the state disk ---------------------------------------------------------------------------------
# 64 MiB raw file, ext4 made here once per run (inode tables and journal initialised now, so the guest
# does no lazy init in the background). QEMU opens it with cache=none: O_DIRECT on the host file, so the
# file holds exactly what QEMU has written and nothing waits in the host page cache, and the guest sees
# a volatile write cache, so ext4's fsync sends real flushes as it would to a router's flash. Not
# cache=directsync: that shows the guest a write-through disk, every write synchronous, slower, and the
# guest's flushes become no-ops. Either way QEMU's raw driver keeps no cache of its own, so a SIGKILL of
# QEMU loses exactly the guest's page cache: the boundary under test is the agent's fsync (and the
# journal commit an fsync forces), not the disk's write cache.
DISK=$WORK/state.img
truncate -s 64M "$DISK"
mkfs.ext4 -F -q -L meetpunt-state -E lazy_itable_init=0,lazy_journal_init=0 "$DISK"

# ---- collector on this host -------------------------------------------------------------------------
cat > "$WORK/collector.yaml" <<YAML
listen: {host: 127.0.0.1, port: $PORT}
storage: {sqlite_path: $WORK/collector.sqlite}
retention_file: $REPO/collector/retention.yaml
YAML
"$COLLECTOR" device add "$DEVICE" --config "$WORK/collector.yaml" --token-file "$WORK/agent.token" > "$WORK/device-add.log" 2>&1 ||
    { cat "$WORK/device-add.log" >&2; exit 2; }
"$COLLECTOR" serve --config "$WORK/collector.yaml" > "$WORK/collector.log" 2>&1 &
COLLECTOR_PID=$!
for _ in $(seq 200); do grep -q "listening on" "$WORK/collector.log" && break; sleep 0.1
    kill -0 "$COLLECTOR_PID" 2>/dev/null || break; done
port=$(grep -o "listening on [0-9.]*:[0-9]*" "$WORK/collector.log" | head -1 | awk -F: '{print $NF}' || true)
[ -n "$port" ] || { echo "collector did not start:" >&2; tail -20 "$WORK/collector.log" >&2; exit 2; }
URL="http://10.0.2.2:$port"
echo "collector $COLLECTOR on 127.0.0.1:$port (guest: $URL); work dir $WORK"

# ---- what the guest gets over 9p --------------------------------------------------------------------
cp "$FAULTS/guest-power-cut.sh" "$IN/guest-scenario.sh"     # the name the lab's /init runs
cp "$AGENT" "$IN/meetpunt-agent"; chmod 0755 "$IN/meetpunt-agent"
install -m 0600 "$WORK/agent.token" "$IN/agent.token"
if [ -n "$AGENT_CONFIG" ]; then
    sed "s|@COLLECTOR_URL@|$URL|g" "$AGENT_CONFIG" > "$IN/agent.yaml"
else
    cat > "$IN/agent.yaml" <<YAML
device_id: $DEVICE
collector:
  url: "$URL"
  token_file: /lab/in/agent.token
  insecure_demo: true
  request_timeout_seconds: 3
state_dir: /mnt/state/agent-state
sampling: {interval_seconds: 1, window_seconds: 1}
link: {interfaces: ["*"], include_loopback: true}
lan_clients: {enabled: false}
wifi: {enabled: false}
spool: {max_bytes: 8388608, fsync: always}
shipping: {max_reports_per_request: 8, backoff_initial_ms: 200, backoff_max_seconds: 2}
clock: {wall_clock_floor: "2020-01-01"}
logging: {level: info}
YAML
fi

# The config is parsed on this host first, so a rejected key fails in one second rather than three boots.
if ! "$AGENT" check-config "$IN/agent.yaml" > "$WORK/check-config.txt" 2>&1; then
    echo "the agent rejects its config:" >&2; sed 's/^/    /' "$WORK/check-config.txt" >&2; exit 2
fi

# Every random choice, from the seed: the delay after the first spooled line, per boot.
mapfile -t DELAYS_MS < <(python3 -c "import random,sys; r=random.Random($SEED); [print(r.randint($MIN_DELAY_MS,$MAX_DELAY_MS)) for _ in range($BOOTS)]")

CONSOLES=() boot_ms_total=0 boots_without_spool=0 problems=() exec_ms_total=0 first_ms_total=0 spooled_boots=0
t_run=$(now_ms)
for i in $(seq 1 "$BOOTS"); do
    console=$WORK/console/boot-$(printf %03d "$i").log
    CONSOLES+=("$console")
    echo "MODE=cut" > "$IN/power.env"
    start_qemu "$console" $((FIRST_TIMEOUT + MAX_DELAY_MS / 1000 + 30))
    t0=$(now_ms) outcome=timeout t_exec=""
    while :; do
        [ -n "$t_exec" ] || ! grep -aq '=== power-cut: .*agent exec' "$console" || t_exec=$(( $(now_ms) - t0 ))
        if grep -aq -- "$MARKER" "$console"; then outcome=spooled; break; fi
        if grep -aq '=== power-cut: .*\(agent exited\|FATAL\)' "$console"; then outcome=died; break; fi
        kill -0 "$QEMU_PID" 2>/dev/null || { outcome=died; break; }
        [ $(( $(now_ms) - t0 )) -lt $((FIRST_TIMEOUT * 1000)) ] || break
        sleep 0.1
    done
    t_first=$(( $(now_ms) - t0 )) delay=${DELAYS_MS[$((i - 1))]}
    [ -n "$t_exec" ] || t_exec=$t_first
    if [ "$outcome" = spooled ]; then
        sleep_ms "$delay"
        # The agent must still be running when the plug is pulled: a cut boot never ends on its own.
        grep -aq '=== power-cut: .*\(agent exited\|FATAL\)' "$console" && outcome=died
    fi
    kill -KILL "$QEMU_PID" 2>/dev/null || true
    wait "$QEMU_PID" 2>/dev/null || true
    QEMU_PID=""
    t_cut=$(( $(now_ms) - t0 ))
    boot_ms_total=$((boot_ms_total + t_cut))
    summary=$("${CHECK[@]}" boot-line "$console")
    case $outcome in
        spooled) exec_ms_total=$((exec_ms_total + t_exec)) first_ms_total=$((first_ms_total + t_first)) spooled_boots=$((spooled_boots + 1))
                 printf 'boot %d/%d: agent exec %.1f s, first spooled %.1f s, cut %.1f s (+%.1f s): %s\n' \
                     "$i" "$BOOTS" "$(ms_s "$t_exec")" "$(ms_s "$t_first")" "$(ms_s "$t_cut")" "$(ms_s "$delay")" "$summary" ;;
        timeout) boots_without_spool=$((boots_without_spool + 1))
                 printf 'boot %d/%d: no spooled line within %d s (agent exec %s); cut %.1f s: %s\n' \
                     "$i" "$BOOTS" "$FIRST_TIMEOUT" "$(grep -aq 'agent exec' "$console" && echo "$(ms_s "$t_exec") s" || echo never)" \
                     "$(ms_s "$t_cut")" "$summary" ;;
        died)    problems+=("boot $i: the agent or the guest script stopped before the cut ($console)")
                 printf 'boot %d/%d: !!! agent/guest stopped before the cut at %.1f s: %s\n' "$i" "$BOOTS" "$(ms_s "$t_cut")" "$summary"
                 { grep -a -E '=== power-cut|error|critical|FATAL' "$console" | tail -8 | tr -d '\r' | sed 's/^/    /' || true; } ;;
    esac
    if [ "$i" -ge 3 ] && [ "$boots_without_spool" -eq "$i" ]; then
        echo "!!! no boot spooled anything in $i boots: stopping (see $console)"; tail -20 "$console" | tr -d '\r' | sed 's/^/    /' || true
        exit 1
    fi
    if [ "${#problems[@]}" -ge 3 ]; then
        echo "!!! the agent died in ${#problems[@]} boots: stopping"; exit 1
    fi
done
per_boot=$(awk -v t="$boot_ms_total" -v n="$BOOTS" 'BEGIN{printf "%.1f", t/n/1000}')
[ "$spooled_boots" = 0 ] || awk -v n="$BOOTS" -v w="$(( $(now_ms) - t_run ))" -v b="$per_boot" -v k="$spooled_boots" -v e="$exec_ms_total" \
    -v f="$first_ms_total" 'BEGIN{printf "%d cuts in %.0f s: %.1f s per boot (QEMU start to agent exec %.1f s, to first spooled %.1f s, then the random delay)\n", n, w/1000, b, e/k/1000, f/k/1000}'

# ---- final boot: no cut; run until the collector holds everything, then stop gracefully -------------
console=$WORK/console/final.log
CONSOLES+=("$console")
printf 'MODE=final\nSTOP_GRACE=45\n' > "$IN/power.env"
rm -f "$IN/STOP"
start_qemu "$console" $((FINAL_TIMEOUT + 120))
t0=$(now_ms) final=timeout pending=""
while [ $(( $(now_ms) - t0 )) -lt $((FINAL_TIMEOUT * 1000)) ]; do
    kill -0 "$QEMU_PID" 2>/dev/null || { final=died; break; }
    if grep -aq -- "$MARKER" "$console"; then
        pending=$("${CHECK[@]}" pending --db "$WORK/collector.sqlite" --device "$DEVICE" "${CONSOLES[@]}" || true)
        [[ $pending == missing=0\ * ]] && { final=complete; break; }
    fi
    sleep 1
done
echo "final boot: ${final} after $(ms_s $(( $(now_ms) - t0 ))) s (${pending:-nothing spooled yet}); stopping the agent (SIGTERM)"
touch "$IN/STOP"
t1=$(now_ms)
while kill -0 "$QEMU_PID" 2>/dev/null && [ $(( $(now_ms) - t1 )) -lt 75000 ]; do sleep 0.2; done
if kill -0 "$QEMU_PID" 2>/dev/null; then
    problems+=("final boot: the guest did not power off within 75 s of the stop request ($console)")
    kill -KILL "$QEMU_PID" 2>/dev/null || true
fi
wait "$QEMU_PID" 2>/dev/null || true
QEMU_PID=""
exit_line=$(grep -a '=== power-cut: .*agent exited' "$console" | tail -1 | tr -d '\r' || true)
echo "final boot: $("${CHECK[@]}" boot-line "$console"); ${exit_line#*] }"
[[ $exit_line == *"agent exited rc=0"* ]] ||
    problems+=("final boot: the agent did not exit 0 after SIGTERM (${exit_line:-no exit line}) ($console)")
[ "$final" != died ] || problems+=("final boot: the guest stopped before the collector held everything ($console)")
fsck_out=$(e2fsck -fn "$DISK" 2>&1) && echo "state disk: e2fsck -fn clean after $BOOTS cuts" ||
    { echo "state disk: e2fsck -fn found problems:"; echo "$fsck_out" | tail -10 | sed 's/^/    /'; }

# ---- the verdict --------------------------------------------------------------------------------------
kill -TERM "$COLLECTOR_PID" 2>/dev/null || true
wait "$COLLECTOR_PID" 2>/dev/null || true
COLLECTOR_PID=""
STATUS=0
"${CHECK[@]}" verdict --db "$WORK/collector.sqlite" --device "$DEVICE" --seed "$SEED" --boots "$BOOTS" \
    --seconds-per-boot "$per_boot" "${CONSOLES[@]}" || STATUS=1
[ "$boots_without_spool" -eq 0 ] || echo "note: $boots_without_spool boot(s) cut without a spooled line (timeout $FIRST_TIMEOUT s)"
for p in "${problems[@]}"; do echo "!!! $p"; STATUS=1; done
[ "$STATUS" = 0 ] || echo "replay with --seed $SEED; consoles in $WORK/console, collector log $WORK/collector.log"
exit "$STATUS"
}

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
ms_s() { awk -v m="$1" 'BEGIN{printf "%.1f", m/1000}'; }
sleep_ms() { sleep "$(awk -v m="$1" 'BEGIN{printf "%.3f", m/1000}')"; }

# Boots the lab kernel with the state disk; the console (serial) goes to $1. $2: the guest's own
# watchdog (powers off), a backstop for a host that died without killing QEMU.
start_qemu() {
    : > "$1"
    qemu-system-x86_64 \
        -accel tcg,thread=multi -cpu max -smp 2 -m 1024 \
        -nographic -no-reboot -nodefaults -serial stdio \
        -kernel "$BOOT_KERNEL" -initrd "$BOOT_INITRD" \
        -append "console=ttyS0 rdinit=/init panic=-1 loglevel=4 quiet lab.watchdog=$2" \
        -virtfs "local,path=$IN,mount_tag=labin,security_model=none,readonly=on,id=labin" \
        -drive "file=$DISK,format=raw,if=virtio,cache=none" \
        -virtfs "local,path=$WORK/guest-out,mount_tag=labout,security_model=none,id=labout" \
        -netdev user,id=n0 -device virtio-net-pci,netdev=n0,romfile= \
        -device virtio-rng-pci \
        < /dev/null > "$1" 2> "${1%.log}.qemu-stderr" &
    QEMU_PID=$!
}

cleanup() {
    local rc=$?
    set +e
    [ -z "$QEMU_PID" ] || { kill -KILL "$QEMU_PID" 2>/dev/null; wait "$QEMU_PID" 2>/dev/null; }
    if [ -n "$COLLECTOR_PID" ]; then
        kill -TERM "$COLLECTOR_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$COLLECTOR_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$COLLECTOR_PID" 2>/dev/null; wait "$COLLECTOR_PID" 2>/dev/null
    fi
    [ -n "${WORK:-}" ] && [ -d "$WORK" ] || return 0
    find "$WORK" -name '*.qemu-stderr' -empty -delete 2>/dev/null
    if [ "$rc" = 0 ] && [ "$KEEP" = 0 ]; then
        rm -rf "$WORK"
    else
        rm -f "$WORK/in/meetpunt-agent"   # 37 MB, the same binary as --agent
        echo "work directory kept: $WORK"
    fi
}

main "$@"
