#!/usr/bin/env python3
"""bench/chat_clients.py: N chat subscribers and one publisher, through a
proxy in front of bench/fanout_origin.py; publish -> delivery latency.

    chat_clients.py --port P [--clients 1000] [--messages 10]
                    [--interval 500ms] [--sse-share 0.5] [--procs 2]
                    [--connect-batch 500] [--subscribe-timeout 90s]
                    [--drain-timeout 30s] [--go-file PATH] [--json PATH]
                    [--max-seconds 600]

Opens --clients connections to 127.0.0.1:P (a share --sse-share of them
GET /sse, the others GET /poll?since=N long-polls that re-poll on the same
keep-alive connection after each answer), spread over --procs processes,
at most --connect-batch connecting at once per process. Then it polls
GET /stats (through the proxy) until the origin holds every subscriber,
prints `subscribed N`, waits for --go-file to exist if one is given (so
that a caller can measure the proxy while every client is connected), and
publishes --messages messages, one every --interval, with POST /publish on
one keep-alive connection; each message carries its publish time. Every
subscriber records, for each message, publish -> delivery latency (the
moment its bytes reached this process's event loop). After the last
publish it waits until every subscriber has every message (or
--drain-timeout), then prints the percentiles, delivered/expected (unique
deliveries; duplicates and errors are counted apart) and writes --json.
Exit status 0 only if every message reached every subscriber with no
error. Standard library only (asyncio).
"""
import argparse
import asyncio
import json
import multiprocessing as mp
import os
import resource
import signal
import sys
import time
from collections import Counter

SSE, POLL = 0, 1
HEAD, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, BODY_CL, BODY_CLOSE = range(6)


def duration(text):
    for suffix, mult in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * mult
    return float(text)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an ascending list (None if empty)."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


# ---------------------------------------------------------------- subscribers

class Shared:
    """Per-process totals, shared by every subscriber of the process."""

    def __init__(self, port, retries):
        self.port = port
        self.retries = retries
        self.lat = ([], [])  # seconds, per kind
        self.seq_max = {}  # seq -> latest delivery latency seen
        self.delivered = 0
        self.dup = 0
        self.errors = Counter()
        self.reconnects = 0
        self.polls = 0
        self.empty_polls = 0
        self.heads = 0  # SSE 200 heads received
        self.stopping = False


