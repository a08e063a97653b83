/* Objects shared between processes (the _new_shared functions): a strict
 * limiter shared by forked children holds one limit host-wide, a breaker
 * tripped in a child is open in the parent, a SIGKILLed child's bulkhead
 * permits come back, a config mismatch, a symbolic link and (as root) a
 * file of another user come back as typed statuses with full messages,
 * events are per process, and every NULL path. Every wait on a
 * child has a deadline (and alarm() guards the whole test). Works in a
 * fresh directory under /dev/shm, removed at the end. */
#define _XOPEN_SOURCE 700
#include "stockade.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "check.h"

#define CHILDREN 4

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

static int exited_ok(int status) { return status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0; }

static int fail_call(void *user_data) { ++*(int *)user_data; return 1; }
static int ok_call(void *user_data) { ++*(int *)user_data; return 0; }

static int events_rejected;
static void on_event(const stockade_event *e, void *user_data) {
    (void)user_data;
    if (e->kind == STOCKADE_EVENT_KIND_REJECTED && e->pattern == STOCKADE_PATTERN_KIND_BULKHEAD)
        events_rejected++;
}

/* A breaker's events in this process: [0] state changes, [1] rejections. */
static void on_breaker_event(const stockade_event *e, void *user_data) {
    int *counts = (int *)user_data;
    if (e->kind == STOCKADE_EVENT_KIND_STATE_CHANGED) counts[0]++;
    if (e->kind == STOCKADE_EVENT_KIND_REJECTED) counts[1]++;
}

/* The file of shared object `kind`-`name` in `dir` (the documented name). */
static void object_path(char *buf, size_t len, const char *dir, const char *kind, const char *name) {
    snprintf(buf, len, "%s/stockade-%u-%s-%s", dir, (unsigned)geteuid(), kind, name);
}

/* 4 children hammer one strict limiter until a deadline: together they get
 * at most what one limiter allows in the time they ran. */
static void limiter_is_host_wide(const stockade_shared_options *o) {
    stockade_limiter_config c = stockade_limiter_config_default();
    stockade_limiter_handle *l = NULL;
    int fds[2], i, statuses_ok = 1;
    pid_t pids[CHILDREN];
    uint64_t start, end, spacing_ns, bound;
    uint32_t total = 0, got;
    const uint64_t run_ms = 500;

    c.mode = STOCKADE_LIMITER_MODE_STRICT;
    c.requests_per_period = 20;
    c.period_ms = 200; /* strict, burst 1: grants at least 10 ms apart */
    c.queue_timeout_ms = 0;
    CHECK_OK(stockade_limiter_handle_new_shared("c-test-limiter", &c, o, NULL, &l));
    if (l == NULL) return;
    spacing_ns = (uint64_t)c.period_ms * 1000000u / c.requests_per_period;

    CHECK(pipe(fds) == 0);
    fflush(NULL); /* nothing buffered is written twice */
    start = now_ns();
    for (i = 0; i < CHILDREN; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            /* The child keeps using the mapping it inherited. */
            uint32_t n = 0;
            close(fds[0]);
            while (now_ns() < start + run_ms * 1000000u) {
                if (stockade_limiter_handle_try_acquire(l, 1) == STOCKADE_STATUS_OK)
                    n++;
                else
                    nap_ms(1);
            }
            _exit(write(fds[1], &n, sizeof n) == (ssize_t)sizeof n ? 0 : 1);
        }
        CHECK(pids[i] > 0);
    }
    close(fds[1]);
    for (i = 0; i < CHILDREN; i++)
        if (pids[i] > 0 && !exited_ok(wait_child(pids[i], 30000))) statuses_ok = 0;
    end = now_ns();
    CHECK(statuses_ok);
    while (read(fds[0], &got, sizeof got) == (ssize_t)sizeof got) total += got;
    close(fds[0]);

    /* Every grant happened in [start, end]: a strict limiter with burst 1
     * grants at most one per spacing in it, plus one. */
    bound = (end - start) / spacing_ns + 1;
    printf("shared limiter: %u grants host-wide in %llu ms (one limiter allows %llu)\n",
           (unsigned)total, (unsigned long long)((end - start) / 1000000u), (unsigned long long)bound);
    CHECK(total <= bound);
    CHECK(total >= 10);

    /* The parent's own calls count against the same limit. */
    {
        int calls = 0;
        stockade_metrics m;
        stockade_status s = stockade_limiter_handle_execute(l, ok_call, &calls);
        CHECK(s == STOCKADE_STATUS_OK || s == STOCKADE_STATUS_RATE_LIMITED);
        CHECK_OK(stockade_limiter_handle_metrics(l, &m));
        CHECK(m.calls == 1); /* this process's calls only */
    }
    stockade_limiter_handle_free(l);
}

