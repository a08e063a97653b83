/* Objects a fleet shares through Redis (the _new_redis functions), against
 * a real redis-server that tests/c/run.sh starts on a free loopback port
 * for this test alone: STOCKADE_TEST_REDIS_URL is its URL and
 * STOCKADE_TEST_REDIS_PID its process, which this test kills (kill -9)
 * near the end. Checks: a forked child and the parent share one limit and
 * one bulkhead permit, a breaker tripped by a child refuses calls in the
 * parent, a config mismatch and a fail-closed refusal after the server is
 * killed come back as typed statuses with full messages (and the
 * STORE_UNAVAILABLE event and fallback_decisions metric), the local
 * fallback keeps admitting, and every bad argument (NULL pointers, a bad
 * URL, options out of range) has its status. The children are forked
 * before this process makes any Stockade call (no thread exists yet) and
 * wait for the parent's signal. Every wait on a child has a deadline, and
 * alarm() guards the whole test. */
#define _XOPEN_SOURCE 700
#include "stockade.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

static const char *url;
static char prefix[64];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void nap_ms(long ms) {
    struct timespec ts;
    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Waits for `pid` for at most `ms`; kills it and returns -1 on timeout,
 * else its wait status. */
static int wait_child(pid_t pid, long ms) {
    uint64_t deadline = now_ns() + (uint64_t)ms * 1000000u;
    int status = 0;
    for (;;) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid) return status;
        if (got < 0 && errno != EINTR) return -1;
        if (now_ns() >= deadline) {
            fprintf(stderr, "child %d did not finish within %ld ms: killed\n", (int)pid, ms);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        nap_ms(5);
    }
}

/* 1 while something accepts connections on the server's port. */
static int port_open(void) {
    int port = 0;
    if (sscanf(url, "redis://127.0.0.1:%d", &port) != 1 || port <= 0 || port > 65535) return 0;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int open = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return open;
}

