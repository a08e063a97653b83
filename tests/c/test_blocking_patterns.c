/* The blocking tier's other patterns from C: limiter, bulkhead, retry,
 * timeout (returns on time; the late callback's data freed through the
 * release callback), request-response, run-time pipelines, listeners,
 * metrics, registries, dispose, every NULL and invalid-config path. */
#define _POSIX_C_SOURCE 200809L
#include "stockade.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static int ok_call(void *user_data) { ++*(int *)user_data; return 0; }
static int fail_call(void *user_data) { ++*(int *)user_data; return 7; }

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- events ------------------------------------------------------------ */
typedef struct {
    int count[8];
    uint32_t last_attempt;
    uint64_t last_retry_after_ms;
    stockade_breaker_state last_to;
    char last_name[32];
} events;

static void on_event(const stockade_event *e, void *user_data) {
    events *ev = (events *)user_data;
    int k = e->kind == STOCKADE_EVENT_KIND_OTHER ? 7 : (int)e->kind;
    __atomic_fetch_add(&ev->count[k], 1, __ATOMIC_SEQ_CST);
    if (e->kind == STOCKADE_EVENT_KIND_RETRY) ev->last_attempt = e->attempt;
    if (e->kind == STOCKADE_EVENT_KIND_REJECTED) ev->last_retry_after_ms = e->retry_after_ms;
    if (e->kind == STOCKADE_EVENT_KIND_STATE_CHANGED) ev->last_to = e->to;
    strncpy(ev->last_name, e->name, sizeof ev->last_name - 1);
}