/* A breaker tripped in a child is open in the parent. */
static void breaker_trips_everywhere(const stockade_shared_options *o) {
    stockade_breaker_config c = stockade_breaker_config_default();
    stockade_breaker_handle *b = NULL, *again = NULL;
    stockade_breaker_state state = STOCKADE_BREAKER_STATE_CLOSED;
    stockade_metrics m;
    stockade_policy *policy = NULL;
    stockade_pipeline *pipeline = NULL;
    int calls = 0;
    pid_t pid;

    c.failure_threshold = 2;
    c.reset_timeout_ms = 600000;
    CHECK_OK(stockade_breaker_handle_new_shared("c-test-breaker", &c, o, NULL, &b));
    if (b == NULL) return;
    CHECK_OK(stockade_breaker_handle_get_state(b, &state));
    CHECK(state == STOCKADE_BREAKER_STATE_CLOSED);

    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        int n = 0, ok;
        ok = stockade_breaker_handle_execute(b, fail_call, &n) == STOCKADE_STATUS_CALLBACK_FAILED &&
             stockade_breaker_handle_execute(b, fail_call, &n) == STOCKADE_STATUS_CALLBACK_FAILED &&
             n == 2;
        _exit(ok ? 0 : 1);
    }
    CHECK(pid > 0);
    CHECK(exited_ok(wait_child(pid, 30000)));

    CHECK_OK(stockade_breaker_handle_get_state(b, &state));
    CHECK(state == STOCKADE_BREAKER_STATE_OPEN);
    CHECK_STATUS(stockade_breaker_handle_execute(b, ok_call, &calls), STOCKADE_STATUS_BREAKER_OPEN);
    CHECK(calls == 0);
    CHECK_OK(stockade_breaker_handle_metrics(b, &m));
    CHECK(m.state == STOCKADE_BREAKER_STATE_OPEN); /* host-wide */
    CHECK(m.failures == 0 && m.rejections == 1);   /* this process's calls */

    /* A second open of the name (another process would do the same) sees
     * the same state; as a pipeline stage it refuses too. */
    CHECK_OK(stockade_breaker_handle_new_shared("c-test-breaker", &c, o, NULL, &again));
    CHECK_OK(stockade_breaker_handle_get_state(again, &state));
    CHECK(state == STOCKADE_BREAKER_STATE_OPEN);
    CHECK_OK(stockade_breaker_handle_as_policy(again, &policy));
    CHECK_OK(stockade_pipeline_new((const stockade_policy *const *)&policy, 1, &pipeline));
    CHECK_STATUS(stockade_pipeline_execute(pipeline, ok_call, &calls, NULL), STOCKADE_STATUS_BREAKER_OPEN);
    CHECK(calls == 0);
    stockade_pipeline_free(pipeline);
    stockade_policy_free(policy);
    stockade_breaker_handle_free(again);
    stockade_breaker_handle_free(b);
}

/* Events are per process: a handle opened after another process tripped
 * the breaker does not announce that transition, only its own refusal.
 * (Run after the last fork: a breaker with listeners has a monitor
 * thread, which a forked child would not have.) */
static void breaker_events_are_per_process(const stockade_shared_options *o) {
    stockade_breaker_config c = stockade_breaker_config_default();
    stockade_breaker_handle *b = NULL;
    int calls = 0, events[2] = {0, 0};
    uint64_t listener = 0;

    c.failure_threshold = 2;
    c.reset_timeout_ms = 600000;
    CHECK_OK(stockade_breaker_handle_new_shared("c-test-breaker", &c, o, NULL, &b));
    if (b == NULL) return;
    CHECK_OK(stockade_breaker_handle_subscribe(b, on_breaker_event, events, &listener));
    CHECK_STATUS(stockade_breaker_handle_execute(b, ok_call, &calls), STOCKADE_STATUS_BREAKER_OPEN);
    CHECK(calls == 0);
    CHECK(events[0] == 0 && events[1] == 1);
    CHECK_OK(stockade_breaker_handle_unsubscribe(b, listener));
    stockade_breaker_handle_free(b);
}

