/* Times core-tier calls through the C ABI: N calls per run, median of
 * RUNS runs, nanoseconds per call. tests/c/bench.sh prints these next to
 * the same operations called directly in Rust (ffi/examples/core_bench.rs).
 *
 * `bench OP CALLS` instead runs operation OP CALLS times, once, untimed:
 * tests/c/bench.sh --instructions counts its instructions under callgrind. */
#define _POSIX_C_SOURCE 199309L
#include "stockade.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_TIMED 2000000
/* Calls per run of an operation; each operation copies it to a local, as
 * the Rust side's loop bound is (a global would be reloaded after every
 * opaque call). */
static long N = N_TIMED;
#define RUNS 7

static uint64_t fake_now;
static uint64_t now_ns(void *user_data) { (void)user_data; return fake_now; }

static double elapsed_ns(struct timespec a, struct timespec b) {
    return (double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef void (*op_fn)(void);

static double median_ns_per_call(op_fn op) {
    double runs[RUNS];
    int r;
    for (r = 0; r < RUNS; r++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        op();
        clock_gettime(CLOCK_MONOTONIC, &b);
        runs[r] = elapsed_ns(a, b) / N;
    }
    qsort(runs, RUNS, sizeof runs[0], cmp_double);
    return runs[RUNS / 2];
}

static stockade_clock clk;
static STOCKADE_ALIGNED(STOCKADE_BACKOFF_ALIGN) unsigned char backoff_mem[STOCKADE_BACKOFF_SIZE];
static STOCKADE_ALIGNED(STOCKADE_RETRY_BUDGET_ALIGN) unsigned char budget_mem[STOCKADE_RETRY_BUDGET_SIZE];
static stockade_backoff *backoff;
static stockade_retry_budget *budget;
static stockade_deadline deadline;
/* Each result is consumed by one volatile store, as Rust's black_box
 * consumes its argument by storing it. */
static volatile uint64_t sink;
/* A bool result goes to a bool: one byte stored, as black_box(bool) does
 * (a widening to sink's 64 bits would be an instruction Rust does not pay). */
static volatile bool bool_sink;
static STOCKADE_ALIGNED(STOCKADE_BREAKER_ALIGN) unsigned char breaker_mem[STOCKADE_BREAKER_SIZE];
static stockade_breaker *breaker;
static stockade_breaker_handle *handle;
static int ok_call(void *user_data) { (void)user_data; return 0; }
/* The protected call of breaker_call, opaque to the optimiser as Rust's
 * black_box'ed function pointer is. */
static int (*volatile call_fn)(void *) = ok_call;

static void op_breaker(void) {
    long i;
    const long n = N;
    stockade_breaker_token t;
    for (i = 0; i < n; i++) {
        stockade_breaker_acquire(breaker, &clk, &t, NULL, NULL);
        sink = stockade_breaker_report(breaker, &t, STOCKADE_OUTCOME_SUCCESS, &clk, NULL);
    }
}

static void op_breaker_call(void) {
    long i;
    const long n = N;
    int (*fn)(void *) = call_fn;
    int result = 0;
    for (i = 0; i < n; i++) {
        sink = stockade_breaker_call(breaker, &clk, fn, NULL, &result, NULL);
        sink = (uint64_t)result;
    }
}

static void op_breaker_execute(void) {
    long i;
    const long n = N;
    for (i = 0; i < n; i++) sink = stockade_breaker_handle_execute(handle, ok_call, NULL);
}

static void op_deadline(void) {
    long i;
    const long n = N;
    for (i = 0; i < n; i++) bool_sink = stockade_deadline_is_expired(deadline, &clk).expired;
}

static void op_backoff(void) {
    long i;
    const long n = N;
    uint64_t ms = 0;
    for (i = 0; i < n; i++) {
        stockade_backoff_delay_ms(backoff, (uint32_t)(i & 15) + 1, &ms);
        sink = ms;
    }
}

static void op_budget(void) {
    long i;
    const long n = N;
    for (i = 0; i < n; i++) {
        stockade_retry_budget_deposit(budget, &clk);
        sink = stockade_retry_budget_try_withdraw(budget, &clk, NULL);
    }
}

int main(int argc, char **argv) {
    stockade_backoff_config bc = stockade_backoff_config_default();
    stockade_retry_budget_config rc = stockade_retry_budget_config_default();
    clk.now_ns = now_ns;
    clk.user_data = NULL;
    rc.ratio = 1.0;
    if (stockade_backoff_init(backoff_mem, sizeof backoff_mem, &bc, NULL, &backoff) ||
        stockade_retry_budget_init(budget_mem, sizeof budget_mem, &rc, NULL, &budget) ||
        stockade_deadline_after(&clk, 5000, &deadline)) {
        fputs("setup failed\n", stderr);
        return 1;
    }
    {
        stockade_breaker_config brc = stockade_breaker_config_default();
        if (stockade_breaker_init(breaker_mem, sizeof breaker_mem, &brc, NULL, &breaker) ||
            stockade_breaker_handle_new(NULL, &brc, NULL, &handle)) {
            fputs("setup failed\n", stderr);
            return 1;
        }
    }
    {
        static const struct {
            const char *name;
            op_fn op;
        } ops[] = {
            {"deadline_is_expired", op_deadline},
            {"backoff_delay", op_backoff},
            {"budget_deposit_withdraw", op_budget},
            {"breaker_acquire_report", op_breaker},
            {"breaker_call", op_breaker_call},
            {"breaker_execute_blocking", op_breaker_execute},
        };
        size_t k;
        int found = argc < 3;
        if (argc >= 3) N = atol(argv[2]);
        for (k = 0; k < sizeof ops / sizeof ops[0]; k++) {
            if (argc >= 3) {
                if (strcmp(argv[1], ops[k].name) == 0) {
                    ops[k].op();
                    found = 1;
                }
            } else {
                printf("%s %.2f\n", ops[k].name, median_ns_per_call(ops[k].op));
            }
        }
        if (!found) {
            fprintf(stderr, "unknown operation %s\n", argv[1]);
            return 2;
        }
    }
    stockade_breaker_handle_free(handle);
    return 0;
}
