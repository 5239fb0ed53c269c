#!/usr/bin/env python3
"""bench/slow_clients.py: N clients that trickle their request heads and read
their replies at a trickle (slowloris-style, and mobile-phone-style).

    slow_clients.py --port P [--count 5000] [--path /?size=128k]
                    [--ramp 3] [--head-seconds 3] [--rate 1024]
                    [--max-seconds 300]

Each client connects (receive buffer shrunk to 4 KiB so the kernel does not
read ahead for it), sends its request head in 6 pieces spread over
--head-seconds, then reads at most --rate bytes once a second until the
reply is complete, and starts over on the same connection (or a new one if
the peer closed it). Connects are spread over --ramp seconds. Prints
`ready N` once the ramp and the first heads are done (N connections open),
then, on SIGTERM/SIGINT or after --max-seconds, one line of totals:
`open N connects N closed N refused N heads N replies N bytes N`.
Standard library only (asyncio), one process.
"""
import argparse
import asyncio
import os
import random
import signal
import socket
import sys

stats = dict(open=0, connects=0, closed=0, refused=0, heads=0, replies=0,
             bytes=0)


def head_pieces(path, port, n=6):
    head = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: slow-client\r\n"
            "Accept: */*\r\nX-Slow: trickle\r\n\r\n" % (path, port)).encode()
    step = -(-len(head) // n)
    return [head[i:i + step] for i in range(0, len(head), step)]


async def one_reply(loop, s, rate):
    """Read one Content-Length framed reply at `rate` bytes a second;
    False if the peer closed first."""
    buf = b""
    need = None
    got = 0
    while True:
        await asyncio.sleep(1.0)
        data = await loop.sock_recv(s, rate)
        if not data:
            return False
        stats["bytes"] += len(data)
        if need is None:
            buf += data
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                continue
            length = 0
            for line in buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            need = length
            got = len(buf) - end - 4
            buf = b""
        else:
            got += len(data)
        if got >= need:
            return True


async def client(loop, args, pieces, stop):
    await asyncio.sleep(random.uniform(0, args.ramp))
    gap = args.head_seconds / len(pieces)
    while not stop.is_set():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setblocking(False)
        try:
            await loop.sock_connect(s, ("127.0.0.1", args.port))
        except OSError:
            stats["refused"] += 1
            s.close()
            await asyncio.sleep(1.0)
            continue
        stats["connects"] += 1
        stats["open"] += 1
        try:
            while not stop.is_set():
                for p in pieces:
                    await loop.sock_sendall(s, p)
                    await asyncio.sleep(gap)
                stats["heads"] += 1
                if not await one_reply(loop, s, args.rate):
                    break
                stats["replies"] += 1
        except OSError:
            pass
        stats["open"] -= 1
        stats["closed"] += 1
        s.close()


async def amain(args):
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pieces = head_pieces(args.path, args.port)
    tasks = [asyncio.ensure_future(client(loop, args, pieces, stop))
             for _ in range(args.count)]
    try:
        await asyncio.wait_for(stop.wait(), args.ramp + args.head_seconds + 0.5)
    except asyncio.TimeoutError:
        pass
    print("ready %d" % stats["open"], flush=True)
    try:
        await asyncio.wait_for(stop.wait(), args.max_seconds)
    except asyncio.TimeoutError:
        pass
    print(" ".join("%s %d" % kv for kv in stats.items()), flush=True)
    os._exit(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--path", default="/?size=128k")
    ap.add_argument("--ramp", type=float, default=3)
    ap.add_argument("--head-seconds", type=float, default=3)
    ap.add_argument("--rate", type=int, default=1024)
    ap.add_argument("--max-seconds", type=float, default=300)
    args = ap.parse_args()
    asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
