/* The lean constructors (stockade_breaker_init_lean,
 * stockade_limiter_init_lean) against the describing ones: every config
 * the describing one refuses is INVALID_CONFIG, every config it accepts
 * makes a machine that behaves the same; every NULL and storage path.
 * And the planned limiter (STOCKADE_LIMITER_PLAN at compile time,
 * stockade_limiter_init_planned): the plans the macro makes, the same
 * refusals and behaviour as stockade_limiter_init, plans it did not make
 * refused. */
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

/* Compile-time checks: the macro's fields and validity are integer
 * constant expressions (a C99 array size must be one). */
#define STATIC_CHECK(name, cond) typedef char name[(cond) ? 1 : -1]
STATIC_CHECK(default_plan_is_valid, STOCKADE_LIMITER_PLAN_VALID(10, 1000, 0, 100, 30000, 0));
STATIC_CHECK(zero_requests_is_not, !STOCKADE_LIMITER_PLAN_VALID(0, 1000, 0, 100, 30000, 0));
static const stockade_limiter_plan static_plan = STOCKADE_LIMITER_PLAN(10, 1000, 0, 100, 30000, 1);

/* A plan for a config, as the macro makes it (every argument a constant
 * in each call site below, as in firmware). */
#define PLAN_CASE(r, p, b, q, t, m)                                                              \
    {{(r), (p), (b), (q), (t), (m)}, STOCKADE_LIMITER_PLAN(r, p, b, q, t, m),                       \
     STOCKADE_LIMITER_PLAN_VALID(r, p, b, q, t, m)}

struct plan_case {
    unsigned long long args[6]; /* requests, period_ms, burst, queue, queue_timeout_ms, mode */
    stockade_limiter_plan plan;
    int valid;
};

static const struct plan_case plan_cases[] = {
    PLAN_CASE(10, 1000, 0, 100, 30000, 0),             /* the defaults: 100 ms in 1000 ticks */
    PLAN_CASE(10, 1000, 0, 0, 0, 1),                   /* the README's strict limiter */
    PLAN_CASE(1000, 1, 0, 10, 5, 0),                   /* 1 us: fits the cap, 1 ns ticks */
    PLAN_CASE(1, 3600000, 0, 0, 0, 0),                 /* one an hour: 3.6 s in 1000 ticks */
    PLAN_CASE(1, 86400000ULL * 365, 0, 0, 0, 0),       /* one a year: needs more than 1024 ticks */
    PLAN_CASE(5, 1000, 2, 3, 1000, 1),                 /* strict, burst 2 */
    PLAN_CASE(524288, 1000, 0, 524288, 0, 0),          /* the largest counts */
    PLAN_CASE(0, 1000, 0, 100, 30000, 0),              /* refused: no requests */
    PLAN_CASE(10, 0, 0, 100, 30000, 0),                /* refused: no period */
    PLAN_CASE(10, 1000, 11, 100, 30000, 1),            /* refused: strict burst above requests */
    PLAN_CASE(10, 1000, 0, 100, 30000, 7),             /* refused: unknown mode */
    PLAN_CASE(1000, 0 + 0, 0, 0, 0, 0),                /* refused: no period */
    PLAN_CASE(524289, 1000, 0, 0, 0, 0),               /* refused: burst above 2^19 */
    PLAN_CASE(10, 1000, 0, 524289, 0, 0),              /* refused: queue above 2^19 */
    PLAN_CASE(10, 18446744073710ULL, 0, 0, 0, 0),      /* refused: period beyond 2^64 ns */
};

/* Whether a valid plan's interval and queue timeout are exactly the
 * config's (as this host's 64-bit layout runs the describing limiter,
 * to the nanosecond). */
