/* The lean constructors (stockade_breaker_init_lean,
 * stockade_limiter_init_lean) against the describing ones: every config
 * the describing one refuses is INVALID_CONFIG, every config it accepts
 * makes a machine that behaves the same; every NULL and storage path. */
#include "stockade.h"

#include <stdint.h>
#include <string.h>

#include "check.h"

static uint64_t now_ns;
static uint64_t read_now(void *user_data) { (void)user_data; return now_ns; }
#define MS 1000000u

static STOCKADE_ALIGNED(STOCKADE_BREAKER_ALIGN) unsigned char bmem[2][STOCKADE_BREAKER_SIZE];
static STOCKADE_ALIGNED(STOCKADE_LIMITER_ALIGN) unsigned char lmem[2][STOCKADE_LIMITER_SIZE];

/* Drives two breakers through the same calls: fail until open, wait out
 * the reset timeout, probe; every status and state must match. */
static void same_breakers(stockade_breaker *a, stockade_breaker *b, const stockade_breaker_config *c) {
    stockade_clock clock = {read_now, NULL};
    stockade_breaker *both[2];
    uint32_t i;
    int k;
    both[0] = a;
    both[1] = b;
    now_ns = 0;
    for (i = 0; i <= c->failure_threshold && i < 20; i++) {
        stockade_status got[2];
        stockade_breaker_state state[2];
        uint64_t after[2] = {0, 0};
        for (k = 0; k < 2; k++) {
            stockade_breaker_token tok;
            got[k] = stockade_breaker_acquire(both[k], &clock, &tok, NULL, &after[k]);
            if (got[k] == STOCKADE_STATUS_OK) {
                CHECK_OK(stockade_breaker_report(both[k], &tok, STOCKADE_OUTCOME_FAILURE, &clock, NULL));
            }
            CHECK_OK(stockade_breaker_get_state(both[k], &state[k]));
        }
        CHECK(got[0] == got[1] && state[0] == state[1] && after[0] == after[1]);
    }
    now_ns += c->reset_timeout_ms * (uint64_t)MS + 10 * MS;
    {
        stockade_breaker_token t0, t1;
        stockade_breaker_state s0, s1;
        CHECK(stockade_breaker_acquire(a, &clock, &t0, NULL, NULL) ==
              stockade_breaker_acquire(b, &clock, &t1, NULL, NULL));
        CHECK_OK(stockade_breaker_get_state(a, &s0));
        CHECK_OK(stockade_breaker_get_state(b, &s1));
        CHECK(s0 == s1);
    }
}

static void test_breaker(void) {
    stockade_breaker_config base = stockade_breaker_config_default();
    stockade_breaker_config configs[12];
    size_t n = 0, i;
    stockade_breaker *b = NULL, *lean = NULL;

    configs[n++] = base;
    configs[n] = base, configs[n].failure_threshold = 0, n++;
    configs[n] = base, configs[n].failure_threshold = 3, configs[n].reset_timeout_ms = 100, n++;
    configs[n] = base, configs[n].failure_threshold = UINT32_MAX, n++;
    configs[n] = base, configs[n].half_open_max_probes = 0, n++;
    configs[n] = base, configs[n].reset_timeout_ms = 0, n++;
    configs[n] = base, configs[n].reset_timeout_ms = UINT64_MAX, n++;
    configs[n] = base, configs[n].half_open_timeout_ms = 0, n++;
    configs[n] = base, configs[n].monitor_interval_ms = 0, n++;
    configs[n] = base, configs[n].failure_rate_threshold = 101, configs[n].failure_rate_window_size = 10,
    configs[n].failure_rate_minimum_calls = 5, n++;
    configs[n] = base, configs[n].slow_call_threshold_ms = 250, configs[n].half_open_successes_to_close = 2, n++;
    configs[n] = base, configs[n].half_open_successes_to_close = 70000, n++;

    for (i = 0; i < n; i++) {
        stockade_status want = stockade_breaker_init(bmem[0], sizeof bmem[0], &configs[i], NULL, &b);
        stockade_status got = stockade_breaker_init_lean(bmem[1], sizeof bmem[1], &configs[i], &lean);
        CHECK(want == got);
        CHECK(got == STOCKADE_STATUS_OK || got == STOCKADE_STATUS_INVALID_CONFIG);
        if (want == STOCKADE_STATUS_OK && got == STOCKADE_STATUS_OK) {
            CHECK((void *)lean == (void *)bmem[1]);
            same_breakers(b, lean, &configs[i]);
        }
    }
    /* The refusals above did happen (so the comparison is not vacuous). */
    CHECK_STATUS(stockade_breaker_init_lean(bmem[1], sizeof bmem[1], &configs[1], &lean),
                 STOCKADE_STATUS_INVALID_CONFIG);
    CHECK_STATUS(stockade_breaker_init_lean(bmem[1], sizeof bmem[1], &configs[6], &lean),
                 STOCKADE_STATUS_INVALID_CONFIG);

    lean = NULL;
    CHECK_NULL_ARG(stockade_breaker_init_lean(NULL, sizeof bmem[1], &base, &lean));
    CHECK_NULL_ARG(stockade_breaker_init_lean(bmem[1], sizeof bmem[1], NULL, &lean));
    CHECK_NULL_ARG(stockade_breaker_init_lean(bmem[1], sizeof bmem[1], &base, NULL));
    CHECK_STATUS(stockade_breaker_init_lean(bmem[1], STOCKADE_BREAKER_SIZE - 8, &base, &lean),
                 STOCKADE_STATUS_STORAGE_TOO_SMALL);
    CHECK_STATUS(stockade_breaker_init_lean(bmem[0] + 4, STOCKADE_BREAKER_SIZE, &base, &lean),
                 STOCKADE_STATUS_STORAGE_MISALIGNED);
    CHECK(lean == NULL);
}

