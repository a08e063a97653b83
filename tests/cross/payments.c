/* One side of the cross-language test: a C program on the limiter
 * "payments" that Python workers share (tests/cross/run.sh).
 *
 * Usage: payments <dir> <requests_per_period> <period_ms> <start_ns> <end_ns>
 * Books permits (the limiter's host-wide FIFO) until end_ns on
 * CLOCK_MONOTONIC and prints how many it got; with start_ns = 0 it only
 * opens the limiter and prints OK or the refusal. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "stockade.h"

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: payments <dir> <n> <period_ms> <start_ns> <end_ns>\n");
        return 2;
    }
    stockade_limiter_config config = stockade_limiter_config_default();
    config.requests_per_period = (uint32_t)strtoul(argv[2], NULL, 10);
    config.period_ms = strtoull(argv[3], NULL, 10);
    config.mode = STOCKADE_LIMITER_MODE_STRICT;
    uint64_t start = strtoull(argv[4], NULL, 10), end = strtoull(argv[5], NULL, 10);

    stockade_shared_options options = {0};
    options.directory = argv[1];
    stockade_config_error error = {0};
    stockade_limiter_handle *limiter = NULL;
    stockade_status s = stockade_limiter_handle_new_shared("payments", &config, &options, &error, &limiter);
    if (start == 0) {
        if (s == STOCKADE_STATUS_OK) {
            printf("OK\n");
        } else if (s == STOCKADE_STATUS_SHARED_CONFIG_MISMATCH) {
            printf("CONFIG_MISMATCH %s\n", stockade_shared_last_error());
        } else {
            printf("%s\n", stockade_status_str(s));
        }
        if (s == STOCKADE_STATUS_OK) stockade_limiter_handle_free(limiter);
        return 0;
    }
    if (s != STOCKADE_STATUS_OK) {
        fprintf(stderr, "open: %s\n", stockade_status_str(s));
        return 1;
    }
    while (now_ns() < start) {
    }
    unsigned long grants = 0;
    for (;;) {
        s = stockade_limiter_handle_acquire(limiter, 1, 1000);
        if (now_ns() >= end) break;
        if (s == STOCKADE_STATUS_OK) grants++;
    }
    printf("%lu\n", grants);
    stockade_limiter_handle_free(limiter);
    return 0;
}
