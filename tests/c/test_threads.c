/* The core tier shared between pthreads: a bulkhead never lets more than
 * max_concurrent in and loses no permit; a half-open breaker never admits
 * more probes at once than half_open_max_probes; a strict limiter never
 * grants more than N in any window of its period. Bounded by alarm(). */
#define _POSIX_C_SOURCE 200809L
#include "stockade.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

#define THREADS 6
#define MS 1000000u

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* ---- bulkhead ---------------------------------------------------------- */
static STOCKADE_ALIGNED(STOCKADE_BULKHEAD_ALIGN) unsigned char bmem[STOCKADE_BULKHEAD_SIZE];
static stockade_bulkhead *bulkhead;
static int inside, max_inside, bulkhead_errors;
#define BULKHEAD_MAX 3
#define BULKHEAD_ITERS 20000

static void *bulkhead_worker(void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < BULKHEAD_ITERS; i++) {
        stockade_bulkhead_token t;
        stockade_status s = stockade_bulkhead_try_acquire(bulkhead, &t);
        if (s == STOCKADE_STATUS_BULKHEAD_FULL) continue;
        if (s != STOCKADE_STATUS_OK) { __atomic_fetch_add(&bulkhead_errors, 1, __ATOMIC_RELAXED); continue; }
        {
            int now = __atomic_add_fetch(&inside, 1, __ATOMIC_SEQ_CST);
            int seen = __atomic_load_n(&max_inside, __ATOMIC_RELAXED);
            while (now > seen && !__atomic_compare_exchange_n(&max_inside, &seen, now, 0, __ATOMIC_RELAXED,
                                                               __ATOMIC_RELAXED)) {
            }
        }
        __atomic_sub_fetch(&inside, 1, __ATOMIC_SEQ_CST);
        if (stockade_bulkhead_release(bulkhead, &t) != STOCKADE_STATUS_OK)
            __atomic_fetch_add(&bulkhead_errors, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_bulkhead(void) {
    stockade_bulkhead_config c = stockade_bulkhead_config_default();
    pthread_t th[THREADS];
    uint32_t in_use = 99;
    int i;
    c.max_concurrent = BULKHEAD_MAX;
    CHECK_OK(stockade_bulkhead_init(bmem, sizeof bmem, &c, NULL, &bulkhead));
    for (i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, bulkhead_worker, NULL);
    for (i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    CHECK(bulkhead_errors == 0);
    CHECK(max_inside >= 1 && max_inside <= BULKHEAD_MAX);
    CHECK_OK(stockade_bulkhead_counts(bulkhead, &in_use, NULL, NULL));
    CHECK(in_use == 0); /* no lost permits */
}

/* ---- breaker half-open probe limit ------------------------------------ */
static STOCKADE_ALIGNED(STOCKADE_BREAKER_ALIGN) unsigned char brmem[STOCKADE_BREAKER_SIZE];
static stockade_breaker *breaker;
static uint64_t breaker_now;
static uint64_t breaker_clock_read(void *ud) { (void)ud; return __atomic_load_n(&breaker_now, __ATOMIC_ACQUIRE); }
static int probes, max_probes, probe_admissions, breaker_errors;
#define PROBE_LIMIT 2
#define PROBE_ITERS 20000

static void *probe_worker(void *arg) {
    stockade_clock clock = {breaker_clock_read, NULL};
    int i;
    (void)arg;
    for (i = 0; i < PROBE_ITERS; i++) {
        stockade_breaker_token t;
        stockade_status s = stockade_breaker_acquire(breaker, &clock, &t, NULL, NULL);
        if (s == STOCKADE_STATUS_BREAKER_HALF_OPEN_FULL || s == STOCKADE_STATUS_BREAKER_OPEN) continue;
        if (s != STOCKADE_STATUS_OK) { __atomic_fetch_add(&breaker_errors, 1, __ATOMIC_RELAXED); continue; }
        __atomic_fetch_add(&probe_admissions, 1, __ATOMIC_RELAXED);
        {
            int now = __atomic_add_fetch(&probes, 1, __ATOMIC_SEQ_CST);
            int seen = __atomic_load_n(&max_probes, __ATOMIC_RELAXED);
            while (now > seen && !__atomic_compare_exchange_n(&max_probes, &seen, now, 0, __ATOMIC_RELAXED,
                                                               __ATOMIC_RELAXED)) {
            }
        }
        __atomic_sub_fetch(&probes, 1, __ATOMIC_SEQ_CST);
        /* Ignored: frees the slot without closing or reopening. */
        s = stockade_breaker_report(breaker, &t, STOCKADE_OUTCOME_IGNORED, &clock, NULL);
        if (s != STOCKADE_STATUS_OK && s != STOCKADE_STATUS_TOKEN_STALE)
            __atomic_fetch_add(&breaker_errors, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_half_open_probe_limit(void) {
    stockade_breaker_config c = stockade_breaker_config_default();
    stockade_clock clock = {breaker_clock_read, NULL};
    stockade_breaker_state state;
    pthread_t th[THREADS];
    int i;
    c.half_open_max_probes = PROBE_LIMIT;
    c.reset_timeout_ms = 10;
    c.half_open_timeout_ms = 3600000; /* the round outlasts the test */
    CHECK_OK(stockade_breaker_init(brmem, sizeof brmem, &c, NULL, &breaker));
    CHECK_OK(stockade_breaker_trip(breaker, &clock, NULL));
    __atomic_store_n(&breaker_now, 10 * (uint64_t)MS, __ATOMIC_RELEASE);
    for (i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, probe_worker, NULL);
    for (i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    CHECK(breaker_errors == 0);
    CHECK(probe_admissions > 0);
    CHECK(max_probes >= 1 && max_probes <= PROBE_LIMIT);
    CHECK_OK(stockade_breaker_get_state(breaker, &state));
    CHECK(state == STOCKADE_BREAKER_STATE_HALF_OPEN);
}

/* ---- strict limiter: never more than N in any window ------------------ */
static STOCKADE_ALIGNED(STOCKADE_LIMITER_ALIGN) unsigned char lmem[STOCKADE_LIMITER_SIZE];
static stockade_limiter *limiter;
static uint64_t limiter_now;
#define LIMIT_N 5
#define LIMIT_PERIOD_MS 100
#define LIMIT_ITERS 20000
#define MAX_GRANTS (THREADS * LIMIT_ITERS)
static uint64_t grants[MAX_GRANTS];
static int grant_count, limiter_errors;

struct reader { uint64_t last; };
static uint64_t limiter_clock_read(void *ud) {
    struct reader *r = ud;
    r->last = __atomic_load_n(&limiter_now, __ATOMIC_ACQUIRE);
    return r->last;
}

static void *limiter_worker(void *arg) {
    struct reader r = {0};
    stockade_clock clock;
    int i;
    (void)arg;
    clock.now_ns = limiter_clock_read;
    clock.user_data = &r;
    for (i = 0; i < LIMIT_ITERS; i++) {
        stockade_status s;
        if (i % 4 == 0) __atomic_fetch_add(&limiter_now, 1 * (uint64_t)MS, __ATOMIC_ACQ_REL);
        s = stockade_limiter_try_acquire(limiter, &clock, 1, NULL);
        if (s == STOCKADE_STATUS_RATE_LIMITED) continue;
        if (s != STOCKADE_STATUS_OK) { __atomic_fetch_add(&limiter_errors, 1, __ATOMIC_RELAXED); continue; }
        grants[__atomic_fetch_add(&grant_count, 1, __ATOMIC_RELAXED)] = r.last;
    }
    return NULL;
}

static void test_strict_limiter_windows(void) {
    stockade_limiter_config c = stockade_limiter_config_default();
    pthread_t th[THREADS];
    int i, violations = 0;
    c.requests_per_period = LIMIT_N;
    c.period_ms = LIMIT_PERIOD_MS;
    c.mode = STOCKADE_LIMITER_MODE_STRICT;
    c.burst = LIMIT_N;
    CHECK_OK(stockade_limiter_init(lmem, sizeof lmem, &c, NULL, &limiter));
    for (i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, limiter_worker, NULL);
    for (i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    CHECK(limiter_errors == 0);
    CHECK(grant_count > LIMIT_N);
    qsort(grants, (size_t)grant_count, sizeof grants[0], cmp_u64);
    /* Any N+1 grants span at least one period. */
    for (i = 0; i + LIMIT_N < grant_count; i++)
        if (grants[i + LIMIT_N] - grants[i] < LIMIT_PERIOD_MS * (uint64_t)MS) violations++;
    CHECK(violations == 0);
}

int main(void) {
    alarm(120); /* watchdog: a hang fails the test instead of blocking CI */
    test_bulkhead();
    test_half_open_probe_limit();
    test_strict_limiter_windows();
    return check_report("test_threads");
}
