/* The blocking tier from C: breaker handles running callbacks, the
 * registry, dispose, every NULL path. */
#include "stockade.h"

#include <string.h>

#include "check.h"

static int fail_call(void *user_data) { ++*(int *)user_data; return 1; }
static int ok_call(void *user_data) { ++*(int *)user_data; return 0; }

int main(void) {
    stockade_breaker_config c = stockade_breaker_config_default();
    stockade_config_error err;
    stockade_breaker_handle *b = NULL, *same = NULL, *anon = NULL, *dup = NULL;
    stockade_breaker_state state;
    int calls = 0, i;

    c.failure_threshold = 2;
    CHECK_OK(stockade_breaker_handle_new("c-test-db", &c, &err, &b));
    CHECK_STATUS(stockade_breaker_handle_new("c-test-db", &c, &err, &dup), STOCKADE_STATUS_NAME_TAKEN);
    CHECK(dup == NULL);
    CHECK_OK(stockade_breaker_handle_get("c-test-db", &same));
    CHECK_STATUS(stockade_breaker_handle_get("c-test-none", &dup), STOCKADE_STATUS_NOT_FOUND);

    CHECK_OK(stockade_breaker_handle_execute(b, ok_call, &calls));
    for (i = 0; i < 2; i++)
        CHECK_STATUS(stockade_breaker_handle_execute(b, fail_call, &calls), STOCKADE_STATUS_CALLBACK_FAILED);
    CHECK(calls == 3);
    CHECK_OK(stockade_breaker_handle_get_state(same, &state));
    CHECK(state == STOCKADE_BREAKER_STATE_OPEN);
    CHECK_STATUS(stockade_breaker_handle_execute(same, ok_call, &calls), STOCKADE_STATUS_BREAKER_OPEN);
    CHECK(calls == 3); /* not called while open */

    c.failure_threshold = 0;
    CHECK_STATUS(stockade_breaker_handle_new(NULL, &c, &err, &anon), STOCKADE_STATUS_INVALID_CONFIG);
    CHECK(err.option == 1);
    c.failure_threshold = 5;
    CHECK_STATUS(stockade_breaker_handle_new("\xff\xfe", &c, NULL, &anon), STOCKADE_STATUS_INVALID_ARGUMENT);
    CHECK_OK(stockade_breaker_handle_new(NULL, &c, NULL, &anon));
    CHECK_OK(stockade_breaker_handle_execute(anon, ok_call, &calls));

    CHECK_OK(stockade_breaker_handle_dispose(b));
    CHECK_STATUS(stockade_breaker_handle_execute(same, ok_call, &calls), STOCKADE_STATUS_DISPOSED);
    CHECK_STATUS(stockade_breaker_handle_get("c-test-db", &dup), STOCKADE_STATUS_NOT_FOUND);

    CHECK_NULL_ARG(stockade_breaker_handle_new(NULL, NULL, NULL, &anon));
    CHECK_NULL_ARG(stockade_breaker_handle_new(NULL, &c, NULL, NULL));
    CHECK_NULL_ARG(stockade_breaker_handle_get(NULL, &dup));
    CHECK_NULL_ARG(stockade_breaker_handle_get("x", NULL));
    CHECK_NULL_ARG(stockade_breaker_handle_execute(NULL, ok_call, &calls));
    CHECK_NULL_ARG(stockade_breaker_handle_execute(anon, NULL, &calls));
    CHECK_NULL_ARG(stockade_breaker_handle_get_state(NULL, &state));
    CHECK_NULL_ARG(stockade_breaker_handle_get_state(anon, NULL));
    CHECK_NULL_ARG(stockade_breaker_handle_dispose(NULL));

    stockade_breaker_handle_free(b);
    stockade_breaker_handle_free(same);
    stockade_breaker_handle_free(anon);
    stockade_breaker_handle_free(NULL); /* no-op */
    return check_report("test_blocking");
}
