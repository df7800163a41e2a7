# Shared by build-image.sh and run-lab.sh (sourced, not run). Everything here is part of the image
# cache key, so a change to a package list below rebuilds the image on the next run.

LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${MEETPUNT_WIFI_LAB_CACHE:-/var/cache/meetpunt/wifi-lab}
STATUS_FILE=${MEETPUNT_WIFI_LAB_STATUS:-/tmp/wifi-lab-status.txt}
DEBIAN_MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm

# Host tools the lab needs (Debian 12 package names).
HOST_PACKAGES=(qemu-system-x86 debootstrap cpio zstd kmod python3 ca-certificates)

# Guest userland: the Wi-Fi stack and the tools the scenario uses.
GUEST_TOOL_PACKAGES=(hostapd wpasupplicant iw iproute2 kmod tcpdump iputils-ping iperf3 wireless-regdb procps)

# Shared libraries the Meetpunt agent binary needs at run time. The agent is built on the host with
# `swift build -c release --static-swift-stdlib`, so it links against the host's Debian 12 libraries.
# To extend: run `ldd <agent>` on the host, map each "not a libc" library to its package with
# `dpkg -S <path>`, add the package here (the image rebuilds because the cache key changes).
# run-lab.sh also runs `ldd` on the agent inside the guest and writes results/agent-ldd.txt.
AGENT_LIB_PACKAGES=(libnl-3-200 libnl-genl-3-200 libnl-route-3-200 libcurl4 libyaml-0-2 libssl3 zlib1g libpcap0.8 libstdc++6 libgcc-s1)

# Extra guest packages without editing this file: EXTRA_GUEST_PACKAGES="strace gdb" build-image.sh
read -r -a EXTRA_GUEST_PACKAGES_ARR <<< "${EXTRA_GUEST_PACKAGES:-}"
GUEST_PACKAGES=("${GUEST_TOOL_PACKAGES[@]}" "${AGENT_LIB_PACKAGES[@]}" "${EXTRA_GUEST_PACKAGES_ARR[@]}")

# Kernel modules wanted in the guest (their dependency closure is added; a missing one is skipped).
GUEST_MODULES=(mac80211_hwsim mac80211 cfg80211 nlmon veth sch_netem virtio_pci virtio_net virtio_rng
               9p 9pnet_virtio af_packet ccm gcm cmac aes_generic aesni_intel ctr ghash_generic
               crypto_user sha256_generic libarc4 failover net_failover)

note() {
    # One line per milestone, readable by the lead while the lab runs.
    echo "$(date +%H:%M:%S) $*" >> "$STATUS_FILE" 2>/dev/null || true
}

phase_t0=$(date +%s.%N)
phase_name=""
phase() {
    # Ends the previous phase (printing its wall time) and starts the next one.
    local now; now=$(date +%s.%N)
    if [ -n "$phase_name" ]; then
        awk -v n="$phase_name" -v a="$phase_t0" -v b="$now" 'BEGIN{printf "==> phase %-30s %6.1f s\n", n, b-a}'
    fi
    phase_name=$1; phase_t0=$now
    [ -n "$phase_name" ] && echo "==> [$(date +%H:%M:%S)] $phase_name"
    return 0
}

ensure_host_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing host packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# The kernel package: linux-image-<abi>-amd64 that Debian's linux-image-amd64 currently points at
# (override with KERNEL_PACKAGE=linux-image-6.1.0-NN-amd64). Sets KERNEL_PACKAGE, KERNEL_VERSION (the
# Debian package version) and KERNEL_RELEASE (uname -r inside the guest).
resolve_kernel() {
    if [ -z "${KERNEL_PACKAGE:-}" ]; then
        if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then apt-get update -qq; fi
        KERNEL_PACKAGE=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6\.1/{print $2; exit}')
    fi
    [ -n "$KERNEL_PACKAGE" ] || { echo "cannot resolve the Debian 6.1 kernel package (apt-get update?)" >&2; return 1; }
    KERNEL_VERSION=$(apt-cache policy "$KERNEL_PACKAGE" | awk '/Candidate:/{print $2}')
    [ -n "$KERNEL_VERSION" ] && [ "$KERNEL_VERSION" != "(none)" ] || { echo "no candidate for $KERNEL_PACKAGE" >&2; return 1; }
    KERNEL_RELEASE=${KERNEL_PACKAGE#linux-image-}
}

# Key of the debootstrap root filesystem: suite, mirror and package list only.
rootfs_key() {
    printf '%s\n' "$SUITE" "$DEBIAN_MIRROR" "${GUEST_PACKAGES[@]}" | sha256sum | cut -c1-16
}

# Key of the bootable image: kernel package version, package list and the contents of every file that
# goes into the image build (build-image.sh, this file, the guest /init).
image_key() {
    { printf '%s\n' "$KERNEL_PACKAGE" "$KERNEL_VERSION" "$SUITE" "$DEBIAN_MIRROR" "${GUEST_PACKAGES[@]}" "${GUEST_MODULES[@]}"
      cat "$LAB_DIR/build-image.sh" "$LAB_DIR/lib.sh" "$LAB_DIR/guest-init.sh"; } | sha256sum | cut -c1-16
}
