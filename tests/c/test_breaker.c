/* Core-tier circuit breaker from C on caller storage: the state machine,
 * tokens reported once, twice, late; rejections; manual control; metrics;
 * every NULL and invalid-config path. A manual clock drives time. */
#include "stockade.h"

#include <stdint.h>
#include <string.h>

#include "check.h"

static uint64_t now_ns;
static uint64_t read_now(void *user_data) { (void)user_data; return now_ns; }
#define MS 1000000u

static STOCKADE_ALIGNED(STOCKADE_BREAKER_ALIGN) unsigned char mem[STOCKADE_BREAKER_SIZE];

static void test_config(void) {
    stockade_breaker_config c = stockade_breaker_config_default();
    stockade_config_error err;
    stockade_breaker *b = NULL;

    CHECK(c.failure_threshold == 5 && c.reset_timeout_ms == 60000 && c.half_open_timeout_ms == 30000);
    CHECK(c.monitor_interval_ms == 5000 && c.half_open_max_probes == 1);
    CHECK(c.half_open_successes_to_close == 0 && c.failure_rate_threshold == 0 && c.slow_call_threshold_ms == 0);

    c.failure_threshold = 0;
    CHECK_STATUS(stockade_breaker_init(mem, sizeof mem, &c, &err, &b), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 1 && strcmp(err.option_name, "failure_threshold") == 0);
    CHECK(strcmp(err.message, "invalid failure_threshold = 0: must be at least 1") == 0);
    CHECK_STATUS(stockade_breaker_init(mem, sizeof mem, &c, NULL, &b), STOCKADE_STATUS_INVALID_CONFIG);
    c = stockade_breaker_config_default();
    c.reset_timeout_ms = 0;
    CHECK_STATUS(stockade_breaker_init(mem, sizeof mem, &c, &err, &b), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 2);
    /* In C terms: the struct field and its milliseconds. */
    CHECK(strcmp(err.option_name, "reset_timeout_ms") == 0);
    CHECK(strcmp(err.message, "invalid reset_timeout_ms = 0: must be at least 1 ms") == 0);
    c.reset_timeout_ms = UINT64_MAX; /* printed as the number set, not as hours */
    CHECK_STATUS(stockade_breaker_init(mem, sizeof mem, &c, &err, &b), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 2 && err.problem == STOCKADE_CONFIG_PROBLEM_TOO_LARGE && err.value == UINT64_MAX);
    CHECK(strncmp(err.message, "invalid reset_timeout_ms = 18446744073709551615: must be at most ", 65) == 0);
    CHECK(strstr(err.message, " ms") != NULL && strstr(err.message, "h ") == NULL);
    c = stockade_breaker_config_default();
    c.half_open_timeout_ms = 0;
    CHECK_STATUS(stockade_breaker_init(mem, sizeof mem, &c, &err, &b), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(strcmp(err.message, "invalid half_open_timeout_ms = 0: must be at least 1 ms") == 0);
    c = stockade_breaker_config_default();
    c.failure_rate_threshold = 101;
    c.failure_rate_window_size = 10;
    c.failure_rate_minimum_calls = 5;
    CHECK_STATUS(stockade_breaker_init(mem, sizeof mem, &c, &err, &b), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 7);
    c.failure_rate_threshold = 50;
    c.failure_rate_minimum_calls = 11;
    CHECK_STATUS(stockade_breaker_init(mem, sizeof mem, &c, &err, &b), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 9);
    c = stockade_breaker_config_default();
    c.failure_threshold = 70000;
    CHECK_STATUS(stockade_breaker_init(mem, sizeof mem, &c, &err, &b), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 1 && strstr(err.message, "must be at most") != NULL);

    c = stockade_breaker_config_default();
    CHECK_NULL_ARG(stockade_breaker_init(NULL, sizeof mem, &c, NULL, &b));
    CHECK_NULL_ARG(stockade_breaker_init(mem, sizeof mem, NULL, NULL, &b));
    CHECK_NULL_ARG(stockade_breaker_init(mem, sizeof mem, &c, NULL, NULL));
    CHECK_STATUS(stockade_breaker_init(mem, STOCKADE_BREAKER_SIZE - 8, &c, NULL, &b),
                 STOCKADE_STATUS_STORAGE_TOO_SMALL);
    CHECK_STATUS(stockade_breaker_init(mem + 4, STOCKADE_BREAKER_SIZE - 4, &c, NULL, &b),
                 STOCKADE_STATUS_STORAGE_TOO_SMALL);
    {
        static STOCKADE_ALIGNED(8) unsigned char big[STOCKADE_BREAKER_SIZE + 8];
        CHECK_STATUS(stockade_breaker_init(big + 4, STOCKADE_BREAKER_SIZE, &c, NULL, &b),
                     STOCKADE_STATUS_STORAGE_MISALIGNED);
    }
    CHECK(b == NULL);
}

static void test_lifecycle(void) {
    stockade_clock clock = {read_now, NULL};
    stockade_breaker_config c = stockade_breaker_config_default();
    stockade_breaker *b = NULL;
    stockade_breaker_token tok, probe, stale;
    stockade_breaker_transition tr;
    stockade_breaker_state state = STOCKADE_BREAKER_STATE_DISABLED;
    stockade_breaker_metrics m;
    uint64_t after = 0;
    int i;

    c.failure_threshold = 3;
    c.reset_timeout_ms = 1000;
    c.half_open_timeout_ms = 500;
    now_ns = 0;
    CHECK_OK(stockade_breaker_init(mem, sizeof mem, &c, NULL, &b));
    CHECK((void *)b == (void *)mem);
    CHECK_OK(stockade_breaker_get_state(b, &state));
    CHECK(state == STOCKADE_BREAKER_STATE_CLOSED);

    /* Three failures open it; the third report returns the transition. */
    for (i = 0; i < 3; i++) {
        memset(&tr, 0xff, sizeof tr);
        CHECK_OK(stockade_breaker_acquire(b, &clock, &tok, &tr, NULL));
        CHECK(!tr.happened && tok.used == 0);
        stale = tok; /* a copy, never reported through */
        CHECK_OK(stockade_breaker_report(b, &tok, STOCKADE_OUTCOME_FAILURE, &clock, &tr));
        CHECK(tr.happened == (i == 2) && tok.used == 1);
        if (i == 0) {
            /* The same token again: refused, nothing counted. */
            CHECK_STATUS(stockade_breaker_report(b, &tok, STOCKADE_OUTCOME_FAILURE, &clock, &tr),
                         STOCKADE_STATUS_TOKEN_ALREADY_USED);
            CHECK_OK(stockade_breaker_get_metrics(b, &clock, &m));
            CHECK(m.consecutive_failures == 1 && m.failures == 1);
        }
    }
    CHECK(tr.from == STOCKADE_BREAKER_STATE_CLOSED && tr.to == STOCKADE_BREAKER_STATE_OPEN);
    CHECK_OK(stockade_breaker_get_state(b, &state));
    CHECK(state == STOCKADE_BREAKER_STATE_OPEN);

    /* Open: rejected with the time left; the out-token is untouched. */
    now_ns = 400 * MS;
    memset(&tok, 0xab, sizeof tok);
    probe = tok;
    CHECK_STATUS(stockade_breaker_acquire(b, &clock, &tok, NULL, &after), STOCKADE_STATUS_BREAKER_OPEN);
    CHECK(after == 600);
    CHECK(memcmp(&tok, &probe, sizeof tok) == 0);
    CHECK_STATUS(stockade_breaker_acquire(b, &clock, &tok, NULL, NULL), STOCKADE_STATUS_BREAKER_OPEN);

    /* A verdict from before the transition is stale and changes nothing. */
    CHECK_STATUS(stockade_breaker_report(b, &stale, STOCKADE_OUTCOME_SUCCESS, &clock, NULL),
                 STOCKADE_STATUS_TOKEN_STALE);

    /* After reset_timeout: one probe (half-open), a second caller is refused. */
    now_ns = 1000 * MS;
    CHECK_OK(stockade_breaker_acquire(b, &clock, &probe, &tr, NULL));
    CHECK(tr.happened && tr.from == STOCKADE_BREAKER_STATE_OPEN && tr.to == STOCKADE_BREAKER_STATE_HALF_OPEN);
    CHECK_STATUS(stockade_breaker_acquire(b, &clock, &tok, NULL, &after), STOCKADE_STATUS_BREAKER_HALF_OPEN_FULL);
    CHECK(after <= 500);

    /* The probe succeeds; reporting it (or a copy) again is refused. */
    stale = probe;
    CHECK_OK(stockade_breaker_report(b, &probe, STOCKADE_OUTCOME_SUCCESS, &clock, &tr));
    CHECK_STATUS(stockade_breaker_report(b, &probe, STOCKADE_OUTCOME_SUCCESS, &clock, &tr),
                 STOCKADE_STATUS_TOKEN_ALREADY_USED);
    CHECK_STATUS(stockade_breaker_report(b, &stale, STOCKADE_OUTCOME_SUCCESS, &clock, &tr),
                 STOCKADE_STATUS_TOKEN_ALREADY_USED);
    CHECK_STATUS(stockade_breaker_report(b, &probe, STOCKADE_OUTCOME_FAILURE, &clock, &tr),
                 STOCKADE_STATUS_TOKEN_ALREADY_USED);
    CHECK_OK(stockade_breaker_get_metrics(b, &clock, &m));
    CHECK(m.state == STOCKADE_BREAKER_STATE_HALF_OPEN && m.probe_successes == 1 && m.probes_in_flight == 0);
    CHECK(m.stale_verdicts >= 1);

    /* The round ends with a success: the next acquire closes the circuit. */
    now_ns = 1500 * MS;
    CHECK_OK(stockade_breaker_acquire(b, &clock, &tok, &tr, NULL));
    CHECK(tr.happened && tr.to == STOCKADE_BREAKER_STATE_CLOSED);
    CHECK_STATUS(stockade_breaker_report(b, &tok, 3, &clock, NULL), STOCKADE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(stockade_breaker_report(b, &tok, 255, &clock, NULL), STOCKADE_STATUS_INVALID_ARGUMENT);
    CHECK(tok.used == 0);
    CHECK_OK(stockade_breaker_report(b, &tok, STOCKADE_OUTCOME_IGNORED, &clock, NULL));

    CHECK_OK(stockade_breaker_get_metrics(b, &clock, &m));
    CHECK(m.state == STOCKADE_BREAKER_STATE_CLOSED && m.failures == 3 && m.rejections == 3);
    CHECK(m.state_changes == 3 && !m.has_window && m.last_transition_ns == 1500 * MS);

    /* Manual control. */
    CHECK_OK(stockade_breaker_force_open(b, &clock, &tr));
    CHECK(tr.happened && tr.to == STOCKADE_BREAKER_STATE_FORCED_OPEN);
    now_ns += 3600000 * (uint64_t)MS;
    CHECK_STATUS(stockade_breaker_acquire(b, &clock, &tok, NULL, &after), STOCKADE_STATUS_BREAKER_OPEN);
    CHECK(after == UINT64_MAX);
    CHECK_OK(stockade_breaker_disable(b, &clock, NULL));
    CHECK_OK(stockade_breaker_acquire(b, &clock, &tok, NULL, NULL));
    CHECK_OK(stockade_breaker_report(b, &tok, STOCKADE_OUTCOME_FAILURE, &clock, NULL));
    CHECK_OK(stockade_breaker_trip(b, &clock, &tr));
    CHECK(tr.to == STOCKADE_BREAKER_STATE_OPEN);
    CHECK_OK(stockade_breaker_reset(b, &clock, &tr));
    CHECK(tr.from == STOCKADE_BREAKER_STATE_OPEN && tr.to == STOCKADE_BREAKER_STATE_CLOSED);

    CHECK(strcmp(stockade_breaker_state_str(STOCKADE_BREAKER_STATE_HALF_OPEN), "half_open") == 0);
    CHECK(strcmp(stockade_breaker_state_str(9), "unknown") == 0);

    /* NULL paths. */
    {
        stockade_clock bad = {NULL, NULL};
        CHECK_NULL_ARG(stockade_breaker_acquire(NULL, &clock, &tok, NULL, NULL));
        CHECK_NULL_ARG(stockade_breaker_acquire(b, NULL, &tok, NULL, NULL));
        CHECK_NULL_ARG(stockade_breaker_acquire(b, &bad, &tok, NULL, NULL));
        CHECK_NULL_ARG(stockade_breaker_acquire(b, &clock, NULL, NULL, NULL));
        CHECK_NULL_ARG(stockade_breaker_report(NULL, &tok, 0, &clock, NULL));
        CHECK_NULL_ARG(stockade_breaker_report(b, NULL, 0, &clock, NULL));
        CHECK_NULL_ARG(stockade_breaker_report(b, &tok, 0, NULL, NULL));
        CHECK_NULL_ARG(stockade_breaker_get_state(NULL, &state));
        CHECK_NULL_ARG(stockade_breaker_get_state(b, NULL));
        CHECK_NULL_ARG(stockade_breaker_get_metrics(NULL, &clock, &m));
        CHECK_NULL_ARG(stockade_breaker_get_metrics(b, NULL, &m));
        CHECK_NULL_ARG(stockade_breaker_get_metrics(b, &clock, NULL));
        CHECK_NULL_ARG(stockade_breaker_trip(NULL, &clock, NULL));
        CHECK_NULL_ARG(stockade_breaker_trip(b, NULL, NULL));
        CHECK_NULL_ARG(stockade_breaker_reset(NULL, &clock, NULL));
        CHECK_NULL_ARG(stockade_breaker_force_open(NULL, &clock, NULL));
        CHECK_NULL_ARG(stockade_breaker_disable(NULL, &clock, NULL));
    }
}

static void test_failure_rate_and_slow_calls(void) {
    stockade_clock clock = {read_now, NULL};
    stockade_breaker_config c = stockade_breaker_config_default();
    stockade_breaker *b = NULL;
    stockade_breaker_token tok;
    stockade_breaker_metrics m;
    stockade_breaker_state state;
    int i;

    c.failure_threshold = 100;
    c.failure_rate_threshold = 50;
    c.failure_rate_window_size = 10;
    c.failure_rate_minimum_calls = 10;
    c.slow_call_threshold_ms = 100;
    now_ns = 0;
    CHECK_OK(stockade_breaker_init(mem, sizeof mem, &c, NULL, &b));
    /* Alternate fast successes and slow successes (slow = failure). */
    for (i = 0; i < 10; i++) {
        CHECK_OK(stockade_breaker_acquire(b, &clock, &tok, NULL, NULL));
        CHECK(tok.timed == 1 && tok.started_at_ns == now_ns);
        now_ns += (i % 2 ? 150 : 10) * (uint64_t)MS;
        CHECK_OK(stockade_breaker_report(b, &tok, STOCKADE_OUTCOME_SUCCESS, &clock, NULL));
    }
    CHECK_OK(stockade_breaker_get_metrics(b, &clock, &m));
    CHECK(m.slow_calls == 5);
    CHECK_OK(stockade_breaker_get_state(b, &state));
    CHECK(state == STOCKADE_BREAKER_STATE_OPEN);
}

/* The protected call for stockade_breaker_call: counts its runs, returns
 * the value user_data points to (0: success). */
static int call_runs;
static int protected_call(void *user_data) {
    call_runs++;
    return *(const int *)user_data;
}

static void test_call(void) {
    stockade_clock clock = {read_now, NULL};
    stockade_breaker_config c = stockade_breaker_config_default();
    stockade_breaker *b = NULL;
    stockade_breaker_metrics m;
    stockade_breaker_token tok;
    int ok = 0, failed = 7, result = -1, i;
    uint64_t after = 0;

    c.failure_threshold = 3;
    c.reset_timeout_ms = 1000;
    now_ns = 0;
    call_runs = 0;
    CHECK_OK(stockade_breaker_init(mem, sizeof mem, &c, NULL, &b));
    /* A success: runs, reports, hands back the result. */
    CHECK_OK(stockade_breaker_call(b, &clock, protected_call, &ok, &result, &after));
    CHECK(call_runs == 1 && result == 0);
    /* Failures (any non-zero result) count once each: three open it. */
    for (i = 0; i < 3; i++) {
        CHECK_OK(stockade_breaker_call(b, &clock, protected_call, &failed, &result, NULL));
        CHECK(result == 7);
    }
    CHECK_OK(stockade_breaker_get_metrics(b, &clock, &m));
    CHECK(m.state == STOCKADE_BREAKER_STATE_OPEN && m.failures == 3);
    /* Open: the call does not run; retry_after_ms as acquire says. */
    now_ns += 400 * (uint64_t)MS;
    result = -1;
    CHECK_STATUS(stockade_breaker_call(b, &clock, protected_call, &ok, &result, &after), STOCKADE_STATUS_BREAKER_OPEN);
    CHECK(call_runs == 4 && result == -1 && after == 600);
    CHECK_STATUS(stockade_breaker_call(b, &clock, protected_call, &ok, NULL, NULL), STOCKADE_STATUS_BREAKER_OPEN);
    /* After the reset timeout the call is the half-open probe; its success
     * is reported (the breaker stays half-open until the round ends). */
    now_ns += 600 * (uint64_t)MS;
    CHECK_OK(stockade_breaker_call(b, &clock, protected_call, &ok, NULL, NULL));
    CHECK(call_runs == 5);
    CHECK_OK(stockade_breaker_get_metrics(b, &clock, &m));
    CHECK(m.state == STOCKADE_BREAKER_STATE_HALF_OPEN && m.probes_in_flight == 0 && m.probe_successes == 1);
    /* The probe slot was freed by the report: another acquire is admitted. */
    CHECK_OK(stockade_breaker_acquire(b, &clock, &tok, NULL, NULL));
    CHECK_OK(stockade_breaker_report(b, &tok, STOCKADE_OUTCOME_IGNORED, &clock, NULL));
    /* NULL paths: nothing runs. */
    {
        stockade_clock bad = {NULL, NULL};
        CHECK_NULL_ARG(stockade_breaker_call(NULL, &clock, protected_call, &ok, NULL, NULL));
        CHECK_NULL_ARG(stockade_breaker_call(b, NULL, protected_call, &ok, NULL, NULL));
        CHECK_NULL_ARG(stockade_breaker_call(b, &bad, protected_call, &ok, NULL, NULL));
        CHECK_NULL_ARG(stockade_breaker_call(b, &clock, NULL, &ok, NULL, NULL));
        CHECK(call_runs == 5);
    }
}

int main(void) {
    test_config();
    test_call();
    test_lifecycle();
    test_failure_rate_and_slow_calls();
    return check_report("test_breaker");
}
