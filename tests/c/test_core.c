/* Core tier from C: statuses, config errors, clocks, the backoff
 * calculator and deadlines on caller storage, every NULL and invalid-config
 * path. Time comes from a C callback the test moves by hand. */
#include "stockade.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check.h"

/* A manual clock: the test sets `now`. */
static uint64_t manual_now_ns(void *user_data) { return *(const uint64_t *)user_data; }

static uint32_t counter_read(void *user_data) { return *(const uint32_t *)user_data; }

static STOCKADE_ALIGNED(STOCKADE_BACKOFF_ALIGN) unsigned char backoff_mem[STOCKADE_BACKOFF_SIZE];
static STOCKADE_ALIGNED(STOCKADE_BACKOFF_SCHEDULE_ALIGN) unsigned char
    schedule_mem[STOCKADE_BACKOFF_SCHEDULE_SIZE];
static STOCKADE_ALIGNED(STOCKADE_TICK_CLOCK_ALIGN) unsigned char tick_mem[STOCKADE_TICK_CLOCK_SIZE];

static void test_status_and_version(void) {
    CHECK(strcmp(stockade_status_str(STOCKADE_STATUS_OK), "ok") == 0);
    CHECK(strcmp(stockade_status_str(STOCKADE_STATUS_BREAKER_OPEN), "circuit breaker is open") == 0);
    CHECK(strcmp(stockade_status_str(8), "unknown status") == 0);
    CHECK(strcmp(stockade_status_str(UINT32_MAX), "unknown status") == 0);
    /* Every status has its own message. */
    {
        const stockade_status all[] = {
            STOCKADE_STATUS_OK, STOCKADE_STATUS_NULL_ARGUMENT, STOCKADE_STATUS_INVALID_CONFIG,
            STOCKADE_STATUS_INVALID_ARGUMENT, STOCKADE_STATUS_STORAGE_TOO_SMALL,
            STOCKADE_STATUS_STORAGE_MISALIGNED, STOCKADE_STATUS_INTERNAL_ERROR,
            STOCKADE_STATUS_BUFFER_TOO_SMALL, STOCKADE_STATUS_BREAKER_OPEN,
            STOCKADE_STATUS_BREAKER_HALF_OPEN_FULL,
            STOCKADE_STATUS_TOKEN_ALREADY_USED, STOCKADE_STATUS_RATE_LIMITED,
            STOCKADE_STATUS_QUEUE_FULL, STOCKADE_STATUS_QUEUE_TIMEOUT,
            STOCKADE_STATUS_PERMITS_EXCEED_BURST, STOCKADE_STATUS_BULKHEAD_FULL,
            STOCKADE_STATUS_TIMED_OUT, STOCKADE_STATUS_RETRIES_EXHAUSTED,
            STOCKADE_STATUS_BUDGET_EXHAUSTED, STOCKADE_STATUS_CALLBACK_FAILED,
            STOCKADE_STATUS_DISPOSED, STOCKADE_STATUS_NOT_FOUND};
        size_t i, j;
        for (i = 0; i < sizeof all / sizeof all[0]; i++) {
            CHECK(strcmp(stockade_status_str(all[i]), "unknown status") != 0);
            for (j = 0; j < i; j++) CHECK(strcmp(stockade_status_str(all[i]), stockade_status_str(all[j])) != 0);
        }
    }
    CHECK(strcmp(stockade_config_option_str(24), "queue_timeout_ms") == 0);
    CHECK(strcmp(stockade_config_option_str(2), "reset_timeout_ms") == 0);
    CHECK(strcmp(stockade_config_option_str(1), "failure_threshold") == 0);
    CHECK(strcmp(stockade_config_option_str(43), "backoff_factor") == 0);
    CHECK(strcmp(stockade_config_option_str(0), "unknown option") == 0);
    CHECK(strcmp(stockade_config_option_str(UINT16_MAX), "unknown option") == 0);
    CHECK(strcmp(stockade_version(), STOCKADE_HEADER_VERSION) == 0);
    CHECK(STOCKADE_VERSION_MAJOR == 0 && STOCKADE_VERSION_MINOR == 1 && STOCKADE_VERSION_PATCH == 0);
}

