#!/bin/bash
# /init of the Wi-Fi lab guest (baked into the image by build-image.sh). It mounts the two 9p shares
# that run-lab.sh passes (labin: scenario + agent + token, read-only; labout: the results directory),
# arms a watchdog that powers the VM off, runs /lab/in/guest-scenario.sh and powers off.
# Kernel command line knobs: lab.watchdog=SECONDS (default 420).
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /run /tmp
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /dev/shm
# what udev would create: /dev/stdin etc. (awk -f /dev/stdin, bash process substitution)
ln -sfn /proc/self/fd /dev/fd; ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout; ln -sf /proc/self/fd/2 /dev/stderr
mkdir -p /run/netns /var/run
[ -L /var/run ] || mount --bind /run /var/run
hostname meetpunt-lab

WATCHDOG=420
for arg in $(cat /proc/cmdline); do
    case $arg in lab.watchdog=*) WATCHDOG=${arg#lab.watchdog=} ;; esac
done
poweroff_now() { sync; echo o > /proc/sysrq-trigger; sleep 30; }
( sleep "$WATCHDOG"; echo "!!! lab watchdog: ${WATCHDOG}s elapsed, powering off"
  [ -d /lab/out ] && echo "watchdog fired after ${WATCHDOG}s" > /lab/out/WATCHDOG_FIRED
  poweroff_now ) &

echo "=== [t=$(cut -d' ' -f1 /proc/uptime)s] lab init ($(uname -r))"
for m in virtio_pci virtio_net virtio_rng 9pnet_virtio 9p af_packet; do modprobe -q "$m" 2>/dev/null; done
mkdir -p /lab/in /lab/out
for i in $(seq 50); do
    mount -t 9p -o trans=virtio,version=9p2000.L,ro labin /lab/in 2>/dev/null && break; sleep 0.1
done
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 labout /lab/out || echo "!!! cannot mount the results share"

# User-mode networking: the host is 10.0.2.2. No default route, so the guest reaches 10.0.2.0/24 only.
ip link set lo up
if ip link show eth0 >/dev/null 2>&1; then
    ip link set eth0 up
    ip addr add 10.0.2.15/24 dev eth0
fi

if [ -x /lab/in/guest-scenario.sh ] || [ -f /lab/in/guest-scenario.sh ]; then
    bash /lab/in/guest-scenario.sh 2>&1 | tee /lab/out/scenario.log
    echo "=== [t=$(cut -d' ' -f1 /proc/uptime)s] scenario exited (${PIPESTATUS[0]})"
else
    echo "!!! /lab/in/guest-scenario.sh missing"
fi
sync
umount /lab/out 2>/dev/null
echo "=== [t=$(cut -d' ' -f1 /proc/uptime)s] powering off"
poweroff_now
