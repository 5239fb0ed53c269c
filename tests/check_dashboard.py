#!/usr/bin/env python3
"""The admin dashboard, in a real browser, against real processes.

Starts bench/slow-origin (50 ms per answer) and proxy/switchboard with an
[admin] listener, all on 127.0.0.1 with kernel-chosen ports, puts keep-alive
load on the proxy from 50 client threads, and opens the admin page "/" in
headless Chromium, driven over --remote-debugging-pipe (the DevTools protocol
on two pipes, no port). In that one live page it reads the numbers twice, a
few seconds apart, and asserts that they are there and that they move:

  * the page polls: data-updates grows, the connection state is "connected";
  * under load: requests/s > 0, open sessions > 0, total requests grow,
    latency percentiles are set and ordered (p50 <= p90 <= p99);
  * the tables: the origin's address is listed and up, one row per worker;
  * the charts have points;
  * a screenshot is not blank (PNG decoded with zlib: many distinct colours,
    no colour covering nearly everything);
  * when the admin server goes away the page says "disconnected" and keeps
    polling, and (mock) comes back to "connected" when it returns.

--mock runs the same checks against tests/dashboard_mock.py instead (no
proxy, no load), which is how the page is worked on without building the
proxy. Exit status: 0 pass, 1 fail, 77 skip (no Chromium).

Every process started here is started in its own process group and the
group is killed on the way out, whatever happens.
"""

import argparse
import base64
import http.client
import json
import os
import queue
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

SKIP = 77
HOST = "127.0.0.1"
HERE = os.path.dirname(os.path.abspath(__file__))


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def log(msg):
    print(msg, flush=True)


# -- processes ---------------------------------------------------------------