/* Two limiters must grant and refuse alike, with the same retry times. */
static void same_limiters(stockade_limiter *a, stockade_limiter *b) {
    stockade_clock clock = {read_now, NULL};
    int i;
    now_ns = 0;
    for (i = 0; i < 40; i++) {
        uint64_t after0 = 0, after1 = 0;
        uint32_t n0 = 0, n1 = 0;
        CHECK(stockade_limiter_try_acquire(a, &clock, 1, &after0) ==
              stockade_limiter_try_acquire(b, &clock, 1, &after1));
        CHECK(after0 == after1);
        CHECK_OK(stockade_limiter_available(a, &clock, &n0));
        CHECK_OK(stockade_limiter_available(b, &clock, &n1));
        CHECK(n0 == n1);
        now_ns += 37 * MS;
    }
}

static void test_limiter(void) {
    stockade_limiter_config base = stockade_limiter_config_default();
    stockade_limiter_config configs[10];
    size_t n = 0, i;
    stockade_limiter *l = NULL, *lean = NULL;

    configs[n++] = base;
    configs[n] = base, configs[n].requests_per_period = 0, n++;
    configs[n] = base, configs[n].period_ms = 0, n++;
    configs[n] = base, configs[n].period_ms = UINT64_MAX, n++;
    configs[n] = base, configs[n].mode = 7, n++;
    configs[n] = base, configs[n].mode = STOCKADE_LIMITER_MODE_STRICT, configs[n].burst = 11, n++;
    configs[n] = base, configs[n].mode = STOCKADE_LIMITER_MODE_STRICT, n++;
    configs[n] = base, configs[n].requests_per_period = 3, configs[n].burst = 2, n++;
    configs[n] = base, configs[n].requests_per_period = 1000, configs[n].period_ms = 1, n++;
    configs[n] = base, configs[n].max_queue_size = UINT32_MAX, configs[n].queue_timeout_ms = UINT64_MAX, n++;

    for (i = 0; i < n; i++) {
        stockade_status want = stockade_limiter_init(lmem[0], sizeof lmem[0], &configs[i], NULL, &l);
        stockade_status got = stockade_limiter_init_lean(lmem[1], sizeof lmem[1], &configs[i], &lean);
        CHECK(want == got);
        CHECK(got == STOCKADE_STATUS_OK || got == STOCKADE_STATUS_INVALID_CONFIG);
        if (want == STOCKADE_STATUS_OK && got == STOCKADE_STATUS_OK) {
            CHECK((void *)lean == (void *)lmem[1]);
            same_limiters(l, lean);
        }
    }
    CHECK_STATUS(stockade_limiter_init_lean(lmem[1], sizeof lmem[1], &configs[1], &lean),
                 STOCKADE_STATUS_INVALID_CONFIG);
    CHECK_STATUS(stockade_limiter_init_lean(lmem[1], sizeof lmem[1], &configs[4], &lean),
                 STOCKADE_STATUS_INVALID_CONFIG);
    CHECK_STATUS(stockade_limiter_init_lean(lmem[1], sizeof lmem[1], &configs[5], &lean),
                 STOCKADE_STATUS_INVALID_CONFIG);

    lean = NULL;
    CHECK_NULL_ARG(stockade_limiter_init_lean(NULL, sizeof lmem[1], &base, &lean));
    CHECK_NULL_ARG(stockade_limiter_init_lean(lmem[1], sizeof lmem[1], NULL, &lean));
    CHECK_NULL_ARG(stockade_limiter_init_lean(lmem[1], sizeof lmem[1], &base, NULL));
    CHECK_STATUS(stockade_limiter_init_lean(lmem[1], 8, &base, &lean), STOCKADE_STATUS_STORAGE_TOO_SMALL);
    CHECK_STATUS(stockade_limiter_init_lean(lmem[0] + 4, STOCKADE_LIMITER_SIZE, &base, &lean),
                 STOCKADE_STATUS_STORAGE_MISALIGNED);
    CHECK(lean == NULL);
}

int main(void) {
    test_breaker();
    test_limiter();
    return check_report("test_lean");
}
