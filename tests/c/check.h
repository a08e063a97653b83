/* Tiny test harness for the C tests: CHECK macros and the closing line
 * "N passed, N failed" that CI reads. */
#ifndef STOCKADE_TEST_CHECK_H
#define STOCKADE_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_passed;
static int check_failed;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (cond) {                                                          \
            check_passed++;                                                  \
        } else {                                                             \
            check_failed++;                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                  \
        }                                                                    \
    } while (0)

/* Checks that `expr` returns status `want`, printing both names if not. */
#define CHECK_STATUS(expr, want)                                              \
    do {                                                                      \
        stockade_status check_got_ = (expr);                                  \
        if (check_got_ == (stockade_status)(want)) {                          \
            check_passed++;                                                   \
        } else {                                                              \
            check_failed++;                                                   \
            fprintf(stderr, "%s:%d: %s\n  returned %u (%s), wanted %u (%s)\n", \
                    __FILE__, __LINE__, #expr, (unsigned)check_got_,          \
                    stockade_status_str(check_got_), (unsigned)(want),        \
                    stockade_status_str(want));                               \
        }                                                                     \
    } while (0)

#define CHECK_OK(expr) CHECK_STATUS(expr, STOCKADE_STATUS_OK)
#define CHECK_NULL_ARG(expr) CHECK_STATUS(expr, STOCKADE_STATUS_NULL_ARGUMENT)

/* Prints the closing line and returns the exit code. */
static int check_report(const char *name) {
    printf("%s: %d passed, %d failed\n", name, check_passed, check_failed);
    return check_failed == 0 ? 0 : 1;
}

#endif
