#!/usr/bin/env python3
"""check_ranges: the ranges in switchboard.conf.5 are the ones the proxy
enforces.

For every directive entry of the page (a .TP tag line `.BI "name = "
placeholder` under a .SS "[section]" heading) whose text gives a range
"A to B" (numbers, durations such as 1ms or 24h, sizes such as 4k or 64m),
`switchboard -t` must accept A and B and refuse the value just below A
(when A > 0) and just above B, naming the directive. And an entry whose
value is a number, duration or size but whose text gives no range must
accept a huge value: a range the code enforces must be on the page.

    check_ranges.py MAN5 SWITCHBOARD

Prints one line per failure and a summary line; exit 1 if anything failed.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

UNITS_MS = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000}
UNITS_B = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
# One directive's range in the text: "1 to 64", "1ms to 24h", "4k to 64m".
RANGE = re.compile(r"(?<![\w.])(\d+)(ms|s|m|h|k|g)? to (\d+)(ms|s|m|h|k|g)?"
                   r"(?=[.;,:]|$)")
# What a value far past any sensible range looks like, per placeholder.
HUGE = {"n": "2000000000", "duration": "100000h", "size": "1000g"}
# Where each section's directive goes in a small conf that is otherwise
# valid (a single upstream gets an implicit [route /]).
BASE = {
    "server": "[server]\n{line}\n[upstream u]\nserver = 127.0.0.1:1\n",
    "upstream": "[upstream u]\nserver = 127.0.0.1:1\n{line}\n",
    "route": "[upstream u]\nserver = 127.0.0.1:1\n[route /]\nupstream = u\n"
             "{line}\n",
}


def entries(page):
    """(section, name, placeholder, body text) for each directive entry."""
    out, sec, cur, tag = [], None, None, False
    for line in open(page, encoding="utf-8").read().split("\n"):
        if line.startswith((".SS", ".SH")):
            m = re.match(r'\.SS +"?\[([a-z]+)', line)
            sec, cur = (m.group(1) if m else None), None
            continue
        if line.startswith(".TP"):
            tag = True
            continue
        if tag:
            tag = False
            m = re.match(r'\.BI +"([a-z_]+) = " *([a-z]+)?', line)
            cur = None
            if sec in BASE and m:
                cur = [sec, m.group(1), m.group(2) or "", []]
                out.append(cur)
            continue
        if cur is not None:
            # Roman text only: the words of .B/.I/.BR... lines, not macros.
            if line.startswith("."):
                parts = line.split(None, 1)
                line = parts[1] if len(parts) > 1 else ""
                line = line.replace('"', "")
            cur[3].append(line)
    return [(s, n, p, " ".join(b)) for s, n, p, b in out]


def step(num, unit, placeholder, direction):
    """The value one step past num+unit (direction -1 below, +1 above), in
    the smallest unit the parser takes."""
    if placeholder == "duration":
        return "%dms" % (int(num) * UNITS_MS[unit or "s"] + direction)
    if placeholder == "size":
        return "%d" % (int(num) * UNITS_B[unit or ""] + direction)
    return "%d" % (int(num) + direction)


class Checker:
    def __init__(self, binary):
        self.binary = binary
        self.checks = 0
        self.failures = 0
        self.dir = tempfile.mkdtemp(prefix="check_ranges.")

    def run(self, sec, name, value):
        """switchboard -t on a conf setting name = value: (ok, stderr)."""
        path = os.path.join(self.dir, "t.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.write(BASE[sec].format(line="%s = %s" % (name, value)))
        p = subprocess.run([self.binary, "-t", "-c", path],
                           capture_output=True, text=True, timeout=30,
                           check=False)
        return p.returncode == 0, p.stderr.strip()

    def expect(self, sec, name, value, accepted, why):
        self.checks += 1
        ok, err = self.run(sec, name, value)
        if ok != accepted:
            self.failures += 1
            print("FAIL: [%s] %s = %s is %s by switchboard -t, but %s%s"
                  % (sec, name, value, "accepted" if ok else "refused", why,
                     (": " + err) if err else ""))
        elif not ok and name not in err:
            self.failures += 1
            print("FAIL: [%s] %s = %s is refused without naming the "
                  "directive: %s" % (sec, name, value, err))


def main():
    page, binary = sys.argv[1], sys.argv[2]
    c = Checker(binary)
    ranged = unranged = 0
    for sec, name, ph, text in entries(page):
        if ph not in HUGE:
            continue
        found = RANGE.findall(text)
        if not found:
            unranged += 1
            c.expect(sec, name, HUGE[ph], True,
                     "the page gives no range for it")
            continue
        ranged += 1
        lo, lo_u, hi, hi_u = found[0]
        where = "the page says %s%s to %s%s" % (lo, lo_u, hi, hi_u)
        c.expect(sec, name, lo + lo_u, True, where)
        c.expect(sec, name, hi + hi_u, True, where)
        if int(lo) > 0:
            c.expect(sec, name, step(lo, lo_u, ph, -1), False, where)
        c.expect(sec, name, step(hi, hi_u, ph, +1), False, where)
    shutil.rmtree(c.dir, ignore_errors=True)
    print("check_ranges: Checks: %d, Failures: %d (%d directives with a "
          "range on the page, %d numeric ones without)"
          % (c.checks, c.failures, ranged, unranged))
    sys.exit(1 if c.failures or ranged == 0 else 0)


if __name__ == "__main__":
    main()
