#!/usr/bin/env python3
"""bench/fanout_origin.py: a small fan-out (chat) origin for bench/chat.

    fanout_origin.py [--listen 127.0.0.1:0] [--heartbeat 15s] [--poll-hold 60s]

Prints `listening on 127.0.0.1:PORT` once it accepts (port 0: the kernel
picks), then serves HTTP/1.1 with keep-alive until SIGTERM or SIGINT:

  GET  /sse[?last=N]     text/event-stream, chunked: `: subscribed` at once,
                         then `id: N` / `data: <msg>` for every message
                         published (and those after N, or after the
                         Last-Event-ID header, first), and a `: heartbeat`
                         comment every --heartbeat. Never ends.
  GET  /poll?since=N     long-poll: as soon as a message with id > N exists
                         (at once if one does), 200 with Content-Length and
                         {"last": L, "messages": [{"id": I, "data": "..."}]};
                         after --poll-hold with none, the same with no
                         messages. No since: wait for the next message.
  POST /publish          the body is the message (one line of text): gets
                         the next id and is fanned out at once; answers
                         {"id": I, "sse": S, "poll": P} (subscribers it went to).
  GET  /stats            {"sse": S, "poll_waiting": P, "connections": C,
                         "last_id": L, "requests": R}

The message is opaque here: bench/chat_clients.py puts its publish time in
it. Standard library only (asyncio protocols), one process; it raises its
own descriptor limit to the hard one so that it can hold 10,000 open
subscribers.
"""
import argparse
import asyncio
import json
import resource
import signal
import sys
from urllib.parse import parse_qs, urlsplit

MAX_HEAD = 16384
MAX_BODY = 1 << 20
REPLAY = 1000  # messages at most in one answer / replay


def duration(text):
    for suffix, mult in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * mult
    return float(text)


class Hub:
    def __init__(self, poll_hold):
        self.messages = []  # (id, data bytes), id = index + 1
        self.sse = set()  # Conn streaming events
        self.pollers = {}  # Conn -> (since, timer handle)
        self.conns = 0
        self.requests = 0
        self.poll_hold = poll_hold
        self._poll_cache = {}  # since -> encoded body

    @property
    def last_id(self):
        return len(self.messages)

    def poll_body(self, since):
        body = self._poll_cache.get(since)
        if body is None:
            msgs = self.messages[since:since + REPLAY] if since >= 0 else []
            body = json.dumps({
                "last": self.last_id,
                "messages": [{"id": i, "data": d.decode("utf-8", "replace")}
                             for i, d in msgs],
            }, separators=(",", ":")).encode()
            if msgs:  # an empty answer is for a timed-out poll; never cache
                self._poll_cache[since] = body
        return body

    @staticmethod
    def sse_event(mid, data):
        lines = data.split(b"\n")
        ev = b"id: %d\n" % mid + b"".join(b"data: " + l + b"\n" for l in lines) + b"\n"
        return b"%x\r\n%s\r\n" % (len(ev), ev)

    def publish(self, data):
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").rstrip(b"\n")
        mid = len(self.messages) + 1
        self.messages.append((mid, data))
        self._poll_cache.clear()
        chunk = self.sse_event(mid, data)
        n_sse = 0
        for c in list(self.sse):
            c.write(chunk)
            n_sse += 1
        waiting = self.pollers
        self.pollers = {}
        for c, (since, timer) in waiting.items():
            timer.cancel()
            c.answer_poll(self.poll_body(since))
        return mid, n_sse, len(waiting)

    def heartbeat(self):
        chunk = b"%x\r\n%s\r\n" % (len(b": heartbeat\n\n"), b": heartbeat\n\n")
        for c in list(self.sse):
            c.write(chunk)

    def poll_timeout(self, c):
        if self.pollers.pop(c, None) is not None:
            c.answer_poll(self.poll_body(-1))


