#!/usr/bin/env python3
"""bench/lab.py: the benchmark lab that bench/run drives (it installs the
packages and builds first; run it through bench/run).

Starts the slow origin and each row (direct, switchboard, its poll and select
backends, nginx, haproxy, a thread pool, a blocking proxy) on 127.0.0.1,
loads them with wrk (or ab), and writes report.md, the data and the PNG plots
into the results directory. Every server binds 127.0.0.1, every load targets
127.0.0.1; every run is bounded in time, and everything started is stopped
on exit (and listed in $BENCH_PGIDS for bench/run's EXIT trap).
"""
import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
PEERS = os.path.join(HERE, "peers")
ORIGIN_BIN = os.path.join(TOP, "build", "bench", "slow-origin")
SWITCHBOARD_BIN = os.path.join(TOP, "build", "proxy", "switchboard")
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

ALL_ROWS = ["direct", "switchboard", "switchboard-poll", "switchboard-select",
            "nginx", "haproxy", "thread-pool", "blocking"]
ALL_SCENARIOS = ["overhead", "io-bound", "c10k", "sweep", "idle-fds",
                 "slow-clients", "memory", "bulk"]

# What each row is, for the tables.
ROW_WHAT = {
    "direct": "wrk straight at the origin: the ceiling",
    "switchboard": "Switchboard, epoll (the default)",
    "switchboard-poll": "Switchboard, event_backend = poll",
    "switchboard-select": "Switchboard, event_backend = select",
    "nginx": "nginx (Debian), one worker per core",
    "haproxy": "HAProxy (Debian), one process per core",
    "thread-pool": "Apache httpd mpm_worker + mod_proxy_http, 150 threads",
    "blocking": "one operator: one client at a time (Python)",
}


def log(msg):
    print(msg, flush=True)


# ---------------------------------------------------------------- processes

class Lab:
    """Owns the work directory and every process the run starts."""

    def __init__(self, work, pgid_file):
        self.work = work
        self.pgid_file = pgid_file
        self.procs = []
        self.seq = 0
        self.scenario = None
        self.crash_log = []

    def _write_pgids(self):
        if self.pgid_file:
            with open(self.pgid_file, "w") as f:
                for p in self.procs:
                    f.write("%d\n" % p.pid)

    def spawn(self, name, argv, stdin=subprocess.DEVNULL, cwd=None):
        self.seq += 1
        name = "%03d-%s" % (self.seq, name)
        out = open(os.path.join(self.work, name + ".out"), "ab")
        err = open(os.path.join(self.work, name + ".err"), "ab")
        p = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err,
                             start_new_session=True, cwd=cwd)
        out.close()
        err.close()
        p.bench_name = name
        self.procs.append(p)
        self._write_pgids()
        return p

    def stop(self, p, sig=signal.SIGTERM, grace=5.0):
        """Stop p and its process group (workers, children)."""
        if p not in self.procs:
            return
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)
        # Children that outlive their parent (they share its group).
        end = time.monotonic() + grace
        while time.monotonic() < end and group_alive(p.pid):
            time.sleep(0.05)
        if group_alive(p.pid):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.procs.remove(p)
        self._write_pgids()

    def stop_all(self):
        for p in list(reversed(self.procs)):
            try:
                self.stop(p, grace=3.0)
            except Exception as e:  # keep stopping the others
                log("warning: stopping %s: %s" % (p.bench_name, e))


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def read_stat(pid):
    """(ppid, utime+stime, cutime+cstime, rss bytes, stime, cstime) of pid,
    or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rindex(")") + 2:].split()
    # rest[0] is field 3 (state): field n is rest[n - 3].
    return (int(rest[1]), int(rest[11]) + int(rest[12]),
            int(rest[13]) + int(rest[14]), int(rest[21]) * PAGE,
            int(rest[12]), int(rest[14]))


def process_tree(roots):
    """roots and all their live descendants."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = read_stat(int(d))
            if st:
                children.setdefault(st[0], []).append(int(d))
    out, todo = [], list(roots)
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_split(roots):
    """(all, kernel) CPU ticks used so far by roots' trees, from one walk:
    each root counts its reaped children too (cutime, cstime), live
    descendants their own time."""
    total = kernel = 0
    for p in process_tree(roots):
        st = read_stat(p)
        if st:
            reaped = p in roots
            total += st[1] + (st[2] if reaped else 0)
            kernel += st[4] + (st[5] if reaped else 0)
    return total, kernel


def cpu_ticks(roots):
    """CPU ticks used so far by roots' trees (see cpu_split)."""
    return cpu_split(roots)[0]


def rss_bytes(roots):
    """Resident memory summed over roots' trees (VmRSS of each process)."""
    total = 0
    for p in process_tree(roots):
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


def others_ticks():
    """{pid: CPU ticks} of every user process outside this bench's tree."""
    ours = set(process_tree([os.getpid()]))
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and int(d) not in ours:
            st = read_stat(int(d))
            if st and st[0] != 2 and int(d) != 2:  # not a kernel thread
                out[int(d)] = st[1]
    return out


def others_delta(before, after):
    return sum(t - before.get(p, 0) for p, t in after.items()
               if t >= before.get(p, 0))


def machine_busy():
    """(busy, steal, total) jiffies of the whole machine from /proc/stat:
    busy is this machine's own work, steal the time the host gave to
    someone else. guest time is already part of user time."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    # user nice system idle iowait irq softirq steal
    return sum(v) - v[3] - v[4] - v[7], v[7], sum(v)


def net_counters(path="/proc/net/netstat", group="TcpExt"):
    """One group of this netns's counters: TcpExt (ListenOverflows,
    ListenDrops, ...) from /proc/net/netstat, Tcp (InSegs, OutSegs, ...)
    from /proc/net/snmp."""
    with open(path) as f:
        lines = f.read().splitlines()
    for i in range(0, len(lines) - 1, 2):
        if lines[i].startswith(group + ":"):
            names = lines[i].split()[1:]
            vals = [int(x) for x in lines[i + 1].split()[1:]]
            return dict(zip(names, vals))
    return {}


def tcp_ext():
    return net_counters()


def tcp_segments():
    """TCP segments sent by every socket of this netns so far."""
    return net_counters("/proc/net/snmp", "Tcp").get("OutSegs", 0)


def tcp_mem_bytes():
    """Memory of all TCP socket buffers on the machine (/proc/net/sockstat)."""
    with open("/proc/net/sockstat") as f:
        m = re.search(r"^TCP:.* mem (\d+)", f.read(), re.M)
    return int(m.group(1)) * PAGE if m else 0


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(lab, p, port=None, timeout=15.0):
    """Port of p: from its `listening on HOST:PORT` line, or the port given
    once something accepts there. Raises if p dies or time runs out."""
    out = os.path.join(lab.work, p.bench_name + ".out")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if p.poll() is not None:
            raise RuntimeError("%s exited (%s): %s" % (
                p.bench_name, p.returncode, tail(lab, p.bench_name)))
        if port is None:
            with open(out, errors="replace") as f:
                m = re.search(r"listening on \S+:(\d+)", f.read())
            if m:
                return int(m.group(1))
        else:
            try:
                socket.create_connection(("127.0.0.1", port), 0.5).close()
                return port
            except OSError:
                pass
        time.sleep(0.05)
    raise RuntimeError("%s: not listening after %ss: %s" % (
        p.bench_name, timeout, tail(lab, p.bench_name)))


def tail(lab, name, n=400):
    text = ""
    for ext in (".err", ".out"):
        try:
            with open(os.path.join(lab.work, name + ext), errors="replace") as f:
                text += f.read()[-n:]
        except OSError:
            pass
    return text.strip().replace("\n", " | ")


def http_get(port, path="/", timeout=10):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                timeout=timeout) as r:
        r.read()
        return r.status


def count_established(port, local=True):
    """Established TCP connections whose local (or remote) port is port."""
    flt = "( sport = :%d )" % port if local else "( dport = :%d )" % port
    r = subprocess.run(["ss", "-Htn", "state", "established", flt],
                       capture_output=True, text=True, timeout=30)
    return len(r.stdout.splitlines())


def listener_count(port):
    """Listening TCP sockets on port (SO_REUSEPORT: one per process)."""
    r = subprocess.run(["ss", "-Hltn", "( sport = :%d )" % port],
                       capture_output=True, text=True, timeout=30)
    return len(r.stdout.splitlines())


def time_wait_count():
    r = subprocess.run(["ss", "-Htn", "state", "time-wait"],
                       capture_output=True, text=True, timeout=30)
    return len(r.stdout.splitlines())


class QueueSampler(threading.Thread):
    """Samples the accept queue (Recv-Q of the listening sockets on port)
    twice a second: its maximum, and its value at the last sample."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.max = 0
        self.last = 0
        self.halt = threading.Event()

    def sample(self):
        r = subprocess.run(["ss", "-Hltn", "( sport = :%d )" % self.port],
                           capture_output=True, text=True, timeout=10)
        q = 0
        for line in r.stdout.splitlines():
            f = line.split()
            if len(f) >= 2 and f[0] == "LISTEN":
                q += int(f[1])
            elif len(f) >= 1 and f[0].isdigit():
                q += int(f[0])
        return q

    def run(self):
        while not self.halt.wait(0.5):
            try:
                self.last = self.sample()
                self.max = max(self.max, self.last)
            except Exception:
                pass

    def stop(self):
        self.halt.set()
        self.join(5)


class RssSampler(threading.Thread):
    def __init__(self, roots):
        super().__init__(daemon=True)
        self.roots = roots
        self.max = 0
        self.last = 0
        self.halt = threading.Event()

        self.tcp_mem_max = 0

    def run(self):
        while not self.halt.wait(0.5):
            self.last = rss_bytes(self.roots)
            self.max = max(self.max, self.last)
            self.tcp_mem_max = max(self.tcp_mem_max, tcp_mem_bytes())

    def stop(self):
        self.halt.set()
        self.join(5)


# ------------------------------------------------------------------- peers

