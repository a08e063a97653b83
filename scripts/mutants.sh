#!/usr/bin/env bash
# Mutation testing of the core's state machines with cargo-mutants (opt-in:
# slow, so neither scripts/test.sh nor CI runs it). Results and how to read
# them: docs/mutation-testing.md.
#
# Usage: scripts/mutants.sh                 every group below, in order
#        scripts/mutants.sh breaker limiter  only those groups (breaker
#                                            breaker-loom limiter bulkhead budget backoff
#                                            time)
#        scripts/mutants.sh core/src/limiter/gcra.rs   one file of a group
#        scripts/mutants.sh breaker-loom     the breaker's race-only mutants
#                                            against its loom models
#        MUTANTS_SHARD=0/2 scripts/mutants.sh bulkhead   one shard of each file
#                                            (k/n, k from 0; mutant i runs in shard i % n)
#
# Each source file is mutated on its own, one mutant at a time (-j 1), and
# only the tests that can see it run against each mutant: the core's unit
# tests, the machine's property tests and tests/bug_classes.rs (not the loom
# models, which need --cfg stockade_loom and take minutes). A mutant whose
# tests run past 60 s counts as a timeout. The mutants that survive are then
# run again in the 32-bit state layout (`--cfg stockade_force_32bit`).
# Reports land in target/mutants/<name>/mutants.out (<name>: the path under
# core/src without .rs, / as -, e.g. breaker-config) and, if any
# survived, target/mutants/<name>-32/mutants.out (outcomes.json,
# missed.txt, caught.txt, unviable.txt, timeout.txt); the survivors are
# the second missed.txt.
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
# Builds of mutated copies get target directories of their own: cargo
# compares a source file's time with its artifact's, so a later ordinary
# build in a shared directory could take the last mutant's artifact for
# fresh.
builds=$target/mutants-build

out=${MUTANTS_OUT:-$target/mutants}
mkdir -p "$out"

run() { # run <prop test, or - for none> <file>...
    local prop=$1 file name shard=() tests=(--lib --test bug_classes)
    shift
    [ "$prop" = - ] || tests+=(--test "$prop")
    [ -n "${MUTANTS_SHARD:-}" ] && shard=(--shard "$MUTANTS_SHARD" --sharding round-robin)
    for file in "$@"; do
        # breaker/config.rs -> breaker-config (two files are named config.rs)
        name=${file#core/src/}
        name=${name%.rs}
        name=${name//\//-}
        printf '\n==> %s\n' "$file"
        # Exit status 2 (missed mutants) and 3 (timeouts) are results, reported
        # in $out; anything else (a baseline that fails, a bad flag) stops here.
        CARGO_TARGET_DIR="$builds" cargo mutants -p stockade --file "$file" -j 1 --timeout 60 --build-timeout 300 \
            "${shard[@]}" -o "$out/$name" -- "${tests[@]}" || { rc=$?; [ $rc = 2 ] || [ $rc = 3 ]; }
        # The survivors again in the 32-bit state layout, forced on this
        # host: its ticks, wrapping words and limits are code the 64-bit
        # layout compiles out or runs with a 1 ns tick. Selected by name
        # (`--iterate` would shard what is left anew).
        local missed=$out/$name/mutants.out/missed.txt re
        rm -rf "$out/$name-32"
        [ -s "$missed" ] || continue
        re=$(sed 's/[][\.*^$+?(){}|]/\\&/g; s/^/^/; s/$/$/' "$missed" | paste -sd'|')
        printf '\n==> %s, survivors in the 32-bit layout\n' "$file"
        RUSTFLAGS="--cfg stockade_force_32bit" CARGO_TARGET_DIR="$builds-32" \
            cargo mutants -p stockade --file "$file" --re "$re" -j 1 --timeout 60 --build-timeout 300 \
            -o "$out/$name-32" -- "${tests[@]}" || { rc=$?; [ $rc = 2 ] || [ $rc = 3 ]; }
    done
}

# The breaker's mutants that only a race can tell from the original: each
# weakens a re-check inside a compare-and-swap loop (its caller checked the
# same word once already) or readies the failure-rate window at another
# moment, or keeps a clock reading across compare-and-swap attempts. The
# unit and property tests cannot see them (one thread); the
# loom models must. Optimised builds (--profile loom), so about 30 s each.
loom_breaker() {
    local re='replace \|\| with && in CircuitBreaker::(release_probe|closed_success|closed_failure|probe_success|probe_failure|record)$'
    re+='|in CircuitBreaker::swap_ctrl$|== with != in CircuitBreaker::admission_elapsed$'
    re+='|replace LazyNow<.c, C>::forget with \(\)$'
    printf '\n==> breaker race-only mutants under loom\n'
    RUSTFLAGS="--cfg stockade_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR="$builds-loom" \
        cargo mutants -p stockade --file core/src/breaker/transition.rs \
        --file core/src/breaker/permit.rs --file core/src/breaker/window.rs \
        --file core/src/breaker/stamp.rs --re "$re" \
        -j 1 --timeout 300 --build-timeout 600 --profile loom -o "$out/loom-breaker" -- \
        --test loom_breaker || { rc=$?; [ $rc = 2 ] || [ $rc = 3 ]; }
}

groups=("$@")
[ ${#groups[@]} = 0 ] && groups=(breaker breaker-loom limiter bulkhead budget backoff time)
for g in "${groups[@]}"; do
    case $g in
    breaker) run prop_breaker core/src/breaker/{machine,transition,permit,window,config,state,word,stamp,metrics}.rs ;;
    limiter) run prop_limiter core/src/limiter/{gcra,plan,config,reservation,error}.rs ;;
    bulkhead) run prop_bulkhead core/src/bulkhead.rs core/src/bulkhead/owners.rs ;;
    budget) run prop_budget core/src/budget.rs ;;
    backoff) run prop_backoff core/src/backoff.rs ;;
    # The clock and deadlines: their own unit tests and everything else in
    # the library that reads them (no property test of their own).
    time) run - core/src/deadline.rs core/src/clock.rs ;;
    breaker-loom) loom_breaker ;;
    core/src/breaker/*.rs) run prop_breaker "$g" ;;
    core/src/limiter/*.rs) run prop_limiter "$g" ;;
    core/src/bulkhead.rs | core/src/bulkhead/*.rs) run prop_bulkhead "$g" ;;
    core/src/budget.rs) run prop_budget "$g" ;;
    core/src/backoff.rs) run prop_backoff "$g" ;;
    core/src/deadline.rs | core/src/clock.rs) run - "$g" ;;
    *)
        echo "unknown group or file: $g (breaker limiter bulkhead budget backoff time breaker-loom)" >&2
        exit 1
        ;;
    esac
done
