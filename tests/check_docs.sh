#!/bin/sh
# check_docs: the man pages must not drift from the code.
#
#   1. man/switchboard.8 and man/switchboard.conf.5 format without a single
#      warning (groff -man -ww -z, or mandoc -T lint when groff is missing);
#   2. every directive of the directive table in proxy/config.c is documented
#      in switchboard.conf.5, in the section it belongs to: a .TP entry under
#      the `.SS "[section ..."` heading whose tag line starts with its name.
#
# The table is read by scanning `directives[] = { ... }` in config.c as C:
# comments and string literals are skipped, rows are split at the top-level
# commas, and each row must be either a designated initializer with
# `.name = "..."` and `.section = SECTION_X`, or a macro call whose first two
# arguments are SECTION_X and the name string (INT, SIZE, DURATION...). A row
# in any other shape fails the test, so a new way of writing rows cannot
# hide a directive.
#
# Run by `make check` (top_srcdir comes from AM_TESTS_ENVIRONMENT) or by hand
# from anywhere. Exit 0 pass, 1 fail, 77 skip (no roff formatter installed,
# and every directive documented).

set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/.." && pwd)}
config_c=$top_srcdir/proxy/config.c
man8=$top_srcdir/man/switchboard.8
man5=$top_srcdir/man/switchboard.conf.5

checks=0
failures=0
fail() {
    echo "FAIL: $*"
    failures=$((failures + 1))
}

tmp=$(mktemp -d) || exit 99
trap 'rm -rf "$tmp"' EXIT

# --- 2. the directive table: one "section name" line per row -------------
awk '
{ src = src $0 "\n" }

function emit(row,    s, sec, name) {
    gsub(/[ \t\n]+/, " ", row)
    sub(/^ /, "", row)
    sub(/ $/, "", row)
    if (row == "") {
        return              # after the trailing comma
    }
    sec = ""
    name = ""
    if (match(row, /\.name *= *"[^"]*"/)) {
        name = substr(row, RSTART, RLENGTH)
        if (match(row, /\.section *= *SECTION_[A-Z0-9_]+/)) {
            sec = substr(row, RSTART, RLENGTH)
        }
    } else if (match(row, /^[A-Za-z_][A-Za-z0-9_]* *\( *SECTION_[A-Z0-9_]+ *, *"[^"]*"/)) {
        s = substr(row, RSTART, RLENGTH)
        name = s
        sec = s
        sub(/ *,.*/, "", sec)
    }
    sub(/^[^"]*"/, "", name)
    sub(/"$/, "", name)
    sub(/.*SECTION_/, "", sec)
    if (sec == "" || name == "") {
        print "UNREADABLE " row
        return
    }
    print tolower(sec), name
}

END {
    if (!match(src, /directives\[\][ \t\n]*=[ \t\n]*\{/)) {
        print "NOTABLE"
        exit
    }
    n = length(src)
    depth = 0
    row = ""
    closed = 0
    for (i = RSTART + RLENGTH; i <= n; i++) {
        c = substr(src, i, 1)
        two = substr(src, i, 2)
        if (two == "/*") {                      # comment: skip it
            e = index(substr(src, i + 2), "*/")
            if (e == 0) {
                break
            }
            i = i + e + 2
            row = row " "
            continue
        }
        if (two == "//") {                      # to the end of the line
            e = index(substr(src, i), "\n")
            if (e == 0) {
                break
            }
            i = i + e - 1
            row = row " "
            continue
        }
        if (c == "\"" || c == "\047") {         # string or char literal
            for (j = i + 1; j <= n; j++) {
                d = substr(src, j, 1)
                if (d == "\\") {
                    j++
                } else if (d == c) {
                    break
                }
            }
            row = row substr(src, i, j - i + 1)
            i = j
            continue
        }
        if (c == "{" || c == "(" || c == "[") {
            depth++
        } else if (c == "}" || c == ")" || c == "]") {
            if (depth == 0) {                   # the end of the table
                emit(row)
                closed = 1
                break
            }
            depth--
        } else if (c == "," && depth == 0) {
            emit(row)
            row = ""
            continue
        }
        row = row c
    }
    if (!closed) {
        print "UNCLOSED"
    }
}
' "$config_c" >"$tmp/table"

if grep -q '^NOTABLE' "$tmp/table"; then
    fail "no 'directives[] = {' table found in proxy/config.c"
fi
if grep -q '^UNCLOSED' "$tmp/table"; then
    fail "the directive table in proxy/config.c does not end"
fi
grep '^UNREADABLE ' "$tmp/table" | sed 's/^UNREADABLE //' | while IFS= read -r row; do
    echo "FAIL: cannot read a directive name and section from this row of" \
        "proxy/config.c (teach tests/check_docs.sh its shape): $row"
done
unreadable=$(grep -c '^UNREADABLE ' "$tmp/table")
failures=$((failures + unreadable))
grep -v '^UNREADABLE \|^NOTABLE\|^UNCLOSED' "$tmp/table" >"$tmp/directives"
if [ ! -s "$tmp/directives" ]; then
    fail "no directive read from the table in proxy/config.c"
fi

# The directives switchboard.conf.5 documents, as "section name": the tag
# line after each .TP under a .SS "[section ..." heading.
awk '
/^\.S[HS]/ {
    sec = ""
    if (match($0, /^\.SS +"?\[[a-z]+/)) {
        sec = substr($0, RSTART, RLENGTH)
        sub(/.*\[/, "", sec)
    }
    tag = 0
    next
}
/^\.TP/ { tag = 1; next }
tag {
    tag = 0
    if (sec != "" && match($0, /^\.B[IR]? +"?[A-Za-z0-9_]+/)) {
        name = substr($0, RSTART, RLENGTH)
        sub(/^\.B[IR]? +"?/, "", name)
        print sec, name
    }
}
' "$man5" >"$tmp/documented"

while read -r sec name; do
    checks=$((checks + 1))
    if ! grep -qx "$sec $name" "$tmp/documented"; then
        elsewhere=$(awk -v n="$name" '$2 == n { printf " [%s]", $1 }' \
            "$tmp/documented")
        fail "directive \"$name\" of [$sec] (proxy/config.c) is not" \
            "documented in the [$sec] section of man/switchboard.conf.5${elsewhere:+ (only in$elsewhere)}"
    fi
done <"$tmp/directives"
n_directives=$(wc -l <"$tmp/directives")

# --- 1. the pages format without a warning --------------------------------
if command -v groff >/dev/null 2>&1; then
    lint="groff -man -ww -z"
elif command -v mandoc >/dev/null 2>&1; then
    lint="mandoc -T lint -W warning"
else
    lint=
fi
if [ -n "$lint" ]; then
    for page in "$man8" "$man5"; do
        checks=$((checks + 1))
        if ! $lint "$page" >"$tmp/lint" 2>&1 || [ -s "$tmp/lint" ]; then
            fail "$lint ${page#"$top_srcdir"/}:"
            cat "$tmp/lint"
        fi
    done
fi

echo "check_docs: Checks: $checks, Failures: $failures" \
    "($n_directives directives of proxy/config.c looked up in" \
    "switchboard.conf.5${lint:+; both pages linted with $lint})"
if [ "$failures" -gt 0 ]; then
    exit 1
fi
if [ -z "$lint" ]; then
    echo "SKIP: neither groff nor mandoc is installed (apt-get install" \
        "groff-base): the man pages were not linted"
    exit 77
fi
exit 0
