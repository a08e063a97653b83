/* `release(user_data)` is called exactly once on every path of every
 * function that takes one: stockade_request_response_new,
 * stockade_timeout_execute and stockade_pipeline_execute. Each path gets its
 * own counter, so a path that forgets to release (or releases twice) is
 * named by its CHECK line. */
#define _POSIX_C_SOURCE 200809L
#include "stockade.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;

/* user_data is an int counting the release calls for it. */
static void count_release(void *user_data) {
    pthread_mutex_lock(&lock);
    ++*(int *)user_data;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static int released(int *counter) {
    int n;
    pthread_mutex_lock(&lock);
    n = *counter;
    pthread_mutex_unlock(&lock);
    return n;
}

/* Waits (watchdog: 10 s) until *counter is at least want; returns it. */
static int wait_released(int *counter, int want) {
    struct timespec until;
    int n;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&lock);
    while (*counter < want) {
        if (pthread_cond_timedwait(&changed, &lock, &until) == ETIMEDOUT) break;
    }
    n = *counter;
    pthread_mutex_unlock(&lock);
    return n;
}

/* A release that calls back into stockade: looks the name up (a lock held
 * around the release would deadlock here; the alarm in main fails it). */
static int reentrant_found = -1;
static void reentrant_release(void *user_data) {
    stockade_request_response *h = NULL;
    reentrant_found = stockade_request_response_get("c-release-rr", &h) == STOCKADE_STATUS_OK;
    stockade_request_response_free(h);
    count_release(user_data);
}

static stockade_status handler(const stockade_request *req, stockade_response *resp, void *user_data) {
    (void)req;
    (void)resp;
    (void)user_data;
    return STOCKADE_STATUS_OK;
}

