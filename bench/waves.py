#!/usr/bin/env python3
"""bench/waves.py: how a c10k run's replies are spread in time.

Reads Switchboard's access log (access_log = <file> in the conf) and prints,
for each slice of --slice ms, how many exchanges ended in it and their
first_byte times (from forwarding the request to the upstream's first byte
of reply): median and max. With 10,000 connections and a 1 s origin, the
replies come in waves; this shows how wide each wave is and how late its
last replies are, wave after wave.

    python3 bench/waves.py ACCESS_LOG [--slice 50] [--status 200]
        [--after-gap 1.5] [--lines 120]

--after-gap starts after the first pause of that many seconds with no
exchange ending (the one between a warm-up and the measured run); 0 reads
from the start. Only exchanges with the given status and a first_byte time
are counted.
"""
import argparse
import re
import statistics
import sys

LINE = re.compile(r"^(\d{4}-\d\d-\d\dT(\d\d):(\d\d):(\d\d\.\d+))Z .*?\" (\d{3}) "
                  r".* first_byte=([\d.]+) ")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log")
    ap.add_argument("--slice", type=float, default=50, help="ms per line")
    ap.add_argument("--status", default="200")
    ap.add_argument("--after-gap", type=float, default=1.5)
    ap.add_argument("--lines", type=int, default=120)
    a = ap.parse_args()
    ends = []
    with open(a.log, errors="replace") as f:
        for line in f:
            m = LINE.match(line)
            if not m or m.group(5) != a.status:
                continue
            t = int(m.group(2)) * 3600 + int(m.group(3)) * 60 + float(m.group(4))
            ends.append((t, float(m.group(6))))
    # Each worker writes its own buffered lines: in the file they are in
    # order per worker, not overall.
    ends.sort()
    if a.after_gap > 0:
        gap = next((i for i in range(1, len(ends))
                    if ends[i][0] - ends[i - 1][0] >= a.after_gap), None)
        if gap is None:
            sys.exit("no pause of %.1f s: use --after-gap 0 to read it all"
                     % a.after_gap)
        ends = ends[gap:]
    if not ends:
        sys.exit("no exchange with status %s and a first_byte time" % a.status)
    t0 = ends[0][0]
    slices = {}
    for t, fb in ends:
        slices.setdefault(int((t - t0) * 1000 // a.slice), []).append(fb)
    print("%8s %7s %15s %13s" % ("t (s)", "ended", "first_byte p50", "max"))
    for k in sorted(slices)[:a.lines]:
        v = slices[k]
        print("%8.2f %7d %12.1f ms %10.1f ms" % (k * a.slice / 1000, len(v),
                                                 statistics.median(v), max(v)))
    late = [fb for _, fb in ends]
    print("all: %d exchanges, first_byte p50 %.1f ms, p99 %.1f ms, max %.1f ms"
          % (len(late), statistics.median(late),
             sorted(late)[int(len(late) * 0.99)], max(late)))


if __name__ == "__main__":
    main()
