/* Replays the cross-language scenario files (the .txt files of tests/scenarios, format
 * in tests/scenarios/README.md) through the C ABI's core tier, on a clock
 * whose callback returns the scripted time. The Rust tests
 * (core/tests/scenarios.rs) and the Python tests
 * (python/tests/test_scenarios.py) replay the same files: same input,
 * same decisions.
 *
 * Usage: test_scenarios [DIR | FILE...]   (default: tests/scenarios, as
 * run from the repository root by tests/c/run.sh; or $STOCKADE_SCENARIOS)
 *
 * A mismatch prints FILE:LINE: expected '...', got '...'.
 *
 * Tokens are kept as the core hands them out and each report, release or
 * cancel passes a fresh copy, so the C ABI's own "used" flag (which makes
 * a second report through the same token TOKEN_ALREADY_USED) never hides
 * what the core decides: the decisions compared are the core's, as in
 * Rust and Python. */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stockade.h"
#include "check.h"

#define MAX_TOKENS 48
#define MAX_CONFIG 16
#define MAX_NAMES 64
#define NAME_LEN 32
#define TEXT_LEN 256

static uint64_t scripted_now_ns;
static uint64_t scripted_now(void *user_data) {
    (void)user_data;
    return scripted_now_ns;
}

/* --- the machine of one file ------------------------------------------- */

typedef enum { P_BREAKER, P_LIMITER, P_BULKHEAD, P_BUDGET, P_BACKOFF } pattern_kind;

typedef struct {
    char name[NAME_LEN];
    union {
        stockade_breaker_token breaker;
        stockade_limiter_token limiter;
        stockade_bulkhead_token bulkhead;
    } token;
    /* backoff: the schedule and when it started. */
    STOCKADE_ALIGNED(STOCKADE_BACKOFF_SCHEDULE_ALIGN) unsigned char schedule_mem[STOCKADE_BACKOFF_SCHEDULE_SIZE];
    stockade_backoff_schedule *schedule;
    uint64_t start_ms;
} named_entry;

static STOCKADE_ALIGNED(STOCKADE_BREAKER_ALIGN) unsigned char breaker_mem[STOCKADE_BREAKER_SIZE];
static STOCKADE_ALIGNED(STOCKADE_LIMITER_ALIGN) unsigned char limiter_mem[STOCKADE_LIMITER_SIZE];
static STOCKADE_ALIGNED(STOCKADE_BULKHEAD_ALIGN) unsigned char bulkhead_mem[STOCKADE_BULKHEAD_SIZE];
static STOCKADE_ALIGNED(STOCKADE_RETRY_BUDGET_ALIGN) unsigned char budget_mem[STOCKADE_RETRY_BUDGET_SIZE];
static STOCKADE_ALIGNED(STOCKADE_BACKOFF_ALIGN) unsigned char backoff_mem[STOCKADE_BACKOFF_SIZE];

typedef struct {
    pattern_kind kind;
    stockade_breaker *breaker;
    stockade_limiter *limiter;
    stockade_bulkhead *bulkhead;
    stockade_retry_budget *budget;
    stockade_backoff *backoff;
    named_entry names[MAX_NAMES];
    int n_names;
} machine;

static named_entry *find_name(machine *m, const char *name) {
    int i;
    for (i = 0; i < m->n_names; i++) {
        if (strcmp(m->names[i].name, name) == 0) return &m->names[i];
    }
    return NULL;
}

/* The entry for `name`, created if new (NULL when the table is full or the
 * name too long). */
static named_entry *put_name(machine *m, const char *name) {
    named_entry *e = find_name(m, name);
    if (e != NULL) return e;
    if (m->n_names == MAX_NAMES || strlen(name) >= NAME_LEN) return NULL;
    e = &m->names[m->n_names++];
    memset(e, 0, sizeof *e);
    strcpy(e->name, name);
    return e;
}

/* --- parsing ----------------------------------------------------------- */