static void test_request_response_new(void) {
    stockade_request_response_config c = stockade_request_response_config_default();
    stockade_request_response *rr = NULL, *dup = NULL;
    stockade_config_error err;
    int null_handler = 0, null_out = 0, bad_name = 0, bad_config = 0, taken = 0, ok = 0;

    CHECK_NULL_ARG(stockade_request_response_new(NULL, NULL, NULL, &null_handler, count_release, NULL, &dup));
    CHECK(released(&null_handler) == 1);
    CHECK_NULL_ARG(stockade_request_response_new(NULL, NULL, handler, &null_out, count_release, NULL, NULL));
    CHECK(released(&null_out) == 1);
    CHECK_STATUS(stockade_request_response_new("\xff", NULL, handler, &bad_name, count_release, NULL, &dup),
                 STOCKADE_STATUS_INVALID_ARGUMENT);
    CHECK(released(&bad_name) == 1);
    c.max_workers = 0;
    CHECK_STATUS(stockade_request_response_new(NULL, &c, handler, &bad_config, count_release, &err, &dup),
                 STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(released(&bad_config) == 1);
    CHECK(dup == NULL); /* out-parameters written only on success */

    CHECK_OK(stockade_request_response_new("c-release-rr", NULL, handler, &ok, count_release, NULL, &rr));
    CHECK_STATUS(stockade_request_response_new("c-release-rr", NULL, handler, &taken, count_release, NULL, &dup),
                 STOCKADE_STATUS_NAME_TAKEN);
    CHECK(released(&taken) == 1);
    taken = 0;
    CHECK_STATUS(stockade_request_response_new("c-release-rr", NULL, handler, &taken, reentrant_release, NULL, &dup),
                 STOCKADE_STATUS_NAME_TAKEN);
    CHECK(released(&taken) == 1 && reentrant_found == 1);
    CHECK(released(&ok) == 0); /* in use until the pattern is gone */
    CHECK_OK(stockade_request_response_dispose(rr));
    stockade_request_response_free(rr);
    CHECK(released(&ok) == 1);
    /* No path released twice. */
    CHECK(released(&null_handler) == 1 && released(&null_out) == 1 && released(&bad_name) == 1);
    CHECK(released(&bad_config) == 1 && released(&taken) == 1);
}

/* A callback held at a gate until the test opens it. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_changed = PTHREAD_COND_INITIALIZER;
static int gate_open;

static int gated_call(void *user_data) {
    (void)user_data;
    pthread_mutex_lock(&gate_lock);
    while (!gate_open) pthread_cond_wait(&gate_changed, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
    return 0;
}

static int ok_call(void *user_data) { (void)user_data; return 0; }
static int fail_call(void *user_data) { (void)user_data; return 3; }

static void test_timeout_execute(void) {
    stockade_timeout_config c = stockade_timeout_config_default();
    stockade_timeout *t = NULL, *quick = NULL, *gone = NULL;
    int null_timeout = 0, null_callback = 0, ok = 0, failed = 0, late = 0, disposed = 0;

    /* Calls that must finish in time get a generous timeout (under valgrind
     * the first call also starts a worker thread); only the late call's
     * timeout is short, and it is held at a gate, so it is late for sure. */
    c.timeout_ms = 60000;
    CHECK_OK(stockade_timeout_new(NULL, &c, NULL, &t));
    c.timeout_ms = 50;
    CHECK_OK(stockade_timeout_new(NULL, &c, NULL, &quick));
    CHECK_NULL_ARG(stockade_timeout_execute(NULL, ok_call, &null_timeout, count_release));
    CHECK(released(&null_timeout) == 1);
    CHECK_NULL_ARG(stockade_timeout_execute(t, NULL, &null_callback, count_release));
    CHECK(released(&null_callback) == 1);
    CHECK_OK(stockade_timeout_execute(t, ok_call, &ok, count_release));
    CHECK(wait_released(&ok, 1) == 1);
    CHECK_STATUS(stockade_timeout_execute(t, fail_call, &failed, count_release), STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK(wait_released(&failed, 1) == 1);
    /* Late: released by the worker once the callback returned, not before. */
    CHECK_STATUS(stockade_timeout_execute(quick, gated_call, &late, count_release), STOCKADE_STATUS_TIMED_OUT);
    CHECK(released(&late) == 0); /* still running: held at the gate */
    pthread_mutex_lock(&gate_lock);
    gate_open = 1;
    pthread_cond_broadcast(&gate_changed);
    pthread_mutex_unlock(&gate_lock);
    CHECK(wait_released(&late, 1) == 1);

    CHECK_OK(stockade_timeout_new(NULL, &c, NULL, &gone));
    CHECK_OK(stockade_timeout_dispose(gone));
    CHECK_STATUS(stockade_timeout_execute(gone, ok_call, &disposed, count_release), STOCKADE_STATUS_DISPOSED);
    CHECK(released(&disposed) == 1);
    stockade_timeout_free(gone);
    stockade_timeout_free(quick);
    stockade_timeout_free(t);
    CHECK(released(&ok) == 1 && released(&failed) == 1 && released(&late) == 1);
}

static void test_pipeline_execute(void) {
    stockade_breaker_config bc = stockade_breaker_config_default();
    stockade_breaker_handle *b = NULL;
    stockade_policy *p = NULL;
    stockade_pipeline *pipe = NULL;
    int null_pipeline = 0, null_callback = 0, ok = 0, failed = 0, refused = 0;

    bc.failure_threshold = 1;
    CHECK_OK(stockade_breaker_handle_new(NULL, &bc, NULL, &b));
    CHECK_OK(stockade_breaker_handle_as_policy(b, &p));
    CHECK_OK(stockade_pipeline_new((const stockade_policy *const *)&p, 1, &pipe));
    stockade_policy_free(p);

    CHECK_NULL_ARG(stockade_pipeline_execute(NULL, ok_call, &null_pipeline, count_release));
    CHECK(released(&null_pipeline) == 1);
    CHECK_NULL_ARG(stockade_pipeline_execute(pipe, NULL, &null_callback, count_release));
    CHECK(released(&null_callback) == 1);
    CHECK_OK(stockade_pipeline_execute(pipe, ok_call, &ok, count_release));
    CHECK(released(&ok) == 1);
    CHECK_STATUS(stockade_pipeline_execute(pipe, fail_call, &failed, count_release), STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK(released(&failed) == 1);
    /* The breaker is open now: the callback never runs. */
    CHECK_STATUS(stockade_pipeline_execute(pipe, ok_call, &refused, count_release), STOCKADE_STATUS_BREAKER_OPEN);
    CHECK(released(&refused) == 1);
    stockade_pipeline_free(pipe);
    stockade_breaker_handle_free(b);
}

int main(void) {
    alarm(60); /* watchdog: a deadlock fails the test instead of hanging it */
    test_request_response_new();
    test_timeout_execute();
    test_pipeline_execute();
    return check_report("test_release");
}