static void test_clocks(void) {
    uint64_t now = 42, ns = 0, ticks = 0;
    uint32_t counter = UINT32_MAX - 1;
    stockade_clock clock;
    stockade_clock bad = {NULL, NULL};
    stockade_tick_clock *tick = NULL;
    clock.now_ns = manual_now_ns;
    clock.user_data = &now;

    CHECK_OK(stockade_clock_now_ns(&clock, &ns));
    CHECK(ns == 42);
    CHECK_NULL_ARG(stockade_clock_now_ns(NULL, &ns));
    CHECK_NULL_ARG(stockade_clock_now_ns(&bad, &ns));
    CHECK_NULL_ARG(stockade_clock_now_ns(&clock, NULL));

#ifdef STOCKADE_HAS_BLOCKING
    {
        stockade_clock mono = stockade_clock_monotonic();
        uint64_t a = 0, b = 0;
        CHECK_OK(stockade_clock_now_ns(&mono, &a));
        CHECK_OK(stockade_clock_now_ns(&mono, &b));
        CHECK(b >= a);
    }
#endif

    /* Tick clock: a 1 kHz counter about to wrap. */
    CHECK_NULL_ARG(stockade_tick_clock_init(NULL, sizeof tick_mem, counter_read, &counter, 1000, &tick));
    CHECK_NULL_ARG(stockade_tick_clock_init(tick_mem, sizeof tick_mem, NULL, &counter, 1000, &tick));
    CHECK_NULL_ARG(stockade_tick_clock_init(tick_mem, sizeof tick_mem, counter_read, &counter, 1000, NULL));
    CHECK_STATUS(stockade_tick_clock_init(tick_mem, 1, counter_read, &counter, 1000, &tick),
                 STOCKADE_STATUS_STORAGE_TOO_SMALL);
    CHECK_STATUS(stockade_tick_clock_init(tick_mem + 1, sizeof tick_mem - 1, counter_read, &counter, 1000, &tick),
                 STOCKADE_STATUS_STORAGE_TOO_SMALL);
    {
        static STOCKADE_ALIGNED(8) unsigned char big[STOCKADE_TICK_CLOCK_SIZE + 8];
        CHECK_STATUS(stockade_tick_clock_init(big + 1, STOCKADE_TICK_CLOCK_SIZE, counter_read, &counter, 1000, &tick),
                     STOCKADE_STATUS_STORAGE_MISALIGNED);
    }
    CHECK(tick == NULL); /* no partial success */
    CHECK_OK(stockade_tick_clock_init(tick_mem, sizeof tick_mem, counter_read, &counter, 1000, &tick));
    CHECK((void *)tick == (void *)tick_mem);

    CHECK_OK(stockade_tick_clock_as_clock(tick, &clock));
    CHECK_NULL_ARG(stockade_tick_clock_as_clock(NULL, &clock));
    CHECK_NULL_ARG(stockade_tick_clock_as_clock(tick, NULL));
    CHECK_OK(stockade_clock_now_ns(&clock, &ns));
    CHECK(ns == (uint64_t)(UINT32_MAX - 1) * 1000000u);
    counter = 3; /* wrapped */
    CHECK_OK(stockade_tick_clock_ticks(tick, &ticks));
    CHECK(ticks == ((uint64_t)1 << 32) + 3);
    CHECK_NULL_ARG(stockade_tick_clock_ticks(NULL, &ticks));
    CHECK_NULL_ARG(stockade_tick_clock_ticks(tick, NULL));
}

