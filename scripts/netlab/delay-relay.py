#!/usr/bin/env python3
"""A userspace layer-2 delaying relay (a stand-in for netem, which this kernel does not have).

    delay-relay.py IF_A IF_B DELAY_MS [--jitter-ms J] [--seed S] [--max-queue N] [--sched auto|fifo|nice|normal]

Bridges two interfaces at layer 2 with two AF_PACKET raw sockets (ETH_P_ALL): every frame received on
IF_A is sent out of IF_B DELAY_MS later, and every frame received on IF_B is sent out of IF_A DELAY_MS
later. A round trip through one relay therefore gets +2 x DELAY_MS.

- Frames that the relay itself sends are not read back: PACKET_IGNORE_OUTGOING on each socket, and
  frames whose sll_pkttype is PACKET_OUTGOING are skipped as well (kernels without the option).
- Frames wait in one priority queue of (due time, sequence, output socket, frame); the main loop
  select()s with the time left to the next due frame (time.monotonic), so a 20 ms delay is 20 ms
  within a fraction of a millisecond at low rate.
- With --jitter-ms J each frame's delay is DELAY_MS + uniform(-J, +J) (never below 0), but frames of
  one direction never overtake each other (a frame's due time is at least the previous frame's), so
  jitter adds delay variation, not reordering. --seed makes the jitter reproducible.
- The queue is bounded (--max-queue, 10 000 frames): a frame that arrives while it is full is dropped
  and counted.
- Frames are forwarded whole and never parsed: the relay does not look inside them.
- Lateness is measured just before send(): on a veth, send() itself carries the frame through the
  receiving namespace's stack, which is not the relay's delay.
- SIGTERM / SIGINT: prints its counters as one JSON line on stderr ("delay-relay counters: {...}")
  and exits 0; frames still queued are counted as discarded. SIGUSR1 prints the counters and goes on.

Counters: per direction ("a_to_b", "b_to_a") frames/bytes received and sent, frames dropped because
the queue was full, frames the kernel dropped because the relay's receive buffer overflowed
(PACKET_STATISTICS), send errors, and lateness (how long after its due time a frame actually left:
mean, max, and how many were more than 1 ms late), plus the deepest the queue got and the CPU
scheduling the relay obtained (--sched).

The interfaces should have their offloads off (ethtool -K IF tso off gso off gro off tx off rx off
rxvlan off txvlan off) so that every frame is at most MTU-sized and VLAN tags stay inside the frame.
"""
import argparse
import errno
import heapq
import json
import os
import random
import select
import signal
import socket
import sys
import time

try:
    import ctypes
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover
    _libc = None

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23  # linux/if_packet.h, kernel 4.20+
PACKET_STATISTICS = 6        # struct tpacket_stats {tp_packets, tp_drops}; reading resets it
PACKET_OUTGOING = 4          # sll_pkttype of a frame this host sent
RECV_SIZE = 65536 + 256      # larger than any frame with offloads off; a frame this long is "truncated"
DRAIN_BATCH = 256            # frames read from one socket per wake-up before looking at the queue again
SOCK_BUF = 4 * 1024 * 1024


def open_socket(ifname):
    # Protocol 0 at creation: the socket receives nothing until bind() names the interface and
    # ETH_P_ALL, so no frame from another interface slips in between (Python htons the bind proto).
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    try:
        s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
        ignore_outgoing = True
    except OSError:
        ignore_outgoing = False
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            s.setsockopt(socket.SOL_SOCKET, opt, SOCK_BUF)
        except OSError:
            pass
    s.bind((ifname, ETH_P_ALL))
    s.setblocking(False)
    return s, ignore_outgoing


def sharpen_timers():
    # The default timer slack (50 us) lets the kernel fire select() timeouts late to batch wake-ups;
    # 1 ns makes the wake-up as close to the due time as the scheduler allows.
    PR_SET_TIMERSLACK = 29
    if _libc is not None:
        try:
            _libc.prctl(PR_SET_TIMERSLACK, 1, 0, 0, 0)
        except (AttributeError, OSError):
            pass


def set_scheduling(mode):
    """Returns the scheduling the relay got. 'auto': SCHED_FIFO priority 10, else nice -15, else none.

    On a machine whose cores are busy with other work an ordinary process wakes up milliseconds late
    now and then; SCHED_FIFO keeps the relay's wake-ups within tens of microseconds of the due time.
    The kernel's RT throttling (sched_rt_runtime_us, 95 % by default) still leaves other processes a
    share of each core if the relay is ever saturated."""
    if mode in ("auto", "fifo"):
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
            return "fifo:10"
        except (OSError, AttributeError):
            if mode == "fifo":
                return "normal (SCHED_FIFO refused)"
    if mode in ("auto", "fifo", "nice"):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, -15)
            return "nice:-15"
        except OSError:
            return "normal (nice refused)"
    return "normal"


def new_direction():
    return {"rx_frames": 0, "rx_bytes": 0, "tx_frames": 0, "tx_bytes": 0, "dropped_queue_full": 0,
            "send_errors": 0, "truncated": 0, "dropped_by_kernel": 0, "late_sum_us": 0.0, "late_max_us": 0.0, "late_over_1ms": 0}


