#!/usr/bin/env python3
"""Traffic generators and synthetic captures for the packet-analysis benchmark (docs/benchmarks.md).

    benchtraffic.py tcp-server PORT                 short-connection server: reads "SIZE\\n", sends SIZE bytes, closes
    benchtraffic.py tcp-client HOST PORT COUNT      COUNT sequential short connections, response sizes cycling
    benchtraffic.py udp-echo PORT                   echoes every datagram back to its sender
    benchtraffic.py udp-client HOST PORT COUNT      COUNT datagrams of cycling sizes, paced in bursts
    benchtraffic.py synflood OUT FLOWS PACKETS      writes a pcap of PACKETS TCP SYNs over FLOWS distinct flows

Only the standard library; every loop is bounded by its COUNT.
"""
import socket
import struct
import sys
import time

RESPONSE_SIZES = [120, 900, 3000, 12000, 40000, 200]
UDP_SIZES = [64, 200, 512, 1000, 1400, 90]


def tcp_server(port: int) -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("0.0.0.0", port))
    srv.listen(512)
    payload = b"x" * max(RESPONSE_SIZES)
    while True:  # ended by the caller (SIGTERM) once the client is done
        conn, _ = srv.accept()
        try:
            conn.settimeout(5)
            req = b""
            while not req.endswith(b"\n") and len(req) < 64:
                chunk = conn.recv(64)
                if not chunk:
                    break
                req += chunk
            try:
                size = min(int(req.strip() or b"0"), len(payload))
            except ValueError:
                size = 0
            conn.sendall(payload[:size])
        except OSError:
            pass
        finally:
            conn.close()


def tcp_client(host: str, port: int, count: int) -> None:
    failures = 0
    for i in range(count):
        size = RESPONSE_SIZES[i % len(RESPONSE_SIZES)]
        try:
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"%d\n" % size)
            got = 0
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
            s.close()
        except OSError:
            failures += 1
            if failures > 100:
                sys.exit("tcp-client: more than 100 failed connections")
    print(f"tcp-client: {count} connections, {failures} failed", file=sys.stderr)


def udp_echo(port: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    while True:  # ended by the caller
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


def udp_client(host: str, port: int, count: int) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.setblocking(False)
    payloads = [b"u" * n for n in UDP_SIZES]
    echoed = 0
    for i in range(count):
        try:
            s.sendto(payloads[i % len(payloads)], (host, port))
        except BlockingIOError:
            pass
        if i % 100 == 99:
            time.sleep(0.002)
            for _ in range(200):
                try:
                    s.recv(2048)
                    echoed += 1
                except BlockingIOError:
                    break
    print(f"udp-client: {count} datagrams sent, {echoed} echoes read", file=sys.stderr)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def synflood(out: str, flows: int, packets: int) -> None:
    """Ethernet/IPv4/TCP SYNs with valid checksums, packet i belongs to flow i % flows; 100 k packets/s."""
    src_mac = bytes.fromhex("020000000001")
    dst_mac = bytes.fromhex("020000000002")
    dst_ip = socket.inet_aton("192.168.1.10")
    base = struct.unpack("!I", socket.inet_aton("198.18.0.0"))[0]
    spread = 131071  # source addresses in 198.18.0.0/15; flow k -> address k % spread, port 1024 + k // spread
    start_us = 1_700_000_000 * 1_000_000
    with open(out, "wb") as f:
        # pcap global header: magic (microseconds), v2.4, snaplen 65535, Ethernet
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        buf = []
        for i in range(packets):
            k = i % flows
            src_ip = struct.pack("!I", base + 1 + k % spread)
            sport = 1024 + k // spread  # (address, port) distinct per flow
            seq = (k * 2654435761) & 0xFFFFFFFF
            ip_id = i & 0xFFFF
            tcp = struct.pack("!HHIIBBHHH", sport, 80, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
            pseudo = src_ip + dst_ip + struct.pack("!BBH", 0, 6, len(tcp))
            tcp = tcp[:16] + struct.pack("!H", checksum(pseudo + tcp)) + tcp[18:]
            ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ip_id, 0x4000, 64, 6, 0, src_ip, dst_ip)
            ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
            frame = dst_mac + src_mac + b"\x08\x00" + ip + tcp
            t = start_us + i * 10
            buf.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)) + frame)
            if len(buf) >= 65536:
                f.write(b"".join(buf))
                buf.clear()
        f.write(b"".join(buf))


def main(argv: list) -> None:
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "tcp-server":
        tcp_server(int(args[0]))
    elif cmd == "tcp-client":
        tcp_client(args[0], int(args[1]), int(args[2]))
    elif cmd == "udp-echo":
        udp_echo(int(args[0]))
    elif cmd == "udp-client":
        udp_client(args[0], int(args[1]), int(args[2]))
    elif cmd == "synflood":
        synflood(args[0], int(args[1]), int(args[2]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