class Sub(asyncio.Protocol):
    __slots__ = ("sh", "kind", "idx", "t", "buf", "state", "need", "status",
                 "events", "since", "seen", "retries", "done_head", "open")

    def __init__(self, sh, kind, idx):
        self.sh = sh
        self.kind = kind
        self.idx = idx
        self.t = None
        self.since = 0
        self.seen = 0
        self.retries = 0
        self.open = False
        self.reset()

    def reset(self):
        self.buf = bytearray()
        self.state = HEAD
        self.need = 0
        self.status = 0
        self.events = bytearray()
        self.done_head = False

    # -- requests
    def request(self):
        if self.kind == SSE:
            q = "/sse" if self.since == 0 else "/sse?last=%d" % self.since
            self.t.write(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                         b"Accept: text/event-stream\r\n\r\n"
                         % (q.encode(), self.sh.port))
        else:
            self.sh.polls += 1
            self.t.write(b"GET /poll?since=%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
                         % (self.since, self.sh.port))

    def connection_made(self, transport):
        self.t = transport
        self.open = True
        self.reset()
        self.request()

    def connection_lost(self, exc):
        self.open = False
        if self.sh.stopping:
            return
        if self.kind == SSE and self.done_head:
            what = "sse stream closed mid-stream"
        elif self.kind == POLL and self.state == HEAD and not self.buf:
            what = "poll connection closed between requests"
        else:
            what = "%s connection closed mid-response" % ("sse" if self.kind == SSE else "poll")
        if exc is not None:
            what += " (%s)" % type(exc).__name__
        self.sh.errors[what] += 1
        if self.retries < self.sh.retries:
            self.retries += 1
            self.sh.reconnects += 1
            asyncio.get_running_loop().call_later(0.2 * self.retries, self.reconnect)

    def reconnect(self):
        if not self.sh.stopping:
            asyncio.ensure_future(connect(self))

    # -- deliveries
    def record(self, data, now):
        try:
            m = json.loads(data)
            seq, t = m["seq"], m["t"]
        except (ValueError, KeyError, TypeError):
            self.sh.errors["unparsable message"] += 1
            return
        bit = 1 << seq
        if self.seen & bit:
            self.sh.dup += 1
            return
        self.seen |= bit
        lat = now - t
        sh = self.sh
        sh.delivered += 1
        sh.lat[self.kind].append(lat)
        if lat > sh.seq_max.get(seq, -1.0):
            sh.seq_max[seq] = lat

    def sse_body(self, piece, now):
        ev = self.events
        ev += piece
        while True:
            end = ev.find(b"\n\n")
            if end < 0:
                return
            block = bytes(ev[:end])
            del ev[:end + 2]
            mid = None
            data = []
            for line in block.split(b"\n"):
                if line.startswith(b"data:"):
                    data.append(line[5:].lstrip(b" "))
                elif line.startswith(b"id:"):
                    mid = line[3:].strip()
            if data:
                self.record(b"\n".join(data), now)
                if mid is not None:
                    try:
                        self.since = max(self.since, int(mid))
                    except ValueError:
                        pass

    def poll_answer(self, body, now):
        try:
            a = json.loads(body)
            msgs = a["messages"]
            last = a["last"]
        except (ValueError, KeyError, TypeError):
            self.sh.errors["unparsable poll answer"] += 1
            self.t.close()
            return
        if not msgs:
            self.sh.empty_polls += 1
        for m in msgs:
            self.record(m["data"], now)
        self.since = max(self.since, last)
        if not self.sh.stopping:
            self.request()

    def fail(self, what):
        self.sh.errors[what] += 1
        self.t.close()

    def data_received(self, data):
        now = time.time()
        buf = self.buf
        buf += data
        while True:
            st = self.state
            if st == HEAD:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    if len(buf) > 65536:
                        self.fail("response head too large")
                    return
                lines = bytes(buf[:end]).split(b"\r\n")
                del buf[:end + 4]
                try:
                    self.status = int(lines[0].split(b" ", 2)[1])
                except (IndexError, ValueError):
                    self.fail("bad status line")
                    return
                chunked = False
                length = None
                for line in lines[1:]:
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"transfer-encoding":
                        chunked = b"chunked" in value.lower()
                    elif name == b"content-length":
                        length = int(value.strip())
                if self.status != 200:
                    self.fail("status %d on %s" % (self.status,
                                                   "sse" if self.kind == SSE else "poll"))
                    return
                if chunked:
                    self.state = CHUNK_SIZE
                elif length is not None:
                    self.state = BODY_CL
                    self.need = length
                else:
                    self.state = BODY_CLOSE
                if self.kind == SSE:
                    if not self.done_head:
                        self.sh.heads += 1
                    self.done_head = True
                    self.retries = 0
                elif self.kind == POLL and not chunked and length is None:
                    self.fail("poll answer without length")
                    return
            elif st == CHUNK_SIZE:
                eol = buf.find(b"\r\n")
                if eol < 0:
                    return
                try:
                    self.need = int(bytes(buf[:eol]).split(b";")[0], 16)
                except ValueError:
                    self.fail("bad chunk size")
                    return
                del buf[:eol + 2]
                self.state = CHUNK_DATA if self.need else CHUNK_END
            elif st == CHUNK_DATA:
                if len(buf) < self.need + 2:
                    return
                piece = bytes(buf[:self.need])
                if buf[self.need:self.need + 2] != b"\r\n":
                    self.fail("bad chunk end")
                    return
                del buf[:self.need + 2]
                self.state = CHUNK_SIZE
                if self.kind == SSE:
                    self.sse_body(piece, now)
                else:
                    self.events += piece
            elif st == CHUNK_END:  # trailers, then the final CRLF
                eol = buf.find(b"\r\n")
                if eol < 0:
                    return
                del buf[:eol + 2]
                if eol == 0:
                    self.state = HEAD
                    if self.kind == SSE:
                        self.sh.errors["sse stream ended"] += 1
                        self.t.close()
                        return
                    body = bytes(self.events)
                    self.events.clear()
                    self.poll_answer(body, now)
            elif st == BODY_CL:
                if len(buf) < self.need:
                    return
                body = bytes(buf[:self.need])
                del buf[:self.need]
                self.state = HEAD
                if self.kind == SSE:
                    self.sse_body(body, now)
                    self.sh.errors["sse stream ended"] += 1
                    self.t.close()
                    return
                self.poll_answer(body, now)
            else:  # BODY_CLOSE: SSE close-delimited
                piece = bytes(buf)
                buf.clear()
                if self.kind == SSE:
                    self.sse_body(piece, now)
                return


