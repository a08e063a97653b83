#!/usr/bin/env bash
# Mutation testing of the core's state machines with cargo-mutants (opt-in:
# slow, so neither scripts/test.sh nor CI runs it). Results and how to read
# them: docs/mutation-testing.md.
#
# Usage: scripts/mutants.sh                 every machine below, in order
#        scripts/mutants.sh breaker limiter  only those groups
#                                            (breaker limiter bulkhead budget backoff)
#        scripts/mutants.sh core/src/limiter/gcra.rs   one file of a group
#        MUTANTS_SHARD=1/2 scripts/mutants.sh bulkhead   one shard of each file
#
# Each source file is mutated on its own, one mutant at a time (-j 1), and
# only the tests that can see it run against each mutant: the core's unit
# tests, the machine's property tests and tests/bug_classes.rs (not the loom
# models, which need --cfg stockade_loom and take minutes). A mutant whose
# tests run past 60 s counts as a timeout. Reports land in
# target/mutants/<file stem>/mutants.out (outcomes.json, missed.txt,
# caught.txt, unviable.txt, timeout.txt).
#
# cargo-mutants is installed under target/tools on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

version=27.1.0
target=${CARGO_TARGET_DIR:-target}
[[ $target == /* ]] || target=$PWD/$target
tools=$target/tools
if ! "$tools/bin/cargo-mutants" mutants --version 2>/dev/null | grep -qx "cargo-mutants $version"; then
    cargo install cargo-mutants --version "$version" --locked --root "$tools" --quiet
fi
export PATH="$tools/bin:$PATH"
# No debug info: each mutant links faster.
export CARGO_PROFILE_DEV_DEBUG=0

out=${MUTANTS_OUT:-$target/mutants}
mkdir -p "$out"

run() { # run <prop test> <file>...
    local prop=$1 file name shard=()
    shift
    [ -n "${MUTANTS_SHARD:-}" ] && shard=(--shard "$MUTANTS_SHARD")
    for file in "$@"; do
        name=$(basename "$file" .rs)
        printf '\n==> %s\n' "$file"
        # Exit status 2 (missed mutants) and 3 (timeouts) are results, reported
        # in $out; anything else (a baseline that fails, a bad flag) stops here.
        cargo mutants -p stockade --file "$file" -j 1 --timeout 60 --build-timeout 300 \
            "${shard[@]}" -o "$out/$name" -- \
            --lib --test "$prop" --test bug_classes || { rc=$?; [ $rc = 2 ] || [ $rc = 3 ]; }
    done
}

groups=("$@")
[ ${#groups[@]} = 0 ] && groups=(breaker limiter bulkhead budget backoff)
for g in "${groups[@]}"; do
    case $g in
    breaker) run prop_breaker core/src/breaker/{machine,transition,permit,window,config}.rs ;;
    limiter) run prop_limiter core/src/limiter/{gcra,plan}.rs ;;
    bulkhead) run prop_bulkhead core/src/bulkhead.rs ;;
    budget) run prop_budget core/src/budget.rs ;;
    backoff) run prop_backoff core/src/backoff.rs ;;
    core/src/breaker/*.rs) run prop_breaker "$g" ;;
    core/src/limiter/*.rs) run prop_limiter "$g" ;;
    core/src/bulkhead.rs) run prop_bulkhead "$g" ;;
    core/src/budget.rs) run prop_budget "$g" ;;
    core/src/backoff.rs) run prop_backoff "$g" ;;
    *)
        echo "unknown group or file: $g (breaker limiter bulkhead budget backoff)" >&2
        exit 1
        ;;
    esac
done
