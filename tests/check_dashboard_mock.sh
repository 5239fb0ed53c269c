#!/bin/sh
# make check's entry for tests/check_dashboard.py --mock: the dashboard page
# in headless Chromium against tests/dashboard_mock.py (a fake /status), so
# the page is checked even where the real admin listener is not there.
exec "${TOP_SRCDIR:-${srcdir:-.}}/tests/check_dashboard.sh" --mock "$@"