class Conn(asyncio.Protocol):
    def __init__(self, hub):
        self.hub = hub
        self.t = None
        self.buf = bytearray()
        self.busy = False  # a response is pending (held poll or SSE stream)
        self.close_after = False
        self.closed = False

    def connection_made(self, transport):
        self.t = transport
        self.hub.conns += 1

    def connection_lost(self, exc):
        self.closed = True
        self.hub.conns -= 1
        self.hub.sse.discard(self)
        p = self.hub.pollers.pop(self, None)
        if p is not None:
            p[1].cancel()

    def write(self, data):
        if not self.closed:
            self.t.write(data)

    def data_received(self, data):
        self.buf += data
        if len(self.buf) > MAX_HEAD + MAX_BODY:
            self.fail(413)
            return
        self.process()

    def fail(self, status):
        if not self.closed:
            self.t.write(b"HTTP/1.1 %d Error\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n" % status)
            self.t.close()
        self.closed = True

    def respond(self, status, body, ctype=b"application/json"):
        head = (b"HTTP/1.1 %d OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                b"Cache-Control: no-store\r\n" % (status, ctype, len(body)))
        if self.close_after:
            head += b"Connection: close\r\n"
        self.write(head + b"\r\n" + body)
        if self.close_after:
            self.t.close()
            self.closed = True

    def answer_poll(self, body):
        self.busy = False
        self.respond(200, body)
        self.process()  # a request pipelined behind the poll

    def process(self):
        while not self.busy and not self.closed:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > MAX_HEAD:
                    self.fail(431)
                return
            lines = bytes(self.buf[:end]).split(b"\r\n")
            try:
                method, target, version = lines[0].split(b" ")
            except ValueError:
                self.fail(400)
                return
            headers = {}
            for line in lines[1:]:
                name, sep, value = line.partition(b":")
                if not sep:
                    self.fail(400)
                    return
                headers[name.strip().lower()] = value.strip()
            pos = end + 4
            body = b""
            te = headers.get(b"transfer-encoding", b"").lower()
            if te:
                if te != b"chunked":
                    self.fail(501)
                    return
                parts = []
                while True:
                    eol = self.buf.find(b"\r\n", pos)
                    if eol < 0:
                        return  # wait for more
                    try:
                        size = int(bytes(self.buf[pos:eol]).split(b";")[0], 16)
                    except ValueError:
                        self.fail(400)
                        return
                    if size == 0:
                        tend = self.buf.find(b"\r\n\r\n", eol)
                        if self.buf[eol:eol + 4] == b"\r\n\r\n":
                            pos = eol + 4
                        elif tend >= 0:
                            pos = tend + 4
                        else:
                            return
                        break
                    if len(self.buf) < eol + 2 + size + 2:
                        return
                    parts.append(bytes(self.buf[eol + 2:eol + 2 + size]))
                    pos = eol + 2 + size + 2
                body = b"".join(parts)
            else:
                try:
                    length = int(headers.get(b"content-length", b"0"))
                except ValueError:
                    self.fail(400)
                    return
                if length > MAX_BODY:
                    self.fail(413)
                    return
                if len(self.buf) < pos + length:
                    return
                body = bytes(self.buf[pos:pos + length])
                pos += length
            del self.buf[:pos]
            conn = headers.get(b"connection", b"").lower()
            self.close_after = (b"close" in conn or
                                (version == b"HTTP/1.0" and b"keep-alive" not in conn))
            self.hub.requests += 1
            self.handle(method, target.decode("latin-1"), headers, body)

    def handle(self, method, target, headers, body):
        hub = self.hub
        url = urlsplit(target)
        q = parse_qs(url.query)
        if url.path == "/sse" and method == b"GET":
            last = q.get("last", [headers.get(b"last-event-id", b"").decode() or "-1"])[0]
            try:
                last = int(last)
            except ValueError:
                last = -1
            self.busy = True
            out = [b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                   b"Cache-Control: no-store\r\nTransfer-Encoding: chunked\r\n\r\n",
                   b"%x\r\n%s\r\n" % (len(b": subscribed\n\n"), b": subscribed\n\n")]
            if last >= 0:
                out += [hub.sse_event(i, d) for i, d in hub.messages[last:last + REPLAY]]
            self.write(b"".join(out))
            hub.sse.add(self)
        elif url.path == "/poll" and method == b"GET":
            try:
                since = int(q.get("since", [hub.last_id])[0])
            except ValueError:
                self.respond(400, b'{"error":"bad since"}')
                return
            if since < 0:
                since = 0
            if hub.last_id > since:
                self.respond(200, hub.poll_body(since))
                return
            self.busy = True
            timer = asyncio.get_running_loop().call_later(
                hub.poll_hold, hub.poll_timeout, self)
            hub.pollers[self] = (since, timer)
        elif url.path == "/publish" and method == b"POST":
            mid, n_sse, n_poll = hub.publish(body)
            self.respond(200, json.dumps({"id": mid, "sse": n_sse, "poll": n_poll}).encode())
        elif url.path == "/stats" and method == b"GET":
            self.respond(200, json.dumps({
                "sse": len(hub.sse), "poll_waiting": len(hub.pollers),
                "connections": hub.conns, "last_id": hub.last_id,
                "requests": hub.requests}).encode())
        else:
            self.respond(404, b'{"error":"not found"}')


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--heartbeat", default="15s")
    ap.add_argument("--poll-hold", default="60s")
    ap.add_argument("--backlog", type=int, default=8192)
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    host, _, port = a.listen.rpartition(":")
    hub = Hub(duration(a.poll_hold))
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Conn(hub), host, int(port),
                                      backlog=a.backlog, reuse_address=True)
    addr = server.sockets[0].getsockname()
    print("listening on %s:%d" % (addr[0], addr[1]), flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    hb = duration(a.heartbeat)

    async def beat():
        while True:
            await asyncio.sleep(hb)
            hub.heartbeat()

    beater = asyncio.create_task(beat())
    await stop.wait()
    beater.cancel()
    server.close()
    print("stopping: sse %d poll_waiting %d last_id %d requests %d" %
          (len(hub.sse), len(hub.pollers), hub.last_id, hub.requests),
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