typedef struct {
    char *key[MAX_CONFIG];
    char *value[MAX_CONFIG];
    int used[MAX_CONFIG];
    int n;
    char store[MAX_CONFIG][TEXT_LEN];
} config_map;

static int split(char *line, char **tokens, int max) {
    int n = 0;
    char *t = strtok(line, " \t\r\n");
    while (t != NULL && n < max) {
        tokens[n++] = t;
        t = strtok(NULL, " \t\r\n");
    }
    return t == NULL ? n : -1;
}

static int parse_u64(const char *s, uint64_t *out) {
    char *end;
    unsigned long long v;
    if (s[0] < '0' || s[0] > '9') return 0;
    v = strtoull(s, &end, 10);
    if (*end != '\0') return 0;
    *out = (uint64_t)v;
    return 1;
}

static int parse_u32(const char *s, uint32_t *out) {
    uint64_t v;
    if (!parse_u64(s, &v) || v > UINT32_MAX) return 0;
    *out = (uint32_t)v;
    return 1;
}

/* Config value of `key` (marked used), or NULL. */
static const char *cfg(config_map *c, const char *key) {
    int i;
    for (i = 0; i < c->n; i++) {
        if (strcmp(c->key[i], key) == 0) {
            c->used[i] = 1;
            return c->value[i];
        }
    }
    return NULL;
}

/* Reads an integer option into *out if present; 0 on a malformed value. */
static int cfg_u64(config_map *c, const char *key, uint64_t *out) {
    const char *v = cfg(c, key);
    return v == NULL || parse_u64(v, out);
}

static int cfg_u32(config_map *c, const char *key, uint32_t *out) {
    const char *v = cfg(c, key);
    return v == NULL || parse_u32(v, out);
}

static int cfg_f64(config_map *c, const char *key, double *out) {
    const char *v = cfg(c, key);
    char *end;
    if (v == NULL) return 1;
    *out = strtod(v, &end);
    return *end == '\0' && end != v;
}

/* Looks up `key=` among a step's arguments. */
static const char *arg_kv(char **args, int n, const char *key) {
    size_t len = strlen(key);
    int i;
    for (i = 0; i < n; i++) {
        if (strncmp(args[i], key, len) == 0 && args[i][len] == '=') return args[i] + len + 1;
    }
    return NULL;
}

/* The first positional (non key=value) argument number `index`. */
static const char *arg_pos(char **args, int n, int index) {
    int i;
    for (i = 0; i < n; i++) {
        if (strchr(args[i], '=') == NULL && index-- == 0) return args[i];
    }
    return NULL;
}

/* --- building the machine ---------------------------------------------- */