class Proc:
    """A child in its own process group whose merged stdout/stderr is drained
    by a thread (so it can never block on a full pipe) into lines we scan."""

    def __init__(self, name, argv, **kw):
        self.name = name
        self.lines = []
        self.cond = threading.Condition()
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT,
                                  start_new_session=True, **kw)
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self):
        for raw in self.p.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self.cond:
                self.lines.append(line)
                del self.lines[:-2000]
                self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def wait_for(self, pattern, timeout=15):
        """The first match of pattern in the output, waiting up to timeout."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines:
                    m = rx.search(line)
                    if m:
                        return m
                left = deadline - time.monotonic()
                if left <= 0 or (self.p.poll() is not None
                                 and not self.reader.is_alive()):
                    raise Fail("%s: no line matching %r; output:\n%s" % (
                        self.name, pattern, self.tail()))
                self.cond.wait(min(left, 0.2))

    def tail(self, n=30):
        return "\n".join("  | " + line for line in self.lines[-n:])

    def stop(self):
        kill_group(self.p)


def kill_group(p, grace=5.0):
    """SIGTERM the process group of p, then SIGKILL what is left."""
    if p is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(p.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=wait)
            # The leader is gone; make sure no member of its group stays.
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            return
        except subprocess.TimeoutExpired:
            continue


def http_get(port, path, timeout=5):
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.getheader("Content-Type") or "", r.read()
    finally:
        c.close()


def http_post(port, path):
    c = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        c.request("POST", path, body=b"")
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


# -- load --------------------------------------------------------------------


class Load:
    """n threads doing keep-alive GETs on the proxy until stopped (or
    max_seconds pass), counting good answers."""

    def __init__(self, port, n=50, max_seconds=120):
        self.port = port
        self.stop_ev = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.lock = threading.Lock()
        self.ok = 0
        self.errors = 0
        self.threads = [threading.Thread(target=self._run, args=(i,),
                                         daemon=True) for i in range(n)]
        for t in self.threads:
            t.start()

    def _run(self, i):
        conn = None
        while not self.stop_ev.is_set() and time.monotonic() < self.deadline:
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, self.port,
                                                      timeout=10)
                conn.request("GET", "/load/%d" % i)
                r = conn.getresponse()
                r.read()
                with self.lock:
                    if r.status == 200:
                        self.ok += 1
                    else:
                        self.errors += 1
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                with self.lock:
                    self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                self.stop_ev.wait(0.05)
        if conn is not None:
            conn.close()

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=15)


# -- the browser -------------------------------------------------------------


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """Headless Chromium driven over --remote-debugging-pipe: commands are
    NUL-terminated JSON written to the browser's fd 3, answers and events
    come back on its fd 4. One page target, attached with a flat session."""

    def __init__(self, chromium, profile_dir, width=1280, height=1400):
        cmd_r, self.cmd_w = os.pipe()
        self.res_r, res_w = os.pipe()
        argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run",
                "--no-default-browser-check", "--disable-extensions",
                "--disable-background-networking", "--disable-sync",
                "--remote-debugging-pipe",
                "--user-data-dir=" + profile_dir,
                "--window-size=%d,%d" % (width, height), "about:blank"]
        # bash moves our pipe ends to the browser's fds 3 and 4 (no
        # preexec_fn: the load threads are running; not sh: dash takes
        # only one-digit fds in redirections).
        shell = 'exec "$0" "$@" 3<&%d- 4>&%d-' % (cmd_r, res_w)
        self.stderr_path = os.path.join(profile_dir, "stderr.log")
        with open(self.stderr_path, "w") as err:
            self.p = subprocess.Popen(["/bin/bash", "-c", shell] + argv,
                                      stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=err,
                                      pass_fds=(cmd_r, res_w),
                                      start_new_session=True)
        os.close(cmd_r)
        os.close(res_w)
        self.next_id = 0
        self.answers = {}
        self.cond = threading.Condition()
        self.session = None
        self.width, self.height = width, height
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self.res_r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                m = json.loads(msg)
                if "id" in m:
                    with self.cond:
                        self.answers[m["id"]] = m
                        self.cond.notify_all()
        with self.cond:
            self.answers[None] = {"error": {"message": "browser exited"}}
            self.cond.notify_all()

    def call(self, method, params=None, session=True, timeout=30):
        self.next_id += 1
        mid = self.next_id
        msg = {"id": mid, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        data = json.dumps(msg).encode() + b"\0"
        try:
            os.write(self.cmd_w, data)
        except OSError as e:
            raise Fail("chromium: cannot send %s: %s" % (method, e))
        deadline = time.monotonic() + timeout
        with self.cond:
            while mid not in self.answers:
                if None in self.answers:
                    raise Fail("chromium exited during %s" % method)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Fail("chromium: no answer to %s in %d s" % (
                        method, timeout))
                self.cond.wait(left)
            m = self.answers.pop(mid)
        if "error" in m:
            raise Fail("chromium: %s: %s" % (method, m["error"]))
        return m.get("result", {})

    def open(self, url):
        target = self.call("Target.createTarget", {"url": "about:blank"},
                           session=False)["targetId"]
        self.session = self.call("Target.attachToTarget",
                                 {"targetId": target, "flatten": True},
                                 session=False)["sessionId"]
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.width, "height": self.height,
                   "deviceScaleFactor": 1, "mobile": False})
        self.call("Page.enable")
        self.call("Page.navigate", {"url": url})

    def evaluate(self, expr):
        r = self.call("Runtime.evaluate", {"expression": expr,
                                           "returnByValue": True})
        if "exceptionDetails" in r:
            raise Fail("page: %s" % r["exceptionDetails"])
        return r["result"].get("value")

    def screenshot(self):
        r = self.call("Page.captureScreenshot", {"format": "png"})
        return base64.b64decode(r["data"])

    def tail(self, n=15):
        try:
            with open(self.stderr_path, errors="replace") as f:
                lines = f.read().splitlines()[-n:]
        except OSError:
            lines = []
        return "\n".join("  | " + line for line in lines)

    def close(self):
        try:
            if self.p.poll() is None:
                self.call("Browser.close", session=False, timeout=5)
        except Fail:
            pass
        try:
            self.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        kill_group(self.p, grace=2)
        for fd in (self.cmd_w, self.res_r):
            try:
                os.close(fd)
            except OSError:
                pass


# What the test reads from the page: every element with an id (its text and
# data-value), the <body>'s data-updates and data-state, each table's rows,
# each chart's point count.
READ_PAGE = r"""
(function () {
  // Still being parsed (a table may not have its body yet): not read.
  if (document.readyState === "loading" || !document.body ||
      !document.getElementById("conn")) {
    return JSON.stringify({updates: 0, state: "loading", ids: {},
                           tables: {}, charts: {}});
  }
  var root = document.documentElement;
  var out = {updates: Number(document.body.getAttribute("data-updates")),
             state: document.body.getAttribute("data-state"),
             overflow: root.scrollWidth - root.clientWidth,
             ids: {}, tables: {}, charts: {}};
  document.querySelectorAll("[id]").forEach(function (el) {
    out.ids[el.id] = {text: el.textContent.trim(),
                      value: el.getAttribute("data-value")};
  });
  document.querySelectorAll("table[id]").forEach(function (t) {
    out.tables[t.id] = Array.prototype.map.call(t.tBodies[0].rows,
      function (tr) {
        return Array.prototype.map.call(tr.cells,
          function (td) { return td.textContent.trim(); });
      });
  });
  document.querySelectorAll("svg.chart").forEach(function (s) {
    out.charts[s.id] = Number(s.getAttribute("data-points") || 0);
  });
  return JSON.stringify(out);
})()
"""


def read_page(browser):
    return json.loads(browser.evaluate(READ_PAGE))


def wait_page(browser, pred, what, timeout=20):
    """Poll the page until pred(snapshot) holds; the last snapshot."""
    deadline = time.monotonic() + timeout
    while True:
        snap = read_page(browser)
        if pred(snap):
            return snap
        if time.monotonic() > deadline:
            raise Fail("page never showed %s; last: updates=%s state=%s" % (
                what, snap["updates"], snap["state"]))
        time.sleep(0.25)


# -- PNG ---------------------------------------------------------------------


def png_pixels(data):
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced
    RGB or RGBA PNG: what Chromium writes."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise Fail("screenshot is not a PNG")
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise Fail("unexpected PNG format: depth %d type %d interlace %d" % (
            depth, ctype, interlace))
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    rows, prev = [], bytearray(stride)
    for y in range(h):
        f = raw[y * (stride + 1)]
        cur = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        if f == 1:
            for i in range(bpp, stride):
                cur[i] = (cur[i] + cur[i - bpp]) & 255
        elif f == 2:
            for i in range(stride):
                cur[i] = (cur[i] + prev[i]) & 255
        elif f == 3:
            for i in range(stride):
                left = cur[i - bpp] if i >= bpp else 0
                cur[i] = (cur[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = cur[i - bpp] if i >= bpp else 0
                b = prev[i]
                c = prev[i - bpp] if i >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (cur[i] + pr) & 255
        rows.append(bytes(cur))
        prev = cur
    return w, h, bpp, rows


def check_screenshot(png, path):
    with open(path, "wb") as f:
        f.write(png)
    w, h, bpp, rows = png_pixels(png)
    counts = {}
    for row in rows:
        for x in range(0, len(row), bpp):
            px = row[x:x + 3]
            counts[px] = counts.get(px, 0) + 1
    top = max(counts.values())
    share = top / float(w * h)
    log("screenshot %s: %dx%d, %d distinct colours, most common covers "
        "%.0f%%" % (path, w, h, len(counts), share * 100))
    expect(len(counts) >= 100, "screenshot has only %d colours" % len(counts))
    expect(share < 0.9, "screenshot is %.0f%% one colour" % (share * 100))


# -- assertions --------------------------------------------------------------


failures = []


def expect(cond, msg):
    if cond:
        return
    failures.append(msg)
    log("FAIL: " + msg)


def num(snap, key):
    """An id'd element's data-value as a float, or None."""
    v = (snap["ids"].get(key) or {}).get("value")
    if v in (None, ""):
        return None
    return float(v)


def check_snapshot(snap, label, origin_addr, workers, under_load):
    ids = snap["ids"]
    log("%s: updates=%d state=%s open=%s rate=%s waiting=%s total=%s "
        "p50/p90/p99=%s/%s/%s" % (
            label, snap["updates"], snap["state"], num(snap, "open-sessions"),
            num(snap, "req-rate"), num(snap, "upstream-waiting"),
            num(snap, "requests-total"), num(snap, "p50"), num(snap, "p90"),
            num(snap, "p99")))
    expect(snap["state"] == "connected",
           "%s: state %r, not connected" % (label, snap["state"]))
    expect(snap["updates"] >= 2, "%s: only %d updates" % (
        label, snap["updates"]))
    for key in ("open-sessions", "req-rate", "upstream-waiting",
                "paused-sessions", "buffered-bytes", "requests-total"):
        v = num(snap, key)
        expect(v is not None and v >= 0, "%s: #%s has no number (%r)" % (
            label, key, ids.get(key)))
    if under_load:
        expect((num(snap, "open-sessions") or 0) > 0,
               "%s: no open sessions under load" % label)
        expect((num(snap, "req-rate") or 0) > 0,
               "%s: requests/s is not > 0 under load" % label)
    p50, p90, p99 = num(snap, "p50"), num(snap, "p90"), num(snap, "p99")
    expect(None not in (p50, p90, p99) and 0 < p50 <= p90 <= p99,
           "%s: latency percentiles missing or out of order: %s %s %s" % (
               label, p50, p90, p99))
    servers = snap["tables"].get("servers", [])
    expect(any(origin_addr in r and "up" in r for r in servers),
           "%s: origin %s not listed as up in %r" % (
               label, origin_addr, servers))
    expect(len(snap["tables"].get("workers", [])) == workers,
           "%s: %d worker rows, expected %d: %r" % (
               label, len(snap["tables"].get("workers", [])), workers,
               snap["tables"].get("workers")))
    expect(len(snap["tables"].get("pools", [])) >= 1, "%s: no pool rows" %
           label)
    expect(snap.get("overflow", 0) <= 0, "%s: the page is %dpx wider than "
           "the window" % (label, snap.get("overflow", 0)))
    for chart in ("chart-req-rate", "chart-open-sessions", "chart-p99"):
        expect(snap["charts"].get(chart, 0) >= 2, "%s: chart %s has %s "
               "points" % (label, chart, snap["charts"].get(chart)))


def check_moved(a, b):
    expect(b["updates"] > a["updates"], "updates did not grow: %d -> %d" % (
        a["updates"], b["updates"]))
    ta, tb = num(a, "requests-total"), num(b, "requests-total")
    expect(ta is not None and tb is not None and tb > ta,
           "total requests did not grow: %s -> %s" % (ta, tb))
    expect(a["charts"]["chart-req-rate"] < b["charts"]["chart-req-rate"],
           "requests/s chart did not grow")


# -- the two setups ----------------------------------------------------------


CONF = """\
; written by tests/check_dashboard.py
[server]
listen = 127.0.0.1:0
workers = 2
access_log = off
log_level = warn