async def connect(sub, sem=None):
    loop = asyncio.get_running_loop()
    try:
        if sem is not None:
            async with sem:
                await loop.create_connection(lambda: sub, "127.0.0.1", sub.sh.port)
        else:
            await loop.create_connection(lambda: sub, "127.0.0.1", sub.sh.port)
    except OSError as e:
        sub.sh.errors["connect: %s" % (e.strerror or type(e).__name__)] += 1
        if sub.retries < sub.sh.retries and not sub.sh.stopping:
            sub.retries += 1
            sub.sh.reconnects += 1
            loop.call_later(0.5 * sub.retries, sub.reconnect)


def child_main(pipe, port, kinds, batch, retries):
    """One subscriber process: kinds is the list of SSE/POLL to open."""
    raise_nofile()
    parent = os.getppid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides

    async def run():
        loop = asyncio.get_running_loop()
        sh = Shared(port, retries)
        subs = [Sub(sh, k, i) for i, k in enumerate(kinds)]
        sem = asyncio.Semaphore(batch)
        msgs = asyncio.Queue()
        loop.add_reader(pipe.fileno(), lambda: msgs.put_nowait(pipe.recv()))
        t0 = time.time()
        await asyncio.gather(*(connect(s, sem) for s in subs))
        pipe.send(("opened", sum(s.open for s in subs), time.time() - t0))
        while True:
            try:
                cmd = await asyncio.wait_for(msgs.get(), 1.0)
            except asyncio.TimeoutError:
                if os.getppid() != parent:
                    return
                continue
            if cmd[0] == "progress":
                pipe.send(("progress", sh.delivered, sum(s.open for s in subs), sh.heads))
            elif cmd[0] == "finish":
                _, n_msgs, deadline = cmd
                want = len(subs) * n_msgs
                while sh.delivered < want and time.time() < deadline:
                    await asyncio.sleep(0.02)
                sh.stopping = True
                missing = Counter()
                full = ((1 << (n_msgs + 1)) - 1) & ~1
                for s in subs:
                    if s.seen != full:
                        missing["sse" if s.kind == SSE else "poll"] += 1
                pipe.send(("result", {
                    "subs": len(subs), "open": sum(s.open for s in subs),
                    "lat_sse": sh.lat[SSE], "lat_poll": sh.lat[POLL],
                    "seq_max": sh.seq_max, "delivered": sh.delivered,
                    "dup": sh.dup, "errors": dict(sh.errors),
                    "reconnects": sh.reconnects, "polls": sh.polls,
                    "empty_polls": sh.empty_polls,
                    "incomplete_subs": dict(missing)}))
                for s in subs:
                    if s.t is not None:
                        s.t.close()
                await asyncio.sleep(0.1)
                return

    asyncio.run(run())


# ------------------------------------------------------------------ publisher

class Http:
    """One keep-alive HTTP/1.1 connection for the publisher and /stats."""

    def __init__(self, port):
        self.port = port
        self.r = self.w = None

    async def request(self, method, path, body=b""):
        if self.w is None:
            self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        head = ("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % (method, path, self.port)).encode()
        if method == "POST":
            head += b"Content-Type: text/plain\r\nContent-Length: %d\r\n" % len(body)
        self.w.write(head + b"\r\n" + body)
        try:
            status_line = await self.r.readline()
            status = int(status_line.split(b" ", 2)[1])
            length, chunked, close = None, False, False
            while True:
                line = await self.r.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value.strip())
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = b"close" in value.lower()
            if chunked:
                parts = []
                while True:
                    size = int((await self.r.readline()).split(b";")[0], 16)
                    if size == 0:
                        while (await self.r.readline()) not in (b"\r\n", b""):
                            pass
                        break
                    parts.append(await self.r.readexactly(size + 2))
                data = b"".join(p[:-2] for p in parts)
            elif length is not None:
                data = await self.r.readexactly(length)
            else:
                data = await self.r.read()
                close = True
        except (IndexError, ValueError, asyncio.IncompleteReadError, OSError):
            self.close()
            raise
        if close:
            self.close()
        return status, data

    def close(self):
        if self.w is not None:
            self.w.close()
        self.r = self.w = None


