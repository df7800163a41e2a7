#!/bin/bash
# Guest side of scripts/faults/power-cut.sh. power-cut.sh copies it into the Wi-Fi lab's read-only 9p
# share as guest-scenario.sh, which the lab image's /init (scripts/wifi-lab/guest-init.sh) runs with its
# output on the serial console; the host keeps one console file per boot. Everything the host watches
# for starts with "=== power-cut:"; the agent's own log (stderr) goes to the same console.
#
# /lab/in holds: power.env (MODE=cut|final, STOP_GRACE), agent.yaml, agent.token, meetpunt-agent,
# modules/load-order + modules/*.ko (virtio_blk and ext4 are modules in Debian's kernel and the lab
# image does not carry them, so they come in over 9p rather than by rebuilding the image).
#
# MODE=cut    mount the state disk, run the agent until the host pulls the plug (SIGKILL of QEMU).
# MODE=final  the same, until the host creates /lab/in/STOP; then SIGTERM to the agent (it drains and
#             exits), sync, unmount, and /init powers off.
set -u
say() { echo "=== power-cut: [t=$(cut -d' ' -f1 /proc/uptime)s] $*"; }
MODE=cut STOP_GRACE=45
. /lab/in/power.env
say "guest up, mode $MODE, clock $(date -u +%s) ($(date -u +%Y-%m-%dT%H:%M:%SZ))"

# virtio_blk, ext4 and what they need (built for the image's kernel), unless already loaded.
if [ -f /lab/in/modules/load-order ]; then
    while read -r ko; do
        name=$(basename "$ko"); name=${name%%.ko*}; name=${name//-/_}
        [ -d "/sys/module/$name" ] || insmod "/lab/in/modules/$ko" || say "insmod $ko failed"
    done < /lab/in/modules/load-order
fi
for _ in $(seq 50); do [ -b /dev/vda ] && break; sleep 0.1; done
[ -b /dev/vda ] || { say "FATAL no /dev/vda (virtio_blk not loaded?)"; exit 1; }

# Nothing reaches the disk unless someone asks for it: no periodic writeback of dirty pages and a
# 10-minute ext4 journal commit interval. A boot lasts seconds, so whatever the agent did not fsync is
# still only in the guest page cache when the plug is pulled, and is lost, as it could be on a router.
echo 0 > /proc/sys/vm/dirty_writeback_centisecs
echo 360000 > /proc/sys/vm/dirty_expire_centisecs
mkdir -p /mnt/state
if ! mount -t ext4 -o commit=600 /dev/vda /mnt/state; then
    say "FATAL cannot mount /dev/vda"; dmesg | tail -20; exit 1
fi
dmesg | grep -a 'EXT4-fs (vda)' | sed 's/^/=== power-cut: kernel: /'
say "state disk mounted (agent-state: $(ls /mnt/state/agent-state 2>/dev/null | tr '\n' ' '))"

say "agent exec"
/lab/in/meetpunt-agent run --config /lab/in/agent.yaml 2>&1 &
agent=$!

if [ "$MODE" = final ]; then
    while kill -0 "$agent" 2>/dev/null && [ ! -e /lab/in/STOP ]; do sleep 0.2; done
    if [ -e /lab/in/STOP ] && kill -0 "$agent" 2>/dev/null; then
        say "stop requested: SIGTERM to the agent"
        kill -TERM "$agent"
        for _ in $(seq $((STOP_GRACE * 5))); do kill -0 "$agent" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$agent" 2>/dev/null && { say "agent still running ${STOP_GRACE}s after SIGTERM: SIGKILL"; kill -KILL "$agent"; }
    fi
fi
wait "$agent"; rc=$?
say "agent exited rc=$rc"
sync
umount /mnt/state && say "state disk unmounted" || say "cannot unmount the state disk"
say "done"