[admin]
listen = 127.0.0.1:0

[upstream origin]
server = 127.0.0.1:{port}

[route /]
upstream = origin
"""


def start_real(args, tmp, procs):
    """Origin and proxy; (admin port, proxy port, origin address)."""
    origin_bin = os.path.join(args.builddir, "bench", "slow-origin")
    proxy_bin = os.path.join(args.builddir, "proxy", "switchboard")
    for b in (origin_bin, proxy_bin):
        if not os.access(b, os.X_OK):
            raise Fail("%s not built (run make first)" % b)
    # Like tests/harness.c: under scripts/test's ASan run, the programs
    # under test get their own ASAN_OPTIONS (leak checks on).
    env = dict(os.environ)
    if os.environ.get("SB_CHILD_ASAN_OPTIONS"):
        env["ASAN_OPTIONS"] = os.environ["SB_CHILD_ASAN_OPTIONS"]
    origin = Proc("slow-origin", [origin_bin, "--listen", HOST + ":0",
                                  "--delay", "50ms"], env=env)
    procs.append(origin)
    oport = int(origin.wait_for(r"^listening on 127\.0\.0\.1:(\d+)")[1])
    conf = os.path.join(tmp, "switchboard.conf")
    with open(conf, "w") as f:
        f.write(CONF.format(port=oport))
    t = subprocess.run([proxy_bin, "-t", "-c", conf], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30)
    out = t.stdout.decode("utf-8", "replace").strip()
    if t.returncode != 0:
        raise Fail("switchboard -t rejected the test config:\n" + out)
    proxy = Proc("switchboard", [proxy_bin, "-c", conf], env=env)
    procs.append(proxy)
    pport = int(proxy.wait_for(r"(?<!admin )listening on 127\.0\.0\.1:(\d+)")[1])
    aport = int(proxy.wait_for(r"admin listening on 127\.0\.0\.1:(\d+)")[1])
    return aport, pport, "%s:%d" % (HOST, oport), proxy


def start_mock(args, procs):
    mock = Proc("dashboard_mock", [sys.executable,
                                   os.path.join(args.srcdir, "tests",
                                                "dashboard_mock.py"),
                                   "--listen", HOST + ":0", "--html",
                                   os.path.join(args.srcdir, "proxy",
                                                "dashboard.html")])
    procs.append(mock)
    aport = int(mock.wait_for(r"admin listening on 127\.0\.0\.1:(\d+)")[1])
    return aport, mock


def check_admin_http(aport, page_src):
    """The plain HTTP side: / is the page (byte for byte), /status is JSON
    with the schema's top-level keys, /healthz answers 200."""
    status, ctype, body = http_get(aport, "/")
    expect(status == 200 and ctype.startswith("text/html"),
           "GET / -> %d %s" % (status, ctype))
    expect(body == page_src, "GET / is not proxy/dashboard.html byte for byte"
           " (%d vs %d bytes)" % (len(body), len(page_src)))
    status, ctype, body = http_get(aport, "/status")
    expect(status == 200, "GET /status -> %d" % status)
    s = json.loads(body)
    for key in ("version", "pid", "uptime_s", "draining", "generation",
                "totals", "workers", "pools", "oldest_sessions"):
        expect(key in s, "/status has no %r" % key)
    status, _, _ = http_get(aport, "/healthz")
    expect(status == 200, "GET /healthz -> %d" % status)


