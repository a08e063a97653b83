/* Request-response from C answers as Rust does: a protection policy in the
 * config (a limiter, breaker, bulkhead, retry or a pipeline of them) and
 * the pattern's own pool and deadline give 429 (limiter refusal), 503 (open
 * breaker, full bulkhead, full pool), 504 (timeout) and 500 (handler
 * failure); a handler answers with a status of its own, or returns a
 * stockade_status that maps to the same HTTP status. */
#define _POSIX_C_SOURCE 200809L
#include "stockade.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#include "check.h"

/* ---- a handler scripted by the request's first byte -------------------- */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    int calls;   /* handler calls */
    int entered; /* handler calls that reached the gate */
    int open;    /* the gate ('g' requests wait here) */
    int fails;   /* 'f' requests fail while this is > 0 */
} script;

static script s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};

static stockade_status scripted(const stockade_request *req, stockade_response *resp, void *user_data) {
    const char *what = (const char *)req->data;
    int fail = 0;
    (void)user_data;
    pthread_mutex_lock(&s.lock);
    s.calls++;
    if (what[0] == 'f' && s.fails > 0) {
        s.fails--;
        fail = 1;
    }
    if (what[0] == 'g') {
        s.entered++;
        pthread_cond_broadcast(&s.changed);
        while (!s.open) pthread_cond_wait(&s.changed, &s.lock);
    }
    pthread_mutex_unlock(&s.lock);
    switch (what[0]) {
    case 'f': if (fail) return STOCKADE_STATUS_CALLBACK_FAILED; break;
    case 'r': resp->retry_after_ms = 1500; return STOCKADE_STATUS_RATE_LIMITED;
    case 'b': return STOCKADE_STATUS_BREAKER_OPEN;
    case 't': return STOCKADE_STATUS_TIMED_OUT;
    case 'x': return STOCKADE_STATUS_CALLBACK_FAILED;
    case 'u': return (stockade_status)999; /* no such status */
    case 'k': /* its own status and message win over the mapping */
        resp->status = 418;
        strcpy(resp->error, "short and stout");
        return STOCKADE_STATUS_RATE_LIMITED;
    case 'o': /* an OK answer with a status of its own */
        resp->status = 429;
        resp->retry_after_ms = 250;
        strcpy(resp->error, "try later");
        return STOCKADE_STATUS_OK;
    default: break;
    }
    resp->data = "ok";
    resp->len = 2;
    return STOCKADE_STATUS_OK;
}

static void reset_script(void) {
    pthread_mutex_lock(&s.lock);
    s.calls = 0;
    s.entered = 0;
    s.open = 0;
    s.fails = 0;
    pthread_mutex_unlock(&s.lock);
}

static int calls(void) {
    int n;
    pthread_mutex_lock(&s.lock);
    n = s.calls;
    pthread_mutex_unlock(&s.lock);
    return n;
}

/* Waits (watchdog 10 s) until `n` calls reached the gate. */
static int wait_entered(int n) {
    struct timespec until;
    int got;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&s.lock);
    while (s.entered < n) {
        if (pthread_cond_timedwait(&s.changed, &s.lock, &until) == ETIMEDOUT) break;
    }
    got = s.entered;
    pthread_mutex_unlock(&s.lock);
    return got >= n;
}

static void open_gate(void) {
    pthread_mutex_lock(&s.lock);
    s.open = 1;
    pthread_cond_broadcast(&s.changed);
    pthread_mutex_unlock(&s.lock);
}

/* One request; returns the response (its data already freed). */
static stockade_response run(const stockade_request_response *rr, const char *what, uint64_t timeout_ms) {
    stockade_request req;
    stockade_response resp;
    memset(&req, 0, sizeof req);
    memset(&resp, 0, sizeof resp);
    req.data = what;
    req.len = strlen(what) + 1;
    req.timeout_ms = timeout_ms;
    CHECK_OK(stockade_request_response_execute(rr, &req, &resp));
    stockade_response_clear(&resp);
    return resp;
}

static stockade_request_response *make(const stockade_policy *policy, uint32_t workers, uint32_t queue) {
    stockade_request_response_config c = stockade_request_response_config_default();
    stockade_request_response *rr = NULL;
    c.policy = policy;
    c.max_workers = workers;
    c.max_queue = queue;
    CHECK_OK(stockade_request_response_new(NULL, &c, scripted, NULL, NULL, NULL, &rr));
    return rr;
}

/* ---- events ---------------------------------------------------------- */
static int rejected_events;
static void on_event(const stockade_event *e, void *user_data) {
    (void)user_data;
    if (e->kind == STOCKADE_EVENT_KIND_REJECTED) __atomic_fetch_add(&rejected_events, 1, __ATOMIC_SEQ_CST);
}

