# Shared by scripts/demo, scripts/test and bench/: install what is missing
# (Debian 12 packages only), then configure and build out of tree.
# Sourced, not run.

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The Debian packages a build and `make check` need (groff-base: the man
# pages are linted by tests/check_docs.sh).
build_packages=(gcc make autoconf automake pkg-config libevent-dev
    libhttp-parser-dev libevhtp-dev libinih-dev libssl-dev check valgrind
    procps groff-base)
# What only the tests need on top (python3 and chromium:
# tests/check_dashboard.py drives the admin page in headless Chromium).
test_packages=(python3 chromium)

# Print the comment block at the top of the script $1 (its usage), without
# the comment marks.
print_usage() {
    awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"
}

# Install each named package that is not installed yet.
ensure_packages() {
    local missing=()
    local p
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
            grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]} > 0)); then
        echo "installing: ${missing[*]}"
        local sudo=
        if [[ $(id -u) != 0 ]]; then sudo=sudo; fi
        $sudo apt-get update -qq
        # No package's service is started by the install: nginx and
        # apache2 would both start on port 80 (and a failed start can fail
        # the install), and what the scripts need they start themselves.
        # A policy-rc.d that refuses every start, for the install only.
        local policy=/usr/sbin/policy-rc.d made= rc=0
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null &&
                $sudo chmod +x "$policy" && made=1
        fi
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
        if [[ -n $made ]]; then
            $sudo rm -f "$policy"
        fi
        return $rc
    fi
}

# build DIR [configure args...]: configure (once) and make in DIR.
build() {
    local dir=$1
    shift
    if [[ ! -x $top/configure ]]; then
        (cd "$top" && autoreconf -fi >/dev/null 2>&1) || {
            echo "autoreconf failed" >&2
            return 1
        }
    fi
    mkdir -p "$dir"
    if [[ ! -f $dir/Makefile ]]; then
        (cd "$dir" && "$top/configure" -q "$@") || return 1
    fi
    make -C "$dir" -j"$(nproc)" -s >/dev/null || make -C "$dir" -j1
}

# raise_nofile: the soft limit on open files up to the hard one (10,000
# connections through a proxy are 20,000 descriptors), or to 1,048,576 where
# the hard limit is unlimited (a count, not a word, is what ulimit -n takes).
raise_nofile() {
    local hard
    hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] && hard=1048576
    ulimit -n "$hard"
}