def run(args):
    chromium = args.chromium or find_chromium()
    if not chromium:
        raise Skip("chromium is not installed")
    with open(os.path.join(args.srcdir, "proxy", "dashboard.html"), "rb") as f:
        page_src = f.read()
    tmp = tempfile.mkdtemp(prefix="check_dashboard.")
    procs, load, browser = [], None, None
    try:
        if args.mock:
            aport, admin = start_mock(args, procs)
            origin_addr, workers = "127.0.0.1:9001", 2
        else:
            aport, pport, origin_addr, admin = start_real(args, tmp, procs)
            workers = 2
        log("admin on 127.0.0.1:%d" % aport)
        check_admin_http(aport, page_src)

        if not args.mock:
            load = Load(pport, n=args.clients)
            deadline = time.monotonic() + 20
            while load.ok < 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            expect(load.ok >= 200, "load: only %d answers in 20 s (%d "
                   "errors)" % (load.ok, load.errors))

        profile = os.path.join(tmp, "chromium")
        os.mkdir(profile)
        browser = Browser(chromium, profile)
        browser.open("http://%s:%d/" % (HOST, aport))
        first = wait_page(browser, lambda s: s["updates"] >= 3,
                          "3 updates")
        check_snapshot(first, "first read", origin_addr, workers,
                       under_load=True)
        time.sleep(args.gap)
        second = wait_page(browser, lambda s: s["updates"] >= 3, "updates")
        check_snapshot(second, "second read", origin_addr, workers,
                       under_load=True)
        check_moved(first, second)

        shot = args.screenshot or os.path.join(tmp, "dashboard.png")
        check_screenshot(browser.screenshot(), shot)

        # The admin server goes away: the page must say so and keep polling.
        if args.mock:
            expect(http_post(aport, "/mock/fail") == 200, "mock: /mock/fail")
        else:
            if load is not None:
                load.stop()
                log("load: %d answers, %d errors" % (load.ok, load.errors))
                load = None
            admin.stop()
        down = wait_page(browser, lambda s: s["state"] == "disconnected",
                         "the disconnected state", timeout=10)
        text = down["ids"]["conn"]["text"]
        log("after the admin server went away: %r" % text)
        expect("disconnected" in text, "connection pill says %r" % text)
        if args.mock:
            n = down["updates"]
            http_post(aport, "/mock/recover")
            back = wait_page(browser, lambda s: s["state"] == "connected" and
                             s["updates"] > n, "reconnection", timeout=10)
            log("reconnected: updates %d -> %d" % (n, back["updates"]))
    except Fail as e:
        failures.append(str(e))
        log("FAIL: %s" % e)
    finally:
        if browser is not None:
            browser.close()
        if load is not None:
            load.stop()
            log("load: %d answers, %d errors" % (load.ok, load.errors))
        for p in reversed(procs):
            p.stop()
        if failures:
            for p in procs:
                log("--- %s output (last lines):\n%s" % (p.name, p.tail()))
            if browser is not None:
                log("--- chromium stderr (last lines):\n%s" % browser.tail())
        if args.keep:
            log("kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mock", action="store_true",
                    help="run against tests/dashboard_mock.py, not the "
                         "real binaries")
    ap.add_argument("--builddir", default=os.environ.get("TOP_BUILDDIR", "."),
                    help="where bench/slow-origin and proxy/switchboard are")
    ap.add_argument("--srcdir", default=os.environ.get(
        "TOP_SRCDIR", os.path.dirname(HERE)),
                    help="the source tree (proxy/dashboard.html)")
    ap.add_argument("--chromium", help="browser binary (default: search PATH)")
    ap.add_argument("--clients", type=int, default=50,
                    help="concurrent keep-alive clients (default 50)")
    ap.add_argument("--gap", type=float, default=3.0,
                    help="seconds between the two reads (default 3)")
    ap.add_argument("--screenshot", help="also keep the screenshot here")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory")
    args = ap.parse_args()
    mode = "mock" if args.mock else "real"
    try:
        run(args)
    except Skip as e:
        log("SKIP: %s" % e)
        return SKIP
    except Fail as e:
        failures.append(str(e))
        log("FAIL: %s" % e)
    if failures:
        log("check_dashboard (%s): Checks: 1, Failures: 1 (%d problems)" % (
            mode, len(failures)))
        return 1
    log("check_dashboard (%s): Checks: 1, Failures: 0" % mode)
    return 0


if __name__ == "__main__":
    sys.exit(main())