/* ---- 429 from a limiter -------------------------------------------------- */
static void test_limiter_gives_429(void) {
    stockade_limiter_config lc = stockade_limiter_config_default();
    stockade_limiter_handle *l = NULL;
    stockade_policy *p = NULL;
    stockade_request_response *rr;
    stockade_response r;
    stockade_metrics m;
    uint64_t id = 0;

    reset_script();
    CHECK(stockade_request_response_config_default().policy == NULL);
    lc.requests_per_period = 1;
    lc.period_ms = 3600000;
    lc.queue_timeout_ms = 0;
    CHECK_OK(stockade_limiter_handle_new(NULL, &lc, NULL, &l));
    CHECK_OK(stockade_limiter_handle_as_policy(l, &p));
    rr = make(p, 8, 16);
    stockade_policy_free(p); /* the pattern holds its own reference */
    CHECK_OK(stockade_request_response_subscribe(rr, on_event, NULL, &id));

    r = run(rr, "a", 0);
    CHECK(r.status == 200);
    r = run(rr, "a", 0);
    CHECK(r.status == 429);
    CHECK(r.retry_after_ms > 0 && r.retry_after_ms <= 3600000);
    CHECK(strstr(r.error, "rate limit") != NULL);
    CHECK(calls() == 1); /* refused before the handler */
    CHECK_OK(stockade_request_response_metrics(rr, &m));
    CHECK(m.calls == 2 && m.successes == 1 && m.rejections == 1 && m.failures == 0);
    CHECK(__atomic_load_n(&rejected_events, __ATOMIC_SEQ_CST) == 1);
    stockade_request_response_free(rr);
    stockade_limiter_handle_free(l);
}

/* ---- 503 from an open breaker, 500 from handler failures ----------------- */
static void test_breaker_gives_503(void) {
    stockade_breaker_config bc = stockade_breaker_config_default();
    stockade_breaker_handle *b = NULL;
    stockade_breaker_state state = STOCKADE_BREAKER_STATE_CLOSED;
    stockade_policy *p = NULL;
    stockade_request_response *rr;
    stockade_response r;
    stockade_metrics m;

    reset_script();
    bc.failure_threshold = 2;
    CHECK_OK(stockade_breaker_handle_new(NULL, &bc, NULL, &b));
    CHECK_OK(stockade_breaker_handle_as_policy(b, &p));
    rr = make(p, 8, 16);
    stockade_policy_free(p);

    r = run(rr, "x", 0);
    CHECK(r.status == 500 && strcmp(r.error, stockade_status_str(STOCKADE_STATUS_CALLBACK_FAILED)) == 0);
    r = run(rr, "x", 0);
    CHECK(r.status == 500);
    CHECK_OK(stockade_breaker_handle_get_state(b, &state));
    CHECK(state == STOCKADE_BREAKER_STATE_OPEN);
    r = run(rr, "a", 0);
    CHECK(r.status == 503);
    CHECK(r.retry_after_ms > 0 && r.retry_after_ms <= bc.reset_timeout_ms);
    CHECK(strstr(r.error, "circuit breaker is open") != NULL);
    CHECK(calls() == 2);
    CHECK_OK(stockade_request_response_metrics(rr, &m));
    CHECK(m.failures == 2 && m.rejections == 1);
    stockade_request_response_free(rr);
    stockade_breaker_handle_free(b);
}

/* ---- 503 from a full bulkhead ---------------------------------------------- */
static void test_bulkhead_gives_503(void) {
    stockade_bulkhead_config kc = stockade_bulkhead_config_default();
    stockade_bulkhead_handle *k = NULL;
    stockade_bulkhead_permit *held = NULL;
    stockade_policy *p = NULL;
    stockade_request_response *rr;
    stockade_response r;

    reset_script();
    kc.max_concurrent = 1;
    kc.max_queue = 0;
    kc.queue_timeout_ms = 0;
    CHECK_OK(stockade_bulkhead_handle_new(NULL, &kc, NULL, &k));
    CHECK_OK(stockade_bulkhead_handle_as_policy(k, &p));
    rr = make(p, 8, 16);
    stockade_policy_free(p);
    CHECK_OK(stockade_bulkhead_handle_try_acquire(k, &held)); /* the only slot */
    r = run(rr, "a", 0);
    CHECK(r.status == 503 && r.retry_after_ms == 0);
    CHECK(calls() == 0);
    stockade_bulkhead_permit_free(held);
    r = run(rr, "a", 0);
    CHECK(r.status == 200);
    stockade_request_response_free(rr);
    stockade_bulkhead_handle_free(k);
}