static int exact_plan(const struct plan_case *pc) {
    unsigned long long r = pc->args[0], b = pc->plan.burst, ns = pc->args[1] * 1000000ULL;
    unsigned long long per = pc->args[5] == 1 ? r - b + 1 : r;
    unsigned long long interval = ns / per + (ns % per != 0);
    unsigned long long tick = pc->plan.tick_ns, timeout = pc->args[4] * 1000000ULL;
    unsigned long long by_size = pc->plan.max_queue_size * interval;
    return tick * pc->plan.interval_ticks == interval &&
           pc->plan.queue_timeout_ticks * tick == (timeout < by_size ? timeout : by_size);
}

static void test_planned(void) {
    stockade_clock clock = {read_now, NULL};
    stockade_limiter *l = NULL, *planned = NULL;
    stockade_limiter_plan bad;
    size_t i, compared = 0;

    /* The macro's numbers, worked out by hand: 100 ms intervals cut into
     * 1000 ticks of 100 us; queue timeout min(30 s, 100 intervals). */
    CHECK(plan_cases[0].valid && plan_cases[0].plan.tick_ns == 100000 && plan_cases[0].plan.interval_ticks == 1000);
    CHECK(plan_cases[0].plan.burst == 10 && plan_cases[0].plan.max_queue_size == 100);
    CHECK(plan_cases[0].plan.queue_timeout_ticks == 100000);
    CHECK(static_plan.tick_ns == 100000 && static_plan.burst == 1 && static_plan.queue_timeout_ticks == 100000);
    CHECK(plan_cases[2].plan.tick_ns == 1 && plan_cases[2].plan.interval_ticks == 1000);
    /* 3.6e12 ns = 2^13 3^2 5^11: cut exactly at the cap, 1024 ticks. */
    CHECK(plan_cases[3].plan.tick_ns == 3515625000u && plan_cases[3].plan.interval_ticks == 1024);
    /* 365 days = 3.1536e16 ns: at least 7342548 ticks of at most
     * 2^32 - 1 ns; no exact cut tried, rounded up to the tick. */
    CHECK(plan_cases[4].valid && plan_cases[4].plan.interval_ticks == 7342548);
    CHECK(plan_cases[4].plan.tick_ns == 4294966816u);
    /* Strict, burst 2 of 5: 4 intervals a second, 250 ms. */
    CHECK(plan_cases[5].plan.tick_ns == 250000 && plan_cases[5].plan.burst == 2);

    for (i = 0; i < sizeof plan_cases / sizeof plan_cases[0]; i++) {
        const struct plan_case *pc = &plan_cases[i];
        stockade_limiter_config c = stockade_limiter_config_default();
        stockade_status want, got;
        c.requests_per_period = (uint32_t)pc->args[0];
        c.period_ms = pc->args[1];
        c.burst = (uint32_t)pc->args[2];
        c.max_queue_size = (uint32_t)pc->args[3];
        c.queue_timeout_ms = pc->args[4];
        c.mode = (uint8_t)pc->args[5];
        got = stockade_limiter_init_planned(lmem[1], sizeof lmem[1], &pc->plan, &planned);
        CHECK(got == (pc->valid ? STOCKADE_STATUS_OK : STOCKADE_STATUS_INVALID_CONFIG));
        CHECK(pc->valid == (pc->plan.tick_ns != 0));
        if (pc->plan.burst > 524288u || c.max_queue_size > 524288u) {
            continue; /* this host's 64-bit layout takes larger counts */
        }
        want = stockade_limiter_init(lmem[0], sizeof lmem[0], &c, NULL, &l);
        CHECK(want == got);
        if (want == STOCKADE_STATUS_OK && got == STOCKADE_STATUS_OK && exact_plan(pc)) {
            /* An exact cut: the same limiter as this host's 1 ns ticks. */
            same_limiters(l, planned);
            compared++;
        }
    }
    CHECK(compared >= 5);
    /* The README's radio limiter: one now, the next in 100 ms. */
    {
        uint64_t after = 0;
        now_ns = 0;
        CHECK_OK(stockade_limiter_init_planned(lmem[1], sizeof lmem[1], &plan_cases[1].plan, &planned));
        CHECK_OK(stockade_limiter_try_acquire(planned, &clock, 1, NULL));
        CHECK_STATUS(stockade_limiter_try_acquire(planned, &clock, 1, &after), STOCKADE_STATUS_RATE_LIMITED);
        CHECK(after == 100);
        now_ns = 100 * (uint64_t)MS;
        CHECK_OK(stockade_limiter_try_acquire(planned, &clock, 1, NULL));
    }

    /* Plans the macro did not make. */
    memset(&bad, 0, sizeof bad);
    CHECK_STATUS(stockade_limiter_init_planned(lmem[1], sizeof lmem[1], &bad, &planned), STOCKADE_STATUS_INVALID_CONFIG);
    bad = plan_cases[0].plan;
    bad.burst = 20; /* the check word no longer matches */
    CHECK_STATUS(stockade_limiter_init_planned(lmem[1], sizeof lmem[1], &bad, &planned), STOCKADE_STATUS_INVALID_CONFIG);
    /* Matching check words on numbers the machine cannot run on. */
    bad = plan_cases[0].plan;
    bad.queue_timeout_ticks = 100 * 1000 + 1; /* above max_queue_size intervals */
    bad.check = STOCKADE_LIMITER_PLAN_CHECK(bad.tick_ns, bad.interval_ticks, bad.burst, bad.max_queue_size,
                                            bad.queue_timeout_ticks);
    CHECK_STATUS(stockade_limiter_init_planned(lmem[1], sizeof lmem[1], &bad, &planned), STOCKADE_STATUS_INVALID_CONFIG);
    bad = plan_cases[0].plan;
    bad.interval_ticks = 0;
    bad.check = STOCKADE_LIMITER_PLAN_CHECK(bad.tick_ns, bad.interval_ticks, bad.burst, bad.max_queue_size,
                                            bad.queue_timeout_ticks);
    CHECK_STATUS(stockade_limiter_init_planned(lmem[1], sizeof lmem[1], &bad, &planned), STOCKADE_STATUS_INVALID_CONFIG);
    bad = plan_cases[0].plan;
    bad.tick_ns = UINT32_MAX;
    bad.interval_ticks = UINT32_MAX;
    bad.check = STOCKADE_LIMITER_PLAN_CHECK(bad.tick_ns, bad.interval_ticks, bad.burst, bad.max_queue_size,
                                            bad.queue_timeout_ticks);
    CHECK_STATUS(stockade_limiter_init_planned(lmem[1], sizeof lmem[1], &bad, &planned), STOCKADE_STATUS_INVALID_CONFIG);
    /* The check word of an untouched plan is what the macro wrote. */
    bad = plan_cases[0].plan;
    CHECK(bad.check == STOCKADE_LIMITER_PLAN_CHECK(bad.tick_ns, bad.interval_ticks, bad.burst, bad.max_queue_size,
                                                   bad.queue_timeout_ticks));

    planned = NULL;
    CHECK_NULL_ARG(stockade_limiter_init_planned(NULL, sizeof lmem[1], &static_plan, &planned));
    CHECK_NULL_ARG(stockade_limiter_init_planned(lmem[1], sizeof lmem[1], NULL, &planned));
    CHECK_NULL_ARG(stockade_limiter_init_planned(lmem[1], sizeof lmem[1], &static_plan, NULL));
    CHECK_STATUS(stockade_limiter_init_planned(lmem[1], 8, &static_plan, &planned), STOCKADE_STATUS_STORAGE_TOO_SMALL);
    CHECK_STATUS(stockade_limiter_init_planned(lmem[0] + 4, STOCKADE_LIMITER_SIZE, &static_plan, &planned),
                 STOCKADE_STATUS_STORAGE_MISALIGNED);
    CHECK(planned == NULL);
}

int main(void) {
    test_breaker();
    test_limiter();
    test_planned();
    return check_report("test_lean");
}
