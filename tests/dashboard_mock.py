#!/usr/bin/env python3
"""A stand-in for switchboard's admin listener, for working on the dashboard.

Serves proxy/dashboard.html at "/" and a made-up /status that follows the
admin server's schema and changes over time (traffic that rises and falls,
sessions that come and go, a server that goes down now and then), plus
/healthz. Standard library only; listens on loopback only.

    python3 tests/dashboard_mock.py [--listen 127.0.0.1:0] [--html FILE]

Prints `admin listening on 127.0.0.1:PORT` on stderr once bound, like the
real master. For tests, POST /mock/fail makes /status answer 503 until
POST /mock/recover.
"""

import argparse
import json
import math
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_HTML = os.path.join(HERE, "..", "proxy", "dashboard.html")


class FakeProxy:
    """Counters of an imaginary proxy, advanced to the current time on read."""

    def __init__(self, workers=2, seed=1):
        self.lock = threading.Lock()
        self.rng = random.Random(seed)
        self.start = time.monotonic()
        self.last = self.start
        self.pid = 40000 + os.getpid() % 1000
        self.workers = [
            {"slot": i, "pid": self.pid + 1 + i, "generation": 1,
             "open_sessions": 0, "accepted": 0, "requests": 0}
            for i in range(workers)
        ]
        self.servers = [
            {"address": "127.0.0.1:9001", "weight": 2, "up": True,
             "active": 0, "requests": 0, "failures": 0},
            {"address": "127.0.0.1:9002", "weight": 1, "up": True,
             "active": 0, "requests": 0, "failures": 0},
        ]
        self.t = {
            "accepted": 0, "rejected": 0, "open_sessions": 0,
            "paused_sessions": 0, "buffered_bytes": 0, "requests": 0,
            "responses": {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0},
            "bytes_in": 0, "bytes_out": 0, "upstream_waiting": 0,
            "retries": 0,
            "timeouts": {"client_header": 0, "client_body": 0,
                         "upstream_connect": 0, "upstream_read": 0,
                         "send": 0},
        }
        self.carry = 0.0

    def _advance(self, now):
        dt = now - self.last
        self.last = now
        age = now - self.start
        rng = self.rng
        # Traffic: a slow wave between ~200 and ~1400 requests/s.
        rate = 800 + 600 * math.sin(age / 20.0) + rng.uniform(-60, 60)
        self.carry += max(0.0, rate) * dt
        n = int(self.carry)
        self.carry -= n
        t = self.t
        t["requests"] += n
        t["responses"]["2xx"] += n - n // 50 - n // 200
        t["responses"]["4xx"] += n // 50
        t["responses"]["5xx"] += n // 200
        t["bytes_in"] += n * 180
        t["bytes_out"] += n * 1200
        opened = max(0, int(n / 8 + rng.uniform(-3, 3)))
        t["accepted"] += opened
        if rng.random() < 0.02:
            t["rejected"] += 1
        target = max(1, int(rate / 16))
        t["open_sessions"] += int((target - t["open_sessions"]) * 0.3)
        t["open_sessions"] = max(1, t["open_sessions"] + rng.randint(-2, 2))
        t["upstream_waiting"] = max(0, int(rate * 0.05 + rng.uniform(-5, 5)))
        t["paused_sessions"] = rng.choice([0, 0, 0, 1, 2])
        t["buffered_bytes"] = t["paused_sessions"] * 65536 + rng.randint(0, 9000)
        if rng.random() < 0.05:
            t["retries"] += 1
            t["timeouts"]["upstream_read"] += 1
        # One server goes down for a while every minute or so.
        self.servers[1]["up"] = int(age) % 60 < 45
        up = [s for s in self.servers if s["up"]]
        weights = sum(s["weight"] for s in up)
        for s in self.servers:
            share = s["weight"] / weights if s["up"] else 0
            s["requests"] += int(n * share)
            s["active"] = int(t["upstream_waiting"] * share)
            if not s["up"] and rng.random() < 0.3:
                s["failures"] += 1
        share = t["open_sessions"] // len(self.workers)
        for i, w in enumerate(self.workers):
            w["open_sessions"] = share + (i < t["open_sessions"] % len(self.workers))
            w["accepted"] += opened // len(self.workers)
            w["requests"] += n // len(self.workers)

    def status(self):
        with self.lock:
            now = time.monotonic()
            self._advance(now)
            age = now - self.start
            t = self.t
            base = 50 + 10 * math.sin(age / 15.0)
            latency = None
            if t["requests"] > 0:
                latency = {"p50": round(base, 2),
                           "p90": round(base * 1.4, 2),
                           "p99": round(base * 2.2 + self.rng.uniform(0, 30), 2)}
            rng = self.rng
            oldest = sorted(
                ({"worker": self.workers[i % len(self.workers)]["pid"],
                  "age_ms": int(age * 1000 * rng.uniform(0.2, 1.0)),
                  "phase": rng.choice(["upstream_wait", "client_head",
                                       "streaming", "keepalive_idle"]),
                  "peer": "127.0.0.1:%d" % rng.randint(30000, 60000),
                  "bytes_in": rng.randint(100, 5000),
                  "bytes_out": rng.randint(0, 500000)}
                 for i in range(min(5, t["open_sessions"]))),
                key=lambda s: -s["age_ms"])
            return {
                "version": "0.1.0-mock", "pid": self.pid,
                "uptime_s": int(age), "draining": False, "generation": 1,
                "totals": json.loads(json.dumps(t)),
                "workers": json.loads(json.dumps(self.workers)),
                "pools": [{
                    "name": "origin", "balance": "round_robin",
                    "servers_up": sum(1 for s in self.servers if s["up"]),
                    "servers": json.loads(json.dumps(self.servers)),
                    "idle": rng.randint(0, 16), "requests": t["requests"],
                    "latency_ms": latency,
                }],
                "oldest_sessions": oldest,
            }


def make_handler(proxy, html_path, state):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *args):
            pass

        def _send(self, code, ctype, body):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/":
                with open(html_path, "rb") as f:
                    body = f.read()
                self._send(200, "text/html; charset=utf-8", body)
            elif path == "/status":
                if state["fail"]:
                    self._send(503, "text/plain", b"mock: failing\n")
                else:
                    body = json.dumps(proxy.status(), indent=1).encode()
                    self._send(200, "application/json", body)
            elif path == "/healthz":
                self._send(200, "text/plain", b"ok\n")
            else:
                self._send(404, "text/plain", b"not found\n")

        do_HEAD = do_GET

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            if self.path == "/mock/fail":
                state["fail"] = True
            elif self.path == "/mock/recover":
                state["fail"] = False
            else:
                self._send(404, "text/plain", b"not found\n")
                return
            self._send(200, "text/plain", b"ok\n")

    return Handler


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0",
                    help="loopback HOST:PORT (default 127.0.0.1:0)")
    ap.add_argument("--html", default=DEFAULT_HTML,
                    help="the page to serve at / (default proxy/dashboard.html)")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        ap.error("--listen must be a loopback address")
    server = ThreadingHTTPServer((host, int(port)),
                                 make_handler(FakeProxy(), args.html,
                                              {"fail": False}))
    server.daemon_threads = True
    print("admin listening on %s:%d" % (host, server.server_address[1]),
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