/* ---- a pipeline: retry inside a limiter ------------------------------------ */
static void test_pipeline_policy(void) {
    stockade_limiter_config lc = stockade_limiter_config_default();
    stockade_retry_config rc = stockade_retry_config_default();
    stockade_limiter_handle *l = NULL;
    stockade_retry *rt = NULL;
    stockade_policy *stages[2] = {NULL, NULL};
    stockade_pipeline *pipe = NULL;
    stockade_policy *p = NULL;
    stockade_request_response *rr;
    stockade_response r;
    stockade_metrics m;

    reset_script();
    lc.requests_per_period = 1;
    lc.period_ms = 3600000;
    lc.queue_timeout_ms = 0;
    rc.backoff.max_attempts = 3;
    rc.backoff.initial_delay_ms = 1;
    rc.backoff.max_delay_ms = 1;
    CHECK_OK(stockade_limiter_handle_new(NULL, &lc, NULL, &l));
    CHECK_OK(stockade_retry_new(NULL, &rc, NULL, &rt));
    CHECK_OK(stockade_limiter_handle_as_policy(l, &stages[0]));
    CHECK_OK(stockade_retry_as_policy(rt, &stages[1]));
    CHECK_OK(stockade_pipeline_new((const stockade_policy *const *)stages, 2, &pipe));
    CHECK_OK(stockade_pipeline_as_policy(pipe, &p));
    stockade_policy_free(stages[0]);
    stockade_policy_free(stages[1]);
    stockade_pipeline_free(pipe);
    rr = make(p, 8, 16);
    stockade_policy_free(p);

    s.fails = 2; /* two failures, then the handler answers */
    r = run(rr, "f", 0);
    CHECK(r.status == 200);
    CHECK(calls() == 3); /* the retry repeated the attempt */
    r = run(rr, "f", 0);
    CHECK(r.status == 429); /* the limiter, outermost */
    CHECK(calls() == 3);
    CHECK_OK(stockade_request_response_metrics(rr, &m));
    CHECK(m.successes == 1 && m.rejections == 1);
    stockade_request_response_free(rr);
    stockade_retry_free(rt);
    stockade_limiter_handle_free(l);
}

/* ---- 504 at the request's deadline; 503 when the pool is full ------------- */
typedef struct {
    const stockade_request_response *rr;
    uint16_t status;
} bg_call;

static void *background(void *arg) {
    bg_call *c = (bg_call *)arg;
    stockade_request req;
    stockade_response resp;
    memset(&req, 0, sizeof req);
    req.data = "g";
    req.len = 2;
    req.timeout_ms = 60000;
    if (stockade_request_response_execute(c->rr, &req, &resp) == STOCKADE_STATUS_OK) {
        c->status = resp.status;
        stockade_response_clear(&resp);
    }
    return NULL;
}

static void test_deadline_and_full_pool(void) {
    stockade_request_response *rr;
    stockade_response r;
    stockade_metrics m;
    pthread_t t;
    bg_call bg;

    /* 504: the handler is still at the gate when the deadline passes. */
    reset_script();
    rr = make(NULL, 1, 0);
    r = run(rr, "g", 50);
    CHECK(r.status == 504 && strstr(r.error, "timed out") != NULL);
    open_gate();
    CHECK_OK(stockade_request_response_metrics(rr, &m));
    CHECK(m.timeouts == 1);
    stockade_request_response_free(rr);

    /* 503: the only worker is busy and no request may queue. */
    reset_script();
    rr = make(NULL, 1, 0);
    bg.rr = rr;
    bg.status = 0;
    CHECK(pthread_create(&t, NULL, background, &bg) == 0);
    CHECK(wait_entered(1));
    r = run(rr, "a", 1000);
    CHECK(r.status == 503);
    open_gate();
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(bg.status == 200);
    stockade_request_response_free(rr);
}

/* ---- a timeout stage in the policy: cooperative, as in Rust --------------- */
static int stage_timed_out;
static void on_timeout_event(const stockade_event *e, void *user_data) {
    (void)user_data;
    if (e->kind != STOCKADE_EVENT_KIND_TIMED_OUT) return;
    pthread_mutex_lock(&s.lock);
    stage_timed_out = 1;
    pthread_cond_broadcast(&s.changed);
    pthread_mutex_unlock(&s.lock);
}

/* Opens the gate once the timeout stage gave up (watchdog 10 s). */
static void *open_after_timeout(void *arg) {
    struct timespec until;
    (void)arg;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    pthread_mutex_lock(&s.lock);
    while (!stage_timed_out) {
        if (pthread_cond_timedwait(&s.changed, &s.lock, &until) == ETIMEDOUT) break;
    }
    s.open = 1;
    pthread_cond_broadcast(&s.changed);
    pthread_mutex_unlock(&s.lock);
    return NULL;
}