static int build(machine *m, const char *pattern, config_map *c, char *err) {
    stockade_config_error e;
    stockade_status s;
    int i, ok = 1;
    e.message[0] = '\0';
    if (strcmp(pattern, "breaker") == 0) {
        stockade_breaker_config bc = stockade_breaker_config_default();
        m->kind = P_BREAKER;
        ok &= cfg_u32(c, "failure_threshold", &bc.failure_threshold);
        ok &= cfg_u64(c, "reset_timeout_ms", &bc.reset_timeout_ms);
        ok &= cfg_u64(c, "half_open_timeout_ms", &bc.half_open_timeout_ms);
        ok &= cfg_u32(c, "half_open_max_probes", &bc.half_open_max_probes);
        ok &= cfg_u32(c, "half_open_successes_to_close", &bc.half_open_successes_to_close);
        ok &= cfg_u32(c, "failure_rate_threshold", &bc.failure_rate_threshold);
        ok &= cfg_u32(c, "failure_rate_window_size", &bc.failure_rate_window_size);
        ok &= cfg_u32(c, "failure_rate_minimum_calls", &bc.failure_rate_minimum_calls);
        ok &= cfg_u64(c, "slow_call_threshold_ms", &bc.slow_call_threshold_ms);
        s = ok ? stockade_breaker_init(breaker_mem, sizeof breaker_mem, &bc, &e, &m->breaker) : 0;
    } else if (strcmp(pattern, "limiter") == 0) {
        stockade_limiter_config lc = stockade_limiter_config_default();
        const char *mode = cfg(c, "mode");
        m->kind = P_LIMITER;
        ok &= cfg_u32(c, "requests_per_period", &lc.requests_per_period);
        ok &= cfg_u64(c, "period_ms", &lc.period_ms);
        ok &= cfg_u32(c, "burst", &lc.burst);
        ok &= cfg_u32(c, "max_queue_size", &lc.max_queue_size);
        ok &= cfg_u64(c, "queue_timeout_ms", &lc.queue_timeout_ms);
        if (mode != NULL && strcmp(mode, "strict") == 0) {
            lc.mode = STOCKADE_LIMITER_MODE_STRICT;
        } else if (mode != NULL && strcmp(mode, "bursty") != 0) {
            ok = 0;
        }
        s = ok ? stockade_limiter_init(limiter_mem, sizeof limiter_mem, &lc, &e, &m->limiter) : 0;
    } else if (strcmp(pattern, "bulkhead") == 0) {
        stockade_bulkhead_config kc = stockade_bulkhead_config_default();
        m->kind = P_BULKHEAD;
        ok &= cfg_u32(c, "max_concurrent", &kc.max_concurrent);
        s = ok ? stockade_bulkhead_init(bulkhead_mem, sizeof bulkhead_mem, &kc, &e, &m->bulkhead) : 0;
    } else if (strcmp(pattern, "budget") == 0) {
        stockade_retry_budget_config rc = stockade_retry_budget_config_default();
        m->kind = P_BUDGET;
        ok &= cfg_f64(c, "ratio", &rc.ratio);
        ok &= cfg_u32(c, "min_retries_per_second", &rc.min_retries_per_second);
        ok &= cfg_u32(c, "max_tokens", &rc.max_tokens);
        s = ok ? stockade_retry_budget_init(budget_mem, sizeof budget_mem, &rc, &e, &m->budget) : 0;
    } else if (strcmp(pattern, "backoff") == 0) {
        stockade_backoff_config oc = stockade_backoff_config_default();
        const char *jitter = cfg(c, "jitter");
        m->kind = P_BACKOFF;
        ok &= cfg_u64(c, "initial_delay_ms", &oc.initial_delay_ms);
        ok &= cfg_f64(c, "backoff_factor", &oc.backoff_factor);
        ok &= cfg_u64(c, "max_delay_ms", &oc.max_delay_ms);
        ok &= cfg_u32(c, "max_attempts", &oc.max_attempts);
        ok &= cfg_u64(c, "max_elapsed_ms", &oc.max_elapsed_ms);
        if (jitter == NULL || strcmp(jitter, "none") == 0) {
            oc.jitter = STOCKADE_JITTER_NONE;
        } else if (strcmp(jitter, "full") == 0) {
            oc.jitter = STOCKADE_JITTER_FULL;
        } else if (strcmp(jitter, "equal") == 0) {
            oc.jitter = STOCKADE_JITTER_EQUAL;
        } else if (strcmp(jitter, "decorrelated") == 0) {
            oc.jitter = STOCKADE_JITTER_DECORRELATED;
        } else {
            ok = 0;
        }
        s = ok ? stockade_backoff_init(backoff_mem, sizeof backoff_mem, &oc, &e, &m->backoff) : 0;
    } else {
        sprintf(err, "unknown pattern '%.64s'", pattern);
        return 0;
    }
    if (!ok) {
        strcpy(err, "malformed config value");
        return 0;
    }
    for (i = 0; i < c->n; i++) {
        if (!c->used[i]) {
            sprintf(err, "unknown config key '%.64s'", c->key[i]);
            return 0;
        }
    }
    if (s != STOCKADE_STATUS_OK) {
        sprintf(err, "%s: %.180s", stockade_status_str(s), e.message);
        return 0;
    }
    return 1;
}

/* --- rendering --------------------------------------------------------- */

