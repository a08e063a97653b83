/* One side of the cross-language Redis test: a C program on the limiter
 * "payments" that Python processes share through one Redis server
 * (tests/cross/run.sh).
 *
 * Usage: payments_redis <url> <requests_per_period> <tries>
 * A bursty limiter of <requests_per_period> per hour (so nothing refills
 * during the test): tries to take one permit <tries> times, never waiting,
 * and prints how many it got; prints "CONFIG_MISMATCH <message>" if Redis
 * holds another config for it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "stockade.h"

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: payments_redis <url> <requests_per_period> <tries>\n");
        return 2;
    }
    stockade_limiter_config config = stockade_limiter_config_default();
    config.requests_per_period = (uint32_t)strtoul(argv[2], NULL, 10);
    config.burst = config.requests_per_period;
    config.period_ms = 3600000;
    config.queue_timeout_ms = 0;
    unsigned long tries = strtoul(argv[3], NULL, 10);

    stockade_redis_options options = stockade_redis_options_default();
    options.url = argv[1];
    options.connect_timeout_ms = 2000;
    options.command_timeout_ms = 2000;
    options.fallback = STOCKADE_REDIS_FALLBACK_CLOSED; /* a fallback would not share */
    stockade_limiter_handle *limiter = NULL;
    stockade_status s = stockade_limiter_handle_new_redis("payments", &config, &options, NULL, &limiter);
    if (s != STOCKADE_STATUS_OK) {
        fprintf(stderr, "open: %s: %s\n", stockade_status_str(s), stockade_redis_last_error());
        return 1;
    }
    unsigned long grants = 0;
    for (unsigned long i = 0; i < tries; i++) {
        s = stockade_limiter_handle_try_acquire(limiter, 1);
        if (s == STOCKADE_STATUS_OK) {
            grants++;
        } else if (s == STOCKADE_STATUS_REDIS_CONFIG_MISMATCH) {
            printf("CONFIG_MISMATCH %s\n", stockade_redis_last_error());
            stockade_limiter_handle_free(limiter);
            return 0;
        } else if (s != STOCKADE_STATUS_RATE_LIMITED) {
            fprintf(stderr, "try_acquire: %s: %s\n", stockade_status_str(s), stockade_redis_last_error());
            return 1;
        }
    }
    printf("%lu\n", grants);
    stockade_limiter_handle_free(limiter);
    return 0;
}
