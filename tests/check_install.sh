#!/bin/sh
# check_install: `make install DESTDIR=tmp` puts the five files where they
# belong (the binary, both man pages, the default conf, the systemd unit),
# the unit runs the installed binary on the installed conf, the binary's
# compiled-in default conf is the installed one and passes -t, and a second
# install keeps a conf the operator changed.
#
# Run by `make check`, which passes MAKE, top_builddir and the install
# directories in the environment (AM_TESTS_ENVIRONMENT in Makefile.am). The
# install is a recursive make into a fresh temporary DESTDIR: no root, about
# a second. Exit 0 pass, 1 fail, 77 skip (run outside `make check`).

set -u
if [ -z "${top_builddir:-}" ] || [ -z "${sbindir:-}" ]; then
    echo "SKIP: run by make check (needs the paths from Makefile.am)"
    exit 77
fi

checks=0
failures=0
check() {
    # check DESCRIPTION COMMAND...: count it, and report it if it fails.
    desc=$1
    shift
    checks=$((checks + 1))
    if ! "$@"; then
        echo "FAIL: $desc"
        failures=$((failures + 1))
    fi
}

tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/root

# The parent make's jobserver descriptors are not passed to tests: drop
# them from MAKEFLAGS (keeping any variable set on make's command line).
MAKEFLAGS=$(printf '%s\n' "${MAKEFLAGS:-}" | sed 's/--jobserver-[a-z]*=[^ ]*//g')
export MAKEFLAGS
install_into() {
    $MAKE -C "$top_builddir" install DESTDIR="$dest" >"$tmp/install.log" 2>&1
}

if ! install_into; then
    cat "$tmp/install.log"
    echo "FAIL: make install DESTDIR=$dest"
    exit 1
fi

bin=$dest$sbindir/switchboard
conf=$dest$switchboardconfdir/switchboard.conf
check "$sbindir/switchboard is installed and executable" test -x "$bin"
check "$man8dir/switchboard.8 is installed" test -f "$dest$man8dir/switchboard.8"
check "$man5dir/switchboard.conf.5 is installed" \
    test -f "$dest$man5dir/switchboard.conf.5"
check "$switchboardconfdir/switchboard.conf is installed" test -f "$conf"

# The unit: the installed binary, on the installed conf, in every Exec line.
if [ "$systemdsystemunitdir" != no ]; then
    unit=$dest$systemdsystemunitdir/switchboard.service
    check "$systemdsystemunitdir/switchboard.service is installed" test -f "$unit"
    if [ -f "$unit" ]; then
        check "the unit has no @variable@ left" \
            sh -c '! grep -n "@[a-z_]*@" "$1"' sh "$unit"
        check "ExecStartPre tests the installed conf" grep -qx \
            "ExecStartPre=$sbindir/switchboard -t -c $switchboardconfdir/switchboard.conf" \
            "$unit"
        check "ExecStart runs the installed binary on the installed conf" \
            grep -qx \
            "ExecStart=$sbindir/switchboard -c $switchboardconfdir/switchboard.conf" \
            "$unit"
        check "ExecReload sends SIGHUP" grep -qx \
            'ExecReload=/bin/kill -HUP $MAINPID' "$unit"
    fi
fi

# The binary looks for the conf where it was installed, and the conf is good.
if [ -x "$bin" ]; then
    check "switchboard -h names $switchboardconfdir/switchboard.conf" \
        sh -c '"$1" -h | grep -qF "(default $2)"' sh "$bin" \
        "$switchboardconfdir/switchboard.conf"
    check "switchboard --help and --version are -h and -v" \
        sh -c '[ "$("$1" --help)" = "$("$1" -h)" ] &&
               [ "$("$1" --version)" = "$("$1" -v)" ] &&
               "$1" --version | grep -q "^switchboard "' sh "$bin"
    # A mistake anywhere on the command line is a usage error (exit 2),
    # -v or -h before it or not; a stray argument is named.
    for args in "--version extra" "-v -x" "-h --bogus" "-h -c" "extra"; do
        check "switchboard $args exits 2" \
            sh -c '"$1" $2 >/dev/null 2>&1; [ $? -eq 2 ]' sh "$bin" "$args"
    done
    check "switchboard extra names the stray argument" \
        sh -c '"$1" extra 2>&1 | grep -qF "unexpected argument '"'"'extra'"'"'"' \
        sh "$bin"
    if [ -f "$conf" ]; then
        check "switchboard -t accepts the installed conf" \
            sh -c '[ "$("$1" -t -c "$2" 2>&1)" = ok ]' sh "$bin" "$conf"
    fi
fi

# A changed conf survives a second install.
if [ -f "$conf" ]; then
    echo "; changed by check_install" >>"$conf"
    if install_into; then
        check "a second install keeps a changed conf" \
            grep -q "changed by check_install" "$conf"
    else
        cat "$tmp/install.log"
        check "a second make install DESTDIR=$dest" false
    fi
fi

echo "check_install: Checks: $checks, Failures: $failures" \
    "(make install DESTDIR=tmp, paths of $top_builddir)"
[ "$failures" -eq 0 ]
