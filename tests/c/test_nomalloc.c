/* The core tier as firmware uses it: every object in static storage, time
 * from a wrapping 32-bit tick counter, no heap. Linked against the no_std
 * libstockade.a with -Wl,--wrap=malloc (and calloc, realloc, free): any
 * allocation by this program or the library aborts. */
#define STOCKADE_CORE_ONLY 1
#include "stockade.h"

#include <stdint.h>
#include <stdlib.h>

#include "check.h"

void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t size);
void __wrap_free(void *p);
void *__wrap_malloc(size_t size) { (void)size; fputs("malloc called\n", stderr); abort(); }
void *__wrap_calloc(size_t n, size_t size) { (void)n; (void)size; fputs("calloc called\n", stderr); abort(); }
void *__wrap_realloc(void *p, size_t size) { (void)p; (void)size; fputs("realloc called\n", stderr); abort(); }
void __wrap_free(void *p) { (void)p; fputs("free called\n", stderr); abort(); }

/* The "hardware" counter: 1 kHz, starting just before its wrap. */
static volatile uint32_t systick = UINT32_MAX - 500;
static uint32_t read_systick(void *user_data) { (void)user_data; return systick; }

static STOCKADE_ALIGNED(STOCKADE_TICK_CLOCK_ALIGN) unsigned char tick_mem[STOCKADE_TICK_CLOCK_SIZE];
static STOCKADE_ALIGNED(STOCKADE_BACKOFF_ALIGN) unsigned char backoff_mem[STOCKADE_BACKOFF_SIZE];
static STOCKADE_ALIGNED(STOCKADE_BACKOFF_SCHEDULE_ALIGN) unsigned char schedule_mem[STOCKADE_BACKOFF_SCHEDULE_SIZE];

int main(void) {
    stockade_tick_clock *tick = NULL;
    stockade_clock clock;
    stockade_backoff *backoff = NULL;
    stockade_backoff_schedule *schedule = NULL;
    stockade_backoff_config config = stockade_backoff_config_default();
    stockade_config_error err;
    stockade_deadline deadline;
    uint64_t delay_ms = 0, waited_ms = 0;
    stockade_deadline_expiry expiry;
    int retries = 0;

    CHECK_OK(stockade_tick_clock_init(tick_mem, sizeof tick_mem, read_systick, NULL, 1000, &tick));
    CHECK_OK(stockade_tick_clock_as_clock(tick, &clock));

    config.initial_delay_ms = 100;
    config.max_attempts = 4;
    CHECK_OK(stockade_backoff_init(backoff_mem, sizeof backoff_mem, &config, &err, &backoff));
    CHECK_OK(stockade_backoff_schedule_init(schedule_mem, sizeof schedule_mem, backoff, 1, &schedule));

    /* An operation with a 1 s deadline that fails every time: retry with
     * backoff (100, 200, 400 ms) across the counter's wrap. */
    CHECK_OK(stockade_deadline_after(&clock, 1000, &deadline));
    while (stockade_backoff_schedule_next(schedule, waited_ms, &delay_ms) == STOCKADE_STATUS_OK) {
        systick += (uint32_t)delay_ms; /* "sleep" */
        waited_ms += delay_ms;
        retries++;
        expiry = stockade_deadline_is_expired(deadline, &clock);
        CHECK_OK(expiry.status);
        CHECK(!expiry.expired);
    }
    CHECK(retries == 3 && waited_ms == 700);
    systick += 300;
    expiry = stockade_deadline_is_expired(deadline, &clock);
    CHECK_OK(expiry.status);
    CHECK(expiry.expired);

    /* Bad input never crashes: statuses, no allocation. */
    CHECK_NULL_ARG(stockade_backoff_init(backoff_mem, sizeof backoff_mem, NULL, &err, &backoff));
    config.backoff_factor = 0.0;
    CHECK_STATUS(stockade_backoff_init(backoff_mem, sizeof backoff_mem, &config, &err, &backoff),
                 STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 43);
    /* no_std: numbers and static strings on request, no formatted message
     * and no name copied in (the table of names is linked only by a
     * program that calls stockade_config_option_str). */
    CHECK(err.option_name[0] == '\0');
    CHECK(strcmp(stockade_config_option_str(err.option), "backoff_factor") == 0);
    CHECK(err.problem == STOCKADE_CONFIG_PROBLEM_TOO_SMALL && err.unit == STOCKADE_CONFIG_UNIT_FACTOR);
    CHECK(err.value_factor == 0.0 && err.limit_factor == 1.0);
    CHECK(err.message[0] == '\0');
    CHECK(strcmp(stockade_config_problem_str(err.problem), "must be at least the limit") == 0);
    return check_report("test_nomalloc");
}