/* A child holds 2 permits and is SIGKILLed: the parent gets them back. */
static void bulkhead_survives_a_killed_child(const stockade_shared_options *o) {
    stockade_bulkhead_config c = stockade_bulkhead_config_default();
    stockade_bulkhead_handle *b = NULL;
    stockade_bulkhead_permit *p1 = NULL, *p2 = NULL, *p3 = NULL;
    stockade_metrics m;
    int fds[2], calls = 0;
    uint64_t listener = 0;
    char ready = 0;
    struct pollfd pfd;
    pid_t pid;

    c.max_concurrent = 2;
    c.max_queue = 4;
    c.queue_timeout_ms = 30;
    CHECK_OK(stockade_bulkhead_handle_new_shared("c-test-bulkhead", &c, o, NULL, &b));
    if (b == NULL) return;
    CHECK_OK(stockade_bulkhead_handle_subscribe(b, on_event, NULL, &listener));

    CHECK(pipe(fds) == 0);
    fflush(NULL);
    pid = fork();
    if (pid == 0) {
        stockade_bulkhead_permit *a = NULL, *z = NULL;
        close(fds[0]);
        /* The child takes its own owner slot on this first call. */
        if (stockade_bulkhead_handle_try_acquire(b, &a) != STOCKADE_STATUS_OK ||
            stockade_bulkhead_handle_try_acquire(b, &z) != STOCKADE_STATUS_OK)
            _exit(1);
        if (write(fds[1], "r", 1) != 1) _exit(2);
        for (;;) pause(); /* until SIGKILL */
    }
    CHECK(pid > 0);
    close(fds[1]);
    pfd.fd = fds[0];
    pfd.events = POLLIN;
    CHECK(poll(&pfd, 1, 30000) == 1 && read(fds[0], &ready, 1) == 1 && ready == 'r');
    close(fds[0]);

    if (ready == 'r') {
        CHECK_OK(stockade_bulkhead_handle_metrics(b, &m));
        CHECK(m.in_flight == 2); /* host-wide: the child's permits */
        CHECK_STATUS(stockade_bulkhead_handle_try_acquire(b, &p1), STOCKADE_STATUS_BULKHEAD_FULL);
        CHECK(p1 == NULL);
        CHECK(events_rejected == 1);
        CHECK_STATUS(stockade_bulkhead_handle_try_execute(b, ok_call, &calls), STOCKADE_STATUS_BULKHEAD_FULL);
        /* Waits up to 20 ms (polling), then gives up. */
        CHECK_STATUS(stockade_bulkhead_handle_acquire(b, 20, &p1), STOCKADE_STATUS_QUEUE_TIMEOUT);
        CHECK(calls == 0);
    }
    kill(pid, SIGKILL);
    {
        int status = wait_child(pid, 30000);
        CHECK(status != -1 && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    }

    /* The dead child's permits come back on the next call that needs them. */
    CHECK_OK(stockade_bulkhead_handle_try_acquire(b, &p1));
    CHECK_OK(stockade_bulkhead_handle_acquire(b, 0, &p2));
    CHECK_OK(stockade_bulkhead_handle_metrics(b, &m));
    CHECK(m.in_flight == 2);
    CHECK_STATUS(stockade_bulkhead_handle_try_acquire(b, &p3), STOCKADE_STATUS_BULKHEAD_FULL);
    CHECK_OK(stockade_bulkhead_permit_release(p1));
    CHECK_STATUS(stockade_bulkhead_permit_release(p1), STOCKADE_STATUS_TOKEN_ALREADY_USED);
    CHECK_OK(stockade_bulkhead_handle_execute(b, ok_call, &calls));
    CHECK(calls == 1);
    stockade_bulkhead_permit_free(p1);
    stockade_bulkhead_permit_free(p2); /* released by free */
    CHECK_OK(stockade_bulkhead_handle_metrics(b, &m));
    CHECK(m.in_flight == 0 && m.queue_depth == 0);
    /* This process's calls: 2 permits and the execute succeeded, 3
     * refusals, 1 queue timeout. */
    CHECK(m.successes == 3 && m.rejections == 3 && m.timeouts == 1 && m.calls == 7);

    CHECK_OK(stockade_bulkhead_handle_unsubscribe(b, listener));
    CHECK_STATUS(stockade_bulkhead_handle_unsubscribe(b, listener), STOCKADE_STATUS_NOT_FOUND);
    CHECK_OK(stockade_bulkhead_handle_dispose(b));
    CHECK_STATUS(stockade_bulkhead_handle_try_acquire(b, &p3), STOCKADE_STATUS_DISPOSED);
    CHECK_STATUS(stockade_bulkhead_handle_execute(b, ok_call, &calls), STOCKADE_STATUS_DISPOSED);
    stockade_bulkhead_handle_free(b);
}

/* A second config for an existing name, a symbolic link in place of the
 * file, bad arguments: typed statuses, full messages. */
static void errors_are_typed(const stockade_shared_options *o, const char *dir) {
    stockade_limiter_config a = stockade_limiter_config_default(), bc;
    stockade_limiter_handle *l = NULL, *other = NULL;
    stockade_bulkhead_handle *bh = NULL;
    stockade_bulkhead_config bcfg = stockade_bulkhead_config_default();
    stockade_breaker_config brc = stockade_breaker_config_default();
    stockade_breaker_handle *br = NULL;
    stockade_shared_options adopt = *o, bad = *o;
    stockade_config_error err;
    const char *msg;
    char path[512];

    a.requests_per_period = 10;
    bc = a;
    bc.requests_per_period = 25;
    CHECK_OK(stockade_limiter_handle_new_shared("c-test-mismatch", &a, o, NULL, &l));
    CHECK(stockade_shared_last_error()[0] == '\0');
    CHECK_STATUS(stockade_limiter_handle_new_shared("c-test-mismatch", &bc, o, &err, &other),
                 STOCKADE_STATUS_SHARED_CONFIG_MISMATCH);
    CHECK(other == NULL);
    msg = stockade_shared_last_error();
    printf("mismatch: %s\n", msg);
    CHECK(strstr(msg, "requests_per_period: 10") != NULL); /* the stored config */
    CHECK(strstr(msg, "requests_per_period: 25") != NULL); /* the one given */
    CHECK(strstr(msg, "c-test-mismatch") != NULL);         /* the file */
    adopt.adopt_stored_config = true;
    CHECK_OK(stockade_limiter_handle_new_shared("c-test-mismatch", &bc, &adopt, NULL, &other));
    CHECK(stockade_shared_last_error()[0] == '\0');
    stockade_limiter_handle_free(other);
    stockade_limiter_handle_free(l);
    l = NULL;

    /* The name removed: the next open creates it afresh with its config. */
    object_path(path, sizeof path, dir, "limiter", "c-test-mismatch");
    CHECK(access(path, F_OK) == 0);
    CHECK_OK(stockade_shared_unlink(STOCKADE_SHARED_KIND_LIMITER, "c-test-mismatch", o));
    CHECK(access(path, F_OK) != 0);
    CHECK_OK(stockade_shared_unlink(STOCKADE_SHARED_KIND_LIMITER, "c-test-mismatch", o)); /* gone: ok */
    CHECK_OK(stockade_limiter_handle_new_shared("c-test-mismatch", &bc, o, NULL, &l));
    stockade_limiter_handle_free(l);
    l = NULL;
    CHECK_OK(stockade_shared_unlink(STOCKADE_SHARED_KIND_LIMITER, "c-test-mismatch", o));

    /* A symbolic link is never followed. */
    object_path(path, sizeof path, dir, "breaker", "c-test-link");
    CHECK(symlink("/etc/passwd", path) == 0);
    CHECK_STATUS(stockade_breaker_handle_new_shared("c-test-link", &brc, o, NULL, &br),
                 STOCKADE_STATUS_SHARED_REFUSED);
    CHECK(br == NULL);
    CHECK(strstr(stockade_shared_last_error(), "symbolic link") != NULL);
    CHECK(unlink(path) == 0);

    /* A file of another user is refused (root can make one). */
    if (geteuid() == 0) {
        object_path(path, sizeof path, dir, "breaker", "c-test-owner");
        CHECK_OK(stockade_breaker_handle_new_shared("c-test-owner", &brc, o, NULL, &br));
        stockade_breaker_handle_free(br);
        br = NULL;
        CHECK(chown(path, 65534, 65534) == 0);
        CHECK_STATUS(stockade_breaker_handle_new_shared("c-test-owner", &brc, o, NULL, &br),
                     STOCKADE_STATUS_SHARED_REFUSED);
        CHECK(br == NULL);
        CHECK(strstr(stockade_shared_last_error(), "belongs to id 65534") != NULL);
        CHECK_OK(stockade_shared_unlink(STOCKADE_SHARED_KIND_BREAKER, "c-test-owner", o));
        CHECK(access(path, F_OK) != 0);
    }

    /* A directory that does not exist. */
    bad.directory = "/nonexistent-stockade-dir";
    CHECK_STATUS(stockade_breaker_handle_new_shared("c-test-io", &brc, &bad, NULL, &br), STOCKADE_STATUS_SHARED_IO);
    CHECK(strstr(stockade_shared_last_error(), "/nonexistent-stockade-dir") != NULL);
    bad.directory = "";
    CHECK_STATUS(stockade_breaker_handle_new_shared("c-test-io", &brc, &bad, NULL, &br),
                 STOCKADE_STATUS_INVALID_ARGUMENT);

    /* An invalid config: as for the local constructors. */
    brc.failure_threshold = 0;
    CHECK_STATUS(stockade_breaker_handle_new_shared("c-test-bad", &brc, o, &err, &br), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 1 && strcmp(err.option_name, "failure_threshold") == 0);
    brc.failure_threshold = 5;
    bad = *o;
    bad.max_processes = 5000;
    CHECK_STATUS(stockade_bulkhead_handle_new_shared("c-test-bad", &bcfg, &bad, NULL, &bh),
                 STOCKADE_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(stockade_shared_last_error(), "max_processes") != NULL);
    CHECK_STATUS(stockade_limiter_handle_new_shared("", &a, o, NULL, &l), STOCKADE_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(stockade_limiter_handle_new_shared("\xff\xfe", &a, o, NULL, &l), STOCKADE_STATUS_INVALID_ARGUMENT);
    CHECK(l == NULL && bh == NULL && br == NULL);

    /* NULL arguments. */
    CHECK_NULL_ARG(stockade_limiter_handle_new_shared(NULL, &a, o, NULL, &l));
    CHECK_NULL_ARG(stockade_limiter_handle_new_shared("x", NULL, o, NULL, &l));
    CHECK_NULL_ARG(stockade_limiter_handle_new_shared("x", &a, NULL, NULL, &l));
    CHECK_NULL_ARG(stockade_limiter_handle_new_shared("x", &a, o, NULL, NULL));
    CHECK_NULL_ARG(stockade_breaker_handle_new_shared(NULL, &brc, o, NULL, &br));
    CHECK_NULL_ARG(stockade_breaker_handle_new_shared("x", &brc, NULL, NULL, &br));
    CHECK_NULL_ARG(stockade_bulkhead_handle_new_shared(NULL, &bcfg, o, NULL, &bh));
    CHECK_NULL_ARG(stockade_bulkhead_handle_new_shared("x", &bcfg, o, NULL, NULL));
    CHECK_NULL_ARG(stockade_shared_unlink(STOCKADE_SHARED_KIND_BREAKER, NULL, o));
    CHECK_NULL_ARG(stockade_shared_unlink(STOCKADE_SHARED_KIND_BREAKER, "x", NULL));
    CHECK_STATUS(stockade_shared_unlink(99, "x", o), STOCKADE_STATUS_INVALID_ARGUMENT);
    CHECK(strstr(stockade_shared_last_error(), "99") != NULL);
    CHECK(l == NULL && bh == NULL && br == NULL);
}

int main(void) {
    char dir[] = "/dev/shm/stockade-c-test-XXXXXX";
    char fallback[] = "/tmp/stockade-c-test-XXXXXX";
    char *d;
    stockade_shared_options o = stockade_shared_options_default(), zero;
    const char *kinds[] = {"limiter", "breaker", "bulkhead"};
    const char *names[] = {"c-test-limiter", "c-test-breaker", "c-test-bulkhead"};
    char path[512];
    int i;

    alarm(300); /* a hang fails the test (SIGALRM) instead of blocking CI */

    memset(&zero, 0, sizeof zero);
    CHECK(o.directory == NULL && !o.group_access && !o.adopt_stored_config);
    CHECK(o.max_processes == 256 && o.open_timeout_ms == 1000);
    CHECK(zero.max_processes == 0); /* {0} also means the defaults */

    d = mkdtemp(dir);
    if (d == NULL) d = mkdtemp(fallback);
    CHECK(d != NULL);
    if (d == NULL) return check_report("test_shared");
    o.directory = d;

    limiter_is_host_wide(&o);
    breaker_trips_everywhere(&o);
    bulkhead_survives_a_killed_child(&o);
    errors_are_typed(&o, d);
    breaker_events_are_per_process(&o);

    /* Remove what the test made: the names, then the directory. */
    for (i = 0; i < 3; i++) {
        CHECK_OK(stockade_shared_unlink((uint32_t)(i == 0 ? STOCKADE_SHARED_KIND_LIMITER
                                                  : i == 1 ? STOCKADE_SHARED_KIND_BREAKER
                                                           : STOCKADE_SHARED_KIND_BULKHEAD),
                                        names[i], &o));
        object_path(path, sizeof path, d, kinds[i], names[i]);
        CHECK(access(path, F_OK) != 0);
    }
    CHECK(rmdir(d) == 0);
    return check_report("test_shared");
}