static int exit_code(int status) { return status != -1 && WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

/* A child forked before the parent makes any Stockade call (so before any
 * thread exists): it waits for the parent's "go" byte, runs `body`, and
 * exits with its result. `body` may talk back through `back`. */
struct child {
    pid_t pid;
    int go;   /* parent writes */
    int back; /* parent reads */
};

static struct child spawn(int (*body)(int go, int back)) {
    struct child c = {-1, -1, -1};
    int go[2], back[2];
    if (pipe(go) != 0 || pipe(back) != 0) return c;
    fflush(NULL);
    c.pid = fork();
    if (c.pid == 0) {
        close(go[1]);
        close(back[0]);
        char byte;
        if (read(go[0], &byte, 1) != 1) _exit(90);
        _exit(body(go[0], back[1]));
    }
    close(go[0]);
    close(back[1]);
    c.go = go[1];
    c.back = back[0];
    return c;
}

static void signal_child(struct child *c) {
    char byte = 1;
    CHECK(write(c->go, &byte, 1) == 1);
}

/* The child's next byte (a watchdog: alarm() is armed). */
static int from_child(struct child *c) {
    char byte = 0;
    return read(c->back, &byte, 1) == 1 ? byte : -1;
}

static int finish_child(struct child *c) {
    int code = exit_code(wait_child(c->pid, 20000));
    close(c->go);
    close(c->back);
    return code;
}

static int ok_call(void *user_data) { ++*(int *)user_data; return 0; }
static int fail_call(void *user_data) { ++*(int *)user_data; return 1; }

/* Generous timeouts: the test also runs under valgrind. */
static stockade_redis_options options(void) {
    stockade_redis_options o = stockade_redis_options_default();
    o.url = url;
    o.prefix = prefix;
    o.connect_timeout_ms = 2000;
    o.command_timeout_ms = 2000;
    return o;
}

/* A strict limiter of 5 per minute: a child takes 3, the parent then gets
 * exactly the 2 left. */
static stockade_limiter_config limit_config(void) {
    stockade_limiter_config c = stockade_limiter_config_default();
    c.requests_per_period = 5;
    c.period_ms = 60000;
    c.burst = 5;
    c.queue_timeout_ms = 0;
    return c;
}

static int limiter_child(int go, int back) {
    (void)go;
    (void)back;
    stockade_limiter_config c = limit_config();
    stockade_redis_options o = options();
    stockade_limiter_handle *l = NULL;
    if (stockade_limiter_handle_new_redis("c-limit", &c, &o, NULL, &l) != STOCKADE_STATUS_OK) return 10;
    for (int i = 0; i < 3; i++) {
        if (stockade_limiter_handle_try_acquire(l, 1) != STOCKADE_STATUS_OK) return 11 + i;
    }
    stockade_limiter_handle_dispose(l);
    stockade_limiter_handle_free(l);
    return 0;
}

static void limiter_shared_across_processes(struct child *child) {
    stockade_limiter_config c = limit_config();
    stockade_redis_options o = options();
    signal_child(child);
    CHECK(finish_child(child) == 0);

    stockade_limiter_handle *l = NULL;
    CHECK_OK(stockade_limiter_handle_new_redis("c-limit", &c, &o, NULL, &l));
    CHECK(strcmp(stockade_redis_last_error(), "") == 0);
    CHECK_OK(stockade_limiter_handle_try_acquire(l, 1));
    CHECK_OK(stockade_limiter_handle_acquire(l, 1, 0));
    CHECK_STATUS(stockade_limiter_handle_try_acquire(l, 1), STOCKADE_STATUS_RATE_LIMITED);
    stockade_metrics m;
    CHECK_OK(stockade_limiter_handle_metrics(l, &m));
    CHECK(m.successes == 2 && m.rejections == 1 && m.fallback_decisions == 0);
    /* Registered like a _new handle. */
    stockade_limiter_handle *again = NULL;
    CHECK_OK(stockade_limiter_handle_get("c-limit", &again));
    CHECK_STATUS(stockade_limiter_handle_try_acquire(again, 1), STOCKADE_STATUS_RATE_LIMITED);
    stockade_limiter_handle_free(again);
    stockade_limiter_handle *taken = NULL;
    CHECK_STATUS(stockade_limiter_handle_new_redis("c-limit", &c, &o, NULL, &taken), STOCKADE_STATUS_NAME_TAKEN);
    CHECK(taken == NULL);
    CHECK_OK(stockade_limiter_handle_dispose(l));
    stockade_limiter_handle_free(l);

    /* Another config under the same key: a typed error naming both. */
    c.requests_per_period = 6;
    c.burst = 6;
    CHECK_OK(stockade_limiter_handle_new_redis("c-limit", &c, &o, NULL, &l));
    CHECK_STATUS(stockade_limiter_handle_try_acquire(l, 1), STOCKADE_STATUS_REDIS_CONFIG_MISMATCH);
    CHECK(strstr(stockade_redis_last_error(), "c-limit") != NULL);
    CHECK(strstr(stockade_redis_last_error(), "stored") != NULL);
    CHECK_OK(stockade_limiter_handle_dispose(l));
    stockade_limiter_handle_free(l);
    /* ... unless the stored one is adopted. */
    o.adopt_stored_config = true;
    CHECK_OK(stockade_limiter_handle_new_redis("c-limit", &c, &o, NULL, &l));
    CHECK_STATUS(stockade_limiter_handle_try_acquire(l, 1), STOCKADE_STATUS_RATE_LIMITED);
    CHECK_OK(stockade_limiter_handle_dispose(l));
    stockade_limiter_handle_free(l);
}

/* A bulkhead of 1 permit: while a child holds it, the parent is refused;
 * once the child released it, the parent gets it. */
static stockade_bulkhead_config bulk_config(void) {
    stockade_bulkhead_config c = stockade_bulkhead_config_default();
    c.max_concurrent = 1;
    c.max_queue = 0;
    return c;
}

static int bulkhead_child(int go, int back) {
    stockade_bulkhead_config c = bulk_config();
    stockade_redis_options o = options();
    stockade_bulkhead_handle *b = NULL;
    stockade_bulkhead_permit *p = NULL;
    if (stockade_bulkhead_handle_new_redis("c-bulk", &c, &o, NULL, &b) != STOCKADE_STATUS_OK) return 10;
    if (stockade_bulkhead_handle_try_acquire(b, &p) != STOCKADE_STATUS_OK) return 11;
    char byte = 1;
    if (write(back, &byte, 1) != 1) return 12;
    if (read(go, &byte, 1) != 1) return 13;
    if (stockade_bulkhead_permit_release(p) != STOCKADE_STATUS_OK) return 14;
    stockade_bulkhead_permit_free(p);
    stockade_bulkhead_handle_dispose(b);
    stockade_bulkhead_handle_free(b);
    return 0;
}

static void bulkhead_shared_across_processes(struct child *child) {
    stockade_bulkhead_config c = bulk_config();
    stockade_redis_options o = options();
    signal_child(child);
    CHECK(from_child(child) == 1);

    stockade_bulkhead_handle *b = NULL;
    stockade_bulkhead_permit *p = NULL;
    CHECK_OK(stockade_bulkhead_handle_new_redis("c-bulk", &c, &o, NULL, &b));
    CHECK_STATUS(stockade_bulkhead_handle_try_acquire(b, &p), STOCKADE_STATUS_BULKHEAD_FULL);
    CHECK(p == NULL);
    int ran = 0;
    CHECK_STATUS(stockade_bulkhead_handle_try_execute(b, ok_call, &ran), STOCKADE_STATUS_BULKHEAD_FULL);
    CHECK(ran == 0);
    signal_child(child);
    CHECK(finish_child(child) == 0);

    CHECK_OK(stockade_bulkhead_handle_try_execute(b, ok_call, &ran));
    CHECK(ran == 1);
    CHECK_OK(stockade_bulkhead_handle_try_acquire(b, &p));
    CHECK_OK(stockade_bulkhead_permit_release(p));
    stockade_bulkhead_permit_free(p);
    stockade_metrics m;
    CHECK_OK(stockade_bulkhead_handle_metrics(b, &m));
    CHECK(m.in_flight == 0 && m.rejections >= 1 && m.fallback_decisions == 0);
    CHECK_OK(stockade_bulkhead_handle_dispose(b));
    stockade_bulkhead_handle_free(b);
}

/* A breaker tripped by a child's failure refuses calls in the parent
 * within the sync interval (polled with a deadline). */
static stockade_breaker_config break_config(void) {
    stockade_breaker_config c = stockade_breaker_config_default();
    c.failure_threshold = 1;
    c.reset_timeout_ms = 60000;
    return c;
}

static int breaker_child(int go, int back) {
    (void)go;
    (void)back;
    stockade_breaker_config c = break_config();
    stockade_redis_options o = options();
    stockade_breaker_handle *b = NULL;
    int ran = 0;
    if (stockade_breaker_handle_new_redis("c-break", &c, &o, NULL, &b) != STOCKADE_STATUS_OK) return 10;
    if (stockade_breaker_handle_execute(b, fail_call, &ran) != STOCKADE_STATUS_CALLBACK_FAILED) return 11;
    if (ran != 1) return 12;
    stockade_breaker_handle_dispose(b);
    stockade_breaker_handle_free(b);
    return 0;
}

static void breaker_shared_across_processes(struct child *child) {
    stockade_breaker_config c = break_config();
    stockade_redis_options o = options();
    o.sync_interval_ms = 20;
    signal_child(child);
    CHECK(finish_child(child) == 0);

    stockade_breaker_handle *b = NULL;
    CHECK_OK(stockade_breaker_handle_new_redis("c-break", &c, &o, NULL, &b));
    if (b == NULL) return;
    int ran = 0;
    stockade_status s = STOCKADE_STATUS_OK;
    uint64_t deadline = now_ns() + 10000000000u;
    while (now_ns() < deadline) {
        s = stockade_breaker_handle_execute(b, ok_call, &ran);
        if (s == STOCKADE_STATUS_BREAKER_OPEN) break;
        nap_ms(5);
    }
    CHECK_STATUS(s, STOCKADE_STATUS_BREAKER_OPEN);
    stockade_breaker_state state;
    CHECK_OK(stockade_breaker_handle_get_state(b, &state));
    CHECK(state == STOCKADE_BREAKER_STATE_OPEN);
    CHECK_OK(stockade_breaker_handle_dispose(b));
    stockade_breaker_handle_free(b);
}

struct seen {
    int unavailable;
    int cause;
    int recovered;
};

static void on_event(const stockade_event *e, void *user_data) {
    struct seen *seen = (struct seen *)user_data;
    if (e->kind == STOCKADE_EVENT_KIND_STORE_UNAVAILABLE) {
        seen->unavailable++;
        seen->cause = e->store_failure;
    }
    if (e->kind == STOCKADE_EVENT_KIND_STORE_RECOVERED) seen->recovered++;
}

/* kill -9 of the server: a fail-closed limiter refuses with
 * REDIS_UNAVAILABLE (once, with STORE_UNAVAILABLE), a local-fallback one
 * keeps admitting and counts fallback decisions. */
static void server_killed(pid_t server) {
    stockade_limiter_config c = stockade_limiter_config_default();
    c.requests_per_period = 1000;
    c.queue_timeout_ms = 0;
    stockade_redis_options closed = options();
    closed.fallback = STOCKADE_REDIS_FALLBACK_CLOSED;
    closed.command_timeout_ms = 200;
    closed.connect_timeout_ms = 200;
    stockade_redis_options local = closed;
    local.fallback = STOCKADE_REDIS_FALLBACK_LOCAL;
    stockade_limiter_handle *shut = NULL, *kept = NULL;
    CHECK_OK(stockade_limiter_handle_new_redis("c-closed", &c, &closed, NULL, &shut));
    CHECK_OK(stockade_limiter_handle_new_redis("c-local", &c, &local, NULL, &kept));
    struct seen seen = {0, 0, 0};
    uint64_t id = 0;
    CHECK_OK(stockade_limiter_handle_subscribe(shut, on_event, &seen, &id));
    CHECK_OK(stockade_limiter_handle_try_acquire(shut, 1));
    CHECK_OK(stockade_limiter_handle_try_acquire(kept, 1));

    CHECK(kill(server, SIGKILL) == 0);
    /* Not our child: wait (with a deadline) until its port refuses
     * connections, so the calls below cannot reach it. */
    uint64_t deadline = now_ns() + 10000000000u;
    while (port_open() && now_ns() < deadline) nap_ms(5);
    CHECK(!port_open());

    for (int i = 0; i < 5; i++) {
        uint64_t start = now_ns();
        CHECK_STATUS(stockade_limiter_handle_try_acquire(shut, 1), STOCKADE_STATUS_REDIS_UNAVAILABLE);
        /* Nothing hangs: the documented bound is connect + 2 x command
         * timeout; checked with a wide margin (valgrind). */
        CHECK(now_ns() - start < 10000000000u);
    }
    CHECK(strstr(stockade_redis_last_error(), "unavailable") != NULL);
    CHECK(seen.unavailable == 1);
    CHECK(seen.cause >= STOCKADE_STORE_FAILURE_TIMEOUT && seen.cause <= STOCKADE_STORE_FAILURE_GUARD_OPEN);
    CHECK(seen.recovered == 0);
    stockade_metrics m;
    CHECK_OK(stockade_limiter_handle_metrics(shut, &m));
    CHECK(m.fallback_decisions == 5);

    CHECK_OK(stockade_limiter_handle_try_acquire(kept, 1));
    CHECK_OK(stockade_limiter_handle_metrics(kept, &m));
    CHECK(m.fallback_decisions == 1 && m.successes == 2);

    CHECK_OK(stockade_limiter_handle_unsubscribe(shut, id));
    CHECK_OK(stockade_limiter_handle_dispose(shut));
    CHECK_OK(stockade_limiter_handle_dispose(kept));
    stockade_limiter_handle_free(shut);
    stockade_limiter_handle_free(kept);
}

/* Every bad argument, before any server is needed. */
static void bad_arguments(void) {
    stockade_redis_options d = stockade_redis_options_default();
    CHECK(d.url == NULL && d.prefix == NULL);
    CHECK(d.connect_timeout_ms == 250 && d.command_timeout_ms == 100);
    CHECK(d.max_connections == 16 && d.expected_instances == 1 && d.guard_failures == 3);
    CHECK(d.guard_reset_timeout_ms == 1000 && d.lease_permits == 0 && d.lease_ttl_ms == 0);
    CHECK(d.sync_interval_ms == 1000 && d.failure_window_ms == 60000 && d.quorum == 1);
    CHECK(d.fallback == STOCKADE_REDIS_FALLBACK_LOCAL && d.time == STOCKADE_REDIS_TIME_SERVER);
    CHECK(!d.adopt_stored_config);

    stockade_limiter_config lc = stockade_limiter_config_default();
    stockade_bulkhead_config bc = stockade_bulkhead_config_default();
    stockade_breaker_config kc = stockade_breaker_config_default();
    stockade_redis_options o = options();
    stockade_limiter_handle *l = NULL;
    stockade_bulkhead_handle *b = NULL;
    stockade_breaker_handle *k = NULL;

    CHECK_NULL_ARG(stockade_limiter_handle_new_redis(NULL, &lc, &o, NULL, &l));
    CHECK(strstr(stockade_redis_last_error(), "name") != NULL);
    CHECK_NULL_ARG(stockade_limiter_handle_new_redis("x", NULL, &o, NULL, &l));
    CHECK_NULL_ARG(stockade_limiter_handle_new_redis("x", &lc, NULL, NULL, &l));
    CHECK_NULL_ARG(stockade_limiter_handle_new_redis("x", &lc, &o, NULL, NULL));
    CHECK_NULL_ARG(stockade_bulkhead_handle_new_redis(NULL, &bc, &o, NULL, &b));
    CHECK_NULL_ARG(stockade_bulkhead_handle_new_redis("x", NULL, &o, NULL, &b));
    CHECK_NULL_ARG(stockade_bulkhead_handle_new_redis("x", &bc, NULL, NULL, &b));
    CHECK_NULL_ARG(stockade_bulkhead_handle_new_redis("x", &bc, &o, NULL, NULL));
    CHECK_NULL_ARG(stockade_breaker_handle_new_redis(NULL, &kc, &o, NULL, &k));
    CHECK_NULL_ARG(stockade_breaker_handle_new_redis("x", NULL, &o, NULL, &k));
    CHECK_NULL_ARG(stockade_breaker_handle_new_redis("x", &kc, NULL, NULL, &k));
    CHECK_NULL_ARG(stockade_breaker_handle_new_redis("x", &kc, &o, NULL, NULL));

    stockade_redis_options no_url = o;
    no_url.url = NULL;
    CHECK_NULL_ARG(stockade_limiter_handle_new_redis("x", &lc, &no_url, NULL, &l));
    CHECK(strstr(stockade_redis_last_error(), "url") != NULL);

    stockade_redis_options bad = o;
    bad.url = "http://127.0.0.1:1/";
    CHECK_STATUS(stockade_limiter_handle_new_redis("x", &lc, &bad, NULL, &l), STOCKADE_STATUS_REDIS_INVALID_URL);
    CHECK(strstr(stockade_redis_last_error(), "http://127.0.0.1:1/") != NULL);
    CHECK_STATUS(stockade_bulkhead_handle_new_redis("x", &bc, &bad, NULL, &b), STOCKADE_STATUS_REDIS_INVALID_URL);
    CHECK_STATUS(stockade_breaker_handle_new_redis("x", &kc, &bad, NULL, &k), STOCKADE_STATUS_REDIS_INVALID_URL);

    bad = o;
    bad.url = "redis://:hunter2@127.0.0.1:1/notanumber";
    CHECK_STATUS(stockade_limiter_handle_new_redis("x", &lc, &bad, NULL, &l), STOCKADE_STATUS_REDIS_INVALID_URL);
    CHECK(strstr(stockade_redis_last_error(), "hunter2") == NULL);

    bad = o;
    bad.max_connections = 5000;
    CHECK_STATUS(stockade_limiter_handle_new_redis("x", &lc, &bad, NULL, &l), STOCKADE_STATUS_REDIS_INVALID_OPTION);
    CHECK(strstr(stockade_redis_last_error(), "max_connections") != NULL);
    bad = o;
    bad.command_timeout_ms = 61000;
    CHECK_STATUS(stockade_bulkhead_handle_new_redis("x", &bc, &bad, NULL, &b), STOCKADE_STATUS_REDIS_INVALID_OPTION);
    CHECK(strstr(stockade_redis_last_error(), "command_timeout_ms") != NULL);
    bad = o;
    bad.prefix = "has space";
    CHECK_STATUS(stockade_breaker_handle_new_redis("x", &kc, &bad, NULL, &k), STOCKADE_STATUS_REDIS_INVALID_OPTION);
    CHECK(strstr(stockade_redis_last_error(), "prefix") != NULL);
    bad = o;
    bad.fallback = 7;
    CHECK_STATUS(stockade_limiter_handle_new_redis("x", &lc, &bad, NULL, &l), STOCKADE_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(stockade_redis_last_error(), "fallback") != NULL);
    bad = o;
    bad.time = 9;
    CHECK_STATUS(stockade_limiter_handle_new_redis("x", &lc, &bad, NULL, &l), STOCKADE_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(stockade_redis_last_error(), "time") != NULL);

    stockade_limiter_config bad_config = lc;
    bad_config.requests_per_period = 0;
    stockade_config_error err;
    CHECK_STATUS(stockade_limiter_handle_new_redis("x", &bad_config, &o, &err, &l), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(strstr(err.option_name, "requests_per_period") != NULL);
    CHECK(l == NULL && b == NULL && k == NULL);

    for (uint32_t s = 70; s <= 74; s++) CHECK(strcmp(stockade_status_str(s), "unknown status") != 0);
    CHECK(stockade_status_str(STOCKADE_STATUS_REDIS_UNSUPPORTED)[0] != 0);
}

int main(void) {
    alarm(120);
    url = getenv("STOCKADE_TEST_REDIS_URL");
    const char *pid_text = getenv("STOCKADE_TEST_REDIS_PID");
    if (url == NULL || pid_text == NULL) {
        fprintf(stderr, "test_redis: STOCKADE_TEST_REDIS_URL and STOCKADE_TEST_REDIS_PID must be set "
                        "(tests/c/run.sh starts a redis-server for this test)\n");
        return 1;
    }
    pid_t server = (pid_t)atol(pid_text);
    CHECK(server > 0);
    CHECK(port_open());
    snprintf(prefix, sizeof prefix, "ctest%ld", (long)getpid());

    /* Every child is forked before this process makes a Stockade call. */
    struct child limiter = spawn(limiter_child);
    struct child bulkhead = spawn(bulkhead_child);
    struct child breaker = spawn(breaker_child);
    CHECK(limiter.pid > 0 && bulkhead.pid > 0 && breaker.pid > 0);

    bad_arguments();
    limiter_shared_across_processes(&limiter);
    bulkhead_shared_across_processes(&bulkhead);
    breaker_shared_across_processes(&breaker);
    if (server > 0) server_killed(server);
    return check_report("test_redis");
}
