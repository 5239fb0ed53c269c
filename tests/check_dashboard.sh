#!/bin/sh
# make check's entry for tests/check_dashboard.py (the admin dashboard in
# headless Chromium against the real slow-origin and switchboard). The
# Makefile exports TOP_BUILDDIR and TOP_SRCDIR. Exit 77 (skip) without
# python3; the script itself skips without chromium.
if ! command -v python3 >/dev/null 2>&1; then
    echo "SKIP: python3 is not installed"
    exit 77
fi
srcdir=${TOP_SRCDIR:-${srcdir:-.}}
exec python3 "$srcdir/tests/check_dashboard.py" \
    --builddir "${TOP_BUILDDIR:-.}" --srcdir "$srcdir" "$@"
