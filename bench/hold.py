#!/usr/bin/env python3
"""bench/hold.py: open K connections to 127.0.0.1:PORT and hold them.

    hold.py --port P --count K [--mode idle|inflight] [--path /]
            [--batch 500] [--max-seconds 300]

idle      each connection sends one request, reads the whole response and
          then stays open, idle (K idle keep-alive clients: the idle-fds
          scenario).
inflight  each connection sends one request and never reads: give it a path
          with a long origin delay (/?delay=600s) and the proxy holds K
          requests in flight (the memory scenario).

Connections are opened at most --batch at a time so that the proxy's listen
queue is not what is measured. Prints `held N failed M` when every
connection is set up (or has failed), then holds them until SIGTERM, SIGINT
or --max-seconds, and prints `still open N` before it exits. Standard
library only; one process, one epoll loop.
"""
import argparse
import errno
import os
import selectors
import signal
import socket
import sys
import time


class Conn:
    __slots__ = ("sock", "state", "buf", "need")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"
        self.buf = b""
        self.need = None  # bytes of the whole response, once the head is in


def response_complete(c):
    """True once the whole (Content-Length framed) response is in c.buf."""
    if c.need is None:
        end = c.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        length = 0
        for line in c.buf[:end].split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        c.need = end + 4 + length
    return len(c.buf) >= c.need


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--mode", choices=("idle", "inflight"), default="idle")
    ap.add_argument("--path", default="/")
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--setup-seconds", type=float, default=60)
    ap.add_argument("--max-seconds", type=float, default=300)
    args = ap.parse_args()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    request = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: hold\r\n\r\n"
               % (args.path, args.port)).encode()
    addr = ("127.0.0.1", args.port)
    sel = selectors.DefaultSelector()
    started = 0
    pending = 0
    held = []
    failed = 0
    deadline = time.monotonic() + args.setup_seconds

    def fail(c):
        nonlocal failed, pending
        failed += 1
        pending -= 1
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()

    while (started < args.count or pending > 0) and not stop:
        if time.monotonic() > deadline:
            break
        while started < args.count and pending < args.batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            started += 1
            err = s.connect_ex(addr)
            c = Conn(s)
            if err not in (0, errno.EINPROGRESS):
                failed += 1
                s.close()
                continue
            pending += 1
            sel.register(s, selectors.EVENT_WRITE, c)
        for key, _ in sel.select(timeout=0.5):
            c = key.data
            if c.state == "connecting":
                if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    fail(c)
                    continue
                try:
                    c.sock.send(request)
                except OSError:
                    fail(c)
                    continue
                if args.mode == "inflight":
                    sel.unregister(c.sock)
                    c.state = "held"
                    held.append(c)
                    pending -= 1
                else:
                    c.state = "reading"
                    sel.modify(c.sock, selectors.EVENT_READ, c)
            else:
                try:
                    data = c.sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    fail(c)
                    continue
                c.buf += data
                if response_complete(c):
                    sel.unregister(c.sock)
                    c.state = "held"
                    c.buf = b""
                    held.append(c)
                    pending -= 1
    # Whatever did not make it in time counts as failed.
    for key in list(sel.get_map().values()):
        fail(key.data)
    print("held %d failed %d" % (len(held), failed + args.count - started),
          flush=True)

    # Hold. Watch for the peer closing an idle connection (a keep-alive
    # timeout, a crash): those are counted in `still open`.
    for c in held:
        sel.register(c.sock, selectors.EVENT_READ, c)
    open_count = len(held)
    end = time.monotonic() + args.max_seconds
    while not stop and time.monotonic() < end:
        for key, _ in sel.select(timeout=0.5):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(c.sock)
                c.sock.close()
                open_count -= 1
    print("still open %d" % open_count, flush=True)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