static void test_timeout_stage(void) {
    stockade_timeout_config tc = stockade_timeout_config_default();
    stockade_timeout *t = NULL;
    stockade_policy *p = NULL;
    stockade_request_response *rr;
    stockade_response r;
    pthread_t opener;
    uint64_t id = 0;

    reset_script();
    /* Long enough for the quick attempt under valgrind on a loaded machine;
     * the gated attempt is late whatever the timeout (its gate opens only
     * after the stage timed out). */
    tc.timeout_ms = 1000;
    CHECK_OK(stockade_timeout_new(NULL, &tc, NULL, &t));
    CHECK_OK(stockade_timeout_subscribe(t, on_timeout_event, NULL, &id));
    CHECK_OK(stockade_timeout_as_policy(t, &p));
    rr = make(p, 8, 16);
    stockade_policy_free(p);
    r = run(rr, "a", 0);
    CHECK(r.status == 200);
    /* The attempt outlives the stage's timeout: a 504, returned once the
     * attempt returned (the gate opens only after the stage timed out). */
    CHECK(pthread_create(&opener, NULL, open_after_timeout, NULL) == 0);
    r = run(rr, "g", 0);
    CHECK(r.status == 504);
    CHECK(pthread_join(opener, NULL) == 0);
    CHECK(stage_timed_out == 1);
    CHECK(calls() == 2);
    stockade_request_response_free(rr);
    stockade_timeout_free(t);
}

/* ---- the handler's own status --------------------------------------------- */
static void test_handler_status(void) {
    stockade_request_response *rr;
    stockade_response r;
    stockade_metrics m;

    reset_script();
    rr = make(NULL, 8, 16);
    r = run(rr, "r", 0);
    CHECK(r.status == 429 && r.retry_after_ms == 1500);
    CHECK(strcmp(r.error, stockade_status_str(STOCKADE_STATUS_RATE_LIMITED)) == 0);
    r = run(rr, "b", 0);
    CHECK(r.status == 503);
    r = run(rr, "t", 0);
    CHECK(r.status == 504);
    r = run(rr, "x", 0);
    CHECK(r.status == 500);
    r = run(rr, "u", 0);
    CHECK(r.status == 500 && strcmp(r.error, "the handler returned an unknown status (999)") == 0);
    r = run(rr, "k", 0);
    CHECK(r.status == 418 && strcmp(r.error, "short and stout") == 0);
    r = run(rr, "o", 0);
    CHECK(r.status == 429 && r.retry_after_ms == 250 && strcmp(r.error, "try later") == 0);
    /* As in Rust: below 500 a success, 5xx a failure. */
    CHECK_OK(stockade_request_response_metrics(rr, &m));
    CHECK(m.calls == 7 && m.successes == 3 && m.failures == 4 && m.rejections == 0);
    stockade_request_response_free(rr);
}

/* ---- a named protected pattern is found by name ---------------------------- */
static void test_named_protected(void) {
    stockade_breaker_config bc = stockade_breaker_config_default();
    stockade_breaker_handle *b = NULL;
    stockade_policy *p = NULL;
    stockade_request_response_config c = stockade_request_response_config_default();
    stockade_request_response *rr = NULL, *same = NULL, *dup = NULL;

    CHECK_OK(stockade_breaker_handle_new(NULL, &bc, NULL, &b));
    CHECK_OK(stockade_breaker_handle_as_policy(b, &p));
    c.policy = p;
    CHECK_OK(stockade_request_response_new("c-rr-protected", &c, scripted, NULL, NULL, NULL, &rr));
    CHECK_STATUS(stockade_request_response_new("c-rr-protected", &c, scripted, NULL, NULL, NULL, &dup),
                 STOCKADE_STATUS_NAME_TAKEN);
    CHECK_OK(stockade_request_response_get("c-rr-protected", &same));
    CHECK(same != NULL);
    CHECK(run(same, "a", 0).status == 200);
    CHECK_OK(stockade_request_response_dispose(rr));
    CHECK_STATUS(stockade_request_response_get("c-rr-protected", &dup), STOCKADE_STATUS_NOT_FOUND);
    stockade_request_response_free(same);
    stockade_request_response_free(rr);
    /* The name is free again. */
    CHECK_OK(stockade_request_response_new("c-rr-protected", &c, scripted, NULL, NULL, NULL, &rr));
    CHECK_OK(stockade_request_response_get("c-rr-protected", &same));
    stockade_request_response_free(same);
    CHECK_OK(stockade_request_response_dispose(rr));
    stockade_request_response_free(rr);
    stockade_policy_free(p);
    stockade_breaker_handle_free(b);
}

int main(void) {
    test_limiter_gives_429();
    test_breaker_gives_503();
    test_bulkhead_gives_503();
    test_pipeline_policy();
    test_deadline_and_full_pool();
    test_timeout_stage();
    test_handler_status();
    test_named_protected();
    return check_report("test_request_response");
}
