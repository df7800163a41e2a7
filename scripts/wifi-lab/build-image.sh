#!/bin/bash
# Builds (or finds in the cache) the Wi-Fi lab's boot image: Debian 12's own kernel (linux-image-6.1
# amd64, which ships mac80211_hwsim) plus a zstd initramfs holding a trimmed Debian 12 minbase rootfs
# with hostapd, wpa_supplicant, iw, tcpdump, iperf3, the agent's shared libraries and only the kernel
# modules the lab needs.
#
#   scripts/wifi-lab/build-image.sh            build if missing, print the image directory last
#   scripts/wifi-lab/build-image.sh --force    rebuild the image (the debootstrap rootfs stays cached)
#   scripts/wifi-lab/build-image.sh --print-dir  print the image directory without building
#
# Cache (outside the repository): $CACHE_ROOT (default /var/cache/meetpunt/wifi-lab)
#   dl/                      kernel .deb files
#   kernel-<release>_<ver>/  the extracted kernel package
#   rootfs-<key>/            debootstrap result, key = suite + mirror + package list
#   image-<key>/             vmlinuz, initrd.img, manifest.txt; key = kernel package version +
#                            package lists + contents of build-image.sh, lib.sh and guest-init.sh
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# One function, parsed whole before it runs: editing this file during a build cannot break the build.
main() {
FORCE=0; PRINT_ONLY=0
for a in "$@"; do
    case $a in
        --force) FORCE=1 ;;
        --print-dir) PRINT_ONLY=1 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "unknown argument: $a" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "build-image.sh needs root (debootstrap, chroot)" >&2; exit 1; }

t_start=$(date +%s.%N)
if [ "$PRINT_ONLY" = 0 ]; then
    phase "host packages"
    ensure_host_packages "${HOST_PACKAGES[@]}"
fi
resolve_kernel
IMAGE_DIR="$CACHE_ROOT/image-$(image_key)"
if [ "$PRINT_ONLY" = 1 ]; then echo "$IMAGE_DIR"; exit 0; fi

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.build.lock"
flock -w 900 9 || { echo "another build-image.sh holds $CACHE_ROOT/.build.lock" >&2; exit 1; }

if [ "$FORCE" = 0 ] && [ -s "$IMAGE_DIR/initrd.img" ] && [ -s "$IMAGE_DIR/vmlinuz" ] && [ -f "$IMAGE_DIR/manifest.txt" ]; then
    phase ""
    echo "==> image cached: $IMAGE_DIR ($KERNEL_PACKAGE $KERNEL_VERSION)"
    echo "$IMAGE_DIR"
    exit 0
fi
note "build-image: building $IMAGE_DIR ($KERNEL_PACKAGE $KERNEL_VERSION)"

# ---- kernel package ----------------------------------------------------------------------------
phase "kernel .deb download+extract"
KDIR="$CACHE_ROOT/kernel-${KERNEL_RELEASE}_${KERNEL_VERSION}"
if [ ! -f "$KDIR/.complete" ]; then
    mkdir -p "$CACHE_ROOT/dl"
    DEB=$(ls "$CACHE_ROOT/dl/${KERNEL_PACKAGE}_${KERNEL_VERSION//:/%3a}_amd64.deb" 2>/dev/null || true)
    if [ -z "$DEB" ]; then
        ( cd "$CACHE_ROOT/dl" && apt-get download -q "$KERNEL_PACKAGE=$KERNEL_VERSION" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true )
        DEB=$(ls "$CACHE_ROOT/dl/${KERNEL_PACKAGE}_"*"_amd64.deb" | grep -F "${KERNEL_VERSION//:/%3a}" | head -1)
    fi
    [ -s "$DEB" ] || { echo "kernel download failed" >&2; exit 1; }
    rm -rf "$KDIR"; mkdir -p "$KDIR"
    dpkg-deb -x "$DEB" "$KDIR"
    depmod -b "$KDIR" "$KERNEL_RELEASE"
    touch "$KDIR/.complete"
fi
[ -f "$KDIR/lib/modules/$KERNEL_RELEASE/kernel/drivers/net/wireless/virtual/mac80211_hwsim.ko" ] ||
    find "$KDIR/lib/modules/$KERNEL_RELEASE" -name 'mac80211_hwsim.ko*' | grep -q . ||
    { echo "this kernel package has no mac80211_hwsim" >&2; exit 1; }

# ---- debootstrap rootfs ------------------------------------------------------------------------
phase "debootstrap rootfs"
ROOTFS="$CACHE_ROOT/rootfs-$(rootfs_key)"
if [ ! -f "$ROOTFS/.complete" ]; then
    rm -rf "$ROOTFS" "$ROOTFS.tmp"
    include=$(IFS=,; echo "${GUEST_PACKAGES[*]}")
    echo "debootstrap --variant=minbase $SUITE (+ $include)"
    if ! debootstrap --variant=minbase --include="$include" "$SUITE" "$ROOTFS.tmp" "$DEBIAN_MIRROR" > "$CACHE_ROOT/debootstrap.log" 2>&1; then
        tail -20 "$CACHE_ROOT/debootstrap.log" >&2; exit 1
    fi
    chroot "$ROOTFS.tmp" apt-get clean
    chroot "$ROOTFS.tmp" dpkg-query -W -f='${Package} ${Version}\n' > "$ROOTFS.tmp/.packages"
    mv "$ROOTFS.tmp" "$ROOTFS"
    touch "$ROOTFS/.complete"
