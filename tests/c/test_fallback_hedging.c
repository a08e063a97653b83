/* The blocking fallback and hedging through the C ABI: which failures the
 * fallback replaces (its classifier, a breaker's refusal in a pipeline),
 * hedging's races (a failure launches the next attempt, a slow first
 * attempt loses to a hedge, a full pool means no hedge, a classifier
 * choosing the failures that hedge), release exactly
 * once, events, metrics, the registry, NULL pointers and bad configs.
 * Threads wait on gates with a watchdog; alarm() bounds the whole run. */
#define _POSIX_C_SOURCE 200809L
#include "stockade.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define WATCHDOG_S 20

/* ---- helpers ------------------------------------------------------------ */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    int open;
} gate;

static void gate_init(gate *g) {
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->cond, NULL);
    g->open = 0;
}

static void gate_open(gate *g) {
    pthread_mutex_lock(&g->lock);
    g->open = 1;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* 0 once open; -1 when the watchdog fired first. */
static int gate_wait(gate *g) {
    struct timespec until;
    int rc = 0;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += WATCHDOG_S;
    pthread_mutex_lock(&g->lock);
    while (!g->open && rc == 0) rc = pthread_cond_timedwait(&g->cond, &g->lock, &until);
    pthread_mutex_unlock(&g->lock);
    return g->open ? 0 : -1;
}

static void gate_destroy(gate *g) {
    pthread_mutex_destroy(&g->lock);
    pthread_cond_destroy(&g->cond);
}

/* Waits (yielding) until *counter reaches want; 0, or -1 on the watchdog. */
static int wait_count(int *counter, int want) {
    time_t start = time(NULL);
    while (__atomic_load_n(counter, __ATOMIC_SEQ_CST) < want) {
        if (time(NULL) - start > WATCHDOG_S) return -1;
        sched_yield();
    }
    return 0;
}

typedef struct {
    int count[16];
    uint32_t last_attempt;
} events;

static void on_event(const stockade_event *e, void *user_data) {
    events *ev = user_data;
    if ((unsigned)e->kind < 16) __atomic_fetch_add(&ev->count[e->kind], 1, __ATOMIC_SEQ_CST);
    if (e->kind == STOCKADE_EVENT_KIND_HEDGE_WON) ev->last_attempt = e->attempt;
}

/* ---- fallback ----------------------------------------------------------- */
typedef struct {
    int code;             /* what the callback returns */
    int calls;            /* callback runs */
    int fallbacks;        /* fallback runs */
    int fallback_result;  /* what the fallback returns */
    int value;            /* the result the caller reads */
    stockade_status seen_status;
    int seen_code;
    int refuse_code;      /* the classifier refuses this code */
    int released;
} fb_data;

static int fb_call(void *user_data) {
    fb_data *d = user_data;
    d->calls++;
    if (d->code == 0) d->value = 1;
    return d->code;
}

static bool fb_classify(stockade_status status, int code, void *user_data) {
    fb_data *d = user_data;
    (void)status;
    return code != d->refuse_code;
}

static int fb_fallback(stockade_status status, int code, void *user_data) {
    fb_data *d = user_data;
    d->fallbacks++;
    d->seen_status = status;
    d->seen_code = code;
    if (d->fallback_result == 0) d->value = 42;
    return d->fallback_result;
}

static bool only_breaker_open(stockade_status status, int code, void *user_data) {
    (void)code;
    (void)user_data;
    return status == STOCKADE_STATUS_BREAKER_OPEN;
}

static void fb_release(void *user_data) {
    fb_data *d = user_data;
    d->released++;
}

static void test_fallback_execute(void) {
    stockade_fallback *f = NULL, *again = NULL, *found = NULL;
    stockade_metrics m;
    events ev;
    uint64_t id = 0;
    fb_data d;
    memset(&d, 0, sizeof d);
    memset(&ev, 0, sizeof ev);
    d.refuse_code = 9;

    CHECK_NULL_ARG(stockade_fallback_new("c-fb", NULL));
    CHECK_OK(stockade_fallback_new("c-fb", &f));
    CHECK_STATUS(stockade_fallback_new("c-fb", &again), STOCKADE_STATUS_NAME_TAKEN);
    CHECK(again == NULL);
    CHECK_OK(stockade_fallback_get("c-fb", &found));
    CHECK_STATUS(stockade_fallback_get("c-fb-none", &again), STOCKADE_STATUS_NOT_FOUND);
    CHECK_OK(stockade_fallback_subscribe(f, on_event, &ev, &id));

    CHECK_NULL_ARG(stockade_fallback_execute(NULL, fb_call, NULL, fb_fallback, &d));
    CHECK_NULL_ARG(stockade_fallback_execute(f, NULL, NULL, fb_fallback, &d));
    CHECK_NULL_ARG(stockade_fallback_execute(f, fb_call, NULL, NULL, &d));
    CHECK(d.calls == 0);

    /* Success: the fallback does not run. */
    CHECK_OK(stockade_fallback_execute(f, fb_call, fb_classify, fb_fallback, &d));
    CHECK(d.value == 1 && d.fallbacks == 0);
    /* A handled failure: the fallback's outcome, with what failed. */
    d.code = 7;
    CHECK_OK(stockade_fallback_execute(f, fb_call, fb_classify, fb_fallback, &d));
    CHECK(d.value == 42 && d.fallbacks == 1);
    CHECK(d.seen_status == STOCKADE_STATUS_CALLBACK_FAILED && d.seen_code == 7);
    /* A failure the classifier refuses comes back as it is. */
    d.code = 9;
    CHECK_STATUS(stockade_fallback_execute(f, fb_call, fb_classify, fb_fallback, &d),
                 STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK(d.fallbacks == 1);
    /* A NULL classifier handles every failure; a failing fallback fails. */
    d.fallback_result = 3;
    CHECK_STATUS(stockade_fallback_execute(found, fb_call, NULL, fb_fallback, &d),
                 STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK(d.fallbacks == 2 && d.seen_code == 9);

    CHECK_OK(stockade_fallback_metrics(f, &m));
    CHECK(m.calls == 4 && m.successes == 1 && m.failures == 1 && m.fallbacks == 2);
    CHECK(m.hedges == 0 && m.hedges_won == 0);
    CHECK(ev.count[STOCKADE_EVENT_KIND_FALLBACK_USED] == 2);
    CHECK_OK(stockade_fallback_unsubscribe(f, id));
    CHECK_STATUS(stockade_fallback_unsubscribe(f, id), STOCKADE_STATUS_NOT_FOUND);
    CHECK_OK(stockade_fallback_subscribe(f, on_event, &ev, &id));

    CHECK_OK(stockade_fallback_dispose(f));
    CHECK(ev.count[STOCKADE_EVENT_KIND_DISPOSED] == 1);
    d.calls = 0;
    CHECK_STATUS(stockade_fallback_execute(f, fb_call, NULL, fb_fallback, &d), STOCKADE_STATUS_DISPOSED);
    CHECK(d.calls == 0);
    CHECK_STATUS(stockade_fallback_get("c-fb", &again), STOCKADE_STATUS_NOT_FOUND);
    CHECK_NULL_ARG(stockade_fallback_dispose(NULL));
    CHECK_NULL_ARG(stockade_fallback_metrics(NULL, &m));
    stockade_fallback_free(found);
    stockade_fallback_free(f);
    stockade_fallback_free(NULL);
}

static void test_fallback_in_a_pipeline(void) {
    stockade_breaker_config bc = stockade_breaker_config_default();
    stockade_breaker_handle *b = NULL;
    stockade_fallback *f = NULL;
    stockade_policy *stages[2] = {NULL, NULL}, *p = NULL;
    stockade_pipeline *pipeline = NULL;
    stockade_metrics m;
    fb_data d, call;
    memset(&d, 0, sizeof d);
    memset(&call, 0, sizeof call);
    bc.failure_threshold = 1;
    CHECK_OK(stockade_breaker_handle_new(NULL, &bc, NULL, &b));
    CHECK_OK(stockade_fallback_new(NULL, &f));

    /* NULL arguments release the data before returning. */
    CHECK_NULL_ARG(stockade_fallback_as_policy(NULL, NULL, fb_fallback, &d, fb_release, &p));
    CHECK_NULL_ARG(stockade_fallback_as_policy(f, NULL, NULL, &d, fb_release, &p));
    CHECK_NULL_ARG(stockade_fallback_as_policy(f, NULL, fb_fallback, &d, fb_release, NULL));
    CHECK(d.released == 3);
    d.released = 0;

    CHECK_OK(stockade_fallback_as_policy(f, only_breaker_open, fb_fallback, &d, fb_release, &stages[0]));
    CHECK_OK(stockade_breaker_handle_as_policy(b, &stages[1]));
    CHECK_OK(stockade_pipeline_new((const stockade_policy *const *)stages, 2, &pipeline));
    stockade_policy_free(stages[0]);
    stockade_policy_free(stages[1]);
    CHECK(d.released == 0); /* the pipeline holds the stage */

    /* The callback's failure is not handled (and opens the breaker). */
    call.code = 5;
    CHECK_STATUS(stockade_pipeline_execute(pipeline, fb_call, &call, NULL), STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK(d.fallbacks == 0);
    /* The breaker's refusal is: the fallback runs, the call does not. */
    call.code = 0;
    call.calls = 0;
    CHECK_OK(stockade_pipeline_execute(pipeline, fb_call, &call, NULL));
    CHECK(call.calls == 0 && d.fallbacks == 1 && d.value == 42);
    CHECK(d.seen_status == STOCKADE_STATUS_BREAKER_OPEN && d.seen_code == 0);
    CHECK_OK(stockade_fallback_metrics(f, &m));
    CHECK(m.calls == 2 && m.failures == 1 && m.fallbacks == 1);

    stockade_pipeline_free(pipeline);
    CHECK(d.released == 1); /* the stage is gone: released once */
    stockade_fallback_free(f);
    stockade_breaker_handle_free(b);
    CHECK(d.released == 1);
}

/* ---- hedging ------------------------------------------------------------ */
typedef struct {
    gate first;          /* attempt 1 waits here when `block_first` */
    int block_first;
    int fail_attempt;    /* this attempt fails (0: none) */
    int started;
    int finished;
    int released;
    int watchdog_fired;
} hd_data;

static int hd_call(uint32_t attempt, void *user_data) {
    hd_data *d = user_data;
    int rc = 0;
    __atomic_fetch_add(&d->started, 1, __ATOMIC_SEQ_CST);
    if (attempt == 1 && d->block_first && gate_wait(&d->first) != 0)
        __atomic_fetch_add(&d->watchdog_fired, 1, __ATOMIC_SEQ_CST);
    if ((int)attempt == d->fail_attempt) rc = 5;
    __atomic_fetch_add(&d->finished, 1, __ATOMIC_SEQ_CST);
    return rc;
}

static void hd_release(void *user_data) {
    hd_data *d = user_data;
    __atomic_fetch_add(&d->released, 1, __ATOMIC_SEQ_CST);
}

static void hd_init(hd_data *d) {
    memset(d, 0, sizeof *d);
    gate_init(&d->first);
}

static void test_hedging_config_and_nulls(void) {
    stockade_hedging_config c = stockade_hedging_config_default();
    stockade_config_error err;
    stockade_hedging *h = NULL, *again = NULL;
    hd_data d;
    uint32_t won = 0;
    hd_init(&d);
    CHECK(c.delay_ms == 2000 && c.max_attempts == 2 && c.max_workers == 16);

    c.max_attempts = 0;
    CHECK_STATUS(stockade_hedging_new(NULL, &c, &err, &h), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 40 && strcmp(err.option_name, "max_attempts") == 0);
    c.max_attempts = 65;
    CHECK_STATUS(stockade_hedging_new(NULL, &c, &err, &h), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 40 && err.limit == 64);
    c.max_attempts = 2;
    c.max_workers = 0;
    CHECK_STATUS(stockade_hedging_new(NULL, &c, NULL, &h), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK_STATUS(stockade_hedging_new(NULL, &c, &err, &h), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 61 && strcmp(err.option_name, "max_workers") == 0);
    CHECK(h == NULL);
    c.max_workers = 2;
    CHECK_NULL_ARG(stockade_hedging_new(NULL, NULL, NULL, &h));
    CHECK_NULL_ARG(stockade_hedging_new(NULL, &c, NULL, NULL));

    CHECK_OK(stockade_hedging_new("c-hedging", &c, NULL, &h));
    CHECK_STATUS(stockade_hedging_new("c-hedging", &c, NULL, &again), STOCKADE_STATUS_NAME_TAKEN);
    CHECK_OK(stockade_hedging_get("c-hedging", &again));
    /* NULL arguments: nothing runs, the data is released before returning. */
    CHECK_NULL_ARG(stockade_hedging_execute(NULL, hd_call, &d, hd_release, &won));
    CHECK_NULL_ARG(stockade_hedging_execute(h, NULL, &d, hd_release, &won));
    CHECK(d.released == 2 && d.started == 0);
    CHECK_OK(stockade_hedging_dispose(again));
    CHECK_STATUS(stockade_hedging_execute(h, hd_call, &d, hd_release, &won), STOCKADE_STATUS_DISPOSED);
    CHECK(d.released == 3 && d.started == 0);
    CHECK_STATUS(stockade_hedging_get("c-hedging", &again), STOCKADE_STATUS_NOT_FOUND);
    stockade_hedging_free(again);
    stockade_hedging_free(h);
    gate_destroy(&d.first);
}

static void test_a_failure_launches_the_hedge(void) {
    stockade_hedging_config c = stockade_hedging_config_default();
    stockade_hedging *h = NULL;
    stockade_metrics m;
    events ev;
    uint64_t id = 0;
    hd_data d;
    uint32_t won = 0;
    hd_init(&d);
    memset(&ev, 0, sizeof ev);
    c.delay_ms = 3600000; /* only a failure can launch the hedge */
    c.max_attempts = 3;
    d.fail_attempt = 1;
    CHECK_OK(stockade_hedging_new(NULL, &c, NULL, &h));
    CHECK_OK(stockade_hedging_subscribe(h, on_event, &ev, &id));
    CHECK_OK(stockade_hedging_execute(h, hd_call, &d, hd_release, &won));
    CHECK(won == 2);
    CHECK(wait_count(&d.released, 1) == 0);
    CHECK(d.released == 1 && d.started == 2);
    CHECK_OK(stockade_hedging_metrics(h, &m));
    CHECK(m.calls == 1 && m.successes == 1 && m.hedges == 1 && m.hedges_won == 1);
    CHECK(ev.count[STOCKADE_EVENT_KIND_HEDGE_LAUNCHED] == 1);
    CHECK(ev.count[STOCKADE_EVENT_KIND_HEDGE_WON] == 1 && ev.last_attempt == 2);
    CHECK_OK(stockade_hedging_unsubscribe(h, id));
    CHECK_STATUS(stockade_hedging_unsubscribe(h, id), STOCKADE_STATUS_NOT_FOUND);
    CHECK_NULL_ARG(stockade_hedging_subscribe(h, NULL, &ev, &id));

    stockade_hedging_free(h);
    gate_destroy(&d.first);
}

static int always_fail(uint32_t attempt, void *user_data) {
    hd_data *d = user_data;
    (void)attempt;
    __atomic_fetch_add(&d->started, 1, __ATOMIC_SEQ_CST);
    return 8;
}

static void test_every_attempt_fails(void) {
    stockade_hedging_config c = stockade_hedging_config_default();
    stockade_hedging *h = NULL;
    stockade_metrics m;
    hd_data d;
    hd_init(&d);
    c.max_attempts = 3;
    CHECK_OK(stockade_hedging_new(NULL, &c, NULL, &h));
    CHECK_STATUS(stockade_hedging_execute(h, always_fail, &d, hd_release, NULL),
                 STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK(d.started == 3);
    CHECK(wait_count(&d.released, 1) == 0);
    CHECK_OK(stockade_hedging_metrics(h, &m));
    CHECK(m.calls == 1 && m.failures == 1 && m.hedges == 2 && m.hedges_won == 0);
    stockade_hedging_free(h);
    gate_destroy(&d.first);
}

static void test_a_slow_first_attempt_loses(void) {
    stockade_hedging_config c = stockade_hedging_config_default();
    stockade_hedging *h = NULL;
    hd_data d;
    uint32_t won = 0;
    hd_init(&d);
    c.delay_ms = 20;
    d.block_first = 1;
    CHECK_OK(stockade_hedging_new(NULL, &c, NULL, &h));
    CHECK_OK(stockade_hedging_execute(h, hd_call, &d, hd_release, &won));
    CHECK(won == 2);
    /* The loser still runs: the data is not released yet. */
    CHECK(__atomic_load_n(&d.released, __ATOMIC_SEQ_CST) == 0);
    gate_open(&d.first);
    CHECK(wait_count(&d.released, 1) == 0);
    CHECK(d.finished == 2 && d.released == 1 && d.watchdog_fired == 0);
    stockade_hedging_free(h);
    gate_destroy(&d.first);
}

/* Opens the gate once the hedging counted a refused hedge. */
typedef struct {
    stockade_hedging *h;
    hd_data *d;
    int saw_rejection;
} opener_args;

static void *opener(void *arg) {
    opener_args *a = arg;
    stockade_metrics m;
    time_t start = time(NULL);
    for (;;) {
        if (stockade_hedging_metrics(a->h, &m) == STOCKADE_STATUS_OK && m.rejections == 1) {
            a->saw_rejection = 1;
            break;
        }
        if (time(NULL) - start > WATCHDOG_S) break;
        sched_yield();
    }
    gate_open(&a->d->first);
    return NULL;
}

static void test_a_full_pool_means_no_hedge(void) {
    stockade_hedging_config c = stockade_hedging_config_default();
    stockade_hedging *h = NULL;
    stockade_metrics m;
    hd_data d;
    opener_args a;
    pthread_t th;
    uint32_t won = 0;
    hd_init(&d);
    c.delay_ms = 0;
    c.max_workers = 1;
    d.block_first = 1;
    CHECK_OK(stockade_hedging_new(NULL, &c, NULL, &h));
    a.h = h;
    a.d = &d;
    a.saw_rejection = 0;
    pthread_create(&th, NULL, opener, &a);
    CHECK_OK(stockade_hedging_execute(h, hd_call, &d, hd_release, &won));
    pthread_join(th, NULL);
    CHECK(a.saw_rejection == 1);
    CHECK(won == 1 && d.started == 1);
    CHECK_OK(stockade_hedging_metrics(h, &m));
    CHECK(m.successes == 1 && m.hedges == 0 && m.rejections == 1);
    CHECK(wait_count(&d.released, 1) == 0);
    stockade_hedging_free(h);
    gate_destroy(&d.first);
}

/* ---- hedging with a classifier ------------------------------------------ */
typedef struct {
    hd_data hd;
    int codes[4];        /* what attempt n returns (index n - 1) */
    int hedge_on;        /* the code the classifier hedges on; -1: every one */
    int classified;      /* classifier calls */
    int seen_code[8];    /* the codes it saw, in order */
    int bad_status;      /* a status other than CALLBACK_FAILED */
} hf_data;

static int hf_call(uint32_t attempt, void *user_data) {
    hf_data *d = user_data;
    __atomic_fetch_add(&d->hd.started, 1, __ATOMIC_SEQ_CST);
    if (attempt == 1 && d->hd.block_first && gate_wait(&d->hd.first) != 0)
        __atomic_fetch_add(&d->hd.watchdog_fired, 1, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&d->hd.finished, 1, __ATOMIC_SEQ_CST);
    return attempt <= 4 ? d->codes[attempt - 1] : 0;
}

static void hf_release(void *user_data) {
    hf_data *d = user_data;
    __atomic_fetch_add(&d->hd.released, 1, __ATOMIC_SEQ_CST);
}

static bool hf_classify(stockade_status status, int code, void *user_data) {
    hf_data *d = user_data;
    int n = __atomic_fetch_add(&d->classified, 1, __ATOMIC_SEQ_CST);
    if (n < 8) d->seen_code[n] = code;
    if (status != STOCKADE_STATUS_CALLBACK_FAILED) d->bad_status = 1;
    return d->hedge_on < 0 || code == d->hedge_on;
}

static void hf_init(hf_data *d, int c1, int c2, int c3, int hedge_on) {
    memset(d, 0, sizeof *d);
    gate_init(&d->hd.first);
    d->codes[0] = c1;
    d->codes[1] = c2;
    d->codes[2] = c3;
    d->hedge_on = hedge_on;
}

static void test_execute_if_hedges_only_on_chosen_failures(void) {
    stockade_hedging_config c = stockade_hedging_config_default();
    stockade_hedging *h = NULL;
    stockade_metrics m;
    hf_data d;
    uint32_t won = 0;
    c.delay_ms = 3600000; /* only a failure can launch a hedge */
    c.max_attempts = 3;
    CHECK_OK(stockade_hedging_new(NULL, &c, NULL, &h));

    /* 7 is hedged on, 9 is final: attempt 3 never starts. */
    hf_init(&d, 7, 9, 0, 7);
    CHECK_STATUS(stockade_hedging_execute_if(h, hf_call, hf_classify, &d, hf_release, &won),
                 STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK(won == 0);
    CHECK(d.hd.started == 2 && d.classified == 2);
    CHECK(d.seen_code[0] == 7 && d.seen_code[1] == 9 && d.bad_status == 0);
    CHECK(wait_count(&d.hd.released, 1) == 0);
    CHECK_OK(stockade_hedging_metrics(h, &m));
    CHECK(m.calls == 1 && m.failures == 1 && m.hedges == 1);
    gate_destroy(&d.hd.first);

    /* Every failure chosen: attempt 3 wins. */
    hf_init(&d, 7, 9, 0, -1);
    CHECK_OK(stockade_hedging_execute_if(h, hf_call, hf_classify, &d, hf_release, &won));
    CHECK(won == 3 && d.hd.started == 3 && d.classified == 2);
    CHECK(wait_count(&d.hd.released, 1) == 0);
    gate_destroy(&d.hd.first);

    /* A NULL classifier hedges on every failure, as _execute does. */
    hf_init(&d, 9, 9, 0, 7);
    CHECK_OK(stockade_hedging_execute_if(h, hf_call, NULL, &d, hf_release, &won));
    CHECK(won == 3 && d.classified == 0);
    CHECK(wait_count(&d.hd.released, 1) == 0);
    gate_destroy(&d.hd.first);

    /* A failure that is final at once (the first attempt's). */
    hf_init(&d, 9, 0, 0, 7);
    CHECK_STATUS(stockade_hedging_execute_if(h, hf_call, hf_classify, &d, hf_release, &won),
                 STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK(d.hd.started == 1 && d.classified == 1);
    CHECK(wait_count(&d.hd.released, 1) == 0);
    gate_destroy(&d.hd.first);

    /* NULL arguments: nothing runs, the data is released before returning. */
    hf_init(&d, 0, 0, 0, 7);
    CHECK_NULL_ARG(stockade_hedging_execute_if(NULL, hf_call, hf_classify, &d, hf_release, &won));
    CHECK_NULL_ARG(stockade_hedging_execute_if(h, NULL, hf_classify, &d, hf_release, &won));
    CHECK(d.hd.released == 2 && d.hd.started == 0 && d.classified == 0);
    CHECK_OK(stockade_hedging_dispose(h));
    CHECK_STATUS(stockade_hedging_execute_if(h, hf_call, hf_classify, &d, hf_release, &won),
                 STOCKADE_STATUS_DISPOSED);
    CHECK(d.hd.released == 3 && d.hd.started == 0);
    gate_destroy(&d.hd.first);
    stockade_hedging_free(h);
}

static void test_a_final_failure_leaves_the_first_attempt_running(void) {
    stockade_hedging_config c = stockade_hedging_config_default();
    stockade_hedging *h = NULL;
    stockade_metrics m;
    hf_data d;
    uint32_t won = 0;
    c.delay_ms = 20; /* attempt 2 starts while attempt 1 waits at its gate */
    c.max_attempts = 3;
    CHECK_OK(stockade_hedging_new(NULL, &c, NULL, &h));
    hf_init(&d, 0, 9, 0, 7);
    d.hd.block_first = 1;
    CHECK_STATUS(stockade_hedging_execute_if(h, hf_call, hf_classify, &d, hf_release, &won),
                 STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK(d.hd.started == 2 && d.classified == 1 && d.seen_code[0] == 9);
    /* Attempt 1 still runs (its success comes too late): not released yet. */
    CHECK(__atomic_load_n(&d.hd.released, __ATOMIC_SEQ_CST) == 0);
    CHECK_OK(stockade_hedging_metrics(h, &m));
    CHECK(m.calls == 1 && m.failures == 1 && m.successes == 0 && m.hedges_won == 0);
    gate_open(&d.hd.first);
    CHECK(wait_count(&d.hd.released, 1) == 0);
    CHECK(d.hd.finished == 2 && d.hd.watchdog_fired == 0 && d.classified == 1);
    CHECK_OK(stockade_hedging_metrics(h, &m));
    CHECK(m.calls == 1 && m.successes == 0);
    stockade_hedging_free(h);
    gate_destroy(&d.hd.first);
}

static int pipeline_calls;
static int pipeline_call(void *user_data) {
    (void)user_data;
    /* The first run fails: the hedge is launched at once and succeeds. */
    return __atomic_fetch_add(&pipeline_calls, 1, __ATOMIC_SEQ_CST) == 0 ? 4 : 0;
}

static void test_hedging_in_a_pipeline(void) {
    stockade_hedging_config c = stockade_hedging_config_default();
    stockade_hedging *h = NULL;
    stockade_policy *stage = NULL;
    stockade_pipeline *pipeline = NULL;
    stockade_metrics m;
    c.delay_ms = 3600000;
    CHECK_OK(stockade_hedging_new(NULL, &c, NULL, &h));
    CHECK_NULL_ARG(stockade_hedging_as_policy(NULL, &stage));
    CHECK_NULL_ARG(stockade_hedging_as_policy(h, NULL));
    CHECK_OK(stockade_hedging_as_policy(h, &stage));
    CHECK_OK(stockade_pipeline_new((const stockade_policy *const *)&stage, 1, &pipeline));
    stockade_policy_free(stage);
    CHECK_OK(stockade_pipeline_execute(pipeline, pipeline_call, NULL, NULL));
    CHECK(pipeline_calls == 2);
    CHECK_OK(stockade_hedging_metrics(h, &m));
    CHECK(m.hedges == 1 && m.hedges_won == 1);
    stockade_pipeline_free(pipeline);
    stockade_hedging_free(h);
}

int main(void) {
    alarm(120);
    test_fallback_execute();
    test_fallback_in_a_pipeline();
    test_hedging_config_and_nulls();
    test_a_failure_launches_the_hedge();
    test_every_attempt_fails();
    test_a_slow_first_attempt_loses();
    test_a_full_pool_means_no_hedge();
    test_execute_if_hedges_only_on_chosen_failures();
    test_a_final_failure_leaves_the_first_attempt_running();
    test_hedging_in_a_pipeline();
    return check_report("test_fallback_hedging");
}