static void ms_text(char *out, uint64_t ms) {
    if (ms == UINT64_MAX) {
        strcpy(out, "none");
    } else {
        sprintf(out, "%" PRIu64, ms);
    }
}

static void add_transition(char *out, const stockade_breaker_transition *t) {
    if (t->happened) {
        if (out[0] != '\0') strcat(out, " ");
        sprintf(out + strlen(out), "transition=%s>%s", stockade_breaker_state_str(t->from),
                stockade_breaker_state_str(t->to));
    }
}

static void status_text(char *out, stockade_status s) {
    sprintf(out, "unexpected status %u (%s)", (unsigned)s, stockade_status_str(s));
}

/* --- one step ---------------------------------------------------------- */

/* Runs `op` with its arguments, writing the rendered outcome to `out`;
 * returns 0 with the reason in `out` when the step itself is malformed. */
static int run_step(machine *m, const stockade_clock *clock, uint64_t now_ms, const char *op, char **args,
                    int n_args, char *out) {
    const char *name = arg_pos(args, n_args, 0);
    const char *n_text = arg_kv(args, n_args, "n");
    uint32_t n = 1;
    char ms[32];
    named_entry *e;
    out[0] = '\0';
    if (n_text != NULL && !parse_u32(n_text, &n)) {
        strcpy(out, "bad n=");
        return 0;
    }
    if (m->kind == P_BREAKER) {
        stockade_breaker_transition t;
        memset(&t, 0, sizeof t);
        if (strcmp(op, "acquire") == 0) {
            stockade_breaker_token token;
            uint64_t retry = 0;
            stockade_status s;
            if (name == NULL || (e = put_name(m, name)) == NULL) {
                strcpy(out, "acquire wants a token name");
                return 0;
            }
            s = stockade_breaker_acquire(m->breaker, clock, &token, &t, &retry);
            if (s == STOCKADE_STATUS_OK) {
                e->token.breaker = token;
                strcpy(out, "admitted");
                add_transition(out, &t);
            } else if (s == STOCKADE_STATUS_BREAKER_OPEN || s == STOCKADE_STATUS_BREAKER_HALF_OPEN_FULL) {
                ms_text(ms, retry);
                sprintf(out, "rejected %s retry_after_ms=%s",
                        s == STOCKADE_STATUS_BREAKER_HALF_OPEN_FULL ? "half_open"
                        : retry == UINT64_MAX                       ? "forced_open"
                                                                    : "open",
                        ms);
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "report") == 0) {
            const char *verdict = arg_pos(args, n_args, 1);
            uint8_t outcome;
            stockade_breaker_token copy;
            stockade_status s;
            if (name == NULL || (e = find_name(m, name)) == NULL || verdict == NULL) {
                strcpy(out, "report wants a known token name and an outcome");
                return 0;
            }
            if (strcmp(verdict, "success") == 0) {
                outcome = STOCKADE_OUTCOME_SUCCESS;
            } else if (strcmp(verdict, "failure") == 0) {
                outcome = STOCKADE_OUTCOME_FAILURE;
            } else if (strcmp(verdict, "ignored") == 0) {
                outcome = STOCKADE_OUTCOME_IGNORED;
            } else {
                strcpy(out, "unknown outcome");
                return 0;
            }
            copy = e->token.breaker;
            s = stockade_breaker_report(m->breaker, &copy, outcome, clock, &t);
            if (s == STOCKADE_STATUS_OK) {
                strcpy(out, "ok");
                add_transition(out, &t);
            } else if (s == STOCKADE_STATUS_TOKEN_STALE) {
                strcpy(out, "stale");
            } else if (s == STOCKADE_STATUS_TOKEN_ALREADY_USED) {
                strcpy(out, "already_reported");
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "trip") == 0 || strcmp(op, "reset") == 0 || strcmp(op, "force_open") == 0 ||
                   strcmp(op, "disable") == 0) {
            stockade_status s = strcmp(op, "trip") == 0    ? stockade_breaker_trip(m->breaker, clock, &t)
                                : strcmp(op, "reset") == 0 ? stockade_breaker_reset(m->breaker, clock, &t)
                                : strcmp(op, "force_open") == 0
                                    ? stockade_breaker_force_open(m->breaker, clock, &t)
                                    : stockade_breaker_disable(m->breaker, clock, &t);
            if (s == STOCKADE_STATUS_OK) {
                add_transition(out, &t);
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "state") == 0) {
            stockade_breaker_state state = 0;
            stockade_status s = stockade_breaker_get_state(m->breaker, &state);
            if (s == STOCKADE_STATUS_OK) {
                strcpy(out, stockade_breaker_state_str(state));
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "metrics") == 0) {
            stockade_breaker_metrics mt;
            stockade_status s = stockade_breaker_get_metrics(m->breaker, clock, &mt);
            if (s != STOCKADE_STATUS_OK) {
                status_text(out, s);
            } else {
                sprintf(out,
                        "generation=%" PRIu32 " consecutive_failures=%" PRIu32 " probes_in_flight=%" PRIu32
                        " probe_successes=%" PRIu32 " failures=%" PRIu32 " slow_calls=%" PRIu32
                        " rejections=%" PRIu32 " transitions=%" PRIu32 " state_changes=%" PRIu32
                        " stale_verdicts=%" PRIu32,
                        mt.generation, mt.consecutive_failures, mt.probes_in_flight, mt.probe_successes,
                        mt.failures, mt.slow_calls, mt.rejections, mt.transitions, mt.state_changes,
                        mt.stale_verdicts);
                if (mt.has_window) {
                    sprintf(out + strlen(out), " window_calls=%" PRIu32 " window_failures=%" PRIu32,
                            mt.window_calls, mt.window_failures);
                }
            }
        } else {
            sprintf(out, "unknown breaker step '%.64s'", op);
            return 0;
        }
    } else if (m->kind == P_LIMITER) {
        uint64_t retry = 0;
        stockade_status s;
        if (strcmp(op, "acquire") == 0) {
            s = stockade_limiter_try_acquire(m->limiter, clock, n, &retry);
            ms_text(ms, retry);
            if (s == STOCKADE_STATUS_OK) {
                strcpy(out, "admitted");
            } else if (s == STOCKADE_STATUS_RATE_LIMITED) {
                sprintf(out, "rate_limited retry_after_ms=%s", ms);
            } else if (s == STOCKADE_STATUS_PERMITS_EXCEED_BURST) {
                strcpy(out, "exceeds_capacity");
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "reserve") == 0) {
            const char *wait_text = arg_kv(args, n_args, "max_wait_ms");
            uint64_t max_wait;
            stockade_limiter_token token;
            if (name == NULL || wait_text == NULL || !parse_u64(wait_text, &max_wait) ||
                (e = put_name(m, name)) == NULL) {
                strcpy(out, "reserve wants a token name and max_wait_ms=");
                return 0;
            }
            s = stockade_limiter_reserve(m->limiter, clock, n, max_wait, &token, &retry);
            ms_text(ms, retry);
            if (s == STOCKADE_STATUS_OK) {
                e->token.limiter = token;
                sprintf(out, "booked wait_ms=%" PRIu64, token.wait_ns / 1000000u);
            } else if (s == STOCKADE_STATUS_QUEUE_FULL) {
                sprintf(out, "queue_full retry_after_ms=%s", ms);
            } else if (s == STOCKADE_STATUS_QUEUE_TIMEOUT) {
                sprintf(out, "wait_too_long retry_after_ms=%s", ms);
            } else if (s == STOCKADE_STATUS_PERMITS_EXCEED_BURST) {
                strcpy(out, "exceeds_capacity");
            } else if (s == STOCKADE_STATUS_RATE_LIMITED) {
                sprintf(out, "rate_limited retry_after_ms=%s", ms);
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "cancel") == 0) {
            stockade_limiter_token copy;
            uint32_t returned = 0;
            if (name == NULL || (e = find_name(m, name)) == NULL) {
                strcpy(out, "cancel wants a known token name");
                return 0;
            }
            copy = e->token.limiter;
            s = stockade_limiter_cancel(m->limiter, &copy, clock, &returned);
            if (s == STOCKADE_STATUS_OK) {
                sprintf(out, "cancelled %" PRIu32, returned);
            } else if (s == STOCKADE_STATUS_NOT_CANCELLABLE) {
                strcpy(out, "not_cancellable");
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "available") == 0 || strcmp(op, "queue_depth") == 0) {
            uint32_t permits = 0;
            s = strcmp(op, "available") == 0 ? stockade_limiter_available(m->limiter, clock, &permits)
                                             : stockade_limiter_queue_depth(m->limiter, clock, &permits);
            if (s == STOCKADE_STATUS_OK) {
                sprintf(out, "%" PRIu32, permits);
            } else {
                status_text(out, s);
            }
        } else {
            sprintf(out, "unknown limiter step '%.64s'", op);
            return 0;
        }
    } else if (m->kind == P_BULKHEAD) {
        stockade_status s;
        if (strcmp(op, "acquire") == 0) {
            stockade_bulkhead_token token;
            if (name == NULL || (e = put_name(m, name)) == NULL) {
                strcpy(out, "acquire wants a token name");
                return 0;
            }
            s = stockade_bulkhead_try_acquire(m->bulkhead, &token);
            if (s == STOCKADE_STATUS_OK) {
                e->token.bulkhead = token;
                strcpy(out, "admitted");
            } else if (s == STOCKADE_STATUS_BULKHEAD_FULL) {
                strcpy(out, "full");
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "release") == 0) {
            stockade_bulkhead_token copy;
            if (name == NULL || (e = find_name(m, name)) == NULL) {
                strcpy(out, "release wants a known token name");
                return 0;
            }
            copy = e->token.bulkhead;
            s = stockade_bulkhead_release(m->bulkhead, &copy);
            if (s == STOCKADE_STATUS_OK) {
                strcpy(out, "ok");
            } else if (s == STOCKADE_STATUS_TOKEN_ALREADY_USED) {
                strcpy(out, "not_held");
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "counts") == 0) {
            uint32_t in_use = 0, available = 0;
            s = stockade_bulkhead_counts(m->bulkhead, &in_use, NULL, &available);
            if (s == STOCKADE_STATUS_OK) {
                sprintf(out, "in_use=%" PRIu32 " available=%" PRIu32, in_use, available);
            } else {
                status_text(out, s);
            }
        } else {
            sprintf(out, "unknown bulkhead step '%.64s'", op);
            return 0;
        }
    } else if (m->kind == P_BUDGET) {
        stockade_status s;
        if (strcmp(op, "deposit") == 0) {
            s = stockade_retry_budget_deposit(m->budget, clock);
            if (s == STOCKADE_STATUS_OK) {
                strcpy(out, "ok");
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "withdraw") == 0) {
            uint64_t retry = 0;
            s = stockade_retry_budget_try_withdraw(m->budget, clock, &retry);
            ms_text(ms, retry);
            if (s == STOCKADE_STATUS_OK) {
                strcpy(out, "admitted");
            } else if (s == STOCKADE_STATUS_BUDGET_EXHAUSTED) {
                sprintf(out, "exhausted retry_after_ms=%s", ms);
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "available") == 0) {
            uint32_t tokens = 0;
            s = stockade_retry_budget_available(m->budget, clock, &tokens);
            if (s == STOCKADE_STATUS_OK) {
                sprintf(out, "%" PRIu32, tokens);
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "reset") == 0) {
            s = stockade_retry_budget_reset(m->budget);
            if (s == STOCKADE_STATUS_OK) {
                strcpy(out, "ok");
            } else {
                status_text(out, s);
            }
        } else {
            sprintf(out, "unknown budget step '%.64s'", op);
            return 0;
        }
    } else {
        stockade_status s;
        if (strcmp(op, "delay") == 0) {
            const char *retry_text = arg_kv(args, n_args, "retry");
            uint32_t retry;
            uint64_t delay = 0;
            if (retry_text == NULL || !parse_u32(retry_text, &retry)) {
                strcpy(out, "delay wants retry=");
                return 0;
            }
            s = stockade_backoff_delay_ms(m->backoff, retry, &delay);
            if (s == STOCKADE_STATUS_OK) {
                sprintf(out, "%" PRIu64, delay);
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "schedule") == 0) {
            const char *seed_text = arg_kv(args, n_args, "seed");
            uint64_t seed = 0;
            if (name == NULL || (e = put_name(m, name)) == NULL ||
                (seed_text != NULL && !parse_u64(seed_text, &seed))) {
                strcpy(out, "schedule wants a name and an optional seed=");
                return 0;
            }
            s = stockade_backoff_schedule_init(e->schedule_mem, sizeof e->schedule_mem, m->backoff, seed,
                                               &e->schedule);
            e->start_ms = now_ms;
            if (s == STOCKADE_STATUS_OK) {
                strcpy(out, "ok");
            } else {
                status_text(out, s);
            }
        } else if (strcmp(op, "next") == 0 || strcmp(op, "attempts") == 0) {
            if (name == NULL || (e = find_name(m, name)) == NULL || e->schedule == NULL) {
                sprintf(out, "%s wants a known schedule name", op);
                return 0;
            }
            if (strcmp(op, "next") == 0) {
                uint64_t delay = 0;
                uint64_t elapsed = now_ms > e->start_ms ? now_ms - e->start_ms : 0;
                s = stockade_backoff_schedule_next(e->schedule, elapsed, &delay);
                if (s == STOCKADE_STATUS_OK) {
                    sprintf(out, "delay_ms=%" PRIu64, delay);
                } else if (s == STOCKADE_STATUS_RETRIES_EXHAUSTED) {
                    strcpy(out, "exhausted");
                } else {
                    status_text(out, s);
                }
            } else {
                uint32_t attempts = 0;
                s = stockade_backoff_schedule_attempts(e->schedule, &attempts);
                if (s == STOCKADE_STATUS_OK) {
                    sprintf(out, "%" PRIu32, attempts);
                } else {
                    status_text(out, s);
                }
            }
        } else {
            sprintf(out, "unknown backoff step '%.64s'", op);
            return 0;
        }
    }
    return 1;
}

