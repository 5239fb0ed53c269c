#!/bin/sh
# check_ranges: the ranges switchboard.conf.5 gives are the ones switchboard
# enforces, and every range it enforces is given (tests/check_ranges.py,
# which says how). Run by `make check` (top_srcdir and top_builddir come
# from AM_TESTS_ENVIRONMENT). Exit 0 pass, 1 fail, 77 skip (no python3).
if ! command -v python3 >/dev/null 2>&1; then
    echo "SKIP: python3 is not installed"
    exit 77
fi
exec python3 "$top_srcdir/tests/check_ranges.py" \
    "$top_srcdir/man/switchboard.conf.5" "$top_builddir/proxy/switchboard"
