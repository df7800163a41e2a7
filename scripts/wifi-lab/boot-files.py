#!/usr/bin/env python3
"""The kernel and initramfs QEMU boots a lab image from, in the form that boots fastest under TCG.

    scripts/wifi-lab/boot-files.py IMAGE_DIR   ->  prints "KERNEL INITRD" (two paths, one line)

build-image.sh caches Debian's compressed kernel (vmlinuz, a bzImage whose payload is xz) and a
zstd-compressed initramfs. Under TCG the guest spends about 4.7 s decompressing the kernel before it
prints a line and 3.5 s more unpacking the initramfs (measured on the CI machine: lab init 13.6 s after
QEMU starts, 6.4 s with these files). So, once per image, this derives beside them:

- vmlinux.pvh: the bzImage's payload, decompressed: the kernel's ELF image. Debian builds it with
  CONFIG_PVH, so it carries the PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY) and QEMU's -kernel starts it in
  32-bit protected mode directly, with no decompressor.
- initrd.cpio: the initramfs, decompressed (the kernel unpacks a plain cpio archive as it is).

The guest runs the same kernel and the same files either way. The image directory's name is already
keyed on everything that built it, so what is derived here needs no key of its own; each file is written
under a temporary name, synced and renamed, and checked again whenever it is reused (the kernel's PVH
note, the archive's trailer), so an interrupted run or a cut file is made again. When a file cannot be
derived (no PVH note, an unknown compression), the original is printed instead with the reason on
stderr: slower, never wrong.
"""
import lzma
import os
import struct
import subprocess
import sys
import zlib

XEN_ELFNOTE_PHYS32_ENTRY = 18


def bzimage_payload(data: bytes) -> bytes:
    """The compressed kernel inside a bzImage (boot protocol 2.08+: payload_offset/length at 0x248)."""
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage (no HdrS header)")
    version = struct.unpack_from("<H", data, 0x206)[0]
    if version < 0x208:
        raise ValueError(f"boot protocol {version >> 8}.{version & 0xFF} has no payload fields")
    setup_sects = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if start + length > len(data):
        raise ValueError("payload runs past the end of the file")
    return data[start:start + length]


def decompress(payload: bytes, what: str) -> bytes:
    if payload.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    if payload.startswith(b"\x1f\x8b"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload)
    if payload.startswith(b"\x28\xb5\x2f\xfd"):
        return subprocess.run(["zstd", "-dc"], input=payload, stdout=subprocess.PIPE, check=True).stdout
    raise ValueError(f"{what}: compression not recognised (first bytes {payload[:4].hex()})")


def has_pvh_note(elf: bytes) -> bool:
    """True when the ELF (64-bit, little-endian) has a PT_NOTE holding the Xen PHYS32_ENTRY note."""
    if len(elf) < 64 or elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return False
    phoff = struct.unpack_from("<Q", elf, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        at, end = p_offset, p_offset + p_filesz
        while at + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, at)
            name = elf[at + 12:at + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            at += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def derive(target: str, make, valid) -> None:
    """`target` made by `make` unless a file that `valid` accepts is there already; written under a
    temporary name, flushed to disk, then renamed, so a crash leaves the old state or the whole file."""
    if os.path.exists(target):
        with open(target, "rb") as f:
            if valid(f.read()):
                return
        os.unlink(target)
    data = make()
    if not valid(data):
        raise ValueError(f"{target}: what was derived does not check")
    tmp = f"{target}.tmp.{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    image = sys.argv[1]
    kernel, initrd = os.path.join(image, "vmlinuz"), os.path.join(image, "initrd.img")
    # Any failure (a short or odd file included) means booting the original: slower, never wrong.
    try:
        def make_vmlinux() -> bytes:
            with open(kernel, "rb") as f:
                return decompress(bzimage_payload(f.read()), kernel)
        def pvh_kernel(elf: bytes) -> bool:
            if not has_pvh_note(elf):
                raise ValueError("the decompressed kernel has no PVH entry note (CONFIG_PVH off?)")
            return True
        derive(os.path.join(image, "vmlinux.pvh"), make_vmlinux, pvh_kernel)
        kernel = os.path.join(image, "vmlinux.pvh")
    except Exception as e:  # noqa: BLE001
        print(f"boot-files: booting {kernel} as it is: {e}", file=sys.stderr)
    try:
        def make_cpio() -> bytes:
            with open(initrd, "rb") as f:
                raw = f.read()
            return raw if raw.startswith(b"070701") else decompress(raw, initrd)
        # A newc archive ends with its TRAILER!!! entry: a cut file does not.
        derive(os.path.join(image, "initrd.cpio"), make_cpio,
               lambda data: data.startswith(b"070701") and b"TRAILER!!!" in data[-1024:])
        initrd = os.path.join(image, "initrd.cpio")
    except Exception as e:  # noqa: BLE001
        print(f"boot-files: booting {initrd} as it is: {e}", file=sys.stderr)
    print(kernel, initrd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
