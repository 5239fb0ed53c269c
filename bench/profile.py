#!/usr/bin/env python3
"""bench/profile.py: where a row spends its time per request (run it through
bench/profile, which installs perf and builds first).

    bench/profile [--rows switchboard,nginx] [--seconds 10] [--connections 50]
                  [--delay 0ms] [--out FILE]

For each row: the slow origin (0 ms, 1 KiB) and the row on 127.0.0.1 as in
the overhead scenario, 1 s of warm-up, then wrk for --seconds while
  - `perf stat` counts the system calls the row's processes make
    (raw_syscalls:sys_enter, and one tracepoint per common call),
  - then, in a second run of the same length, `perf record -e cpu-clock`
    samples them;
and prints req/s, CPU µs per request, system calls per request by name,
the top functions (self time, % of the row's samples) and the share of each
library/kernel. Software events only: this VM has no hardware counters.
"""
import argparse
import os
import re
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lab as L  # noqa: E402

SYSCALLS = ["epoll_wait", "epoll_ctl", "poll", "select", "pselect6", "read",
            "readv", "recvfrom", "recvmsg", "write", "writev", "sendto",
            "sendmsg", "accept4", "connect", "close", "setsockopt",
            "getsockopt", "ioctl", "gettimeofday", "clock_gettime", "socket",
            "getsockname", "getpeername", "shutdown", "fcntl", "futex"]


def available(events):
    out = []
    for e in events:
        if os.path.exists("/sys/kernel/tracing/events/syscalls/sys_enter_%s" % e) or \
                os.path.exists("/sys/kernel/debug/tracing/events/syscalls/sys_enter_%s" % e):
            out.append(e)
    return out


def worker_pids(peer):
    return [p for p in L.process_tree(peer.roots())]


def profile_row(lab, row, args, lines):
    origin = L.Origin(lab, args.delay, "1k")
    peer = L.Peer(lab, row, origin.port)
    try:
        L.run_load(lab, "profile-%s-warmup" % row, peer.port, "/",
                   args.connections, 1, 10, "wrk")
        pids = ",".join(str(p) for p in worker_pids(peer))
        calls = available(SYSCALLS)
        events = ["raw_syscalls:sys_enter"] + ["syscalls:sys_enter_%s" % c for c in calls]
        stat_file = os.path.join(lab.work, "perf-stat-%s.txt" % row)
        perf = subprocess.Popen(["perf", "stat", "-x", ";", "-o", stat_file,
                                 "-e", ",".join(events), "-p", pids],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        c0, k0 = L.cpu_split(peer.roots())
        s0 = L.tcp_segments()
        r = L.run_load(lab, "profile-%s-stat" % row, peer.port, "/",
                       args.connections, args.seconds, 10, "wrk")
        c1, k1 = L.cpu_split(peer.roots())
        s1 = L.tcp_segments()
        perf.send_signal(2)
        perf.wait(30)
        counts = {}
        with open(stat_file) as f:
            for line in f:
                parts = line.strip().split(";")
                if len(parts) >= 3 and parts[0].replace(".", "").isdigit():
                    counts[parts[2]] = int(float(parts[0]))
        n = max(r["requests"], 1)
        lines += ["## %s" % row, "",
                  "wrk -c%d -d%ds, origin %s, 1 KiB: %s req/s, p99 %s; proxy CPU "
                  "%.1f µs per request, %.1f of them in the kernel (%d processes: "
                  "%s); %.2f TCP segments per request on the machine" % (
                      args.connections, args.seconds, args.delay,
                      L.fmt_num(r["rps"]), L.fmt_ms(r["p99"]),
                      (c1 - c0) * 1e6 / L.TICK / n, (k1 - k0) * 1e6 / L.TICK / n,
                      len(pids.split(",")), pids, (s1 - s0) / n),
                  "", "System calls per request (perf stat, tracepoints):", "",
                  "| call | per request |", "|---|---:|"]
        total = counts.get("raw_syscalls:sys_enter", 0)
        lines.append("| **all** | **%.2f** |" % (total / n))
        for name, v in sorted(counts.items(), key=lambda kv: -kv[1]):
            if name.startswith("syscalls:") and v:
                lines.append("| %s | %.2f |" % (name.split("sys_enter_")[1], v / n))
        lines.append("")

        data = os.path.join(lab.work, "perf-%s.data" % row)
        rec = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F",
                                "1999", "-o", data, "-p", pids],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        r2 = L.run_load(lab, "profile-%s-record" % row, peer.port, "/",
                        args.connections, args.seconds, 10, "wrk")
        rec.send_signal(2)
        rec.wait(60)
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                              "--sort", "dso,symbol", "--percent-limit", "0.7"],
                             capture_output=True, text=True, timeout=300)
        top = [l for l in rep.stdout.splitlines() if re.match(r"\s+[\d.]+%", l)]
        lines += ["Top functions by self time while serving %s req/s (perf record "
                  "-e cpu-clock, %% of the row's samples):" % L.fmt_num(r2["rps"]),
                  "", "```"] + [l.rstrip() for l in top[:30]] + ["```", ""]
        rep = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                              "--sort", "dso", "--percent-limit", "1"],
                             capture_output=True, text=True, timeout=300)
        top = [l for l in rep.stdout.splitlines() if re.match(r"\s+[\d.]+%", l)]
        lines += ["By library:", "", "```"] + [l.rstrip() for l in top[:12]] + ["```", ""]
    finally:
        peer.stop()
        origin.stop()


def main():
    ap = argparse.ArgumentParser(prog="bench/profile")
    ap.add_argument("--rows", default="switchboard,nginx")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--delay", default="0ms")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    import tempfile
    work = tempfile.mkdtemp(prefix="switchboard-profile.")
    lab = L.Lab(work, os.environ.get("BENCH_PGIDS"))
    lab.raw = work
    lines = ["# Profile: %s" % time.strftime("%Y-%m-%d %H:%M"), ""]
    try:
        for row in args.rows.split(","):
            L.log("profiling %s ..." % row)
            profile_row(lab, row, args, lines)
            time.sleep(2)
    finally:
        lab.stop_all()
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    import shutil
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