static void test_backoff(void) {
    stockade_backoff_config config = stockade_backoff_config_default();
    stockade_backoff_config got;
    stockade_config_error err;
    stockade_backoff *b = NULL;
    stockade_backoff_schedule *s = NULL;
    uint64_t ms = 0;
    uint32_t attempts = 99;

    CHECK(config.initial_delay_ms == 1000 && config.max_delay_ms == 30000);
    CHECK(config.max_elapsed_ms == 0 && config.max_attempts == 3);
    CHECK(config.backoff_factor == 2.0 && config.jitter == STOCKADE_JITTER_NONE);

    /* Invalid configs name the option; the error out-param is optional. */
    config.backoff_factor = 0.5;
    memset(&err, 0, sizeof err);
    CHECK_STATUS(stockade_backoff_init(backoff_mem, sizeof backoff_mem, &config, &err, &b),
                 STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 43);
    CHECK(strcmp(err.option_name, "backoff_factor") == 0);
    CHECK(strcmp(err.message, "invalid backoff_factor = 0.5: must be at least 1") == 0);
    /* The same error as numbers (what the no_std build fills). */
    CHECK(err.problem == STOCKADE_CONFIG_PROBLEM_TOO_SMALL && err.unit == STOCKADE_CONFIG_UNIT_FACTOR);
    CHECK(err.value_factor == 0.5 && err.limit_factor == 1.0 && err.value == 0 && err.other_option == 0);
    CHECK(strcmp(stockade_config_problem_str(err.problem), "must be at least the limit") == 0);
    CHECK(strcmp(stockade_config_problem_str(0), "unknown problem") == 0);
    CHECK_STATUS(stockade_backoff_init(backoff_mem, sizeof backoff_mem, &config, NULL, &b),
                 STOCKADE_STATUS_INVALID_CONFIG);
    config = stockade_backoff_config_default();
    config.max_attempts = 0;
    CHECK_STATUS(stockade_backoff_init(backoff_mem, sizeof backoff_mem, &config, &err, &b),
                 STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 40 && strcmp(err.option_name, "max_attempts") == 0);
    CHECK(strcmp(err.message, "invalid max_attempts = 0: must be at least 1") == 0);
    config = stockade_backoff_config_default();
    config.initial_delay_ms = 60000;
    CHECK_STATUS(stockade_backoff_init(backoff_mem, sizeof backoff_mem, &config, &err, &b),
                 STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(strcmp(err.message, "invalid initial_delay_ms = 60000: must not exceed max_delay_ms (= 30000)") == 0);
    CHECK(strcmp(err.option_name, "initial_delay_ms") == 0);
    CHECK(err.problem == STOCKADE_CONFIG_PROBLEM_EXCEEDS && err.unit == STOCKADE_CONFIG_UNIT_MILLISECONDS);
    CHECK(err.value == 60000 && err.limit == 30000 && err.other_option == 42);
    CHECK(strcmp(stockade_config_option_str(err.other_option), "max_delay_ms") == 0);
    config = stockade_backoff_config_default();
    config.jitter = 9;
    CHECK_STATUS(stockade_backoff_init(backoff_mem, sizeof backoff_mem, &config, &err, &b),
                 STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 46);
    config = stockade_backoff_config_default();
    config.backoff_factor = NAN;
    CHECK_STATUS(stockade_backoff_init(backoff_mem, sizeof backoff_mem, &config, &err, &b),
                 STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(strstr(err.message, "must be a finite number") != NULL);
    CHECK(b == NULL);

    /* NULL and storage paths. */
    config = stockade_backoff_config_default();
    CHECK_NULL_ARG(stockade_backoff_init(NULL, sizeof backoff_mem, &config, NULL, &b));
    CHECK_NULL_ARG(stockade_backoff_init(backoff_mem, sizeof backoff_mem, NULL, NULL, &b));
    CHECK_NULL_ARG(stockade_backoff_init(backoff_mem, sizeof backoff_mem, &config, NULL, NULL));
    CHECK_STATUS(stockade_backoff_init(backoff_mem, STOCKADE_BACKOFF_SIZE - 1, &config, NULL, &b),
                 STOCKADE_STATUS_STORAGE_TOO_SMALL);
    CHECK_STATUS(stockade_backoff_init(backoff_mem + 4, STOCKADE_BACKOFF_SIZE - 4, &config, NULL, &b),
                 STOCKADE_STATUS_STORAGE_TOO_SMALL);
    CHECK(b == NULL);

    config.max_attempts = 5;
    config.jitter = STOCKADE_JITTER_FULL;
    CHECK_OK(stockade_backoff_init(backoff_mem, sizeof backoff_mem, &config, &err, &b));
    CHECK_OK(stockade_backoff_config_get(b, &got));
    CHECK(got.max_attempts == 5 && got.jitter == STOCKADE_JITTER_FULL && got.initial_delay_ms == 1000);
    CHECK_NULL_ARG(stockade_backoff_config_get(NULL, &got));
    CHECK_NULL_ARG(stockade_backoff_config_get(b, NULL));

    /* Base delays (no jitter): 1, 2, 4, 8, 16, 30, 30 s. */
    CHECK_OK(stockade_backoff_delay_ms(b, 0, &ms));
    CHECK(ms == 1000);
    CHECK_OK(stockade_backoff_delay_ms(b, 3, &ms));
    CHECK(ms == 4000);
    CHECK_OK(stockade_backoff_delay_ms(b, UINT32_MAX, &ms));
    CHECK(ms == 30000);
    CHECK_NULL_ARG(stockade_backoff_delay_ms(NULL, 1, &ms));
    CHECK_NULL_ARG(stockade_backoff_delay_ms(b, 1, NULL));

    /* A schedule with full jitter: every delay in [0, base]; 4 retries. */
    CHECK_NULL_ARG(stockade_backoff_schedule_init(NULL, sizeof schedule_mem, b, 7, &s));
    CHECK_NULL_ARG(stockade_backoff_schedule_init(schedule_mem, sizeof schedule_mem, NULL, 7, &s));
    CHECK_NULL_ARG(stockade_backoff_schedule_init(schedule_mem, sizeof schedule_mem, b, 7, NULL));
    CHECK_STATUS(stockade_backoff_schedule_init(schedule_mem, 8, b, 7, &s), STOCKADE_STATUS_STORAGE_TOO_SMALL);
    CHECK_OK(stockade_backoff_schedule_init(schedule_mem, sizeof schedule_mem, b, 7, &s));
    {
        uint64_t elapsed = 0;
        int retries = 0;
        for (;;) {
            stockade_status st = stockade_backoff_schedule_next(s, elapsed, &ms);
            if (st == STOCKADE_STATUS_RETRIES_EXHAUSTED) break;
            CHECK(st == STOCKADE_STATUS_OK);
            if (st != STOCKADE_STATUS_OK || retries > 10) break;
            retries++;
            CHECK(ms <= 30000);
            elapsed += ms;
        }
        CHECK(retries == 4);
    }
    ms = 1234;
    CHECK_STATUS(stockade_backoff_schedule_next(s, 0, &ms), STOCKADE_STATUS_RETRIES_EXHAUSTED);
    CHECK(ms == 1234); /* untouched */
    CHECK_OK(stockade_backoff_schedule_attempts(s, &attempts));
    CHECK(attempts == 5);
    CHECK_NULL_ARG(stockade_backoff_schedule_attempts(NULL, &attempts));
    CHECK_NULL_ARG(stockade_backoff_schedule_attempts(s, NULL));
    CHECK_NULL_ARG(stockade_backoff_schedule_next(NULL, 0, &ms));
    CHECK_NULL_ARG(stockade_backoff_schedule_next(s, 0, NULL));

    /* A time budget stops the schedule before it is overrun. */
    config = stockade_backoff_config_default();
    config.max_attempts = 10;
    config.max_elapsed_ms = 2500;
    CHECK_OK(stockade_backoff_init(backoff_mem, sizeof backoff_mem, &config, NULL, &b));
    CHECK_OK(stockade_backoff_schedule_init(schedule_mem, sizeof schedule_mem, b, 0, &s));
    CHECK_OK(stockade_backoff_schedule_next(s, 0, &ms));
    CHECK(ms == 1000);
    CHECK_STATUS(stockade_backoff_schedule_next(s, 1000, &ms), STOCKADE_STATUS_RETRIES_EXHAUSTED);
}

static void test_deadlines(void) {
    uint64_t now = 1000000000u; /* 1 s */
    stockade_clock clock;
    stockade_timeout_config tc = stockade_timeout_config_default();
    stockade_config_error err;
    stockade_deadline d, never = stockade_deadline_never(), early;
    stockade_deadline_remaining rem;
    stockade_deadline_expiry exp;
    clock.now_ns = manual_now_ns;
    clock.user_data = &now;

    CHECK(tc.timeout_ms == 5000);
    CHECK_OK(stockade_timeout_config_deadline(&tc, &clock, &err, &d));
    CHECK(d.expires_at_ns == 6000000000u);
    rem = stockade_deadline_remaining_ms(d, &clock);
    CHECK_OK(rem.status);
    CHECK(rem.ms == 5000);
    now += 2000000000u;
    rem = stockade_deadline_remaining_ms(d, &clock);
    CHECK_OK(rem.status);
    CHECK(rem.ms == 3000);
    exp = stockade_deadline_is_expired(d, &clock);
    CHECK_OK(exp.status);
    CHECK(!exp.expired);
    now += 3000000000u - 1u; /* 1 ns before the deadline */
    exp = stockade_deadline_is_expired(d, &clock);
    CHECK_OK(exp.status);
    CHECK(!exp.expired);
    now += 1u; /* at the deadline: expired */
    exp = stockade_deadline_is_expired(d, &clock);
    CHECK_OK(exp.status);
    CHECK(exp.expired);
    rem = stockade_deadline_remaining_ms(d, &clock);
    CHECK_OK(rem.status);
    CHECK(rem.ms == 0);

    CHECK(never.expires_at_ns == UINT64_MAX);
    rem = stockade_deadline_remaining_ms(never, &clock);
    CHECK_OK(rem.status);
    CHECK(rem.ms == UINT64_MAX);
    exp = stockade_deadline_is_expired(never, &clock);
    CHECK_OK(exp.status);
    CHECK(!exp.expired);
    CHECK_OK(stockade_deadline_after(&clock, 0, &early));
    exp = stockade_deadline_is_expired(early, &clock);
    CHECK_OK(exp.status);
    CHECK(exp.expired);
    CHECK_OK(stockade_deadline_after(&clock, UINT64_MAX, &d));
    CHECK(d.expires_at_ns == UINT64_MAX); /* saturates at never */
    CHECK(stockade_deadline_min(never, early).expires_at_ns == early.expires_at_ns);
    CHECK(stockade_deadline_min(early, never).expires_at_ns == early.expires_at_ns);

    tc.timeout_ms = 0;
    CHECK_STATUS(stockade_timeout_config_deadline(&tc, &clock, &err, &d), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 60 && strcmp(err.option_name, "timeout_ms") == 0);
    CHECK(strcmp(err.message, "invalid timeout_ms = 0: must be at least 1 ms") == 0);
    CHECK_STATUS(stockade_timeout_config_deadline(&tc, &clock, NULL, &d), STOCKADE_STATUS_INVALID_CONFIG);
    tc.timeout_ms = 5;
    CHECK_NULL_ARG(stockade_timeout_config_deadline(NULL, &clock, NULL, &d));
    CHECK_NULL_ARG(stockade_timeout_config_deadline(&tc, NULL, NULL, &d));
    CHECK_NULL_ARG(stockade_timeout_config_deadline(&tc, &clock, NULL, NULL));
    CHECK_NULL_ARG(stockade_deadline_after(NULL, 1, &d));
    CHECK_NULL_ARG(stockade_deadline_after(&clock, 1, NULL));
    /* A NULL clock, or a clock without its callback: typed status; no time
     * left, and a deadline that could not be checked reads as expired. */
    rem = stockade_deadline_remaining_ms(d, NULL);
    CHECK_NULL_ARG(rem.status);
    CHECK(rem.ms == 0);
    exp = stockade_deadline_is_expired(never, NULL);
    CHECK_NULL_ARG(exp.status);
    CHECK(exp.expired);
    {
        stockade_clock no_callback = clock;
        no_callback.now_ns = NULL;
        rem = stockade_deadline_remaining_ms(d, &no_callback);
        CHECK_NULL_ARG(rem.status);
        CHECK(rem.ms == 0);
        exp = stockade_deadline_is_expired(never, &no_callback);
        CHECK_NULL_ARG(exp.status);
        CHECK(exp.expired);
    }
}

static STOCKADE_ALIGNED(STOCKADE_RETRY_BUDGET_ALIGN) unsigned char budget_mem[STOCKADE_RETRY_BUDGET_SIZE];

static void test_retry_budget(void) {
    uint64_t now = 0, after = 0;
    stockade_clock clock;
    stockade_retry_budget_config config = stockade_retry_budget_config_default();
    stockade_config_error err;
    stockade_retry_budget *b = NULL;
    uint32_t tokens = 0;
    int i;
    clock.now_ns = manual_now_ns;
    clock.user_data = &now;

    CHECK(config.ratio == 0.2 && config.min_retries_per_second == 10 && config.max_tokens == 100);
    config.max_tokens = 0;
    CHECK_STATUS(stockade_retry_budget_init(budget_mem, sizeof budget_mem, &config, &err, &b),
                 STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 52 && strcmp(err.option_name, "max_tokens") == 0);
    config.max_tokens = 3;
    config.ratio = -1.0;
    CHECK_STATUS(stockade_retry_budget_init(budget_mem, sizeof budget_mem, &config, NULL, &b),
                 STOCKADE_STATUS_INVALID_CONFIG);
    config.ratio = 0.5;
    CHECK_NULL_ARG(stockade_retry_budget_init(NULL, sizeof budget_mem, &config, NULL, &b));
    CHECK_NULL_ARG(stockade_retry_budget_init(budget_mem, sizeof budget_mem, NULL, NULL, &b));
    CHECK_NULL_ARG(stockade_retry_budget_init(budget_mem, sizeof budget_mem, &config, NULL, NULL));
    CHECK_STATUS(stockade_retry_budget_init(budget_mem, 8, &config, NULL, &b), STOCKADE_STATUS_STORAGE_TOO_SMALL);
    CHECK(b == NULL);
    CHECK_OK(stockade_retry_budget_init(budget_mem, sizeof budget_mem, &config, &err, &b));

    /* 3 tokens, then exhausted; the floor (10/s) earns one in 100 ms. */
    for (i = 0; i < 3; i++) CHECK_OK(stockade_retry_budget_try_withdraw(b, &clock, NULL));
    CHECK_STATUS(stockade_retry_budget_try_withdraw(b, &clock, &after), STOCKADE_STATUS_BUDGET_EXHAUSTED);
    CHECK(after == 100);
    CHECK_STATUS(stockade_retry_budget_try_withdraw(b, &clock, NULL), STOCKADE_STATUS_BUDGET_EXHAUSTED);
    now += 100000000u;
    CHECK_OK(stockade_retry_budget_available(b, &clock, &tokens));
    CHECK(tokens == 1);
    /* Two calls deposit 0.5 each: one more token. */
    CHECK_OK(stockade_retry_budget_deposit(b, &clock));
    CHECK_OK(stockade_retry_budget_deposit(b, &clock));
    CHECK_OK(stockade_retry_budget_available(b, &clock, &tokens));
    CHECK(tokens == 2);
    CHECK_OK(stockade_retry_budget_reset(b));
    CHECK_OK(stockade_retry_budget_available(b, &clock, &tokens));
    CHECK(tokens == 3);

    CHECK_NULL_ARG(stockade_retry_budget_deposit(NULL, &clock));
    CHECK_NULL_ARG(stockade_retry_budget_deposit(b, NULL));
    CHECK_NULL_ARG(stockade_retry_budget_try_withdraw(NULL, &clock, NULL));
    CHECK_NULL_ARG(stockade_retry_budget_try_withdraw(b, NULL, NULL));
    CHECK_NULL_ARG(stockade_retry_budget_available(NULL, &clock, &tokens));
    CHECK_NULL_ARG(stockade_retry_budget_available(b, NULL, &tokens));
    CHECK_NULL_ARG(stockade_retry_budget_available(b, &clock, NULL));
    CHECK_NULL_ARG(stockade_retry_budget_reset(NULL));

    /* Without a floor: exhausted means "not by time alone". */
    config.min_retries_per_second = 0;
    config.max_tokens = 1;
    CHECK_OK(stockade_retry_budget_init(budget_mem, sizeof budget_mem, &config, NULL, &b));
    CHECK_OK(stockade_retry_budget_try_withdraw(b, &clock, &after));
    CHECK_STATUS(stockade_retry_budget_try_withdraw(b, &clock, &after), STOCKADE_STATUS_BUDGET_EXHAUSTED);
    CHECK(after == UINT64_MAX);
}

int main(void) {
    test_status_and_version();
    test_retry_budget();
    test_clocks();
    test_backoff();
    test_deadlines();
    return check_report("test_core");
}