/* ---- breaker: metrics, listeners, policy -------------------------------- */
static void test_breaker_extras(void) {
    stockade_breaker_config c = stockade_breaker_config_default();
    stockade_breaker_handle *b = NULL;
    stockade_metrics m;
    stockade_policy *p = NULL;
    events ev;
    uint64_t id = 0;
    int calls = 0;
    memset(&ev, 0, sizeof ev);
    c.failure_threshold = 1;
    CHECK_OK(stockade_breaker_handle_new("c-bp-breaker", &c, NULL, &b));
    CHECK_OK(stockade_breaker_handle_subscribe(b, on_event, &ev, &id));
    CHECK_STATUS(stockade_breaker_handle_execute(b, fail_call, &calls), STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK_STATUS(stockade_breaker_handle_execute(b, ok_call, &calls), STOCKADE_STATUS_BREAKER_OPEN);
    CHECK(ev.count[STOCKADE_EVENT_KIND_STATE_CHANGED] == 1);
    CHECK(ev.last_to == STOCKADE_BREAKER_STATE_OPEN);
    CHECK(ev.count[STOCKADE_EVENT_KIND_REJECTED] == 1);
    CHECK(ev.last_retry_after_ms > 0);
    CHECK(strcmp(ev.last_name, "c-bp-breaker") == 0);
    CHECK_OK(stockade_breaker_handle_metrics(b, &m));
    CHECK(m.calls == 2 && m.failures == 1 && m.rejections == 1);
    CHECK(m.state == STOCKADE_BREAKER_STATE_OPEN);
    CHECK_OK(stockade_breaker_handle_unsubscribe(b, id));
    CHECK_STATUS(stockade_breaker_handle_unsubscribe(b, id), STOCKADE_STATUS_NOT_FOUND);
    CHECK_STATUS(stockade_breaker_handle_execute(b, ok_call, &calls), STOCKADE_STATUS_BREAKER_OPEN);
    CHECK(ev.count[STOCKADE_EVENT_KIND_REJECTED] == 1); /* unsubscribed */
    CHECK_OK(stockade_breaker_handle_as_policy(b, &p));

    CHECK_NULL_ARG(stockade_breaker_handle_metrics(NULL, &m));
    CHECK_NULL_ARG(stockade_breaker_handle_metrics(b, NULL));
    CHECK_NULL_ARG(stockade_breaker_handle_subscribe(NULL, on_event, &ev, &id));
    CHECK_NULL_ARG(stockade_breaker_handle_subscribe(b, NULL, &ev, &id));
    CHECK_NULL_ARG(stockade_breaker_handle_subscribe(b, on_event, &ev, NULL));
    CHECK_NULL_ARG(stockade_breaker_handle_unsubscribe(NULL, id));
    CHECK_NULL_ARG(stockade_breaker_handle_as_policy(NULL, &p));
    CHECK_NULL_ARG(stockade_breaker_handle_as_policy(b, NULL));
    CHECK_OK(stockade_breaker_handle_dispose(b));
    stockade_policy_free(p);
    stockade_policy_free(NULL);
    stockade_breaker_handle_free(b);
}

/* ---- limiter ------------------------------------------------------------ */
static void test_limiter(void) {
    stockade_limiter_config c = stockade_limiter_config_default();
    stockade_config_error err;
    stockade_limiter_handle *l = NULL, *same = NULL, *dup = NULL;
    stockade_metrics m;
    stockade_policy *p = NULL;
    events ev;
    uint64_t id = 0;
    int calls = 0;
    memset(&ev, 0, sizeof ev);

    c.requests_per_period = 0;
    CHECK_STATUS(stockade_limiter_handle_new(NULL, &c, &err, &l), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 20);
    CHECK(strcmp(err.option_name, "requests_per_period") == 0);
    c.requests_per_period = 3;
    c.period_ms = 60000;
    c.queue_timeout_ms = 0; /* never wait */
    CHECK_OK(stockade_limiter_handle_new("c-bp-limiter", &c, &err, &l));
    CHECK_STATUS(stockade_limiter_handle_new("c-bp-limiter", &c, NULL, &dup), STOCKADE_STATUS_NAME_TAKEN);
    CHECK_OK(stockade_limiter_handle_get("c-bp-limiter", &same));
    CHECK_STATUS(stockade_limiter_handle_get("c-bp-none", &dup), STOCKADE_STATUS_NOT_FOUND);
    CHECK_OK(stockade_limiter_handle_subscribe(l, on_event, &ev, &id));

    CHECK_OK(stockade_limiter_handle_try_acquire(l, 1));
    CHECK_OK(stockade_limiter_handle_acquire(same, 1, 0));
    CHECK_OK(stockade_limiter_handle_execute(l, ok_call, &calls));
    CHECK(calls == 1);
    CHECK_STATUS(stockade_limiter_handle_try_acquire(l, 1), STOCKADE_STATUS_RATE_LIMITED);
    CHECK_STATUS(stockade_limiter_handle_acquire(l, 1, 0), STOCKADE_STATUS_RATE_LIMITED);
    /* A per-call timeout never exceeds the config's (0 here: never wait). */
    CHECK_STATUS(stockade_limiter_handle_acquire(l, 1, 5000), STOCKADE_STATUS_RATE_LIMITED);
    CHECK_STATUS(stockade_limiter_handle_execute(l, ok_call, &calls), STOCKADE_STATUS_RATE_LIMITED);
    CHECK(calls == 1);
    CHECK_STATUS(stockade_limiter_handle_try_acquire(l, 100), STOCKADE_STATUS_PERMITS_EXCEED_BURST);
    CHECK(ev.count[STOCKADE_EVENT_KIND_REJECTED] >= 3);
    CHECK(ev.last_retry_after_ms > 0);
    CHECK_OK(stockade_limiter_handle_metrics(l, &m));
    CHECK(m.successes == 3 && m.rejections >= 4);
    CHECK(m.state == 255);
    CHECK_OK(stockade_limiter_handle_unsubscribe(l, id));
    CHECK_OK(stockade_limiter_handle_as_policy(l, &p));
    stockade_policy_free(p);

    CHECK_NULL_ARG(stockade_limiter_handle_new(NULL, NULL, NULL, &dup));
    CHECK_NULL_ARG(stockade_limiter_handle_new(NULL, &c, NULL, NULL));
    CHECK_NULL_ARG(stockade_limiter_handle_get(NULL, &dup));
    CHECK_NULL_ARG(stockade_limiter_handle_acquire(NULL, 1, 0));
    CHECK_NULL_ARG(stockade_limiter_handle_acquire(NULL, 1, 10));
    CHECK_NULL_ARG(stockade_limiter_handle_try_acquire(NULL, 1));
    CHECK_NULL_ARG(stockade_limiter_handle_execute(NULL, ok_call, &calls));
    CHECK_NULL_ARG(stockade_limiter_handle_execute(l, NULL, &calls));
    CHECK_NULL_ARG(stockade_limiter_handle_metrics(NULL, &m));
    CHECK_NULL_ARG(stockade_limiter_handle_subscribe(l, NULL, NULL, &id));
    CHECK_NULL_ARG(stockade_limiter_handle_unsubscribe(NULL, 1));
    CHECK_NULL_ARG(stockade_limiter_handle_as_policy(NULL, &p));
    CHECK_NULL_ARG(stockade_limiter_handle_dispose(NULL));

    CHECK_OK(stockade_limiter_handle_dispose(l));
    CHECK_STATUS(stockade_limiter_handle_try_acquire(same, 1), STOCKADE_STATUS_DISPOSED);
    stockade_limiter_handle_free(l);
    stockade_limiter_handle_free(same);
    stockade_limiter_handle_free(NULL);
}

/* A limiter that may wait a minute: a per-call timeout shorter than the
 * wait is refused at once, with nothing booked. */
static void test_limiter_timeout(void) {
    stockade_limiter_config c = stockade_limiter_config_default();
    stockade_limiter_handle *l = NULL;
    stockade_metrics m;
    c.requests_per_period = 1;
    c.period_ms = 60000;
    c.queue_timeout_ms = 60000;
    CHECK_OK(stockade_limiter_handle_new(NULL, &c, NULL, &l));
    CHECK_OK(stockade_limiter_handle_acquire(l, 1, 0)); /* the burst */
    CHECK_STATUS(stockade_limiter_handle_acquire(l, 1, 10), STOCKADE_STATUS_RATE_LIMITED);
    CHECK_OK(stockade_limiter_handle_metrics(l, &m));
    CHECK(m.successes == 1 && m.rejections == 1 && m.queue_depth == 0);
    stockade_limiter_handle_free(l);
}

/* ---- bulkhead ----------------------------------------------------------- */
typedef struct {
    stockade_bulkhead_handle *b;
    int calls;
    stockade_status inner;
} nested;

static int try_inside(void *user_data) {
    nested *n = (nested *)user_data;
    n->calls++;
    n->inner = stockade_bulkhead_handle_try_execute(n->b, ok_call, &n->calls);
    return 0;
}

static void test_bulkhead(void) {
    stockade_bulkhead_config c = stockade_bulkhead_config_default();
    stockade_config_error err;
    stockade_bulkhead_handle *b = NULL, *same = NULL, *dup = NULL;
    stockade_metrics m;
    stockade_policy *p = NULL;
    events ev;
    nested n;
    uint64_t id = 0;
    int calls = 0;
    memset(&ev, 0, sizeof ev);

    c.max_concurrent = 0;
    CHECK_STATUS(stockade_bulkhead_handle_new(NULL, &c, &err, &b), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 30);
    c.max_concurrent = 1;
    c.max_queue = 0;
    CHECK_OK(stockade_bulkhead_handle_new("c-bp-bulkhead", &c, NULL, &b));
    CHECK_OK(stockade_bulkhead_handle_get("c-bp-bulkhead", &same));
    CHECK_STATUS(stockade_bulkhead_handle_get("c-bp-none", &dup), STOCKADE_STATUS_NOT_FOUND);
    CHECK_OK(stockade_bulkhead_handle_subscribe(same, on_event, &ev, &id));
    CHECK_OK(stockade_bulkhead_handle_execute(b, ok_call, &calls));
    CHECK_STATUS(stockade_bulkhead_handle_execute(b, fail_call, &calls), STOCKADE_STATUS_CALLBACK_FAILED);
    n.b = b;
    n.calls = 0;
    n.inner = STOCKADE_STATUS_OK;
    CHECK_OK(stockade_bulkhead_handle_try_execute(b, try_inside, &n));
    CHECK(n.inner == STOCKADE_STATUS_BULKHEAD_FULL); /* the one slot was taken */
    CHECK(n.calls == 1);
    CHECK(ev.count[STOCKADE_EVENT_KIND_REJECTED] == 1);
    CHECK_OK(stockade_bulkhead_handle_metrics(b, &m));
    CHECK(m.successes == 2 && m.failures == 1 && m.rejections == 1 && m.in_flight == 0);
    CHECK_OK(stockade_bulkhead_handle_unsubscribe(same, id));
    CHECK_OK(stockade_bulkhead_handle_as_policy(b, &p));
    stockade_policy_free(p);

    CHECK_NULL_ARG(stockade_bulkhead_handle_new(NULL, NULL, NULL, &dup));
    CHECK_NULL_ARG(stockade_bulkhead_handle_get(NULL, &dup));
    CHECK_NULL_ARG(stockade_bulkhead_handle_execute(NULL, ok_call, &calls));
    CHECK_NULL_ARG(stockade_bulkhead_handle_execute(b, NULL, &calls));
    CHECK_NULL_ARG(stockade_bulkhead_handle_try_execute(NULL, ok_call, &calls));
    CHECK_NULL_ARG(stockade_bulkhead_handle_try_execute(b, NULL, &calls));
    CHECK_NULL_ARG(stockade_bulkhead_handle_metrics(b, NULL));
    CHECK_NULL_ARG(stockade_bulkhead_handle_subscribe(NULL, on_event, NULL, &id));
    CHECK_NULL_ARG(stockade_bulkhead_handle_unsubscribe(NULL, id));
    CHECK_NULL_ARG(stockade_bulkhead_handle_as_policy(b, NULL));
    CHECK_NULL_ARG(stockade_bulkhead_handle_dispose(NULL));
    CHECK_OK(stockade_bulkhead_handle_dispose(same));
    CHECK_STATUS(stockade_bulkhead_handle_execute(b, ok_call, &calls), STOCKADE_STATUS_DISPOSED);
    stockade_bulkhead_handle_free(b);
    stockade_bulkhead_handle_free(same);
}

/* ---- retry -------------------------------------------------------------- */
typedef struct {
    int calls;
    int fail_until; /* fail the first fail_until attempts */
    int code;
} flaky;

static int flaky_call(void *user_data) {
    flaky *f = (flaky *)user_data;
    return ++f->calls <= f->fail_until ? f->code : 0;
}

static bool retry_code_1(int code, void *user_data) { (void)user_data; return code == 1; }

static void test_retry(void) {
    stockade_retry_config c = stockade_retry_config_default();
    stockade_config_error err;
    stockade_retry *r = NULL, *same = NULL, *dup = NULL;
    stockade_metrics m;
    stockade_policy *p = NULL;
    events ev;
    flaky f;
    uint64_t id = 0;
    memset(&ev, 0, sizeof ev);

    CHECK(c.backoff.max_attempts == 3 && !c.has_budget && !c.has_seed);
    c.backoff.backoff_factor = 0.5;
    CHECK_STATUS(stockade_retry_new(NULL, &c, &err, &r), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 43);
    c.backoff.backoff_factor = 2.0;
    c.has_budget = true;
    c.budget.max_tokens = 0;
    CHECK_STATUS(stockade_retry_new(NULL, &c, &err, &r), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 52);
    c.budget = stockade_retry_budget_config_default();
    c.has_seed = true;
    c.seed = 42;
    c.backoff.initial_delay_ms = 1;
    c.backoff.max_delay_ms = 2;
    CHECK_OK(stockade_retry_new("c-bp-retry", &c, NULL, &r));
    CHECK_OK(stockade_retry_get("c-bp-retry", &same));
    CHECK_STATUS(stockade_retry_get("c-bp-none", &dup), STOCKADE_STATUS_NOT_FOUND);
    CHECK_OK(stockade_retry_subscribe(r, on_event, &ev, &id));

    f.calls = 0; f.fail_until = 2; f.code = 1;
    CHECK_OK(stockade_retry_execute(r, flaky_call, NULL, &f));
    CHECK(f.calls == 3);
    CHECK(ev.count[STOCKADE_EVENT_KIND_RETRY] == 2 && ev.last_attempt == 2);
    f.calls = 0; f.fail_until = 5;
    CHECK_STATUS(stockade_retry_execute(same, flaky_call, NULL, &f), STOCKADE_STATUS_RETRIES_EXHAUSTED);
    CHECK(f.calls == 3);
    /* The classifier: code 2 is not retryable. */
    f.calls = 0; f.code = 2;
    CHECK_STATUS(stockade_retry_execute(r, flaky_call, retry_code_1, &f), STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK(f.calls == 1);
    CHECK_OK(stockade_retry_metrics(r, &m));
    CHECK(m.successes == 1 && m.failures == 2 && m.retries == 4);
    CHECK_OK(stockade_retry_unsubscribe(r, id));
    CHECK_OK(stockade_retry_as_policy(r, &p));
    stockade_policy_free(p);

    CHECK_NULL_ARG(stockade_retry_new(NULL, NULL, NULL, &dup));
    CHECK_NULL_ARG(stockade_retry_new(NULL, &c, NULL, NULL));
    CHECK_NULL_ARG(stockade_retry_get(NULL, &dup));
    CHECK_NULL_ARG(stockade_retry_execute(NULL, flaky_call, NULL, &f));
    CHECK_NULL_ARG(stockade_retry_execute(r, NULL, NULL, &f));
    CHECK_NULL_ARG(stockade_retry_metrics(NULL, &m));
    CHECK_NULL_ARG(stockade_retry_subscribe(r, on_event, NULL, NULL));
    CHECK_NULL_ARG(stockade_retry_unsubscribe(NULL, id));
    CHECK_NULL_ARG(stockade_retry_as_policy(NULL, &p));
    CHECK_NULL_ARG(stockade_retry_dispose(NULL));
    CHECK_OK(stockade_retry_dispose(r));
    CHECK_STATUS(stockade_retry_execute(same, flaky_call, NULL, &f), STOCKADE_STATUS_DISPOSED);
    stockade_retry_free(r);
    stockade_retry_free(same);
}

/* ---- timeout: returns on time, data released when the callback ends ----- */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int go;        /* set by the test: the slow callback may finish */
    int finished;  /* set by the callback */
    int released;  /* set by the release callback */
} slow_state;

static int slow_call(void *user_data) {
    slow_state *s = (slow_state *)user_data;
    pthread_mutex_lock(&s->lock);
    while (!s->go) pthread_cond_wait(&s->cond, &s->lock);
    s->finished = 1;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

static void release_slow(void *user_data) {
    slow_state *s = (slow_state *)user_data;
    pthread_mutex_lock(&s->lock);
    s->released++;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}

static int released_count;
static void release_count(void *user_data) { (void)user_data; __atomic_fetch_add(&released_count, 1, __ATOMIC_SEQ_CST); }

static void test_timeout(void) {
    stockade_timeout_config c = stockade_timeout_config_default();
    stockade_config_error err;
    stockade_timeout *t = NULL, *same = NULL, *dup = NULL, *shortt = NULL;
    stockade_metrics m;
    stockade_policy *p = NULL;
    slow_state *s;
    events ev;
    uint64_t id = 0, start, took;
    int calls = 0, finished;
    memset(&ev, 0, sizeof ev);

    c.timeout_ms = 0;
    CHECK_STATUS(stockade_timeout_new(NULL, &c, &err, &t), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 60);
    c.timeout_ms = 10000; /* generous: valgrind starts threads slowly */
    CHECK_OK(stockade_timeout_new("c-bp-timeout", &c, NULL, &t));
    c.timeout_ms = 200;
    CHECK_OK(stockade_timeout_new(NULL, &c, NULL, &shortt));
    CHECK_OK(stockade_timeout_get("c-bp-timeout", &same));
    CHECK_STATUS(stockade_timeout_get("c-bp-none", &dup), STOCKADE_STATUS_NOT_FOUND);
    CHECK_OK(stockade_timeout_subscribe(shortt, on_event, &ev, &id));

    CHECK_OK(stockade_timeout_execute(t, ok_call, &calls, release_count));
    CHECK(calls == 1);
    CHECK_STATUS(stockade_timeout_execute(t, fail_call, &calls, NULL), STOCKADE_STATUS_CALLBACK_FAILED);

    /* A callback that outlives its timeout: heap data, freed by the test
     * only once the release callback said stockade is done with it. */
    s = (slow_state *)malloc(sizeof *s);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    s->go = 0; s->finished = 0; s->released = 0;
    start = now_ms();
    CHECK_STATUS(stockade_timeout_execute(shortt, slow_call, s, release_slow), STOCKADE_STATUS_TIMED_OUT);
    took = now_ms() - start;
    CHECK(took >= 190 && took < 5000);
    pthread_mutex_lock(&s->lock);
    finished = s->finished;
    CHECK(s->released == 0); /* still running: not released */
    s->go = 1;
    pthread_cond_broadcast(&s->cond);
    while (!s->released) pthread_cond_wait(&s->cond, &s->lock);
    CHECK(s->finished == 1 && s->released == 1);
    pthread_mutex_unlock(&s->lock);
    CHECK(finished == 0);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
    free(s);
    CHECK(ev.count[STOCKADE_EVENT_KIND_TIMED_OUT] == 1);
    CHECK_OK(stockade_timeout_metrics(t, &m));
    CHECK(m.successes == 1 && m.failures == 1 && m.timeouts == 0);
    CHECK_OK(stockade_timeout_metrics(shortt, &m));
    CHECK(m.timeouts == 1 && m.calls == 1);
    CHECK(__atomic_load_n(&released_count, __ATOMIC_SEQ_CST) == 1);
    CHECK_STATUS(stockade_timeout_unsubscribe(t, id), STOCKADE_STATUS_NOT_FOUND); /* another timeout's id */
    CHECK_OK(stockade_timeout_unsubscribe(shortt, id));
    CHECK_OK(stockade_timeout_as_policy(t, &p));
    stockade_policy_free(p);

    CHECK_NULL_ARG(stockade_timeout_new(NULL, NULL, NULL, &dup));
    CHECK_NULL_ARG(stockade_timeout_get(NULL, &dup));
    CHECK_NULL_ARG(stockade_timeout_execute(NULL, ok_call, &calls, NULL));
    CHECK_NULL_ARG(stockade_timeout_execute(t, NULL, &calls, release_count));
    CHECK(__atomic_load_n(&released_count, __ATOMIC_SEQ_CST) == 2); /* called on NULL_ARGUMENT too */
    CHECK_NULL_ARG(stockade_timeout_metrics(NULL, &m));
    CHECK_NULL_ARG(stockade_timeout_subscribe(NULL, on_event, NULL, &id));
    CHECK_NULL_ARG(stockade_timeout_unsubscribe(NULL, id));
    CHECK_NULL_ARG(stockade_timeout_as_policy(NULL, &p));
    CHECK_NULL_ARG(stockade_timeout_dispose(NULL));
    CHECK_OK(stockade_timeout_dispose(t));
    CHECK_STATUS(stockade_timeout_execute(same, ok_call, &calls, release_count), STOCKADE_STATUS_DISPOSED);
    CHECK(__atomic_load_n(&released_count, __ATOMIC_SEQ_CST) == 3); /* never ran: released */
    stockade_timeout_free(t);
    stockade_timeout_free(same);
    stockade_timeout_free(shortt);
}

/* ---- request-response ---------------------------------------------------- */
static int rr_released;
static void rr_release(void *user_data) { (void)user_data; rr_released++; }

static stockade_status echo_handler(const stockade_request *req, stockade_response *resp, void *user_data) {
    (void)user_data;
    if (req->len == 4 && memcmp(req->data, "fail", 4) == 0) return STOCKADE_STATUS_CALLBACK_FAILED;
    if (req->len == 3 && memcmp(req->data, "bad", 3) == 0) {
        resp->status = 502;
        strcpy(resp->error, "upstream broke");
        return STOCKADE_STATUS_OK;
    }
    resp->status = 200;
    resp->data = req->data; /* copied when the handler returns */
    resp->len = req->len;
    return STOCKADE_STATUS_OK;
}

static void test_request_response(void) {
    stockade_request_response_config c = stockade_request_response_config_default();
    stockade_config_error err;
    stockade_request_response *rr = NULL, *same = NULL, *dup = NULL;
    stockade_request req;
    stockade_response resp;
    stockade_metrics m;
    events ev;
    uint64_t id = 0;
    memset(&ev, 0, sizeof ev);

    CHECK(c.max_workers == 8 && c.max_queue == 16 && c.default_timeout_ms == 0);
    c.max_workers = 0;
    CHECK_STATUS(stockade_request_response_new(NULL, &c, echo_handler, NULL, rr_release, &err, &rr),
                 STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 61);
    CHECK(strcmp(err.message, "invalid max_workers = 0: must be at least 1") == 0);
    CHECK(rr_released == 1); /* released on failure too */
    CHECK_OK(stockade_request_response_new("c-bp-rr", NULL, echo_handler, NULL, rr_release, NULL, &rr));
    CHECK_OK(stockade_request_response_get("c-bp-rr", &same));
    CHECK_STATUS(stockade_request_response_get("c-bp-none", &dup), STOCKADE_STATUS_NOT_FOUND);
    CHECK_OK(stockade_request_response_subscribe(rr, on_event, &ev, &id));

    memset(&req, 0, sizeof req);
    req.data = "hello";
    req.len = 5;
    req.correlation_id = "trace-1";
    CHECK_OK(stockade_request_response_execute(rr, &req, &resp));
    CHECK(resp.status == 200 && resp.len == 5 && memcmp(resp.data, "hello", 5) == 0);
    CHECK(strcmp(resp.correlation_id, "trace-1") == 0);
    CHECK(resp.error[0] == 0);
    stockade_response_clear(&resp);
    CHECK(resp.data == NULL && resp.len == 0);
    stockade_response_clear(&resp); /* cleared twice: no-op */
    stockade_response_clear(NULL);

    req.data = "fail"; req.len = 4; req.correlation_id = NULL; req.timeout_ms = 1000;
    CHECK_OK(stockade_request_response_execute(same, &req, &resp));
    CHECK(resp.status == 500 && resp.data == NULL);
    CHECK(strstr(resp.error, "callback reported failure") != NULL);
    CHECK(strncmp(resp.correlation_id, "c-bp-rr-", 8) == 0);
    stockade_response_clear(&resp);
    req.data = "bad"; req.len = 3;
    CHECK_OK(stockade_request_response_execute(rr, &req, &resp));
    CHECK(resp.status == 502 && strcmp(resp.error, "upstream broke") == 0);
    stockade_response_clear(&resp);
    CHECK_OK(stockade_request_response_metrics(rr, &m));
    CHECK(m.successes == 1 && m.failures == 2);
    CHECK_OK(stockade_request_response_unsubscribe(rr, id));

    CHECK_NULL_ARG(stockade_request_response_new(NULL, NULL, NULL, NULL, NULL, NULL, &dup));
    CHECK_NULL_ARG(stockade_request_response_new(NULL, NULL, echo_handler, NULL, NULL, NULL, NULL));
    CHECK_NULL_ARG(stockade_request_response_get(NULL, &dup));
    CHECK_NULL_ARG(stockade_request_response_execute(NULL, &req, &resp));
    CHECK_NULL_ARG(stockade_request_response_execute(rr, NULL, &resp));
    CHECK_NULL_ARG(stockade_request_response_execute(rr, &req, NULL));
    req.data = NULL; req.len = 3;
    CHECK_NULL_ARG(stockade_request_response_execute(rr, &req, &resp));
    CHECK_NULL_ARG(stockade_request_response_metrics(NULL, &m));
    CHECK_NULL_ARG(stockade_request_response_subscribe(NULL, on_event, NULL, &id));
    CHECK_NULL_ARG(stockade_request_response_unsubscribe(NULL, id));
    CHECK_NULL_ARG(stockade_request_response_dispose(NULL));
    CHECK_OK(stockade_request_response_dispose(rr));
    req.data = "x"; req.len = 1;
    CHECK_OK(stockade_request_response_execute(same, &req, &resp));
    CHECK(resp.status == 503);
    stockade_response_clear(&resp);
    stockade_request_response_free(rr);
    CHECK(rr_released == 1);
    stockade_request_response_free(same);
    CHECK(rr_released == 2); /* the last handle: the handler's data released */
}

/* ---- bulkhead permits held across calls ---------------------------------- */
typedef struct {
    stockade_bulkhead_handle *b;
    stockade_status status;
    stockade_bulkhead_permit *permit;
} acquirer;

static void *acquire_thread(void *arg) {
    acquirer *a = (acquirer *)arg;
    a->status = stockade_bulkhead_handle_acquire(a->b, 0, &a->permit);
    return NULL;
}

static void test_bulkhead_permits(void) {
    stockade_bulkhead_config c = stockade_bulkhead_config_default();
    stockade_bulkhead_handle *b = NULL;
    stockade_bulkhead_permit *p1 = NULL, *p2 = NULL;
    stockade_metrics m;
    acquirer a;
    pthread_t th;
    int spins = 0;

    c.max_concurrent = 1;
    c.max_queue = 1;
    c.queue_timeout_ms = 60000;
    CHECK_OK(stockade_bulkhead_handle_new(NULL, &c, NULL, &b));
    CHECK_OK(stockade_bulkhead_handle_acquire(b, 0, &p1));
    CHECK_STATUS(stockade_bulkhead_handle_try_acquire(b, &p2), STOCKADE_STATUS_BULKHEAD_FULL);
    /* A per-call timeout: waits 20 ms, not the config's minute. */
    CHECK_STATUS(stockade_bulkhead_handle_acquire(b, 20, &p2), STOCKADE_STATUS_QUEUE_TIMEOUT);
    CHECK(p2 == NULL); /* out-parameters are written only on success */
    CHECK_OK(stockade_bulkhead_handle_metrics(b, &m));
    CHECK(m.in_flight == 1 && m.queue_depth == 0 && m.timeouts == 1 && m.rejections == 1);

    /* A waiter on another thread is granted the slot by the release. */
    a.b = b;
    a.status = STOCKADE_STATUS_INTERNAL_ERROR;
    a.permit = NULL;
    CHECK(pthread_create(&th, NULL, acquire_thread, &a) == 0);
    do {
        CHECK_OK(stockade_bulkhead_handle_metrics(b, &m));
        if (m.queue_depth == 1) break;
        {
            struct timespec ms = {0, 1000000};
            nanosleep(&ms, NULL);
        }
    } while (++spins < 10000);
    CHECK(m.queue_depth == 1);
    CHECK_OK(stockade_bulkhead_permit_release(p1));
    pthread_join(th, NULL);
    CHECK_OK(a.status);
    CHECK(a.permit != NULL);
    /* Released twice: a defined status, nothing changes. */
    CHECK_STATUS(stockade_bulkhead_permit_release(p1), STOCKADE_STATUS_TOKEN_ALREADY_USED);
    CHECK_OK(stockade_bulkhead_handle_metrics(b, &m));
    CHECK(m.in_flight == 1 && m.successes == 1);
    /* Freeing an unreleased permit releases it. */
    stockade_bulkhead_permit_free(a.permit);
    CHECK_OK(stockade_bulkhead_handle_metrics(b, &m));
    CHECK(m.in_flight == 0 && m.successes == 2 && m.queue_depth == 0);
    stockade_bulkhead_permit_free(p1); /* released already: just freed */
    stockade_bulkhead_permit_free(NULL);

    CHECK_NULL_ARG(stockade_bulkhead_handle_acquire(NULL, 0, &p1));
    CHECK_NULL_ARG(stockade_bulkhead_handle_acquire(b, 0, NULL));
    CHECK_NULL_ARG(stockade_bulkhead_handle_try_acquire(NULL, &p1));
    CHECK_NULL_ARG(stockade_bulkhead_handle_try_acquire(b, NULL));
    CHECK_NULL_ARG(stockade_bulkhead_permit_release(NULL));

    /* A permit outlives dispose and its handle. */
    CHECK_OK(stockade_bulkhead_handle_try_acquire(b, &p2));
    CHECK_OK(stockade_bulkhead_handle_dispose(b));
    CHECK_STATUS(stockade_bulkhead_handle_acquire(b, 0, &p1), STOCKADE_STATUS_DISPOSED);
    CHECK_STATUS(stockade_bulkhead_handle_try_acquire(b, &p1), STOCKADE_STATUS_DISPOSED);
    stockade_bulkhead_handle_free(b);
    CHECK_OK(stockade_bulkhead_permit_release(p2));
    stockade_bulkhead_permit_free(p2);

}

/* ---- listener ids ---------------------------------------------------------- */
static void test_listener_ids(void) {
    stockade_bulkhead_config c = stockade_bulkhead_config_default();
    stockade_bulkhead_handle *b1 = NULL, *b2 = NULL;
    events ev;
    uint64_t id1 = 0, id2 = 0;
    memset(&ev, 0, sizeof ev);
    CHECK_OK(stockade_bulkhead_handle_new(NULL, &c, NULL, &b1));
    CHECK_OK(stockade_bulkhead_handle_new(NULL, &c, NULL, &b2));
    CHECK_OK(stockade_bulkhead_handle_subscribe(b1, on_event, &ev, &id1));
    CHECK_OK(stockade_bulkhead_handle_subscribe(b2, on_event, &ev, &id2));
    CHECK(id1 != 0 && id2 != 0 && id1 != id2);
    /* Another instance's id, or an unknown one, removes nothing. */
    CHECK_STATUS(stockade_bulkhead_handle_unsubscribe(b2, id1), STOCKADE_STATUS_NOT_FOUND);
    CHECK_STATUS(stockade_bulkhead_handle_unsubscribe(b1, 0), STOCKADE_STATUS_NOT_FOUND);
    CHECK_OK(stockade_bulkhead_handle_unsubscribe(b1, id1));
    CHECK_STATUS(stockade_bulkhead_handle_unsubscribe(b1, id1), STOCKADE_STATUS_NOT_FOUND);
    CHECK_OK(stockade_bulkhead_handle_unsubscribe(b2, id2));
    stockade_bulkhead_handle_free(b1);
    stockade_bulkhead_handle_free(b2);
}

/* ---- pipeline ------------------------------------------------------------ */
static void test_pipeline(void) {
    stockade_breaker_config bc = stockade_breaker_config_default();
    stockade_retry_config rc = stockade_retry_config_default();
    stockade_timeout_config tc = stockade_timeout_config_default();
    stockade_breaker_handle *b = NULL;
    stockade_retry *r = NULL;
    stockade_timeout *t = NULL;
    stockade_policy *stages[3] = {NULL, NULL, NULL};
    const stockade_policy *const *cstages = (const stockade_policy *const *)stages;
    stockade_pipeline *p = NULL, *empty = NULL;
    stockade_metrics m;
    flaky f;
    int calls = 0, i;

    bc.failure_threshold = 1;
    rc.backoff.initial_delay_ms = 0;
    rc.backoff.max_delay_ms = 0;
    CHECK_OK(stockade_breaker_handle_new(NULL, &bc, NULL, &b));
    CHECK_OK(stockade_retry_new(NULL, &rc, NULL, &r));
    CHECK_OK(stockade_timeout_new(NULL, &tc, NULL, &t));
    CHECK_OK(stockade_breaker_handle_as_policy(b, &stages[0]));
    CHECK_OK(stockade_retry_as_policy(r, &stages[1]));
    CHECK_OK(stockade_timeout_as_policy(t, &stages[2]));
    CHECK_OK(stockade_pipeline_new(cstages, 3, &p));
    for (i = 0; i < 3; i++) stockade_policy_free(stages[i]); /* the pipeline holds its own */

    f.calls = 0; f.fail_until = 2; f.code = 1;
    released_count = 0;
    CHECK_OK(stockade_pipeline_execute(p, flaky_call, &f, release_count));
    CHECK(f.calls == 3);
    CHECK(released_count == 1);
    CHECK_OK(stockade_retry_metrics(r, &m));
    CHECK(m.retries == 2);
    f.calls = 0; f.fail_until = 10;
    CHECK_STATUS(stockade_pipeline_execute(p, flaky_call, &f, NULL), STOCKADE_STATUS_RETRIES_EXHAUSTED);
    CHECK_STATUS(stockade_pipeline_execute(p, flaky_call, &f, NULL), STOCKADE_STATUS_BREAKER_OPEN);
    CHECK(f.calls == 3);

    CHECK_OK(stockade_pipeline_new(NULL, 0, &empty));
    CHECK_OK(stockade_pipeline_execute(empty, ok_call, &calls, NULL));
    CHECK_STATUS(stockade_pipeline_execute(empty, fail_call, &calls, NULL), STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK(calls == 2);

    /* Nested: [breaker, [retry, timeout]] runs as [breaker, retry, timeout]. */
    {
        stockade_breaker_handle *b2 = NULL;
        stockade_retry *r2 = NULL;
        stockade_timeout *t2 = NULL;
        stockade_policy *inner_stages[2] = {NULL, NULL}, *outer_stages[2] = {NULL, NULL};
        stockade_pipeline *inner = NULL, *outer = NULL;
        CHECK_OK(stockade_breaker_handle_new(NULL, &bc, NULL, &b2));
        CHECK_OK(stockade_retry_new(NULL, &rc, NULL, &r2));
        CHECK_OK(stockade_timeout_new(NULL, &tc, NULL, &t2));
        CHECK_OK(stockade_retry_as_policy(r2, &inner_stages[0]));
        CHECK_OK(stockade_timeout_as_policy(t2, &inner_stages[1]));
        CHECK_OK(stockade_pipeline_new((const stockade_policy *const *)inner_stages, 2, &inner));
        CHECK_OK(stockade_breaker_handle_as_policy(b2, &outer_stages[0]));
        CHECK_OK(stockade_pipeline_as_policy(inner, &outer_stages[1]));
        stockade_pipeline_free(inner); /* the policy view shares its stages */
        CHECK_OK(stockade_pipeline_new((const stockade_policy *const *)outer_stages, 2, &outer));
        for (i = 0; i < 2; i++) {
            stockade_policy_free(inner_stages[i]);
            stockade_policy_free(outer_stages[i]);
        }
        f.calls = 0; f.fail_until = 2; f.code = 1;
        CHECK_OK(stockade_pipeline_execute(outer, flaky_call, &f, NULL));
        CHECK(f.calls == 3);
        f.calls = 0; f.fail_until = 10;
        CHECK_STATUS(stockade_pipeline_execute(outer, flaky_call, &f, NULL), STOCKADE_STATUS_RETRIES_EXHAUSTED);
        /* The breaker's refusal reaches the caller as itself. */
        CHECK_STATUS(stockade_pipeline_execute(outer, flaky_call, &f, NULL), STOCKADE_STATUS_BREAKER_OPEN);
        CHECK(f.calls == 3);
        CHECK_NULL_ARG(stockade_pipeline_as_policy(NULL, &outer_stages[0]));
        CHECK_NULL_ARG(stockade_pipeline_as_policy(outer, NULL));
        stockade_pipeline_free(outer);
        stockade_breaker_handle_free(b2);
        stockade_retry_free(r2);
        stockade_timeout_free(t2);
    }

    CHECK_NULL_ARG(stockade_pipeline_new(NULL, 1, &empty));
    stages[0] = NULL;
    CHECK_NULL_ARG(stockade_pipeline_new(cstages, 1, &empty));
    CHECK_NULL_ARG(stockade_pipeline_new(cstages, 0, NULL));
    CHECK_NULL_ARG(stockade_pipeline_execute(NULL, ok_call, &calls, NULL));
    CHECK_NULL_ARG(stockade_pipeline_execute(p, NULL, &calls, NULL));
    stockade_pipeline_free(p);
    stockade_pipeline_free(empty);
    stockade_pipeline_free(NULL);
    stockade_breaker_handle_free(b);
    stockade_retry_free(r);
    stockade_timeout_free(t);
}

int main(void) {
    alarm(60);
    test_breaker_extras();
    test_limiter();
    test_limiter_timeout();
    test_bulkhead();
    test_bulkhead_permits();
    test_listener_ids();
    test_retry();
    test_timeout();
    test_request_response();
    test_pipeline();
    return check_report("test_blocking_patterns");
}
