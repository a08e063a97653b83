/* The blocking limiter and bulkhead shared between pthreads: the bulkhead
 * never runs more than max_concurrent callbacks at once and loses no slot
 * (every queued caller gets in); the limiter loses no permit and never
 * grants faster than its rate. Bounded by alarm(). */
#define _POSIX_C_SOURCE 200809L
#include "stockade.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define THREADS 6

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* ---- bulkhead ---------------------------------------------------------- */
#define BULKHEAD_MAX 3
#define BULKHEAD_ITERS 200
static stockade_bulkhead_handle *bulkhead;
static int inside, max_inside, bulkhead_errors;

static int occupy(void *user_data) {
    int now = __atomic_add_fetch(&inside, 1, __ATOMIC_SEQ_CST), seen, spin;
    (void)user_data;
    seen = __atomic_load_n(&max_inside, __ATOMIC_RELAXED);
    while (now > seen &&
           !__atomic_compare_exchange_n(&max_inside, &seen, now, 0, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
    for (spin = 0; spin < 2000; spin++) __atomic_load_n(&inside, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&inside, 1, __ATOMIC_SEQ_CST);
    return 0;
}

static void *bulkhead_worker(void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < BULKHEAD_ITERS; i++)
        if (stockade_bulkhead_handle_execute(bulkhead, occupy, NULL) != STOCKADE_STATUS_OK)
            __atomic_fetch_add(&bulkhead_errors, 1, __ATOMIC_RELAXED);
    return NULL;
}

static void test_bulkhead(void) {
    stockade_bulkhead_config c = stockade_bulkhead_config_default();
    stockade_metrics m;
    pthread_t th[THREADS];
    int i;
    c.max_concurrent = BULKHEAD_MAX;
    c.max_queue = THREADS;
    c.queue_timeout_ms = 30000;
    CHECK_OK(stockade_bulkhead_handle_new(NULL, &c, NULL, &bulkhead));
    for (i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, bulkhead_worker, NULL);
    for (i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    CHECK(bulkhead_errors == 0);
    CHECK(max_inside >= 1 && max_inside <= BULKHEAD_MAX);
    CHECK_OK(stockade_bulkhead_handle_metrics(bulkhead, &m));
    CHECK(m.successes == THREADS * BULKHEAD_ITERS && m.in_flight == 0 && m.queue_depth == 0);
    stockade_bulkhead_handle_free(bulkhead);
}

/* ---- limiter ------------------------------------------------------------ */
#define LIMITER_ITERS 40
static stockade_limiter_handle *limiter;
static int limiter_errors;

static void *limiter_worker(void *arg) {
    int i;
    (void)arg;
    for (i = 0; i < LIMITER_ITERS; i++)
        if (stockade_limiter_handle_acquire(limiter, 1, 0) != STOCKADE_STATUS_OK)
            __atomic_fetch_add(&limiter_errors, 1, __ATOMIC_RELAXED);
    return NULL;
}

static void test_limiter(void) {
    stockade_limiter_config c = stockade_limiter_config_default();
    stockade_metrics m;
    pthread_t th[THREADS];
    uint64_t start, took_us;
    int i;
    /* 1 permit per ms, burst 10: 240 permits take at least 230 ms. */
    c.requests_per_period = 100;
    c.period_ms = 100;
    c.burst = 10;
    c.max_queue_size = THREADS;
    c.queue_timeout_ms = 30000;
    CHECK_OK(stockade_limiter_handle_new(NULL, &c, NULL, &limiter));
    start = now_us();
    for (i = 0; i < THREADS; i++) pthread_create(&th[i], NULL, limiter_worker, NULL);
    for (i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    took_us = now_us() - start;
    CHECK(limiter_errors == 0);
    CHECK(took_us >= (THREADS * LIMITER_ITERS - 10) * 1000u - 1000u); /* never faster than the rate */
    CHECK_OK(stockade_limiter_handle_metrics(limiter, &m));
    CHECK(m.successes == THREADS * LIMITER_ITERS && m.rejections == 0 && m.queue_depth == 0);
    stockade_limiter_handle_free(limiter);
}

int main(void) {
    alarm(120);
    test_bulkhead();
    test_limiter();
    return check_report("test_blocking_threads");
}