class Origin:
    def __init__(self, lab, delay="0ms", body="1k"):
        self.lab = lab
        self.p = lab.spawn("origin", [ORIGIN_BIN, "--listen", "127.0.0.1:0",
                                      "--delay", delay, "--body", body,
                                      "--threads", "2"])
        self.port = wait_listening(lab, self.p)

    def stop(self):
        self.lab.stop(self.p)


def render(template, dest, **subs):
    with open(os.path.join(PEERS, template)) as f:
        text = f.read()
    for k, v in subs.items():
        text = text.replace("@%s@" % k, str(v))
    with open(dest, "w") as f:
        f.write(text)
    return dest


class Peer:
    """One row's proxy (or none, for direct) in front of an origin."""

    def __init__(self, lab, row, origin_port):
        self.lab = lab
        self.row = row
        self.procs = []
        self.dir = tempfile.mkdtemp(prefix=row + ".", dir=lab.work)
        start = getattr(self, "_start_" + row.split("-")[0].replace("-", "_"))
        start(origin_port)
        if self.row != "direct":
            status = http_get(self.port, "/?size=16")
            if status != 200:
                raise RuntimeError("%s answered %d" % (row, status))

    def roots(self):
        return [p.pid for p in self.procs]

    def crashes(self):
        """Workers that died so far (Switchboard's master logs each one)."""
        n = 0
        for p in self.procs:
            try:
                with open(os.path.join(self.lab.work, p.bench_name + ".err"),
                          errors="replace") as f:
                    n += len(re.findall(r"killed by signal|exited with status",
                                        f.read()))
            except OSError:
                pass
        return n

    def crash_lines(self, limit=3):
        out = []
        for p in self.procs:
            try:
                with open(os.path.join(self.lab.work, p.bench_name + ".err"),
                          errors="replace") as f:
                    for line in f:
                        if "killed by signal" in line or "***" in line:
                            out.append(line.strip())
            except OSError:
                pass
        return sorted(set(out), key=out.index)[:limit]

    def stop(self):
        n = self.crashes()
        if n:
            self.lab.crash_log.append((self.lab.scenario, self.row, n,
                                       self.crash_lines()))
        for p in reversed(self.procs):
            self.lab.stop(p)
        self.procs = []

    def _start_direct(self, origin_port):
        self.port = origin_port

    def _start_switchboard(self, origin_port):
        backend = {"switchboard": "epoll", "switchboard-poll": "poll",
                   "switchboard-select": "select"}[self.row]
        conf = render("switchboard.conf.in",
                      os.path.join(self.dir, "switchboard.conf"),
                      PORT=0, ORIGIN_PORT=origin_port, BACKEND=backend)
        p = self.lab.spawn(self.row, [SWITCHBOARD_BIN, "-c", conf])
        self.procs.append(p)
        self.port = wait_listening(self.lab, p)

    def _start_nginx(self, origin_port):
        port = free_port()
        for d in ("client_body", "proxy_temp"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        conf = render("nginx.conf.in", os.path.join(self.dir, "nginx.conf"),
                      PORT=port, ORIGIN_PORT=origin_port, DIR=self.dir)
        p = self.lab.spawn(self.row, ["nginx", "-p", self.dir, "-c", conf,
                                      "-g", "daemon off;"])
        self.procs.append(p)
        self.port = wait_listening(self.lab, p, port)

    def _start_haproxy(self, origin_port):
        port = free_port()
        conf = render("haproxy.cfg.in", os.path.join(self.dir, "haproxy.cfg"),
                      PORT=port, ORIGIN_PORT=origin_port)
        for i in range(2):  # one process per core, sharing the port
            p = self.lab.spawn("%s.%d" % (self.row, i),
                               ["haproxy", "-db", "-f", conf])
            self.procs.append(p)
            wait_listening(self.lab, p, port)
        # The second process's connect check passes on the first one's
        # socket: wait until both listen, or one takes all the load.
        end = time.monotonic() + 15
        while listener_count(port) < 2:
            if time.monotonic() > end:
                raise RuntimeError("haproxy: 2 processes, %d listening on %d"
                                   % (listener_count(port), port))
            time.sleep(0.05)
        self.port = port

    def _start_thread(self, origin_port):  # thread-pool
        port = free_port()
        os.chmod(self.dir, 0o755)  # the children run as www-data
        conf = render("apache2.conf.in", os.path.join(self.dir, "apache2.conf"),
                      PORT=port, ORIGIN_PORT=origin_port, DIR=self.dir)
        p = self.lab.spawn(self.row, ["apache2", "-f", conf, "-DFOREGROUND"])
        self.procs.append(p)
        self.port = wait_listening(self.lab, p, port)
        time.sleep(0.5)  # let the first children start their threads

    def _start_blocking(self, origin_port):
        p = self.lab.spawn(self.row, [sys.executable,
                                      os.path.join(PEERS, "blocking_proxy.py"),
                                      "--listen", "127.0.0.1:0", "--origin",
                                      "127.0.0.1:%d" % origin_port])
        self.procs.append(p)
        self.port = wait_listening(self.lab, p)


# -------------------------------------------------------------------- load

UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def parse_size(text):
    """Bytes in "256m", "1g", "4k" or "100" (the origin's ?size= units)."""
    units = {"k": 2**10, "m": 2**20, "g": 2**30}
    if text[-1:].lower() in units:
        return int(text[:-1]) * units[text[-1].lower()]
    return int(text)


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s|m|h)$", text)
    return float(m.group(1)) * UNITS[m.group(2)] if m else None


def run_load(lab, tag, port, path, conns, duration, timeout_s, tool):
    """One load run; returns dict(rps, requests, p50, p99 (ms), errors...)."""
    url = "http://127.0.0.1:%d%s" % (port, path)
    raw = os.path.join(lab.raw, tag + "." + tool + ".txt")
    if tool == "ab":
        argv = ["ab", "-k", "-r", "-q", "-c", str(conns), "-t", str(duration),
                # -n caps the run (ab stops at -t or -n, whichever comes
                # first) and sizes ab's results array: 32 B a request.
                "-n", "5000000", "-s", str(int(timeout_s)), url]
    else:
        threads = 2 if conns >= 2 else 1
        argv = ["wrk", "-t%d" % threads, "-c%d" % conns, "-d%ds" % duration,
                "--latency", "--timeout", "%ds" % timeout_s, url]
    t0 = time.monotonic()
    r = subprocess.run(argv, capture_output=True, text=True,
                       timeout=duration + timeout_s + 60)
    elapsed = time.monotonic() - t0
    text = r.stdout + r.stderr
    with open(raw, "w") as f:
        f.write("$ %s\n%s" % (" ".join(argv), text))
    res = dict(rps=0.0, requests=0, p50=None, p99=None, connect_err=0,
               read_err=0, write_err=0, timeouts=0, non2xx=0,
               duration=duration, elapsed=elapsed, tool=tool)
    if tool == "ab":
        m = re.search(r"Requests per second:\s+([\d.]+)", text)
        res["rps"] = float(m.group(1)) if m else 0.0
        m = re.search(r"Complete requests:\s+(\d+)", text)
        res["requests"] = int(m.group(1)) if m else 0
        m = re.search(r"Non-2xx responses:\s+(\d+)", text)
        res["non2xx"] = int(m.group(1)) if m else 0
        # ab's failed requests: the ones that are errors of their own. Its
        # "Length" failures are answers whose length differs from the
        # first one's, which a non-2xx answer (counted above) always is
        # here: only those beyond the non-2xx ones are counted.
        m = re.search(r"Failed requests:\s+(\d+)", text)
        failed = int(m.group(1)) if m else 0
        m = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: (\d+), "
                      r"Exceptions: (\d+)\)", text)
        if m:
            connect, receive, length, exceptions = map(int, m.groups())
            res["read_err"] = (connect + receive + exceptions +
                               max(0, length - res["non2xx"]))
        else:
            res["read_err"] = failed
        for q in ("50", "99"):
            m = re.search(r"^\s+%s%%\s+(\d+)" % q, text, re.M)
            res["p" + q] = float(m.group(1)) if m else None
    else:
        m = re.search(r"Requests/sec:\s+([\d.]+)", text)
        res["rps"] = float(m.group(1)) if m else 0.0
        m = re.search(r"(\d+) requests in", text)
        res["requests"] = int(m.group(1)) if m else 0
        for q in ("50", "99"):
            m = re.search(r"^\s+%s%%\s+(\S+)" % q, text, re.M)
            res["p" + q] = to_ms(m.group(1)) if m else None
        m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                      r"timeout (\d+)", text)
        if m:
            (res["connect_err"], res["read_err"], res["write_err"],
             res["timeouts"]) = map(int, m.groups())
        m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
        res["non2xx"] = int(m.group(1)) if m else 0
    if res["requests"] == 0:
        res["p50"] = res["p99"] = None
    return res


ERROR_KEYS = ("connect_err", "read_err", "write_err", "timeouts", "non2xx")


def good_answers(r):
    """The answers of a load run that are not errors: wrk counts non-2xx
    answers in its requests, ab also its failed requests."""
    return r["requests"] - r["non2xx"] - (
        r["read_err"] if r.get("tool") == "ab" else 0)


def charge_cpu(dst, roots, n_good, ticks, kernel_ticks):
    """The row's CPU over a run (clock ticks of TICK per second, and of
    them in the kernel) per answer that is not an error, into dst, with
    the counts behind it to check by hand: a row that sheds most clients
    with a 503 would otherwise look cheap."""
    if roots and n_good > 0:
        dst["cpu_us"] = ticks * 1e6 / TICK / n_good
        dst["kernel_us"] = kernel_ticks * 1e6 / TICK / n_good
    dst["cpu_ticks"], dst["kernel_ticks"] = ticks, kernel_ticks
    dst["requests_cpu"] = n_good


def errors_count(r):
    """Every error wrk or ab reported: socket errors, timeouts and non-2xx
    or 3xx answers (which wrk counts in its req/s)."""
    return sum(r.get(k, 0) for k in ERROR_KEYS)


