// The C++ wrappers (include/stockade.hpp): results, chrono durations,
// objects owning their storage.
#include "stockade.hpp"

#include <cstdio>

static int passed, failed;
#define CHECK(cond)                                                               \
    do {                                                                          \
        if (cond) {                                                               \
            passed++;                                                             \
        } else {                                                                  \
            failed++;                                                             \
            std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                         \
    } while (0)

using namespace std::chrono_literals;

static uint64_t manual_now(void *user_data) { return *static_cast<uint64_t *>(user_data); }

static void test_backoff() {
    auto config = stockade::backoff::defaults();
    config.max_attempts = 4;
    auto made = stockade::backoff::make(config);
    CHECK(made.ok());
    auto &b = made.value();
    CHECK(b.delay(1) == 1000ms && b.delay(3) == 4000ms && b.delay(100) == 30000ms);
    auto schedule = b.start(7);
    std::chrono::milliseconds elapsed{0};
    int retries = 0;
    for (auto next = schedule.next(elapsed); next.ok(); next = schedule.next(elapsed)) {
        elapsed += next.value();
        retries++;
    }
    CHECK(retries == 3 && elapsed == 7000ms && schedule.attempts() == 4);
    CHECK(schedule.next(elapsed).code() == stockade::status::retries_exhausted);

    config.backoff_factor = 0.5;
    auto bad = stockade::backoff::make(config);
    CHECK(!bad.ok() && bad.code() == stockade::status::invalid_config);
    CHECK(bad.problem().option == 43 && bad.problem().option_name == "backoff_factor");
#ifdef STOCKADE_HPP_EXCEPTIONS
    bool threw = false;
    try {
        (void)bad.value();
    } catch (const stockade::error &e) {
        threw = e.code() == stockade::status::invalid_config &&
                std::string(e.what()) == "invalid backoff_factor = 0.5: must be at least 1";
    }
    CHECK(threw);
#endif
}

static void test_deadline() {
    uint64_t now = 0;
    stockade::clock clock(stockade_clock{manual_now, &now});
    auto d = stockade::deadline::after(clock, 250ms).value();
    CHECK(d.remaining(clock) == 250ms && !d.expired(clock));
    now += 250'000'000;
    CHECK(d.expired(clock) && d.remaining(clock) == 0ms);
    CHECK(stockade::deadline::never().remaining(clock) == std::chrono::milliseconds::max());
    CHECK(d.min(stockade::deadline::never()).raw().expires_at_ns == d.raw().expires_at_ns);
    auto mono = stockade::clock::monotonic();
    CHECK(mono.now().ok());
    CHECK(std::string(stockade::message(stockade::status::breaker_open)) == "circuit breaker is open");
}

int main() {
    test_backoff();
    test_deadline();
    std::printf("test_cpp: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