/* --- one file ---------------------------------------------------------- */

static machine the_machine;

/* Replays `path`; returns the number of mismatches (or problems). */
static int replay(const char *path) {
    FILE *f = fopen(path, "r");
    char line[1024];
    char *tokens[64];
    int lineno = 0, failures = 0, built = 0, pattern_line = 0;
    char pattern[NAME_LEN] = "";
    static config_map config;
    stockade_clock clock;
    machine *m = &the_machine;
    clock.now_ns = scripted_now;
    clock.user_data = NULL;
    memset(&config, 0, sizeof config);
    memset(m, 0, sizeof *m);
    if (f == NULL) {
        fprintf(stderr, "%s: cannot open\n", path);
        return 1;
    }
    while (fgets(line, sizeof line, f) != NULL) {
        char *hash = strchr(line, '#');
        int n, arrow, i;
        lineno++;
        if (hash != NULL) *hash = '\0';
        n = split(line, tokens, 64);
        if (n == 0) continue;
        if (n < 0) {
            fprintf(stderr, "%s:%d: too many words\n", path, lineno);
            failures++;
            continue;
        }
        if (strcmp(tokens[0], "pattern") == 0 && n == 2 && strlen(tokens[1]) < NAME_LEN) {
            strcpy(pattern, tokens[1]);
            pattern_line = lineno;
            continue;
        }
        if (strcmp(tokens[0], "config") == 0) {
            for (i = 1; i < n; i++) {
                char *eq = strchr(tokens[i], '=');
                if (eq == NULL || config.n == MAX_CONFIG || strlen(tokens[i]) >= TEXT_LEN) {
                    fprintf(stderr, "%s:%d: config wants key=value, got '%s'\n", path, lineno, tokens[i]);
                    failures++;
                    continue;
                }
                strcpy(config.store[config.n], tokens[i]);
                eq = strchr(config.store[config.n], '=');
                *eq = '\0';
                config.key[config.n] = config.store[config.n];
                config.value[config.n] = eq + 1;
                config.n++;
            }
            continue;
        }
        if (strcmp(tokens[0], "at") != 0) {
            fprintf(stderr, "%s:%d: unknown line\n", path, lineno);
            failures++;
            continue;
        }
        if (!built) {
            char err[TEXT_LEN];
            if (pattern[0] == '\0') {
                fprintf(stderr, "%s: no 'pattern' line before the first step\n", path);
                fclose(f);
                return failures + 1;
            }
            if (!build(m, pattern, &config, err)) {
                fprintf(stderr, "%s:%d: %s\n", path, pattern_line, err);
                fclose(f);
                return failures + 1;
            }
            built = 1;
        }
        for (arrow = 0; arrow < n && strcmp(tokens[arrow], "->") != 0; arrow++) {
        }
        {
            uint64_t at_ms;
            char expected[TEXT_LEN] = "", actual[TEXT_LEN];
            if (arrow < 3 || arrow + 1 >= n || !parse_u64(tokens[1], &at_ms) || at_ms > UINT64_MAX / 1000000u) {
                fprintf(stderr, "%s:%d: want 'at MS OP [ARGS] -> EXPECTED'\n", path, lineno);
                failures++;
                continue;
            }
            for (i = arrow + 1; i < n; i++) {
                if (strlen(expected) + strlen(tokens[i]) + 2 > sizeof expected) break;
                if (i > arrow + 1) strcat(expected, " ");
                strcat(expected, tokens[i]);
            }
            scripted_now_ns = at_ms * 1000000u;
            if (!run_step(m, &clock, at_ms, tokens[2], tokens + 3, arrow - 3, actual)) {
                fprintf(stderr, "%s:%d: %s\n", path, lineno, actual);
                failures++;
                check_failed++;
            } else if (strcmp(actual, expected) != 0) {
                fprintf(stderr, "%s:%d: expected '%s', got '%s'\n", path, lineno, expected, actual);
                failures++;
                check_failed++;
            } else {
                check_passed++;
            }
        }
    }
    fclose(f);
    if (!built) {
        fprintf(stderr, "%s: no steps\n", path);
        failures++;
    }
    return failures;
}

