# Adds up the output of `cargo test --no-fail-fast` (standard output and standard
# error together, as bench/run-tests records it) into one line:
#
#     N passed, M failed[, K skipped]
#
# from every "test result:" line (unit tests, integration tests and doc-tests alike).
# Skipped are the ignored tests and those that print "SKIPPED <test>: <why>" on the
# terminal (they need root) and return: libtest counts those as passed, so they move
# from passed to skipped. A test binary that printed no result (it crashed, was
# killed, or its doc-tests did not build) counts as one failure and is named.
#
# Variables (awk -v): extra_passed, extra_failed (checks run outside cargo).

function finish_binary() {
    if (binary != "") {
        failed++
        unfinished = unfinished "\n  " binary
    }
    binary = ""
}

{
    gsub(/\033\[[0-9;]*[A-Za-z]/, "")
}

/^ +Running .*\(.*\)$/ || /^ +Doc-tests [A-Za-z0-9_-]+$/ {
    finish_binary()
    binary = $0
    sub(/^ +/, "", binary)
}

/^test result: / {
    n = split(substr($0, index($0, ".") + 1), parts, ";")
    for (i = 1; i <= n; i++) {
        split(parts[i], word, " ")
        if (word[2] == "passed") passed += word[1]
        else if (word[2] == "failed") failed += word[1]
        else if (word[2] == "ignored") ignored += word[1]
    }
    binary = ""
}

{
    rest = $0
    while (match(rest, /SKIPPED [A-Za-z0-9_:]+: /)) {
        skipped_by_test++
        rest = substr(rest, RSTART + RLENGTH)
    }
}

END {
    finish_binary()
    passed += extra_passed - skipped_by_test
    failed += extra_failed
    skipped = ignored + skipped_by_test
    if (unfinished != "") {
        printf "test binaries that printed no result (each counted as one failure):%s\n", unfinished
    }
    line = passed " passed, " failed " failed"
    if (skipped > 0) line = line ", " skipped " skipped"
    print line
}