async def parent_main(a):
    loop = asyncio.get_running_loop()
    n = a.clients
    n_sse = round(n * a.sse_share)
    kinds = [SSE] * n_sse + [POLL] * (n - n_sse)
    # interleave so every process gets the same mix
    per = [kinds[i::a.procs] for i in range(a.procs)]
    ctx = mp.get_context("fork")
    procs, pipes = [], []
    for i in range(a.procs):
        mine, theirs = ctx.Pipe()
        p = ctx.Process(target=child_main, daemon=True,
                        args=(theirs, a.port, per[i], a.connect_batch, a.retries))
        p.start()
        procs.append(p)
        pipes.append(mine)
    report = {"clients": n, "sse": n_sse, "poll": n - n_sse, "messages": a.messages,
              "interval_s": duration(a.interval), "procs": a.procs}
    try:
        inbox = asyncio.Queue()

        def on_pipe(i, pp):
            try:
                inbox.put_nowait((i, pp.recv()))
            except (EOFError, OSError):
                loop.remove_reader(pp.fileno())
                inbox.put_nowait((i, ("eof",)))

        for i, pp in enumerate(pipes):
            loop.add_reader(pp.fileno(), on_pipe, i, pp)

        async def from_each(kind, timeout):
            got = {}
            deadline = time.time() + timeout
            while len(got) < len(pipes):
                i, msg = await asyncio.wait_for(inbox.get(), max(0.1, deadline - time.time()))
                if msg[0] == "eof" and i not in got:
                    raise RuntimeError("subscriber process %d exited early" % i)
                if msg[0] == kind:
                    got[i] = msg
            return [got[i] for i in range(len(pipes))]

        t0 = time.time()
        sub_timeout = duration(a.subscribe_timeout)
        opened = await from_each("opened", sub_timeout)
        n_open = sum(m[1] for m in opened)
        print("connected %d/%d in %.1f s" % (n_open, n, time.time() - t0), flush=True)

        # the origin's view: every subscriber held (through the proxy)
        stats = Http(a.port)
        st = {}
        deadline = t0 + sub_timeout
        while True:
            try:
                status, body = await stats.request("GET", "/stats")
                st = json.loads(body) if status == 200 else {}
            except (OSError, ValueError, asyncio.IncompleteReadError):
                stats.close()
            if st.get("sse", 0) >= n_sse and st.get("poll_waiting", 0) >= n - n_sse:
                break
            if time.time() > deadline:
                print("warning: origin holds sse %s poll %s of %d/%d after %.0f s" %
                      (st.get("sse"), st.get("poll_waiting"), n_sse, n - n_sse, sub_timeout),
                      flush=True)
                break
            await asyncio.sleep(0.2)
        stats.close()
        report["subscribe_s"] = time.time() - t0
        report["origin_at_start"] = st
        print("subscribed %d (origin: sse %s, poll waiting %s) in %.1f s" %
              (st.get("sse", 0) + st.get("poll_waiting", 0), st.get("sse"),
               st.get("poll_waiting"), report["subscribe_s"]), flush=True)

        if a.go_file:
            go_deadline = time.time() + 60
            while not os.path.exists(a.go_file) and time.time() < go_deadline:
                await asyncio.sleep(0.05)

        pub = Http(a.port)
        interval = duration(a.interval)
        start = time.time() + 0.1
        pub_rtt, fanout, pub_errors = [], [], Counter()
        for seq in range(1, a.messages + 1):
            await asyncio.sleep(max(0, start + (seq - 1) * interval - time.time()))
            t = time.time()
            msg = json.dumps({"seq": seq, "t": t, "text": "message %d" % seq}).encode()
            try:
                status, body = await pub.request("POST", "/publish", msg)
            except (OSError, ValueError, asyncio.IncompleteReadError) as e:
                pub_errors["publish: %s" % type(e).__name__] += 1
                continue
            pub_rtt.append(time.time() - t)
            if status != 200:
                pub_errors["publish status %d" % status] += 1
                continue
            fanout.append(json.loads(body))
        pub.close()
        print("published %d" % len(pub_rtt), flush=True)
        report["fanout"] = fanout
        report["publish_rtt_ms"] = {"p50": 1e3 * percentile(sorted(pub_rtt), 50) if pub_rtt else None,
                                    "max": 1e3 * max(pub_rtt) if pub_rtt else None}

        drain = time.time() + duration(a.drain_timeout)
        for pp in pipes:
            pp.send(("finish", a.messages, drain))
        results = [m[1] for m in await from_each("result", duration(a.drain_timeout) + 30)]
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.terminate()

    lat_sse = sorted(x for r in results for x in r["lat_sse"])
    lat_poll = sorted(x for r in results for x in r["lat_poll"])
    lat_all = sorted(lat_sse + lat_poll)
    errors = Counter(pub_errors)
    for r in results:
        errors.update(r["errors"])
    seq_max = {}
    for r in results:
        for s, v in r["seq_max"].items():
            seq_max[s] = max(v, seq_max.get(s, -1))
    incomplete = Counter()
    for r in results:
        incomplete.update(r["incomplete_subs"])

    def pcts(vals):
        return {k: (None if not vals else round(1e3 * percentile(vals, p), 2))
                for k, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}

    expected = n * a.messages
    delivered = sum(r["delivered"] for r in results)
    report.update({
        "connected": n_open,
        "latency_ms": pcts(lat_all), "latency_sse_ms": pcts(lat_sse),
        "latency_poll_ms": pcts(lat_poll),
        "fanout_complete_ms": {str(s): round(1e3 * v, 2) for s, v in sorted(seq_max.items())},
        "delivered": delivered, "expected": expected,
        "duplicates": sum(r["dup"] for r in results),
        "incomplete_subscribers": dict(incomplete),
        "errors": dict(errors), "reconnects": sum(r["reconnects"] for r in results),
        "polls_sent": sum(r["polls"] for r in results),
        "empty_polls": sum(r["empty_polls"] for r in results),
    })

    def fmt(p):
        return " ".join("%s %s ms" % (k, v) for k, v in p.items())

    print("delivery latency (all %d): %s" % (len(lat_all), fmt(report["latency_ms"])))
    print("  sse  (%d): %s" % (len(lat_sse), fmt(report["latency_sse_ms"])))
    print("  poll (%d): %s" % (len(lat_poll), fmt(report["latency_poll_ms"])))
    if seq_max:
        v = sorted(seq_max.values())
        print("fan-out complete (last subscriber) per message: median %.1f ms, max %.1f ms"
              % (1e3 * percentile(v, 50), 1e3 * v[-1]))
    print("delivered %d/%d  duplicates %d  reconnects %d  errors %d%s" %
          (delivered, expected, report["duplicates"], report["reconnects"],
           sum(errors.values()),
           "".join("\n  error: %s x%d" % kv for kv in sorted(errors.items()))))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=1)
    ok = delivered == expected and not errors and report["duplicates"] == 0
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--messages", type=int, default=10)
    ap.add_argument("--interval", default="500ms")
    ap.add_argument("--sse-share", type=float, default=0.5)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--connect-batch", type=int, default=500)
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--subscribe-timeout", default="90s")
    ap.add_argument("--drain-timeout", default="30s")
    ap.add_argument("--go-file")
    ap.add_argument("--json")
    ap.add_argument("--max-seconds", type=float, default=600)
    a = ap.parse_args()
    if not 0 <= a.sse_share <= 1 or a.clients < 1 or a.procs < 1 or a.messages < 1:
        ap.error("bad --clients, --messages, --procs or --sse-share")
    a.procs = min(a.procs, a.clients)
    raise_nofile()
    signal.signal(signal.SIGALRM, lambda *_: sys.exit("chat_clients: --max-seconds reached"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("chat_clients: terminated"))
    signal.alarm(int(a.max_seconds))
    sys.exit(asyncio.run(parent_main(a)))


if __name__ == "__main__":
    main()
