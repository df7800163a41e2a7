#!/usr/bin/env python3
"""Traffic for the netlab (python3 standard library only); traffic.sh runs both halves.

    traffic.py server --marker M --seconds S [--port-base 5001]
    traffic.py client --server 203.0.113.2 --marker M --seconds S [--port-base 5001]
                      [--bulk-dir down|up] [--bulk-rate BYTES_PER_S] [--short-interval S] [--udp-interval S]

Ports (server side): BASE   TCP short connections: the client sends one request line holding the
                            marker, the server answers one line holding the marker and closes;
                     BASE+1 TCP bulk: one connection; its payload is the marker repeated, nothing else
                            (so every full-sized segment holds the marker at least once);
                            'down' (default): server -> client, 'up': client -> server;
                     BASE+2 UDP: the client sends datagrams holding the marker, the server echoes them.
Every loop is bounded: the client stops after --seconds, the server exits after --seconds + 20 s
at the latest. Each side prints one JSON line with its counters at the end.
"""
import argparse
import json
import socket
import sys
import threading
import time

BULK_CHUNK_MIN = 16384


def payload_block(marker, at_least):
    m = marker.encode("ascii")
    return m * max(1, -(-at_least // len(m)))  # a whole number of markers: writes stay in phase


def pace(sent, rate, t0):
    if rate > 0:
        ahead = sent / rate - (time.monotonic() - t0)
        if ahead > 0:
            time.sleep(min(ahead, 0.5))


# ---------------------------------------------------------------------------------------------- server

def server(args):
    marker = args.marker
    deadline = time.monotonic() + args.seconds + 20
    counts = {"short_connections": 0, "bulk_connections": 0, "bulk_marker_ok": None, "bulk_bytes_sent": 0, "bulk_bytes_received": 0,
              "udp_datagrams": 0, "errors": 0}
    lock = threading.Lock()

    def add(key, n=1):
        with lock:
            counts[key] += n

    def listener(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((args.bind, port))
        s.listen(64)
        s.settimeout(0.5)
        return s

    def read_line(c, limit=4096):
        """The first line, and what was read past it (the start of a bulk upload)."""
        buf = b""
        while b"\n" not in buf and len(buf) < limit:
            d = c.recv(limit - len(buf))
            if not d:
                break
            buf += d
        line, _, rest = buf.partition(b"\n")
        return line.decode("ascii", "replace"), rest

    def short_conn(c):
        try:
            c.settimeout(10)
            line, _ = read_line(c)
            c.sendall(f"OK {marker} {line.split()[-1] if line.split() else '-'}\n".encode("ascii"))
            add("short_connections")
        except OSError:
            add("errors")
        finally:
            c.close()

    def bulk_conn(c):
        # Request line: "BULK down|up RATE SECONDS"
        try:
            c.settimeout(10)
            line, rest = read_line(c)
            parts = line.split()
            direction, rate, secs = parts[1], float(parts[2]), min(float(parts[3]), args.seconds + 5)
            add("bulk_connections")
            t0 = time.monotonic()
            if direction == "down":
                block = payload_block(marker, max(BULK_CHUNK_MIN, len(marker)))
                sent = 0
                while time.monotonic() - t0 < secs and time.monotonic() < deadline:
                    c.sendall(block)
                    sent += len(block)
                    pace(sent, rate, t0)
                add("bulk_bytes_sent", sent)
                c.shutdown(socket.SHUT_WR)
                c.settimeout(5)
                while c.recv(65536):
                    pass
            else:
                m = marker.encode("ascii")
                got, ok, tail = 0, True, b""
                c.settimeout(secs + 10)
                d = rest
                while time.monotonic() < deadline:
                    if d:
                        # The stream is the marker repeated: check it stays in phase across reads.
                        got += len(d)
                        data = tail + d
                        whole = len(data) - len(data) % len(m)
                        if data[:whole] != m * (whole // len(m)):
                            ok = False
                        tail = data[whole:]
                    d = c.recv(262144)
                    if not d:
                        break
                add("bulk_bytes_received", got)
                with lock:
                    counts["bulk_marker_ok"] = ok and got > 0
        except (OSError, ValueError, IndexError):
            add("errors")
        finally:
            c.close()

    def accept_loop(s, handler):
        while time.monotonic() < deadline:
            try:
                c, _ = s.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            threading.Thread(target=handler, args=(c,), daemon=True).start()

    def udp_loop(u):
        u.settimeout(0.5)
        while time.monotonic() < deadline:
            try:
                d, peer = u.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                break
            try:
                u.sendto(d, peer)
                add("udp_datagrams")
            except OSError:
                add("errors")

    ls = listener(args.port_base)
    lb = listener(args.port_base + 1)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind((args.bind, args.port_base + 2))
    threads = [threading.Thread(target=accept_loop, args=(ls, short_conn), daemon=True),
               threading.Thread(target=accept_loop, args=(lb, bulk_conn), daemon=True),
               threading.Thread(target=udp_loop, args=(u,), daemon=True)]
    for t in threads:
        t.start()
    print(f"traffic server ready on {args.bind}:{args.port_base}-{args.port_base + 2}", flush=True)
    import signal
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(0.2)
    with lock:
        print("traffic server counters: " + json.dumps(counts, sort_keys=True), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------- client

def client(args):
    marker = args.marker
    t_end = time.monotonic() + args.seconds
    counts = {"short_ok": 0, "short_failed": 0, "short_marker_echoed": 0, "bulk_bytes_sent": 0,
              "bulk_bytes_received": 0, "bulk_marker_ok": None, "bulk_error": None,
              "udp_sent": 0, "udp_echoed": 0, "udp_marker_ok": 0}
    lock = threading.Lock()

    def add(key, n=1):
        with lock:
            counts[key] += n

    def short_loop():
        i = 0
        while time.monotonic() < t_end:
            i += 1
            try:
                with socket.create_connection((args.server, args.port_base), timeout=5) as c:
                    c.sendall(f"HELLO {marker} {i}\n".encode("ascii"))
                    reply = b""
                    while True:
                        d = c.recv(4096)
                        if not d:
                            break
                        reply += d
                add("short_ok")
                if marker.encode("ascii") in reply:
                    add("short_marker_echoed")
            except OSError:
                add("short_failed")
            time.sleep(max(0.0, min(args.short_interval, t_end - time.monotonic())))

    def bulk():
        secs = max(0.5, t_end - time.monotonic())
        try:
            with socket.create_connection((args.server, args.port_base + 1), timeout=10) as c:
                c.sendall(f"BULK {args.bulk_dir} {args.bulk_rate} {secs:.3f}\n".encode("ascii"))
                c.settimeout(secs + 15)
                m = marker.encode("ascii")
                if args.bulk_dir == "down":
                    got, ok, tail = 0, True, b""
                    while True:
                        d = c.recv(262144)
                        if not d:
                            break
                        got += len(d)
                        # The stream is the marker repeated: check it stays in phase across reads.
                        data = tail + d
                        whole = len(data) - len(data) % len(m)
                        if data[:whole] != m * (whole // len(m)):
                            ok = False
                        tail = data[whole:]
                    add("bulk_bytes_received", got)
                    counts["bulk_marker_ok"] = ok and got > 0
                else:
                    block = payload_block(marker, max(BULK_CHUNK_MIN, len(marker)))
                    sent, t0 = 0, time.monotonic()
                    while time.monotonic() < t_end:
                        c.sendall(block)
                        sent += len(block)
                        pace(sent, args.bulk_rate, t0)
                    c.shutdown(socket.SHUT_WR)
                    while c.recv(65536):
                        pass
                    add("bulk_bytes_sent", sent)
                    counts["bulk_marker_ok"] = True
        except OSError as e:
            counts["bulk_error"] = str(e)

    def udp_loop():
        m = marker.encode("ascii")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(0.2)
            i = 0
            while time.monotonic() < t_end:
                i += 1
                dgram = m + f" udp {i} ".encode("ascii") + m
                try:
                    u.sendto(dgram, (args.server, args.port_base + 2))
                    add("udp_sent")
                    d, _ = u.recvfrom(65535)
                    add("udp_echoed")
                    if d == dgram:
                        add("udp_marker_ok")
                except OSError:
                    pass
                time.sleep(max(0.0, min(args.udp_interval, t_end - time.monotonic())))

    threads = [threading.Thread(target=f, daemon=True) for f in (bulk, short_loop, udp_loop)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=max(1.0, t_end - time.monotonic()) + 30)
    with lock:
        counts["bulk_rate_limit"] = args.bulk_rate
        counts["bulk_dir"] = args.bulk_dir
        print("traffic client counters: " + json.dumps(counts, sort_keys=True), flush=True)
        ok = counts["short_ok"] > 0 and counts["udp_echoed"] > 0 and counts["bulk_marker_ok"] is True and \
            (counts["bulk_bytes_received"] > 0 or counts["bulk_bytes_sent"] > 0)
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("role", choices=("server", "client"))
    ap.add_argument("--marker", required=True)
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--port-base", type=int, default=5001)
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--server", default="203.0.113.2")
    ap.add_argument("--bulk-dir", choices=("down", "up"), default="down")
    ap.add_argument("--bulk-rate", type=float, default=0, help="bytes per second, 0: as fast as TCP goes")
    ap.add_argument("--short-interval", type=float, default=0.5)
    ap.add_argument("--udp-interval", type=float, default=0.1)
    args = ap.parse_args()
    if not args.marker or not args.marker.isascii() or not args.marker.isprintable() or any(c.isspace() for c in args.marker):
        ap.error("MARKER must be printable ASCII without spaces")
    if not 0 < args.seconds <= 3600:
        ap.error("SECONDS must be in (0, 3600]")
    return server(args) if args.role == "server" else client(args)


if __name__ == "__main__":
    sys.exit(main())