def errors_text(r):
    parts = []
    for k, name in (("connect_err", "connect"), ("read_err", "read"),
                    ("write_err", "write"), ("timeouts", "timeout"),
                    ("non2xx", "non-2xx")):
        if r.get(k):
            parts.append("%s %d" % (name, r[k]))
    return ", ".join(parts) if parts else "0"


# --------------------------------------------------------------- scenarios

class Bench:
    def __init__(self, args, lab, out):
        self.args = args
        self.lab = lab
        self.out = out
        self.q = args.quick
        self.tool = args.tool
        self.results = {"meta": {}, "scenarios": {}}
        self.notes = []
        self.pause = 1.0 if self.q else 2.0

    def rows(self, wanted):
        return [r for r in wanted if r in self.args.rows]

    def between_rows(self):
        # Each row gets a fresh origin on a new port, so TIME_WAIT sockets
        # from the previous row never collide with its 4-tuples; the pause
        # lets the loopback settle.
        time.sleep(self.pause)

    def with_row(self, row, delay, body="1k"):
        origin = Origin(self.lab, delay, body)
        try:
            peer = Peer(self.lab, row, origin.port)
        except Exception:
            origin.stop()
            raise
        return origin, peer

    # -- rounds with the rows interleaved (overhead, bulk)
    def interleaved(self, rows, rounds, measure):
        """Rounds with the rows interleaved: measure(row, rnd, peer) on a
        fresh origin (0 ms) and row each time. The machine is shared, and
        a neighbour's burst should hit one round of one row, not a whole
        row. Returns per row the median round by key "median" of the
        results (which measure must set), with every round's results kept
        under "rounds_all", or the row's error."""
        runs = {row: [] for row in rows}
        errors = {}
        for rnd in range(rounds):
            for row in rows:
                if row in errors:
                    continue
                try:
                    origin, peer = self.with_row(row, "0ms")
                except Exception as e:
                    errors[row] = str(e)
                    log("  %-19s failed: %s" % (row, e))
                    continue
                try:
                    runs[row].append(measure(row, rnd, peer))
                except Exception as e:
                    errors[row] = str(e)
                    log("  %-19s failed: %s" % (row, e))
                finally:
                    peer.stop()
                    origin.stop()
                time.sleep(self.pause / 2)
        out = []
        for row in rows:
            rs = runs[row]
            if not rs:
                out.append(dict(row=row, error=errors.get(row, "no run")))
                continue
            res = dict(sorted(rs, key=lambda r: r["median"])[len(rs) // 2])
            res.update(row=row, rounds=len(rs), rounds_all=rs)
            # Errors are every round's, not only the median's: a goal is
            # met only by rows that ran clean.
            for k in ERROR_KEYS:
                res[k] = sum(r.get(k, 0) for r in rs)
            if row in errors:
                res["error"] = "round %d of %d failed: %s" % (
                    len(rs) + 1, rounds, errors[row])
            out.append(res)
        return out

    # -- overhead
    def overhead(self):
        rounds, dur = (1, 3) if self.q else (3, 4)
        log("\n== overhead: origin 0 ms, 1 KiB, 50 connections, %d round%s of "
            "%d s, rows interleaved" % (rounds, "s" if rounds > 1 else "", dur))

        def measure(row, rnd, peer):
            run_load(self.lab, "overhead-%s-%d-warmup" % (row, rnd),
                     peer.port, "/", 50, 1, 10, self.tool)
            roots = peer.roots()
            c0, k0 = cpu_split(roots)
            x0, m0, s0 = others_ticks(), machine_busy(), tcp_segments()
            r = run_load(self.lab, "overhead-%s-%d" % (row, rnd), peer.port,
                         "/", 50, dur, 10, self.tool)
            c1, k1 = cpu_split(roots)
            x1, m1, s1 = others_ticks(), machine_busy(), tcp_segments()
            r["median"] = r["rps"]
            if r["requests"]:
                # Segments of the whole chain (client, row, origin): the
                # TCP work a request costs, whoever pays for it.
                r["segs"] = (s1 - s0) / r["requests"]
            # The errors column shows the answers left out.
            charge_cpu(r, roots, good_answers(r), c1 - c0, k1 - k0)
            # How much of the machine the round kept busy, and how much the
            # host took for its other guests, in %.
            r["busy_pct"] = (m1[0] - m0[0]) * 100.0 / max(m1[2] - m0[2], 1)
            r["steal_pct"] = (m1[1] - m0[1]) * 100.0 / max(m1[2] - m0[2], 1)
            # CPU of processes outside this bench during the run, in % of
            # one core.
            r["other_cpu_pct"] = others_delta(x0, x1) / TICK / r["elapsed"] * 100
            log("  %-19s round %d: %9.0f req/s  p99 %7.2f ms  cpu %s us/req"
                "  machine busy %.0f%% steal %.0f%%  (others %.0f%%)"
                % (row, rnd + 1, r["rps"], r["p99"] or 0,
                   "%.1f (kernel %.1f)" % (r["cpu_us"], r["kernel_us"])
                   if "cpu_us" in r else "-",
                   r["busy_pct"], r["steal_pct"], r["other_cpu_pct"]))
            return r

        out = self.interleaved(self.rows(ALL_ROWS), rounds, measure)
        for res in out:
            rs = res.pop("rounds_all", None)
            if rs is None:
                continue
            res["rps_all"] = [r["rps"] for r in rs]
            cpus = sorted((r for r in rs if "cpu_us" in r),
                          key=lambda r: r["cpu_us"])
            if cpus:
                # The median round by CPU, with its kernel share.
                mid = cpus[len(cpus) // 2]
                for k in ("cpu_us", "kernel_us", "cpu_ticks", "kernel_ticks",
                          "requests_cpu"):
                    if k in mid:
                        res[k] = mid[k]
                res["cpu_all"] = [r.get("cpu_us") for r in rs]
                res["kernel_all"] = [r.get("kernel_us") for r in rs]
            res["segs_all"] = [r.get("segs") for r in rs]
            res["busy_all"] = [r.get("busy_pct") for r in rs]
            res["steal_pct"] = max(r.get("steal_pct", 0) for r in rs)
            res["other_cpu_pct"] = max(r["other_cpu_pct"] for r in rs)
        self.results["scenarios"]["overhead"] = out

    # -- bulk: one large response, as fast as the client reads
    def bulk(self):
        # curl reads into /dev/null: the cheapest client there is, so the
        # proxy is what the row measures.
        rounds, size = (1, "256m") if self.q else (3, "1g")
        log("\n== bulk: one %sB response (origin 0 ms), %d round%s, rows "
            "interleaved" % (size.upper(), rounds, "s" if rounds > 1 else ""))

        def measure(row, rnd, peer):
            http_get(peer.port, "/")  # the upstream connection
            roots = peer.roots()
            c0 = cpu_ticks(roots)
            out = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "--max-time", "120",
                 "-w", "%{http_code} %{size_download} %{time_total}",
                 "http://127.0.0.1:%d/?size=%s" % (peer.port, size)],
                capture_output=True, text=True, timeout=150).stdout
            c1 = cpu_ticks(roots)
            code, got, secs = out.split()
            got, secs = int(got), float(secs)
            if code != "200" or got != parse_size(size):
                raise RuntimeError("status %s, %d bytes" % (code, got))
            r = dict(mbps=got / secs / 1e6, secs=secs, bytes=got)
            r["median"] = r["mbps"]
            if roots:
                r["cpu_s_gib"] = (c1 - c0) / TICK / (got / 2**30)
            log("  %-19s round %d: %6.0f MB/s  proxy CPU %s s/GiB"
                % (row, rnd + 1, r["mbps"],
                   "%.2f" % r["cpu_s_gib"] if "cpu_s_gib" in r else "-"))
            return r

        rows = self.rows(["direct", "switchboard", "nginx", "haproxy",
                          "thread-pool"])
        out = self.interleaved(rows, rounds, measure)
        for res in out:
            rs = res.pop("rounds_all", None)
            if rs is not None:
                res.update(size=size, mbps_all=[r["mbps"] for r in rs])
        self.results["scenarios"]["bulk"] = out

    # -- io-bound and c10k: Little's law
    def littles(self, name, delay_ms, conns, dur, warm):
        self.warm = warm
        rows = self.rows(ALL_ROWS)
        out = []
        ideal = conns / (delay_ms / 1000.0)
        log("\n== %s: origin %d ms, %d connections, %d s (ideal %.0f req/s)"
            % (name, delay_ms, conns, dur, ideal))
        timeout_s = int(delay_ms / 1000.0 * 5 + 5)
        for row in rows:
            res = dict(row=row, conns=conns, delay_ms=delay_ms, ideal=ideal)
            if row == "blocking" and conns > 1000:
                res["skipped"] = ("one client at a time: %.0f req/s at best, "
                                  "%d callers would wait %.0f s each"
                                  % (1000.0 / delay_ms, conns,
                                     conns * delay_ms / 1000.0))
                out.append(res)
                log("  %-19s skipped (%s)" % (row, res["skipped"]))
                continue
            d = dur
            if row == "blocking":
                d = min(dur, 3)
            try:
                origin, peer = self.with_row(row, "%dms" % delay_ms)
            except Exception as e:
                res["error"] = str(e)
                out.append(res)
                log("  %-19s failed: %s" % (row, e))
                continue
            try:
                # Warm-up at the same concurrency (not measured): the row's
                # upstream keep-alive pool fills, as it would in service.
                # Not for the pools of one or 150: they would spend the
                # measured run serving the warm-up's abandoned accept queue
                # (4,096 callers at 1 s each, 150 at a time, is 27 s).
                if row not in ("blocking", "thread-pool"):
                    run_load(self.lab, "%s-%s-warmup" % (name, row), peer.port,
                             "/", conns, self.warm, timeout_s, self.tool)
                    # The warm-up stops with a request in flight on every
                    # connection: let the row answer them (one delay)
                    # before the measured run starts.
                    time.sleep(delay_ms / 1000.0 + 1.0)
                else:
                    res["note"] = "no warm-up" + (
                        ", %d s run only" % d if d != dur else "")
                res["time_wait_before"] = time_wait_count()
                qs = QueueSampler(peer.port)
                qs.start()
                n0 = tcp_ext()
                roots = peer.roots()
                c0, k0 = cpu_split(roots)
                r = run_load(self.lab, "%s-%s" % (name, row), peer.port, "/",
                             conns, d, timeout_s, self.tool)
                c1, k1 = cpu_split(roots)
                qs.stop()
                n1 = tcp_ext()
                res.update(r)
                # wrk's req/s counts non-2xx answers too (ab's also its
                # failed requests): only the others are the throughput
                # Little's law is about, and the work CPU is charged to.
                n_good = good_answers(r)
                charge_cpu(res, roots, n_good, c1 - c0, k1 - k0)
                good = n_good / r["requests"] if r["requests"] else 0
                res["ratio"] = r["rps"] * good / ideal
                res["overflows"] = n1.get("ListenOverflows", 0) - n0.get("ListenOverflows", 0)
                res["drops"] = n1.get("ListenDrops", 0) - n0.get("ListenDrops", 0)
                res["queue_max"] = qs.max
                res["queue_end"] = qs.last
                log("  %-19s %9.0f req/s  %.3f of ideal  p50 %8.2f ms  p99 %8.2f ms"
                    "  overflows %d  queued(max/end) %d/%d  errors %s"
                    % (row, r["rps"], res["ratio"], r["p50"] or 0, r["p99"] or 0,
                       res["overflows"], qs.max, qs.last, errors_text(r)))
            except Exception as e:
                res["error"] = str(e)
                log("  %-19s failed: %s" % (row, e))
            finally:
                peer.stop()
                origin.stop()
            out.append(res)
            self.between_rows()
        self.results["scenarios"][name] = out

    # -- concurrency sweep
    def sweep(self):
        points = ([10, 100, 1000] if self.q else
                  [10, 30, 100, 300, 1000, 3000, 10000])
        dur = 2 if self.q else 5
        rows = self.rows(ALL_ROWS)
        out = []
        log("\n== concurrency sweep: origin 100 ms, %s connections, %d s each"
            % ("/".join(map(str, points)), dur))
        for row in rows:
            try:
                origin, peer = self.with_row(row, "100ms")
            except Exception as e:
                out.append(dict(row=row, error=str(e)))
                log("  %-19s failed: %s" % (row, e))
                continue
            try:
                line = []
                for c in points:
                    res = dict(row=row, conns=c, ideal=c / 0.1)
                    if row == "blocking" and c > 100:
                        res["skipped"] = "one at a time: 10 req/s"
                        out.append(res)
                        continue
                    # 1 s warm-up per point (not measured): a pool that
                    # grows on demand (thread-pool) gets to grow.
                    run_load(self.lab, "sweep-%s-%d-warmup" % (row, c), peer.port,
                             "/", c, 1, 5, self.tool)
                    r = run_load(self.lab, "sweep-%s-%d" % (row, c), peer.port,
                                 "/", c, dur, 5, self.tool)
                    res.update(r)
                    out.append(res)
                    line.append("%d:%.0f" % (c, r["rps"]))
                log("  %-19s %s" % (row, "  ".join(line)))
            except Exception as e:
                out.append(dict(row=row, error=str(e)))
                log("  %-19s failed: %s" % (row, e))
            finally:
                peer.stop()
                origin.stop()
            self.between_rows()
        self.results["scenarios"]["sweep"] = out

    # -- idle keep-alive connections vs backend
    def idle_fds(self):
        ks = [0, 5000] if self.q else [0, 1000, 5000, 10000, 15000]
        dur = 3 if self.q else 8
        rows = self.rows(["switchboard", "switchboard-poll", "switchboard-select"])
        out = []
        log("\n== idle-fds: K idle keep-alive connections + 50 active "
            "(origin 0 ms, 1 KiB), %d s each" % dur)
        for row in rows:
            try:
                origin, peer = self.with_row(row, "0ms")
            except Exception as e:
                out.append(dict(row=row, error=str(e)))
                log("  %-19s failed: %s" % (row, e))
                continue
            line = []
            try:
                for k in ks:
                    res = dict(row=row, idle=k)
                    holder = None
                    crashes0 = peer.crashes()
                    try:
                        if k:
                            holder = self.lab.spawn(
                                "hold", [sys.executable, os.path.join(HERE, "hold.py"),
                                         "--port", str(peer.port), "--count", str(k),
                                         "--mode", "idle", "--max-seconds", "120"])
                            held = wait_line(self.lab, holder, r"held (\d+) failed (\d+)", 90)
                            res["held"], res["hold_failed"] = int(held[0]), int(held[1])
                        r = run_load(self.lab, "idle-%s-%d" % (row, k), peer.port,
                                     "/", 50, dur, 10, self.tool)
                        res.update(r)
                        if holder:
                            self.lab.stop(holder)
                            m = last_line(self.lab, holder, r"still open (\d+)")
                            res["still_open"] = int(m[0]) if m else None
                            holder = None
                        res["worker_crashes"] = peer.crashes() - crashes0
                        if res["worker_crashes"]:
                            res["crash_lines"] = peer.crash_lines()
                        line.append("%d:%.0f/%.2fms%s" % (
                            k, r["rps"], r["p99"] or -1,
                            "/%d crashes" % res["worker_crashes"]
                            if res["worker_crashes"] else ""))
                    except Exception as e:
                        res["error"] = str(e)
                        line.append("%d:failed" % k)
                    finally:
                        if holder:
                            self.lab.stop(holder)
                    out.append(res)
                    time.sleep(0.5)
                log("  %-19s %s" % (row, "  ".join(line)))
            finally:
                peer.stop()
                origin.stop()
            self.between_rows()
        self.results["scenarios"]["idle-fds"] = out

    # -- slow clients
    def slow_clients(self):
        count = 1000 if self.q else 5000
        dur = 5 if self.q else 15
        rows = self.rows(["switchboard", "nginx", "haproxy", "thread-pool",
                          "blocking"])
        out = []
        log("\n== slow-clients: %d clients trickle heads (3 s) and read 128 KiB "
            "replies at 1 KiB/s, + 50 normal clients (/?delay=10ms, 1 KiB), %d s"
            % (count, dur))
        for row in rows:
            res = dict(row=row, slow=count)
            if row == "blocking":
                res["skipped"] = "one client at a time: the first slow client holds everyone"
                out.append(res)
                log("  %-19s skipped (%s)" % (row, res["skipped"]))
                continue
            try:
                origin, peer = self.with_row(row, "0ms")
            except Exception as e:
                res["error"] = str(e)
                out.append(res)
                log("  %-19s failed: %s" % (row, e))
                continue
            slow = None
            try:
                roots = peer.roots()
                res["rss_idle"] = rss_bytes(roots)
                slow = self.lab.spawn("slow", [
                    sys.executable, os.path.join(HERE, "slow_clients.py"),
                    "--port", str(peer.port), "--count", str(count),
                    "--path", "/?size=128k", "--ramp", "3", "--head-seconds", "3",
                    "--max-seconds", str(dur + 60)])
                ready = wait_line(self.lab, slow, r"ready (\d+)", 60)
                res["slow_open"] = int(ready[0])
                rs = RssSampler(roots)
                rs.start()
                r = run_load(self.lab, "slow-%s" % row, peer.port,
                             "/?delay=10ms&size=1k", 50, dur, 5, self.tool)
                rs.stop()
                res.update(r)
                res["rss_max"] = rs.max
                res["rss_end"] = rs.last
                res["tcp_mem_max"] = rs.tcp_mem_max
                self.lab.stop(slow)
                m = last_line(self.lab, slow, r"open (\d+) connects (\d+) closed (\d+) "
                              r"refused (\d+) heads (\d+) replies (\d+) bytes (\d+)")
                if m:
                    for k, v in zip(("slow_end_open", "slow_connects", "slow_closed",
                                     "slow_refused", "slow_heads", "slow_replies",
                                     "slow_bytes"), m):
                        res[k] = int(v)
                log("  %-19s normal: %8.0f req/s  p99 %s  errors %s;  "
                    "slow open %s;  proxy RSS max %.1f MiB; TCP buffers %.0f MiB"
                    % (row, r["rps"], fmt_ms(r["p99"]), errors_text(r),
                       res.get("slow_end_open"), rs.max / 2**20,
                       rs.tcp_mem_max / 2**20))
            except Exception as e:
                res["error"] = str(e)
                log("  %-19s failed: %s" % (row, e))
            finally:
                if slow:
                    self.lab.stop(slow)
                peer.stop()
                origin.stop()
            out.append(res)
            self.between_rows()
        self.results["scenarios"]["slow-clients"] = out

    # -- memory per held connection
    def memory(self):
        counts = [1000] if self.q else [1000, 5000, 10000]
        rows = self.rows(["switchboard", "nginx", "haproxy", "thread-pool",
                          "blocking"])
        out = []
        log("\n== memory: proxy RSS per connection with a request held in "
            "flight (origin delay 600 s), %s connections"
            % "/".join(map(str, counts)))
        for row in rows:
            line = []
            for n in counts:
                if row in ("thread-pool", "blocking"):
                    out.append(dict(row=row, held_target=n, skipped=(
                        "holds %s request(s) at once" %
                        ("150" if row == "thread-pool" else "1"))))
                    continue
                # The goal's point (the largest) in 3 rounds, each with the
                # row started afresh: one reading moves by a few hundred
                # bytes per connection with where the heap lands. The
                # median round is the figure; every round is kept.
                n_rounds = 3 if n == counts[-1] and not self.q else 1
                tries = [self.memory_point(row, n) for _ in range(n_rounds)]
                # A round that did not hold all n divides by too many:
                # it is the figure only if no round held them all.
                whole = [r for r in tries if "per_conn" in r and
                         not r.get("hold_failed") and
                         r.get("upstream_conns", 0) >= n]
                good = sorted(whole or [r for r in tries if "per_conn" in r],
                              key=lambda r: r["per_conn"])
                if not good:
                    res = tries[0]
                    line.append("%d:failed" % n)
                else:
                    res = good[len(good) // 2]
                    if n_rounds > 1:
                        res["rounds_per_conn"] = [r.get("per_conn") for r in tries]
                        res["worst_per_conn"] = good[-1]["per_conn"]
                    line.append("%d:%.1fKiB" % (n, res["per_conn"] / 1024))
                out.append(res)
            if line:
                log("  %-19s %s" % (row, "  ".join(line)))
            else:
                log("  %-19s skipped (%s)" % (row, out[-1].get("skipped")))
        self.results["scenarios"]["memory"] = out

    def memory_point(self, row, n):
        """One reading: row started afresh, n requests held in flight."""
        res = dict(row=row, held_target=n)
        try:
            origin, peer = self.with_row(row, "0ms")
        except Exception as e:
            res["error"] = str(e)
            return res
        holder = None
        try:
            roots = peer.roots()
            # Warm: a few exchanges so that lazy allocations are in
            # the baseline, then the idle baseline.
            for _ in range(20):
                http_get(peer.port, "/")
            time.sleep(0.5)
            res["rss_idle"] = base = rss_bytes(roots)
            holder = self.lab.spawn(
                "hold", [sys.executable, os.path.join(HERE, "hold.py"),
                         "--port", str(peer.port), "--count", str(n),
                         "--mode", "inflight", "--path", "/?delay=600s",
                         "--max-seconds", "120"])
            held = wait_line(self.lab, holder, r"held (\d+) failed (\d+)", 90)
            res["hold_failed"] = int(held[1])
            # Wait until the origin holds them all (the proxy has
            # forwarded every request), then let it settle.
            end = time.monotonic() + 30
            upstream = 0
            while time.monotonic() < end:
                upstream = count_established(origin.port)
                if upstream >= n:
                    break
                time.sleep(0.5)
            time.sleep(1.0)
            res["upstream_conns"] = count_established(origin.port)
            res["rss_held"] = rss_bytes(roots)
            res["per_conn"] = (res["rss_held"] - base) / n
        except Exception as e:
            res["error"] = str(e)
        finally:
            if holder:
                self.lab.stop(holder)
            peer.stop()
            origin.stop()
            time.sleep(self.pause)
        return res


def wait_line(lab, p, pattern, timeout):
    out = os.path.join(lab.work, p.bench_name + ".out")
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with open(out, errors="replace") as f:
            ms = re.findall(pattern, f.read())
        if ms:
            m = ms[-1]
            return m if isinstance(m, tuple) else (m,)
        if p.poll() is not None:
            raise RuntimeError("%s exited: %s" % (p.bench_name, tail(lab, p.bench_name)))
        time.sleep(0.1)
    raise RuntimeError("%s: no '%s' after %d s" % (p.bench_name, pattern, timeout))


def last_line(lab, p, pattern):
    try:
        with open(os.path.join(lab.work, p.bench_name + ".out"), errors="replace") as f:
            ms = re.findall(pattern, f.read())
    except OSError:
        return None
    if not ms:
        return None
    m = ms[-1]
    return m if isinstance(m, tuple) else (m,)


# ------------------------------------------------------------------ report

def fmt_num(v, nd=0):
    if v is None:
        return "-"
    return "{:,.{}f}".format(v, nd)


def fmt_rounds(v, every):
    """v, then every round's value in brackets when there was more than one."""
    return fmt_num(v) + (" (%s)" % ", ".join(fmt_num(x) for x in every)
                         if len(every) > 1 else "")


def fmt_ms(v):
    if v is None:
        return "-"
    return "%.0f ms" % v if v >= 100 else "%.2f ms" % v


def find(rows, row, **kw):
    for r in rows or []:
        if r.get("row") == row and all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def status_of(r):
    if r is None:
        return "not run"
    if "skipped" in r:
        return "skipped: " + r["skipped"]
    if "error" in r:
        return "failed: " + r["error"][:160]
    return None


class Report:
    def __init__(self, bench, out):
        self.b = bench
        self.res = bench.results
        self.s = bench.results["scenarios"]
        self.out = out
        self.goals = []
        self.crash_notes = []

    # -- goals
    def goal(self, name, bar, measured, met, rows=()):
        """A goal is met only if the rows it compares ran without errors:
        wrk leaves timed-out requests out of its latencies and counts
        non-2xx answers in its req/s."""
        bad = ["%s: errors %s" % (r["row"], errors_text(r)) for r in rows
               if r is not None and errors_text(r) != "0"]
        bad += ["%s: %s" % (r["row"], r["error"]) for r in rows
                if r is not None and "error" in r]
        if bad:
            measured += " (" + "; ".join(bad) + ")"
            met = False
        self.goals.append((name, bar, measured, met))

    def evaluate(self):
        ov = self.s.get("overhead")
        if ov is not None:
            sb, ng = find(ov, "switchboard"), find(ov, "nginx")
            if not (sb and ng and sb.get("rps") and ng.get("rps")):
                self.goal("overhead", "switchboard and nginx run",
                          "; ".join("%s: %s" % (n, status_of(x) or (
                              "ran" if x.get("rps") else "no requests"))
                                    for n, x in (("switchboard", sb),
                                                 ("nginx", ng))), False)
            else:
                ratio = sb["rps"] / ng["rps"]
                self.goal("overhead: req/s", "switchboard >= 1.15 x nginx",
                          "%s vs %s req/s: %.2f x" % (fmt_num(sb["rps"]),
                                                     fmt_num(ng["rps"]), ratio),
                          ratio >= 1.15, (sb, ng))
                if sb.get("cpu_us") and ng.get("cpu_us"):
                    ratio = sb["cpu_us"] / ng["cpu_us"]
                    # With the kernel's part of each (older results have
                    # none): below 0.8 x takes kernel time, not only user.
                    kern = ""
                    if sb.get("kernel_us") and ng.get("kernel_us"):
                        kern = ("; in the kernel %.1f vs %.1f us (nginx's "
                                "kernel time alone is %.2f x its CPU)"
                                % (sb["kernel_us"], ng["kernel_us"],
                                   ng["kernel_us"] / ng["cpu_us"]))
                    self.goal("overhead: CPU per request",
                              "switchboard <= 0.8 x nginx",
                              "%.1f vs %.1f us: %.2f x%s" % (
                                  sb["cpu_us"], ng["cpu_us"], ratio, kern),
                              ratio <= 0.8, (sb, ng))
        for name in ("io-bound", "c10k"):
            rows = self.s.get(name)
            if rows is None:
                continue
            sb, d = find(rows, "switchboard"), find(rows, "direct")
            if not sb or "ratio" not in sb:
                self.goal(name, "runs", status_of(sb) or "-", False)
                continue
            if d and "ratio" in d:
                diff = sb["ratio"] - d["ratio"]
                self.goal("%s: measured/ideal" % name, "within 0.01 of direct",
                          "%.4f vs direct %.4f (%+.4f)" % (sb["ratio"], d["ratio"], diff),
                          diff >= -0.01, (sb, d))
            delay = sb["delay_ms"]
            if sb.get("p99") is not None:
                ctx = ", ".join("%s %s" % (o, fmt_ms(find(rows, o)["p99"]))
                                for o in ("direct", "nginx", "haproxy")
                                if find(rows, o) and find(rows, o).get("p99") is not None)
                self.goal("%s: p99" % name, "<= 1.1 x %d ms = %d ms"
                          % (delay, 1.1 * delay),
                          "%.1f ms (%.3f x delay)%s" % (sb["p99"], sb["p99"] / delay,
                                                   "; " + ctx if ctx else ""),
                          sb["p99"] <= 1.1 * delay, (sb,))
            else:
                self.goal("%s: p99" % name, "<= 1.1 x %d ms = %d ms"
                          % (delay, 1.1 * delay),
                          "none: no request completed", False, (sb,))
            un = (sb.get("overflows", 0), sb.get("drops", 0), sb.get("queue_end", 0))
            self.goal("%s: connections never accepted" % name, "0",
                      "ListenOverflows %d, ListenDrops %d, still queued at end %d"
                      % un, un == (0, 0, 0), (sb,))
        mem = self.s.get("memory")
        if mem is not None:
            sbs = [r for r in mem if r.get("row") == "switchboard" and "per_conn" in r]
            if sbs:
                top = max(sbs, key=lambda r: r["held_target"])
                others = ", ".join(
                    "%s %.1f KiB" % (r["row"], r["per_conn"] / 1024) for r in mem
                    if r.get("held_target") == top["held_target"] and "per_conn" in r
                    and r["row"] != "switchboard")
                # Per connection is per the target: it holds only if the
                # holder got every one in and the origin saw them all.
                short = ""
                if (top.get("hold_failed", 0) > 0 or
                        top.get("upstream_conns", 0) < top["held_target"]):
                    short = "; %d of %d held (%d failed), %d reached the origin" % (
                        top["held_target"] - top.get("hold_failed", 0),
                        top["held_target"], top.get("hold_failed", 0),
                        top.get("upstream_conns", 0))
                rounds = top.get("rounds_per_conn")
                if rounds:
                    # Bytes: the bar is 4,096 and the rounds differ by less
                    # than the 0.1 KiB a figure in KiB shows.
                    figure = "%s B, the median of %d rounds (%s B)" % (
                        fmt_num(round(top["per_conn"])), len(rounds),
                        ", ".join(fmt_num(round(x)) if x is not None else "failed"
                                  for x in rounds))
                else:
                    figure = "%.1f KiB" % (top["per_conn"] / 1024)
                self.goal("memory: RSS per held connection at %s" %
                          fmt_num(top["held_target"]),
                          "<= 4 KiB" + ("" if top["held_target"] == 10000
                                        else " (the bar is at 10,000)"),
                          "%s%s%s" % (figure,
                                      "; %s" % others if others and rounds
                                      else " (%s)" % others if others else "",
                                      short),
                          top["per_conn"] <= 4096 and not short)

    # -- tables
    def t_overhead(self):
        rows = self.s["overhead"]
        ng = find(rows, "nginx")
        ng_rps = ng.get("rps") if ng else None
        ng_cpu = ng.get("cpu_us") if ng else None
        lines = ["| row | req/s | vs nginx | p50 | p99 | proxy CPU µs/req | vs nginx "
                 "| of which kernel | TCP segments/req | machine busy | errors "
                 "| other processes' CPU |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
        for r in rows:
            st = status_of(r)
            if st:
                lines.append("| %s | %s |||||||||||" % (r["row"], st))
                continue
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.0f%% |" % (
                r["row"], fmt_rounds(r["rps"], r.get("rps_all", [])),
                "%.2f" % (r["rps"] / ng_rps) if ng_rps else "-",
                fmt_ms(r["p50"]), fmt_ms(r["p99"]),
                "%.1f" % r["cpu_us"] if "cpu_us" in r else "-",
                "%.2f" % (r["cpu_us"] / ng_cpu) if ng_cpu and "cpu_us" in r else "-",
                "%.1f" % r["kernel_us"] if "kernel_us" in r else "-",
                "%.2f" % r["segs"] if "segs" in r else "-",
                ("%.0f%%" % r["busy_pct"] if "busy_pct" in r else "-")
                + (" (steal %.0f%%)" % r["steal_pct"]
                   if r.get("steal_pct", 0) >= 0.5 else ""),
                errors_text(r), r.get("other_cpu_pct", 0)))
        return lines

    def t_bulk(self):
        rows = self.s["bulk"]
        ng = find(rows, "nginx")
        ng_mbps = ng.get("mbps") if ng else None
        lines = ["| row | MB/s | vs nginx | proxy CPU s per GiB |",
                 "|---|---:|---:|---:|"]
        for r in rows:
            st = status_of(r)
            if st:
                lines.append("| %s | %s |||" % (r["row"], st))
                continue
            lines.append("| %s | %s | %s | %s |" % (
                r["row"], fmt_rounds(r["mbps"], r.get("mbps_all", [])),
                "%.2f" % (r["mbps"] / ng_mbps) if ng_mbps else "-",
                "%.2f" % r["cpu_s_gib"] if "cpu_s_gib" in r else "-"))
        return lines

    def t_littles(self, name):
        rows = self.s[name]
        lines = ["| row | req/s | ideal | measured/ideal | p50 | p99 | p99/delay | proxy CPU µs/req (kernel) | ListenOverflows | ListenDrops | accept queue max / at end | wrk errors |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            st = status_of(r)
            if st:
                lines.append("| %s | %s |||||||||||" % (r["row"], st))
                continue
            lines.append("| %s | %s | %s | %.3f | %s | %s | %s | %s | %d | %d | %d / %d | %s |" % (
                r["row"] + (" (%s)" % r["note"] if r.get("note") else ""),
                fmt_num(r["rps"]), fmt_num(r["ideal"]), r["ratio"],
                fmt_ms(r["p50"]), fmt_ms(r["p99"]),
                "%.2f" % (r["p99"] / r["delay_ms"]) if r["p99"] is not None else "-",
                "%.1f (%.1f)" % (r["cpu_us"], r["kernel_us"]) if "cpu_us" in r else "-",
                r["overflows"], r["drops"], r["queue_max"], r["queue_end"],
                errors_text(r)))
        return lines

    def t_sweep(self):
        rows = self.s["sweep"]
        points = sorted({r["conns"] for r in rows if "conns" in r})
        names = []
        for r in rows:
            if r["row"] not in names:
                names.append(r["row"])
        lines = ["| row | " + " | ".join(fmt_num(c) for c in points) + " |",
                 "|---|" + "---:|" * len(points),
                 "| ideal (c / 0.1 s) | " + " | ".join(fmt_num(c / 0.1) for c in points) + " |"]
        for n in names:
            cells = []
            err = find(rows, n)
            if err and "error" in err and "conns" not in err:
                lines.append("| %s | failed: %s |" % (n, err["error"][:120]))
                continue
            for c in points:
                r = find(rows, n, conns=c)
                if r is None:
                    cells.append("-")
                elif "skipped" in r:
                    cells.append("skipped")
                else:
                    e = errors_count(r)
                    cells.append(fmt_num(r["rps"]) + (" (%s err)" % fmt_num(e) if e else ""))
            lines.append("| %s | %s |" % (n, " | ".join(cells)))
        return lines

    def t_idle(self):
        rows = self.s["idle-fds"]
        ks = sorted({r["idle"] for r in rows if "idle" in r})
        names = []
        for r in rows:
            if r["row"] not in names:
                names.append(r["row"])
        lines = ["| backend | " + " | ".join("%s idle" % fmt_num(k) for k in ks) + " |",
                 "|---|" + "---:|" * len(ks)]
        for n in names:
            cells = []
            for k in ks:
                r = find(rows, n, idle=k)
                if r is None:
                    cells.append("-")
                elif "error" in r:
                    cells.append("failed")
                else:
                    c = "p99 %s, %s req/s" % (fmt_ms(r["p99"]), fmt_num(r["rps"]))
                    if errors_count(r):
                        c += ", errors %s" % errors_text(r)
                    if r.get("hold_failed"):
                        c += ", %s not held" % fmt_num(r["hold_failed"])
                    if r.get("still_open") is not None and r.get("held") and r["still_open"] < r["held"]:
                        c += ", %s closed" % fmt_num(r["held"] - r["still_open"])
                    if r.get("worker_crashes"):
                        c += ", **%d worker crashes**" % r["worker_crashes"]
                        for cl in r.get("crash_lines", []):
                            if cl not in self.crash_notes:
                                self.crash_notes.append(cl)
                    cells.append(c)
            lines.append("| %s | %s |" % (n, " | ".join(cells)))
        return lines

    def t_slow(self):
        rows = self.s["slow-clients"]
        lines = ["| row | normal req/s | normal p50 | normal p99 | normal errors | slow clients open at end | slow replies completed | proxy RSS idle | proxy RSS max | per slow client | kernel TCP buffers max |",
                 "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            st = status_of(r)
            if st:
                lines.append("| %s | %s |||||||||" % (r["row"], st))
                continue
            lines.append("| %s | %s | %s | %s | %s | %s | %s | %.1f MiB | %.1f MiB | %.1f KiB | %.0f MiB |" % (
                r["row"], fmt_num(r["rps"]), fmt_ms(r["p50"]), fmt_ms(r["p99"]),
                errors_text(r), fmt_num(r.get("slow_end_open")),
                fmt_num(r.get("slow_replies")), r["rss_idle"] / 2**20,
                r["rss_max"] / 2**20,
                (r["rss_max"] - r["rss_idle"]) / r["slow"] / 1024,
                r.get("tcp_mem_max", 0) / 2**20))
        return lines

    def t_memory(self):
        rows = self.s["memory"]
        counts = sorted({r["held_target"] for r in rows})
        names = []
        for r in rows:
            if r["row"] not in names:
                names.append(r["row"])
        lines = ["| row | RSS idle | " + " | ".join("%s held" % fmt_num(c) for c in counts) + " |",
                 "|---|---:|" + "---:|" * len(counts)]
        for n in names:
            cells = []
            idle = None
            for c in counts:
                r = find(rows, n, held_target=c)
                st = status_of(r)
                if st:
                    cells.append(st)
                    continue
                idle = r["rss_idle"]
                c = "%.1f KiB" % (r["per_conn"] / 1024)
                if r.get("rounds_per_conn"):
                    c += " (median of %s B)" % ", ".join(
                        fmt_num(round(x)) if x is not None else "failed"
                        for x in r["rounds_per_conn"])
                if r.get("upstream_conns", c) < r["held_target"] or r.get("hold_failed"):
                    c += " (%s upstream, %s not held)" % (
                        fmt_num(r.get("upstream_conns")), fmt_num(r.get("hold_failed")))
                cells.append(c)
            lines.append("| %s | %s | %s |" % (
                n, "%.1f MiB" % (idle / 2**20) if idle else "-", " | ".join(cells)))
        return lines

    # -- plots
    def dat(self, name, lines):
        with open(os.path.join(self.out, "data", name), "w") as f:
            f.write("\n".join(lines) + "\n")
        return "data/" + name

    def gnuplot(self, name, script):
        path = os.path.abspath(os.path.join(self.out, "data", name + ".gp"))
        with open(path, "w") as f:
            f.write("set terminal pngcairo size 900,560 font 'sans,10'\n"
                    "set output '%s.png'\nset grid\nset key outside right top\n"
                    % name + script)
        r = subprocess.run(["gnuplot", path], cwd=self.out, capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            log("gnuplot %s: %s" % (name, r.stderr.strip()))
            return None
        return name + ".png"

    def plots(self):
        os.makedirs(os.path.join(self.out, "data"), exist_ok=True)
        pngs = {}
        sw = self.s.get("sweep")
        if sw:
            names = []
            for r in sw:
                if r["row"] not in names and "rps" in r:
                    names.append(r["row"])
            series = []
            for n in names:
                f = self.dat("sweep-%s.dat" % n, ["# connections req/s p99_ms"] + [
                    "%d %.1f %s" % (r["conns"], max(r["rps"], 0.1),
                                    r["p99"] if r["p99"] is not None else "NaN")
                    for r in sw if r["row"] == n and "rps" in r])
                series.append("'%s' using 1:2 with linespoints lw 2 title '%s'" % (f, n))
            pts = sorted({r["conns"] for r in sw if "conns" in r})
            ideal = self.dat("sweep-ideal.dat", ["%d %.1f" % (c, c / 0.1) for c in pts])
            series.append("'%s' using 1:2 with lines dt 2 lc rgb 'gray' title 'ideal: c / 0.1 s'" % ideal)
            pngs["sweep"] = self.gnuplot("sweep", (
                "set title 'Throughput against concurrency, origin 100 ms (the C10K picture)'\n"
                "set logscale xy\nset xlabel 'concurrent connections'\n"
                "set ylabel 'requests/s'\nset format y '%.0s%c'\n"
                "plot " + ", ".join(series) + "\n"))
        ov = self.s.get("overhead")
        if ov:
            good = [r for r in ov if "rps" in r]
            f = self.dat("overhead.dat", ["# row req/s cpu_us p99_ms"] + [
                '"%s" %.1f %s %s' % (r["row"], r["rps"],
                                     "%.2f" % r["cpu_us"] if "cpu_us" in r else "NaN",
                                     r["p99"] if r["p99"] is not None else "NaN")
                for r in good])
            pngs["overhead"] = self.gnuplot("overhead", (
                "set multiplot layout 1,2 title 'overhead: origin 0 ms, 1 KiB, 50 connections'\n"
                "set style data histograms\nset style fill solid 0.7 border -1\n"
                "set boxwidth 0.8\nset xtics rotate by -35\nunset key\n"
                "set title 'requests/s (higher is better)'\nset yrange [0:*]\n"
                "plot '%s' using 2:xtic(1) lc rgb '#3070b0'\n"
                "set title 'proxy CPU µs per request (lower is better)'\n"
                "plot '%s' using 3:xtic(1) lc rgb '#b05030'\n"
                "unset multiplot\n" % (f, f)))
        lit = [n for n in ("io-bound", "c10k") if self.s.get(n)]
        if lit:
            names = []
            for n in lit:
                for r in self.s[n]:
                    if r["row"] not in names:
                        names.append(r["row"])
            lines = ["# row " + " ".join(lit)]
            for n in names:
                vals = []
                for sc in lit:
                    r = find(self.s[sc], n)
                    vals.append("%.4f" % r["ratio"] if r and "ratio" in r else "NaN")
                lines.append('"%s" %s' % (n, " ".join(vals)))
            f = self.dat("littles.dat", lines)
            cols = ", ".join("'%s' using %d:xtic(1) title '%s'" % (f, i + 2, n)
                             for i, n in enumerate(lit))
            pngs["littles"] = self.gnuplot("littles", (
                "set title \"Little's law: measured / ideal (connections / delay)\"\n"
                "set style data histograms\nset style histogram clustered gap 1\n"
                "set style fill solid 0.7 border -1\nset xtics rotate by -35\n"
                "set yrange [0:1.1]\nplot " + cols + "\n"))
        idl = self.s.get("idle-fds")
        if idl:
            names = []
            for r in idl:
                if r["row"] not in names:
                    names.append(r["row"])
            p99s, rpss = [], []
            for n in names:
                # Points where workers crashed (select past FD_SETSIZE) or
                # the idle connections were not all held are not plotted.
                pts = [r for r in idl if r["row"] == n and r.get("p99") is not None
                       and not r.get("worker_crashes") and not r.get("hold_failed")]
                if not pts:
                    continue
                dropped = len([r for r in idl if r["row"] == n]) - len(pts)
                title = n + (" (%d point%s not shown: not held or crashed)"
                             % (dropped, "s" if dropped > 1 else "")
                             if dropped else "")
                f = self.dat("idle-%s.dat" % n, ["# idle p99_ms req/s"] + [
                    "%d %.3f %.1f" % (r["idle"], r["p99"], r["rps"]) for r in pts])
                p99s.append("'%s' using 1:2 with linespoints lw 2 title '%s'" % (f, title))
                rpss.append("'%s' using 1:3 with linespoints lw 2 title '%s'" % (f, title))
            if p99s:
                pngs["idle-fds"] = self.gnuplot("idle-fds", (
                    "set terminal pngcairo size 1100,520 font 'sans,10'\n"
                    "set output 'idle-fds.png'\n"
                    "set multiplot layout 1,2 title '50 active clients while K keep-alive connections sit idle'\n"
                    "set key inside top left\nset xlabel 'idle keep-alive connections'\n"
                    "set yrange [0:*]\nset title 'p99 of the active clients (ms)'\n"
                    "plot " + ", ".join(p99s) + "\n"
                    "set title 'requests/s of the active clients'\n"
                    "plot " + ", ".join(rpss) + "\nunset multiplot\n"))
        mem = self.s.get("memory")
        if mem:
            names = []
            for r in mem:
                if r["row"] not in names and "per_conn" in r:
                    names.append(r["row"])
            series = []
            for n in names:
                f = self.dat("memory-%s.dat" % n, ["# held KiB_per_conn"] + [
                    "%d %.2f" % (r["held_target"], r["per_conn"] / 1024)
                    for r in mem if r["row"] == n and "per_conn" in r])
                series.append("'%s' using 1:2 with linespoints lw 2 title '%s'" % (f, n))
            if series:
                pngs["memory"] = self.gnuplot("memory", (
                    "set title 'proxy RSS per connection held in flight'\n"
                    "set xlabel 'connections held'\nset ylabel 'KiB per connection'\n"
                    "set yrange [0:*]\nset arrow from graph 0, first 4 to graph 1, first 4 nohead dt 2 lc rgb 'red'\n"
                    "set label 'goal: 4 KiB' at graph 0.02, first 4.4 tc rgb 'red'\n"
                    "plot " + ", ".join(series) + "\n"))
        sl = self.s.get("slow-clients")
        if sl:
            good = [r for r in sl if "rss_max" in r]
            if good:
                f = self.dat("slow-clients.dat", ["# row p99_ms rss_max_MiB"] + [
                    '"%s" %s %.1f' % (r["row"],
                                      "%.2f" % r["p99"] if r["p99"] is not None else "NaN",
                                      r["rss_max"] / 2**20) for r in good])
                pngs["slow-clients"] = self.gnuplot("slow-clients", (
                    "set multiplot layout 1,2 title 'slow clients + 50 normal clients'\n"
                    "set style data histograms\nset style fill solid 0.7 border -1\n"
                    "set boxwidth 0.8\nunset key\nset yrange [0:*]\n"
                    "set title 'normal clients p99 (ms; missing = none served)'\n"
                    "plot '%s' using 2:xtic(1) lc rgb '#3070b0'\n"
                    "set title 'proxy RSS max (MiB)'\n"
                    "plot '%s' using 3:xtic(1) lc rgb '#b05030'\n"
                    "unset multiplot\n" % (f, f)))
        return {k: v for k, v in pngs.items() if v}

    def write(self):
        self.evaluate()
        pngs = self.plots()
        meta = self.res["meta"]
        L = ["# Switchboard bench: %s" % meta["started"], "",
             "Command: `%s`  " % meta["command"],
             "Machine: %s cores, %s, Linux %s; open files %s per process.  " % (
                 meta["cores"], meta["cpu"], meta["kernel"], meta["nofile"]),
             "Load: %s. Peers: %s.  " % (meta["tool_version"], meta["versions"]),
             "Switchboard: %s.  " % meta.get("build", "-"),
             "Wall time: %s." % meta.get("wall", "-"), ""]
        L += ["## Goals", "", "| goal | bar | measured | |", "|---|---|---|---|"]
        for name, bar, measured, met in self.goals:
            L.append("| %s | %s | %s | %s |" % (name, bar, measured,
                                                "**met**" if met else "**missed**"))
        if not self.goals:
            L.append("| (no goal scenario run) ||||")
        L.append("")
        sections = [
            ("overhead", "overhead: origin 0 ms, 1 KiB replies, 50 connections",
             "Requests/s and latency through each row at full load, in rounds "
             "with the rows interleaved: each cell is the row's median round "
             "(by req/s; the req/s of every round in brackets). Proxy CPU per "
             "request from /proc/<pid>/stat (utime+stime of the proxy's "
             "processes) before and after, divided by the requests wrk "
             "completed that were not errors (non-2xx), median of the rounds "
             "(until 2026-11-28 by every request, non-2xx ones too), and the "
             "part of it spent in "
             "the kernel (stime). TCP segments/req: segments sent by every "
             "socket of the machine (/proc/net/snmp OutSegs) during the round, "
             "per request; the same count for two rows means the same "
             "segments on the wire (the kernel time around them still "
             "depends on each row's system calls and wake-ups). Machine busy: the non-idle share of both cores during the "
             "round (/proc/stat), with the most steal (time the host gave "
             "to other guests) of the row's rounds when there was any. "
             "Kernel time is from the round the CPU figure comes from; "
             "segments and machine busy from the req/s round. Errors are "
             "every round's (results before 2026-11-28: the req/s round's). "
             "The last column is the most "
             "CPU that processes outside this bench used during one of the "
             "row's rounds, in % of one core (the machine is shared).",
             self.t_overhead, "overhead"),
            ("io-bound", "io-bound: origin 100 ms, 1,000 connections",
             "Ideal = connections / delay (Little's law). ListenOverflows and "
             "ListenDrops are the deltas of the machine-wide TcpExt counters "
             "(/proc/net/netstat) during the row; accept queue is the Recv-Q of "
             "the row's listening sockets, sampled twice a second. Proxy CPU "
             "per request as in overhead (utime+stime, stime in brackets).",
             lambda: self.t_littles("io-bound"), "littles"),
            ("c10k", "c10k: origin 1 s, 10,000 connections", "As io-bound.",
             lambda: self.t_littles("c10k"), None),
            ("sweep", "concurrency sweep: origin 100 ms",
             "Requests/s against concurrent connections (one wrk run per "
             "point). A row that holds every caller follows the ideal line "
             "until the CPU runs out; a pool flattens at its size / delay.",
             self.t_sweep, "sweep"),
            ("idle-fds", "idle-fds: idle keep-alive connections + 50 active clients",
             "K connections that each made one request and then stay open, "
             "idle (bench/hold.py), while wrk runs 50 active connections "
             "(origin 0 ms, 1 KiB). select and poll hand the kernel every "
             "descriptor on every loop turn; epoll only the ready ones.",
             self.t_idle, "idle-fds"),
            ("slow-clients", "slow-clients",
             "Slow clients (bench/slow_clients.py) trickle a request head over "
             "3 s and read a 128 KiB reply at 1 KiB/s (4 KiB receive buffer); "
             "meanwhile wrk runs 50 normal clients against /?delay=10ms "
             "(1 KiB). Per slow client = (RSS max - RSS idle) / slow clients. "
             "Most of each reply waits in the kernel's socket buffers (the "
             "last column, machine-wide, from /proc/net/sockstat), not in the "
             "proxy.",
             self.t_slow, "slow-clients"),
            ("memory", "memory: proxy RSS per connection held in flight",
             "bench/hold.py opens N connections, each sends GET /?delay=600s "
             "and waits; once the origin holds N upstream connections, RSS is "
             "summed over the proxy's processes, minus the idle baseline "
             "(after 20 warm-up requests), divided by N. Each point starts the "
             "row afresh; the largest is read in 3 rounds (results before "
             "2026-11-28: 1), whose median is the figure, every round in "
             "brackets.",
             self.t_memory, "memory"),
            ("bulk", "bulk: one large response (origin 0 ms)",
             "curl reads one GET /?size=1g (256m with --quick) into /dev/null "
             "through each row, in rounds with the rows interleaved; each "
             "cell is the row's median round (every round in brackets). "
             "Proxy CPU from /proc/<pid>/stat, per GiB relayed.",
             self.t_bulk, None),
        ]
        for key, title, text, table, png in sections:
            if key not in self.s:
                continue
            L += ["## " + title, "", text, ""] + table() + [""]
            if png and png in pngs:
                L += ["![%s](%s)" % (png, pngs[png]), ""]
        L += ["## Notes", ""] + ["- " + n for n in self.b.notes] + [""]
        with open(os.path.join(self.out, "report.md"), "w") as f:
            f.write("\n".join(L))
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(self.res, f, indent=1, default=str)
        return L


# -------------------------------------------------------------------- main

def versions():
    def first(argv, pat=None):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            t = (r.stdout + r.stderr).strip().splitlines()
            t = [l for l in t if not pat or re.search(pat, l)]
            return t[0].strip() if t else "?"
        except Exception:
            return "?"
    return {
        "nginx": first(["nginx", "-v"]).replace("nginx version: ", ""),
        "haproxy": first(["haproxy", "-v"]).split(" - ")[0],
        "apache2": first(["apache2", "-v"], "version").replace("Server version: ", ""),
        "wrk": re.sub(r"^wrk (\S+?)(-\S+)? .*", r"wrk \1",
                      first(["wrk", "-v"], "wrk").replace("debian/", "")),
        "ab": first(["ab", "-V"], "ApacheBench"),
    }


def main():
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--tool", choices=("wrk", "ab"), default="wrk")
    ap.add_argument("--only", default=None,
                    help="comma-separated scenarios: " + ",".join(ALL_SCENARIOS))
    ap.add_argument("--rows", default=None,
                    help="comma-separated rows: " + ",".join(ALL_ROWS))
    ap.add_argument("--out", default=None)
    ap.add_argument("--command", default="bench/run")
    ap.add_argument("--max-minutes", type=float, default=None)
    ap.add_argument("--report-only", metavar="DIR", default=None,
                    help="rewrite DIR's report.md and plots from its results.json")
    args = ap.parse_args()
    if args.report_only:
        return rerender(args.report_only)

    quick_rows = ["direct", "switchboard", "nginx"]
    quick_scenarios = ["overhead", "io-bound", "memory"]
    args.rows = (args.rows.split(",") if args.rows else
                 quick_rows if args.quick else ALL_ROWS)
    scenarios = (args.only.split(",") if args.only else
                 quick_scenarios if args.quick else ALL_SCENARIOS)
    for s in scenarios:
        if s not in ALL_SCENARIOS:
            ap.error("unknown scenario %s" % s)
    for r in args.rows:
        if r not in ALL_ROWS:
            ap.error("unknown row %s" % r)
    started = datetime.datetime.now()
    out = args.out or os.path.join(HERE, "results", started.strftime("%Y-%m-%d")
                                   + ("-quick" if args.quick else ""))
    os.makedirs(out, exist_ok=True)
    for old in os.listdir(out):  # a fresh report (same day: replaced)
        p = os.path.join(out, old)
        if os.path.isdir(p):
            shutil.rmtree(p)
        else:
            os.remove(p)
    work = tempfile.mkdtemp(prefix="switchboard-bench.")
    # Run the binaries as they are now: others may rebuild build/ while the
    # bench runs, and a run must not mix two builds.
    global ORIGIN_BIN, SWITCHBOARD_BIN
    os.makedirs(os.path.join(work, "bin"))
    for name in ("ORIGIN_BIN", "SWITCHBOARD_BIN"):
        src = globals()[name]
        dst = os.path.join(work, "bin", os.path.basename(src))
        shutil.copy2(src, dst)
        globals()[name] = dst
    lab = Lab(work, os.environ.get("BENCH_PGIDS"))
    lab.raw = os.path.join(out, "raw")
    os.makedirs(lab.raw)
    bench = Bench(args, lab, out)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    bench.results["meta"] = dict(
        started=started.strftime("%Y-%m-%d %H:%M"), command=args.command,
        cores=os.cpu_count(), kernel=platform.release(),
        cpu=cpu_model(), nofile=soft, quick=args.quick, tool=args.tool,
        rows=args.rows, scenarios=scenarios)
    bench.results["meta"]["build"] = source_state()
    v = versions()
    bench.results["meta"]["tool_version"] = (v["wrk"] if args.tool == "wrk" else v["ab"])
    bench.results["meta"]["versions"] = "nginx %s, %s, %s" % (
        v["nginx"], v["haproxy"], v["apache2"])
    if soft < 20000:
        bench.notes.append("open files soft limit is %d: the 10,000-connection "
                           "scenarios need 20,000" % soft)
    limit = args.max_minutes or (6 if args.quick else 45)

    def on_alarm(*_):
        raise TimeoutError("the run took more than %s minutes: stopped" % limit)

    def on_term(sig, _):
        raise KeyboardInterrupt("signal %d" % sig)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(int(limit * 60))
    t0 = time.monotonic()
    log("bench: %s; results in %s; work in %s" % (
        "quick" if args.quick else "full", os.path.relpath(out, TOP), work))
    log("rows: %s; scenarios: %s; load: %s" % (
        ",".join(args.rows), ",".join(scenarios), args.tool))
    interrupted = None
    try:
        for s in scenarios:
            lab.scenario = s
            if s == "overhead":
                bench.overhead()
            elif s == "io-bound":
                bench.littles("io-bound", 100, 1000, 4 if args.quick else 10,
                              1 if args.quick else 2)
            elif s == "c10k":
                bench.littles("c10k", 1000, 10000, 6 if args.quick else 20,
                              3 if args.quick else 4)
            elif s == "sweep":
                bench.sweep()
            elif s == "idle-fds":
                bench.idle_fds()
            elif s == "slow-clients":
                bench.slow_clients()
            elif s == "memory":
                bench.memory()
            elif s == "bulk":
                bench.bulk()
    except (KeyboardInterrupt, TimeoutError) as e:
        interrupted = str(e) or "interrupted"
        log("stopping: %s" % interrupted)
    finally:
        signal.alarm(0)
        lab.stop_all()
    wall = time.monotonic() - t0
    bench.results["meta"]["wall"] = "%d min %02d s" % (wall // 60, wall % 60)
    bench.notes[:0] = [
        "Everything runs on this one 2-core machine: the load generator, the "
        "origin (slow-origin --threads 2) and the row under test share the "
        "cores, as they would in any single-host bench. Each row is started "
        "fresh, with its own origin on a new port (so TIME_WAIT sockets left "
        "by one row never share a 4-tuple with the next), and the bench "
        "pauses %.0f s between rows." % bench.pause,
        "The machine is shared with other sessions: compare rows of one run, "
        "not runs. ListenOverflows/ListenDrops are counters of the whole "
        "network namespace (they include the origin's listener).",
        "haproxy runs as two processes (nbthread 1 each) sharing the port with "
        "SO_REUSEPORT: one process cannot hold 10,000 client plus 10,000 "
        "server descriptors under the 20,000 cap.",
    ]
    for scen, row, n, lines in lab.crash_log:
        bench.notes.append("%s, %s: %d worker(s) died during the row (%s)." % (
            scen, row, n, "; ".join("`%s`" % l for l in lines)))
    bench.results["crashes"] = lab.crash_log
    if interrupted:
        bench.notes.append("The run was cut short: %s." % interrupted)
    bench.results["notes"] = bench.notes
    report = Report(bench, out)
    lines = report.write()
    log("")
    log("\n".join(lines))
    log("\nreport: %s" % os.path.relpath(os.path.join(out, "report.md"), TOP))
    keep_logs(work, os.path.join(lab.raw, "logs"))
    shutil.rmtree(work, ignore_errors=True)
    return 1 if interrupted else 0


def keep_logs(work, dest):
    """Copy the processes' output and the peers' error logs (small text)
    next to the raw load output."""
    for dirpath, _, files in os.walk(work):
        for f in files:
            src = os.path.join(dirpath, f)
            if (f.endswith((".out", ".err", ".log")) and
                    0 < os.path.getsize(src) < 1 << 20):
                rel = os.path.relpath(src, work)
                os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
                shutil.copyfile(src, os.path.join(dest, rel))


def rerender(out):
    """Report and plots again from results.json (no load is run)."""
    class Saved:
        pass
    b = Saved()
    with open(os.path.join(out, "results.json")) as f:
        b.results = json.load(f)
    b.notes = b.results.get("notes", [])
    for p in os.listdir(out):
        if p.endswith(".png"):
            os.remove(os.path.join(out, p))
    Report(b, out).write()
    log("rewrote %s" % os.path.join(out, "report.md"))
    return 0


def source_state():
    """Which source the binaries were built from (read-only git calls)."""
    try:
        head = subprocess.run(["git", "-C", TOP, "log", "-1", "--format=%h %cd",
                               "--date=format:%Y-%m-%d %H:%M"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", TOP, "status", "--porcelain", "--",
                                "proxy", "bench/slow_origin.c"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "unknown source"
    if not head:
        return "not a git checkout"
    return "commit %s%s; binaries copied at the start of the run" % (
        head, " + uncommitted changes in proxy/" if dirty else "")


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


if __name__ == "__main__":
    sys.exit(main())