def main():
    ap = argparse.ArgumentParser(description="Layer-2 delaying relay between two interfaces (AF_PACKET).")
    ap.add_argument("if_a")
    ap.add_argument("if_b")
    ap.add_argument("delay_ms", type=float)
    ap.add_argument("--jitter-ms", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-queue", type=int, default=10000)
    ap.add_argument("--sched", choices=("auto", "fifo", "nice", "normal"), default="auto",
                    help="CPU scheduling of the relay (default auto: SCHED_FIFO 10, else nice -15)")
    args = ap.parse_args()
    if args.delay_ms < 0 or args.jitter_ms < 0:
        ap.error("delays must be >= 0")

    rng = random.Random(args.seed)
    delay = args.delay_ms / 1000.0
    jitter = args.jitter_ms / 1000.0

    sharpen_timers()
    sched = set_scheduling(args.sched)
    sa, ign_a = open_socket(args.if_a)
    sb, ign_b = open_socket(args.if_b)
    names = {sa.fileno(): "a_to_b", sb.fileno(): "b_to_a"}
    out_of = {sa.fileno(): sb, sb.fileno(): sa}
    stats = {"a_to_b": new_direction(), "b_to_a": new_direction()}
    last_due = {"a_to_b": 0.0, "b_to_a": 0.0}
    general = {"if_a": args.if_a, "if_b": args.if_b, "delay_ms": args.delay_ms, "jitter_ms": args.jitter_ms,
               "seed": args.seed, "sched": sched, "ignore_outgoing_option": ign_a and ign_b, "max_queue": args.max_queue,
               "queue_max_depth": 0, "discarded_at_exit": 0, "pid": os.getpid()}

    # Signals wake select() through a self-pipe (a plain flag would not: select is retried after EINTR).
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    pending = {"stop": False, "dump": False}

    def on_stop(_sig, _frm):
        pending["stop"] = True

    def on_dump(_sig, _frm):
        pending["dump"] = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, on_dump)

    def kernel_drops():
        # Frames the kernel dropped because a socket's receive buffer was full (the relay fell behind).
        for fd, sock in ((sa.fileno(), sa), (sb.fileno(), sb)):
            try:
                raw = sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
                stats[names[fd]]["dropped_by_kernel"] += int.from_bytes(raw[4:8], sys.byteorder)
            except OSError:
                pass

    def report(queue_len):
        kernel_drops()
        out = dict(general)
        out["queued_now"] = queue_len
        for d, st in stats.items():
            st = dict(st)
            st["late_mean_us"] = round(st["late_sum_us"] / st["tx_frames"], 1) if st["tx_frames"] else 0.0
            st["late_max_us"] = round(st["late_max_us"], 1)
            del st["late_sum_us"]
            out[d] = st
        print("delay-relay counters: " + json.dumps(out, sort_keys=True), file=sys.stderr, flush=True)

    print(f"delay-relay: {args.if_a} <-> {args.if_b}, {args.delay_ms} ms each way"
          f" (jitter {args.jitter_ms} ms), scheduling {sched}, pid {os.getpid()}", file=sys.stderr, flush=True)

    heap = []
    seq = 0
    monotonic = time.monotonic
    rlist = [sa, sb, wake_r]
    max_queue = args.max_queue

    while True:
        if pending["dump"]:
            pending["dump"] = False
            report(len(heap))
        if pending["stop"]:
            general["discarded_at_exit"] = len(heap)
            report(len(heap))
            return 0

        timeout = None
        if heap:
            timeout = heap[0][0] - monotonic()
            if timeout < 0:
                timeout = 0
        try:
            ready, _, _ = select.select(rlist, [], [], timeout)
        except InterruptedError:
            ready = []

        for s in ready:
            if s is wake_r:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                continue
            fd = s.fileno()
            d = names[fd]
            st = stats[d]
            out = out_of[fd]
            for _ in range(DRAIN_BATCH):
                try:
                    frame, addr = s.recvfrom(RECV_SIZE)
                except (BlockingIOError, InterruptedError):
                    break
                now = monotonic()
                if addr[2] == PACKET_OUTGOING:
                    continue
                st["rx_frames"] += 1
                st["rx_bytes"] += len(frame)
                if len(frame) >= RECV_SIZE:
                    st["truncated"] += 1
                if len(heap) >= max_queue:
                    st["dropped_queue_full"] += 1
                    continue
                due = now + delay
                if jitter:
                    due = max(now, due + rng.uniform(-jitter, jitter))
                    if due < last_due[d]:
                        due = last_due[d]
                    last_due[d] = due
                seq += 1
                heapq.heappush(heap, (due, seq, out, d, frame))
            if len(heap) > general["queue_max_depth"]:
                general["queue_max_depth"] = len(heap)

        now = monotonic()
        while heap and heap[0][0] <= now:
            due, _, out, d, frame = heapq.heappop(heap)
            st = stats[d]
            late_us = (monotonic() - due) * 1e6  # before send(): on a veth, send() runs the peer's stack
            try:
                out.send(frame)
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.ENOBUFS, errno.ENETDOWN, errno.ENXIO, errno.EMSGSIZE):
                    st["send_errors"] += 1
                    continue
                raise
            st["tx_frames"] += 1
            st["tx_bytes"] += len(frame)
            st["late_sum_us"] += late_us
            if late_us > st["late_max_us"]:
                st["late_max_us"] = late_us
            if late_us > 1000:
                st["late_over_1ms"] += 1
            now = monotonic()


if __name__ == "__main__":
    sys.exit(main())
