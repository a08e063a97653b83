/* stockade_prometheus_write: the Prometheus text of every registered
 * handle, parsed line by line, its values checked after a few calls; the
 * size query, BUFFER_TOO_SMALL, NULL checks, escaping, and what is not
 * written (anonymous handles, disposed ones). */
#include "stockade.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static int ok_call(void *user_data) { (void)user_data; return 0; }
static int fail_call(void *user_data) { (void)user_data; return 1; }

/* The whole text, in a buffer the caller frees (NULL on failure). */
static char *scrape(size_t *len_out) {
    size_t needed = 0, written = 0;
    char *buf;
    int tries;
    for (tries = 0; tries < 10; tries++) {
        stockade_status st = stockade_prometheus_write(NULL, 0, &needed);
        CHECK_STATUS(st, STOCKADE_STATUS_BUFFER_TOO_SMALL);
        if (st != STOCKADE_STATUS_BUFFER_TOO_SMALL) return NULL;
        buf = malloc(needed);
        if (buf == NULL) return NULL;
        st = stockade_prometheus_write(buf, needed, &written);
        if (st == STOCKADE_STATUS_OK) {
            CHECK(written + 1 == needed);
            CHECK(buf[written] == '\0' && strlen(buf) == written);
            if (len_out) *len_out = written;
            return buf;
        }
        free(buf); /* the registry grew in between: ask again */
        CHECK_STATUS(st, STOCKADE_STATUS_BUFFER_TOO_SMALL);
    }
    return NULL;
}

/* The value of the sample whose line starts with `series` followed by a
 * space (the sample's name and labels exactly as written), or -1 if there
 * is none; a series written twice counts as a failure. */
static long long sample(const char *text, const char *series) {
    size_t n = strlen(series);
    const char *line = text;
    long long found = -1;
    int times = 0;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > n && strncmp(line, series, n) == 0 && line[n] == ' ') {
            char *stop = NULL;
            found = strtoll(line + n + 1, &stop, 10);
            CHECK(stop == line + len); /* an integer, then the line's end */
            times++;
        }
        if (!end) break;
        line = end + 1;
    }
    CHECK(times <= 1);
    return found;
}

/* How many lines are exactly `want`. */
static int lines_equal(const char *text, const char *want) {
    size_t n = strlen(want);
    const char *line = text;
    int count = 0;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len == n && strncmp(line, want, n) == 0) count++;
        if (!end) break;
        line = end + 1;
    }
    return count;
}

/* Every line is a comment (# HELP / # TYPE) or a sample `name{...} value`
 * whose family was typed just before; each family is typed once. */
static void check_structure(const char *text) {
    char family[256] = "";
    char typed[64][128];
    int ntyped = 0, i;
    const char *line = text;
    CHECK(text[0] != '\0');
    CHECK(text[strlen(text) - 1] == '\n');
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > 7 && strncmp(line, "# TYPE ", 7) == 0) {
            const char *name = line + 7;
            const char *sp = memchr(name, ' ', len - 7);
            size_t nlen = sp ? (size_t)(sp - name) : 0;
            CHECK(sp != NULL && nlen < sizeof family);
            if (sp && nlen < sizeof family) {
                memcpy(family, name, nlen);
                family[nlen] = '\0';
                size_t rest = len - (size_t)(sp - line);
                CHECK((rest == 8 && strncmp(sp, " counter", 8) == 0) ||
                      (rest == 6 && strncmp(sp, " gauge", 6) == 0));
                for (i = 0; i < ntyped; i++) CHECK(strcmp(typed[i], family) != 0);
                if (ntyped < 64 && nlen < 128) strcpy(typed[ntyped++], family);
            }
        } else if (len > 7 && strncmp(line, "# HELP ", 7) == 0) {
            /* the help text */
        } else {
            size_t flen = strlen(family);
            CHECK(flen > 0 && len > flen && strncmp(line, family, flen) == 0 && line[flen] == '{');
            CHECK(memchr(line, '}', len) != NULL);
        }
        if (!end) break;
        line = end + 1;
    }
}

