#!/usr/bin/env python3
"""A round-robin TCP proxy for the load benchmark: each new client connection goes to the next backend in
turn (the load generator keeps several keep-alive connections and sends any device's reports on any of
them, so one device's reports reach every collector process). On SIGTERM it prints, per backend, the
connections and bytes it carried.

    rr-proxy.py --listen 127.0.0.1:0 --port-file FILE HOST:PORT [HOST:PORT ...]
"""
import argparse
import asyncio
import signal
import sys


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("backends", nargs="+")
    args = ap.parse_args()
    backends = [(h, int(p)) for h, p in (b.rsplit(":", 1) for b in args.backends)]
    stats = {b: {"connections": 0, "bytes_up": 0, "bytes_down": 0} for b in backends}
    turn = 0

    async def pipe(reader, writer, stat, key):
        try:
            while data := await reader.read(65536):
                stat[key] += len(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def handle(client_reader, client_writer):
        nonlocal turn
        backend = backends[turn % len(backends)]
        turn += 1
        stats[backend]["connections"] += 1
        try:
            r, w = await asyncio.open_connection(*backend)
        except OSError as e:
            print(f"rr-proxy: {backend[0]}:{backend[1]}: {e}", file=sys.stderr)
            client_writer.close()
            return
        await asyncio.gather(pipe(client_reader, w, stats[backend], "bytes_up"), pipe(r, client_writer, stats[backend], "bytes_down"))

    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(handle, host, int(port))
    with open(args.port_file, "w") as f:
        f.write(str(server.sockets[0].getsockname()[1]))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    async with server:
        await stop.wait()
    for (h, p), st in stats.items():
        print(f"rr-proxy: backend {h}:{p}: {st['connections']} connections, {st['bytes_up']} bytes up, {st['bytes_down']} bytes down", flush=True)


asyncio.run(main())
