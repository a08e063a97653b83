/* Core-tier rate limiter and bulkhead from C on caller storage: permits,
 * reservations and cancels, tokens released twice, every NULL and
 * invalid-config path. A manual clock drives time. */
#include "stockade.h"

#include <stdint.h>
#include <string.h>

#include "check.h"

static uint64_t now_ns;
static uint64_t read_now(void *user_data) { (void)user_data; return now_ns; }
#define MS 1000000u

static STOCKADE_ALIGNED(STOCKADE_LIMITER_ALIGN) unsigned char lmem[STOCKADE_LIMITER_SIZE];
static STOCKADE_ALIGNED(STOCKADE_BULKHEAD_ALIGN) unsigned char bmem[STOCKADE_BULKHEAD_SIZE];

static void test_limiter(void) {
    stockade_clock clock = {read_now, NULL};
    stockade_limiter_config c = stockade_limiter_config_default();
    stockade_config_error err;
    stockade_limiter *l = NULL;
    stockade_limiter_token tok, first;
    uint64_t after = 0;
    uint32_t n = 0;
    int i;

    CHECK(c.period_ms == 1000 && c.requests_per_period == 10 && c.burst == 0);
    CHECK(c.max_queue_size == 100 && c.queue_timeout_ms == 30000 && c.mode == STOCKADE_LIMITER_MODE_BURSTY);

    c.requests_per_period = 0;
    CHECK_STATUS(stockade_limiter_init(lmem, sizeof lmem, &c, &err, &l), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 20 && strcmp(err.option_name, "requests_per_period") == 0);
    c = stockade_limiter_config_default();
    c.period_ms = 0;
    CHECK_STATUS(stockade_limiter_init(lmem, sizeof lmem, &c, &err, &l), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 21 && strcmp(err.option_name, "period_ms") == 0);
    CHECK(strcmp(err.message, "invalid period_ms = 0: must be at least 1 ms") == 0);
    c.period_ms = UINT64_MAX; /* the number set, and the limit in ms */
    CHECK_STATUS(stockade_limiter_init(lmem, sizeof lmem, &c, &err, &l), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.problem == STOCKADE_CONFIG_PROBLEM_TOO_LARGE && err.unit == STOCKADE_CONFIG_UNIT_MILLISECONDS);
    CHECK(strcmp(err.message, "invalid period_ms = 18446744073709551615: must be at most 2305843009213 ms") == 0);
    CHECK(err.value == UINT64_MAX && err.limit == 2305843009213u);
    c = stockade_limiter_config_default();
    c.mode = 7;
    CHECK_STATUS(stockade_limiter_init(lmem, sizeof lmem, &c, &err, &l), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 25);
    c = stockade_limiter_config_default();
    c.mode = STOCKADE_LIMITER_MODE_STRICT;
    c.burst = 11;
    CHECK_STATUS(stockade_limiter_init(lmem, sizeof lmem, &c, NULL, &l), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK_STATUS(stockade_limiter_init(lmem, sizeof lmem, &c, &err, &l), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(strcmp(err.message, "invalid burst = 11: must not exceed requests_per_period (= 10)") == 0);
    c = stockade_limiter_config_default();
    CHECK_NULL_ARG(stockade_limiter_init(NULL, sizeof lmem, &c, NULL, &l));
    CHECK_NULL_ARG(stockade_limiter_init(lmem, sizeof lmem, NULL, NULL, &l));
    CHECK_NULL_ARG(stockade_limiter_init(lmem, sizeof lmem, &c, NULL, NULL));
    CHECK_STATUS(stockade_limiter_init(lmem, 8, &c, NULL, &l), STOCKADE_STATUS_STORAGE_TOO_SMALL);
    CHECK(l == NULL);

    /* 10 per second, burst 10: ten now, the eleventh in 100 ms. */
    now_ns = 0;
    CHECK_OK(stockade_limiter_init(lmem, sizeof lmem, &c, &err, &l));
    CHECK_OK(stockade_limiter_available(l, &clock, &n));
    CHECK(n == 10);
    for (i = 0; i < 10; i++) CHECK_OK(stockade_limiter_try_acquire(l, &clock, 1, NULL));
    CHECK_STATUS(stockade_limiter_try_acquire(l, &clock, 1, &after), STOCKADE_STATUS_RATE_LIMITED);
    CHECK(after == 100);
    CHECK_STATUS(stockade_limiter_try_acquire(l, &clock, 11, &after), STOCKADE_STATUS_PERMITS_EXCEED_BURST);
    CHECK(after == UINT64_MAX);
    CHECK_OK(stockade_limiter_try_acquire(l, &clock, 0, NULL));

    /* Reservations queue in time; the latest can be cancelled once. */
    CHECK_OK(stockade_limiter_reserve(l, &clock, 1, 1000, &first, NULL));
    CHECK(first.permits == 1 && first.wait_ns == 100 * (uint64_t)MS && first.ready_at_ns == 100 * (uint64_t)MS);
    CHECK_OK(stockade_limiter_reserve(l, &clock, 1, 1000, &tok, NULL));
    CHECK(tok.wait_ns == 200 * (uint64_t)MS);
    CHECK_OK(stockade_limiter_queue_depth(l, &clock, &n));
    CHECK(n == 2);
    CHECK_STATUS(stockade_limiter_reserve(l, &clock, 1, 150, &tok, &after), STOCKADE_STATUS_QUEUE_TIMEOUT);
    CHECK(after > 0 && after != UINT64_MAX);
    CHECK_OK(stockade_limiter_cancel(l, &tok, &clock, &n));
    CHECK(n == 1 && tok.used == 1);
    CHECK_STATUS(stockade_limiter_cancel(l, &tok, &clock, &n), STOCKADE_STATUS_TOKEN_ALREADY_USED);
    CHECK_STATUS(stockade_limiter_cancel(l, &first, &clock, NULL), STOCKADE_STATUS_OK);
    CHECK_OK(stockade_limiter_queue_depth(l, &clock, &n));
    CHECK(n == 0);
    /* A reservation that did not wait cannot be cancelled. */
    now_ns = 10000 * (uint64_t)MS;
    CHECK_OK(stockade_limiter_reserve(l, &clock, 1, 0, &tok, NULL));
    CHECK(tok.wait_ns == 0);
    CHECK_STATUS(stockade_limiter_cancel(l, &tok, &clock, NULL), STOCKADE_STATUS_NOT_CANCELLABLE);

    /* A queue of 0: reservations never wait. */
    c.max_queue_size = 0;
    c.burst = 1;
    CHECK_OK(stockade_limiter_init(lmem, sizeof lmem, &c, NULL, &l));
    CHECK_OK(stockade_limiter_reserve(l, &clock, 1, 1000, &tok, NULL));
    CHECK_STATUS(stockade_limiter_reserve(l, &clock, 1, 1000, &tok, NULL), STOCKADE_STATUS_QUEUE_FULL);

    CHECK_NULL_ARG(stockade_limiter_try_acquire(NULL, &clock, 1, NULL));
    CHECK_NULL_ARG(stockade_limiter_try_acquire(l, NULL, 1, NULL));
    CHECK_NULL_ARG(stockade_limiter_reserve(NULL, &clock, 1, 0, &tok, NULL));
    CHECK_NULL_ARG(stockade_limiter_reserve(l, NULL, 1, 0, &tok, NULL));
    CHECK_NULL_ARG(stockade_limiter_reserve(l, &clock, 1, 0, NULL, NULL));
    CHECK_NULL_ARG(stockade_limiter_cancel(NULL, &tok, &clock, NULL));
    CHECK_NULL_ARG(stockade_limiter_cancel(l, NULL, &clock, NULL));
    CHECK_NULL_ARG(stockade_limiter_cancel(l, &tok, NULL, NULL));
    CHECK_NULL_ARG(stockade_limiter_available(NULL, &clock, &n));
    CHECK_NULL_ARG(stockade_limiter_available(l, NULL, &n));
    CHECK_NULL_ARG(stockade_limiter_available(l, &clock, NULL));
    CHECK_NULL_ARG(stockade_limiter_queue_depth(NULL, &clock, &n));
    CHECK_NULL_ARG(stockade_limiter_queue_depth(l, NULL, &n));
    CHECK_NULL_ARG(stockade_limiter_queue_depth(l, &clock, NULL));
    /* A forged token never crashes: it is refused or harmless. */
    memset(&tok, 0x5a, sizeof tok);
    tok.used = 0;
    CHECK(stockade_limiter_cancel(l, &tok, &clock, NULL) != STOCKADE_STATUS_INTERNAL_ERROR);
}

static void test_bulkhead(void) {
    stockade_bulkhead_config c = stockade_bulkhead_config_default();
    stockade_config_error err;
    stockade_bulkhead *b = NULL;
    stockade_bulkhead_token t1, t2, t3, copy;
    uint32_t in_use = 9, queued = 9, available = 9;

    CHECK(c.max_concurrent == 10 && c.max_queue == 100 && c.queue_timeout_ms == 30000);
    c.max_concurrent = 0;
    CHECK_STATUS(stockade_bulkhead_init(bmem, sizeof bmem, &c, &err, &b), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 30 && strcmp(err.option_name, "max_concurrent") == 0);
    CHECK(strcmp(err.message, "invalid max_concurrent = 0: must be at least 1") == 0);
    CHECK_STATUS(stockade_bulkhead_init(bmem, sizeof bmem, &c, NULL, &b), STOCKADE_STATUS_INVALID_CONFIG);
    c.max_concurrent = 2;
    CHECK_NULL_ARG(stockade_bulkhead_init(NULL, sizeof bmem, &c, NULL, &b));
    CHECK_NULL_ARG(stockade_bulkhead_init(bmem, sizeof bmem, NULL, NULL, &b));
    CHECK_NULL_ARG(stockade_bulkhead_init(bmem, sizeof bmem, &c, NULL, NULL));
    CHECK_STATUS(stockade_bulkhead_init(bmem, 4, &c, NULL, &b), STOCKADE_STATUS_STORAGE_TOO_SMALL);
    CHECK(b == NULL);
    CHECK_OK(stockade_bulkhead_init(bmem, sizeof bmem, &c, &err, &b));

    CHECK_OK(stockade_bulkhead_try_acquire(b, &t1));
    CHECK(t1.in_use == 1 && t1.used == 0);
    CHECK_OK(stockade_bulkhead_try_acquire(b, &t2));
    CHECK_STATUS(stockade_bulkhead_try_acquire(b, &t3), STOCKADE_STATUS_BULKHEAD_FULL);
    CHECK_OK(stockade_bulkhead_counts(b, &in_use, &queued, &available));
    CHECK(in_use == 2 && queued == 0 && available == 0);
    copy = t1;
    CHECK_OK(stockade_bulkhead_release(b, &t1));
    CHECK_STATUS(stockade_bulkhead_release(b, &t1), STOCKADE_STATUS_TOKEN_ALREADY_USED);
    CHECK_OK(stockade_bulkhead_counts(b, &in_use, NULL, NULL));
    CHECK(in_use == 1);
    CHECK_OK(stockade_bulkhead_release(b, &t2));
    /* A copy released when nothing is held: refused, counts unchanged. */
    CHECK_STATUS(stockade_bulkhead_release(b, &copy), STOCKADE_STATUS_TOKEN_ALREADY_USED);
    CHECK_OK(stockade_bulkhead_counts(b, &in_use, &queued, &available));
    CHECK(in_use == 0 && available == 2);

    CHECK_NULL_ARG(stockade_bulkhead_try_acquire(NULL, &t1));
    CHECK_NULL_ARG(stockade_bulkhead_try_acquire(b, NULL));
    CHECK_NULL_ARG(stockade_bulkhead_release(NULL, &t1));
    CHECK_NULL_ARG(stockade_bulkhead_release(b, NULL));
    CHECK_NULL_ARG(stockade_bulkhead_counts(NULL, &in_use, NULL, NULL));
    CHECK_OK(stockade_bulkhead_counts(b, NULL, NULL, NULL));
}

/* Permits a strict limiter (10 per second, burst `burst`) admits in
 * [from_ms, to_ms) when tried every millisecond from 0; *max_window = the
 * most admitted in any 1 s window. */
static int strict_admits(uint32_t burst, uint64_t from_ms, uint64_t to_ms, int *max_window) {
    stockade_clock clock = {read_now, NULL};
    stockade_limiter_config c = stockade_limiter_config_default();
    stockade_limiter *l = NULL;
    static uint64_t at[20000];
    int n = 0, in_range = 0, i, j;
    uint64_t t;
    c.mode = STOCKADE_LIMITER_MODE_STRICT;
    c.requests_per_period = 10;
    c.period_ms = 1000;
    c.burst = burst;
    now_ns = 0;
    CHECK_OK(stockade_limiter_init(lmem, sizeof lmem, &c, NULL, &l));
    for (t = 0; t < to_ms; t++) {
        now_ns = t * MS;
        while (n < 20000 && stockade_limiter_try_acquire(l, &clock, 1, NULL) == STOCKADE_STATUS_OK) {
            at[n++] = t;
            if (t >= from_ms) in_range++;
        }
    }
    *max_window = 0;
    for (i = 0, j = 0; i < n; i++) {
        while (at[i] - at[j] >= 1000) j++;
        if (i - j + 1 > *max_window) *max_window = i - j + 1;
    }
    return in_range;
}

/* The header's claim: a strict limiter with burst B sustains N - B + 1
 * permits per period, and never admits more than N in any period. */
static void test_strict_sustained_rate(void) {
    int max_window = 0;
    /* Seven periods after the burst is spent: 7 x (10 - 4 + 1) = 49. */
    int admitted = strict_admits(4, 1000, 8000, &max_window);
    CHECK(admitted >= 48 && admitted <= 50);
    CHECK(max_window <= 10);
    /* The default burst (1): the full quota, 10 per period. */
    admitted = strict_admits(0, 1000, 8000, &max_window);
    CHECK(admitted >= 69 && admitted <= 71);
    CHECK(max_window <= 10);
    /* Burst N: 1 per period once the burst is spent. */
    admitted = strict_admits(10, 1000, 8000, &max_window);
    CHECK(admitted >= 6 && admitted <= 8);
    CHECK(max_window <= 10);
}

int main(void) {
    test_limiter();
    test_strict_sustained_rate();
    test_bulkhead();
    return check_report("test_limiter_bulkhead");
}