static int is_scenario(const struct dirent *d) {
    size_t len = strlen(d->d_name);
    return len > 4 && strcmp(d->d_name + len - 4, ".txt") == 0;
}

int main(int argc, char **argv) {
    const char *dir = getenv("STOCKADE_SCENARIOS");
    int failures = 0, files = 0, i;
    if (argc > 1 && strstr(argv[1], ".txt") != NULL) {
        for (i = 1; i < argc; i++) {
            failures += replay(argv[i]);
            files++;
        }
    } else {
        struct dirent **list;
        int n;
        if (argc > 1) dir = argv[1];
        if (dir == NULL) dir = "tests/scenarios";
        n = scandir(dir, &list, is_scenario, alphasort);
        if (n < 0) {
            fprintf(stderr, "cannot read %s (run from the repository root, or pass the directory)\n", dir);
            return 1;
        }
        for (i = 0; i < n; i++) {
            char path[1024];
            if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, list[i]->d_name) < sizeof path) {
                failures += replay(path);
                files++;
            } else {
                failures++;
            }
            free(list[i]);
        }
        free(list);
        /* A directory with too few files is a broken checkout, not a pass. */
        CHECK(n >= 10);
    }
    printf("%d scenario files\n", files);
    CHECK(failures == 0);
    return check_report("test_scenarios");
}