int main(void) {
    stockade_breaker_config bc = stockade_breaker_config_default();
    stockade_limiter_config lc = stockade_limiter_config_default();
    stockade_bulkhead_config kc = stockade_bulkhead_config_default();
    stockade_breaker_handle *breaker = NULL, *anon = NULL, *odd = NULL;
    stockade_limiter_handle *limiter = NULL;
    stockade_bulkhead_handle *bulkhead = NULL;
    stockade_bulkhead_permit *permit = NULL;
    char small[8];
    size_t written = 12345, len = 0;
    char *text;
    int i;

    /* NULL checks: nothing is written. */
    CHECK_NULL_ARG(stockade_prometheus_write(NULL, 0, NULL));
    CHECK_NULL_ARG(stockade_prometheus_write(small, sizeof small, NULL));
    CHECK_NULL_ARG(stockade_prometheus_write(NULL, 16, &written));
    CHECK(written == 12345);

    bc.failure_threshold = 2;
    CHECK_OK(stockade_breaker_handle_new("c-prom-db", &bc, NULL, &breaker));
    CHECK_OK(stockade_breaker_handle_new(NULL, &bc, NULL, &anon)); /* not registered */
    CHECK_OK(stockade_breaker_handle_new("c-prom \"q\" \\ x", &bc, NULL, &odd));
    lc.requests_per_period = 2;
    lc.period_ms = 3600u * 1000u;
    lc.max_queue_size = 0;
    CHECK_OK(stockade_limiter_handle_new("c-prom-api", &lc, NULL, &limiter));
    kc.max_concurrent = 2;
    CHECK_OK(stockade_bulkhead_handle_new("c-prom-pool", &kc, NULL, &bulkhead));

    /* A few calls. */
    for (i = 0; i < 3; i++) CHECK_OK(stockade_breaker_handle_execute(breaker, ok_call, NULL));
    for (i = 0; i < 2; i++)
        CHECK_STATUS(stockade_breaker_handle_execute(breaker, fail_call, NULL), STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK_STATUS(stockade_breaker_handle_execute(breaker, ok_call, NULL), STOCKADE_STATUS_BREAKER_OPEN);
    CHECK_OK(stockade_breaker_handle_execute(anon, ok_call, NULL));
    for (i = 0; i < 2; i++) CHECK_OK(stockade_limiter_handle_execute(limiter, ok_call, NULL));
    CHECK_STATUS(stockade_limiter_handle_execute(limiter, ok_call, NULL), STOCKADE_STATUS_RATE_LIMITED);
    CHECK_OK(stockade_bulkhead_handle_execute(bulkhead, ok_call, NULL));
    CHECK_OK(stockade_bulkhead_handle_try_acquire(bulkhead, &permit)); /* one in flight */

    /* Too small: the size needed, the buffer untouched. */
    memset(small, 'x', sizeof small);
    CHECK_STATUS(stockade_prometheus_write(small, sizeof small, &written), STOCKADE_STATUS_BUFFER_TOO_SMALL);
    CHECK(written > sizeof small);
    for (i = 0; i < (int)sizeof small; i++) CHECK(small[i] == 'x');

    text = scrape(&len);
    CHECK(text != NULL);
    if (text != NULL) {
        check_structure(text);
        /* Exactly the size reported: one byte less is too small. */
        {
            char *exact = malloc(len + 1);
            size_t got = 0;
            CHECK(exact != NULL);
            if (exact) {
                CHECK_STATUS(stockade_prometheus_write(exact, len, &got), STOCKADE_STATUS_BUFFER_TOO_SMALL);
                CHECK(got == len + 1);
                free(exact);
            }
        }
        CHECK(sample(text, "stockade_circuit_breaker_calls_total{stockade_pattern_name=\"c-prom-db\","
                           "stockade_outcome=\"success\"}") == 3);
        CHECK(sample(text, "stockade_circuit_breaker_calls_total{stockade_pattern_name=\"c-prom-db\","
                           "stockade_outcome=\"failure\"}") == 2);
        CHECK(sample(text, "stockade_circuit_breaker_calls_total{stockade_pattern_name=\"c-prom-db\","
                           "stockade_outcome=\"rejected\"}") == 1);
        CHECK(sample(text, "stockade_circuit_breaker_calls_total{stockade_pattern_name=\"c-prom-db\","
                           "stockade_outcome=\"timeout\"}") == 0);
        CHECK(sample(text, "stockade_circuit_breaker_calls_total{stockade_pattern_name=\"c-prom-db\","
                           "stockade_outcome=\"ignored\"}") == 0);
        CHECK(sample(text, "stockade_circuit_breaker_state{stockade_pattern_name=\"c-prom-db\","
                           "stockade_circuit_breaker_state=\"open\"}") == 1);
        CHECK(sample(text, "stockade_circuit_breaker_state{stockade_pattern_name=\"c-prom-db\","
                           "stockade_circuit_breaker_state=\"closed\"}") == 0);
        CHECK(sample(text, "stockade_circuit_breaker_retries_total{stockade_pattern_name=\"c-prom-db\"}") == 0);
        CHECK(sample(text, "stockade_circuit_breaker_fallback_decisions_total{stockade_pattern_name=\"c-prom-db\"}") == 0);
        /* The label value escaped: \" and \\ . */
        CHECK(sample(text, "stockade_circuit_breaker_state{stockade_pattern_name=\"c-prom \\\"q\\\" \\\\ x\","
                           "stockade_circuit_breaker_state=\"closed\"}") == 1);
        CHECK(sample(text, "stockade_rate_limiter_calls_total{stockade_pattern_name=\"c-prom-api\","
                           "stockade_outcome=\"success\"}") == 2);
        CHECK(sample(text, "stockade_rate_limiter_calls_total{stockade_pattern_name=\"c-prom-api\","
                           "stockade_outcome=\"rejected\"}") == 1);
        CHECK(sample(text, "stockade_bulkhead_in_flight{stockade_pattern_name=\"c-prom-pool\"}") == 1);
        CHECK(sample(text, "stockade_bulkhead_queue_depth{stockade_pattern_name=\"c-prom-pool\"}") == 0);
        CHECK(sample(text, "stockade_bulkhead_calls_total{stockade_pattern_name=\"c-prom-pool\","
                           "stockade_outcome=\"success\"}") == 1);
        CHECK(lines_equal(text, "# TYPE stockade_circuit_breaker_calls_total counter") == 1);
        CHECK(lines_equal(text, "# TYPE stockade_circuit_breaker_state gauge") == 1);
        CHECK(lines_equal(text, "# TYPE stockade_bulkhead_in_flight gauge") == 1);
        CHECK(lines_equal(text, "# HELP stockade_rate_limiter_calls_total "
                                "Calls of a rate_limiter that finished, by outcome") == 1);
        /* The anonymous breaker is in no registry (it made a call: the
         * only breaker with one success would be it). */
        CHECK(strstr(text, "stockade_pattern_name=\"\"") == NULL);
        /* Events are not counted in C. */
        CHECK(strstr(text, "stockade_events") == NULL);
        free(text);
    }

    /* The values move with the patterns; a disposed one leaves the text. */
    CHECK_OK(stockade_bulkhead_permit_release(permit));
    stockade_bulkhead_permit_free(permit);
    CHECK_OK(stockade_breaker_handle_dispose(breaker));
    text = scrape(NULL);
    CHECK(text != NULL);
    if (text != NULL) {
        check_structure(text);
        CHECK(sample(text, "stockade_bulkhead_in_flight{stockade_pattern_name=\"c-prom-pool\"}") == 0);
        CHECK(strstr(text, "\"c-prom-db\"") == NULL);
        CHECK(sample(text, "stockade_rate_limiter_calls_total{stockade_pattern_name=\"c-prom-api\","
                           "stockade_outcome=\"rejected\"}") == 1);
        free(text);
    }

    CHECK_OK(stockade_breaker_handle_dispose(odd));
    CHECK_OK(stockade_limiter_handle_dispose(limiter));
    CHECK_OK(stockade_bulkhead_handle_dispose(bulkhead));
    /* Nothing registered: an empty text, the NUL alone. */
    CHECK_OK(stockade_prometheus_write(small, sizeof small, &written));
    CHECK(written == 0 && small[0] == '\0');

    stockade_breaker_handle_free(breaker);
    stockade_breaker_handle_free(anon);
    stockade_breaker_handle_free(odd);
    stockade_limiter_handle_free(limiter);
    stockade_bulkhead_handle_free(bulkhead);
    return check_report("test_prometheus");
}