fi

# ---- stage: trimmed rootfs + modules + /init ---------------------------------------------------
phase "stage rootfs+modules"
WORK=$(mktemp -d "$CACHE_ROOT/stage.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
STAGE="$WORK/root"; mkdir -p "$STAGE"
tar -C "$ROOTFS" --exclude=./.complete --exclude=./.packages \
    --exclude=./usr/share/doc --exclude=./usr/share/man --exclude=./usr/share/info \
    --exclude=./usr/share/locale --exclude=./usr/share/lintian --exclude=./usr/share/bash-completion \
    --exclude=./usr/share/zsh --exclude='./var/cache/apt/*' --exclude='./var/lib/apt/lists/*' \
    --exclude='./var/cache/debconf/*-old' --exclude='./var/log/*' -cf - . | tar -C "$STAGE" -xf -

# Kernel modules: the dependency closure of GUEST_MODULES plus the kernel's crypto modules (CCMP needs
# ccm/aes/ctr/cmac/gcm, found at run time through crypto templates rather than module dependencies).
MODSRC="$KDIR/lib/modules/$KERNEL_RELEASE"
MODDST="$STAGE/lib/modules/$KERNEL_RELEASE"
mkdir -p "$MODDST"
want_files() {
    for m in "${GUEST_MODULES[@]}"; do
        modprobe -d "$KDIR" -S "$KERNEL_RELEASE" --show-depends "$m" 2>/dev/null | awk '$1=="insmod"{print $2}' || true
    done
    ( cd "$MODSRC" && find kernel/crypto kernel/arch/x86/crypto kernel/lib/crypto -name '*.ko*' 2>/dev/null | sed "s|^|$MODSRC/|" )
}
missing_mods=()
for m in "${GUEST_MODULES[@]}"; do
    modprobe -d "$KDIR" -S "$KERNEL_RELEASE" --show-depends "$m" >/dev/null 2>&1 || missing_mods+=("$m")
done
[ ${#missing_mods[@]} -eq 0 ] || echo "modules not in this kernel (built in or absent, skipped): ${missing_mods[*]}"
want_files | sort -u | while read -r f; do
    f=${f#"$KDIR"}; f=${f#/usr}        # modprobe prints paths under the base dir
    src="$KDIR$f"; [ -f "$src" ] || src="$KDIR/usr$f"
    [ -f "$src" ] || continue
    rel=${f#/lib/modules/$KERNEL_RELEASE/}
    mkdir -p "$MODDST/$(dirname "$rel")"
    cp "$src" "$MODDST/$rel"
done
cp "$MODSRC"/modules.order "$MODSRC"/modules.builtin* "$MODDST/" 2>/dev/null || true
depmod -b "$STAGE" "$KERNEL_RELEASE"
n_mods=$(find "$MODDST" -name '*.ko*' | wc -l)

# /init, hostname, a manifest of what is inside.
install -m 0755 "$LAB_DIR/guest-init.sh" "$STAGE/init"
echo meetpunt-lab > "$STAGE/etc/hostname"
printf '127.0.0.1 localhost\n10.0.2.2 lab-host\n' > "$STAGE/etc/hosts"
: > "$STAGE/etc/resolv.conf"
mkdir -p "$STAGE/lab" "$STAGE/root"
{
    echo "kernel_package: $KERNEL_PACKAGE $KERNEL_VERSION"
    echo "kernel_release: $KERNEL_RELEASE"
    echo "suite: $SUITE"
    echo "modules: $n_mods"
    echo "image_built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "packages:"
    sed 's/^/  /' "$ROOTFS/.packages"
} > "$WORK/manifest.txt"
cp "$WORK/manifest.txt" "$STAGE/etc/meetpunt-lab-manifest.txt"
chroot "$STAGE" test -e /lib/firmware/regulatory.db ||
    echo "warning: no regulatory.db in the rootfs: 5 GHz AP channels will not come up" >&2

# ---- initramfs -----------------------------------------------------------------------------------
phase "cpio+zstd initramfs"
mkdir -p "$WORK/out"
( cd "$STAGE" && find . -print0 | cpio --null -o -H newc --quiet ) | zstd -T0 -3 -q -f -o "$WORK/out/initrd.img"
cp "$KDIR/boot/vmlinuz-$KERNEL_RELEASE" "$WORK/out/vmlinuz"
cp "$WORK/manifest.txt" "$WORK/out/manifest.txt"
echo "stage $(du -sh "$STAGE" | cut -f1), initrd $(du -h "$WORK/out/initrd.img" | cut -f1), $n_mods modules"
rm -rf "$IMAGE_DIR"; mv "$WORK/out" "$IMAGE_DIR"
# Prune: the two newest images, and only the current kernel tree and rootfs.
( cd "$CACHE_ROOT" && ls -dt image-* 2>/dev/null | tail -n +3 | xargs -r rm -rf
  for d in kernel-* rootfs-*; do
      [ -d "$d" ] && [ "$CACHE_ROOT/$d" != "$KDIR" ] && [ "$CACHE_ROOT/$d" != "$ROOTFS" ] && rm -rf "$d"
  done
  ls dl/*.deb 2>/dev/null | grep -v -F "${KERNEL_PACKAGE}_" | xargs -r rm -f ) || true
phase ""
total=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
echo "==> image built in ${total} s: $IMAGE_DIR"
note "build-image: done in ${total}s -> $IMAGE_DIR"
echo "$IMAGE_DIR"
}
main "$@"
