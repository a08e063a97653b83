// The C++ wrappers (include/stockade.hpp): results, chrono durations,
// objects owning their storage.
#include "stockade.hpp"

#include <atomic>
#include <cstdio>
#include <thread>

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

static void test_permits() {
    auto slots = stockade::bulkhead_slots::make(2);
    CHECK(slots != nullptr);
    {
        auto a = slots->try_acquire();
        auto b = slots->try_acquire();
        CHECK(a.ok() && b.ok());
        CHECK(slots->try_acquire().code() == stockade::status::bulkhead_full);
        b.value().release();
        b.value().release(); // second release: no-op
        auto c = slots->try_acquire();
        CHECK(c.ok());
    } // a and c released here
    auto d = slots->try_acquire();
    auto e = slots->try_acquire();
    CHECK(d.ok() && e.ok());
    stockade::status why = stockade::status::ok;
    CHECK(stockade::bulkhead_slots::make(0, &why) == nullptr && why == stockade::status::invalid_config);
}

static void test_blocking() {
    auto config = stockade::breaker::defaults();
    config.failure_threshold = 2;
    auto made = stockade::breaker::make("cpp-breaker", config);
    CHECK(made.ok());
    auto breaker = std::move(made).value();
    int calls = 0;
    CHECK(breaker.execute([&] { ++calls; return true; }) == stockade::status::ok);
    CHECK(breaker.execute([&] { ++calls; return false; }) == stockade::status::callback_failed);
#ifdef STOCKADE_HPP_EXCEPTIONS
    // An exception is caught before the library and counted as a failure.
    CHECK(breaker.execute([&]() -> bool { ++calls; throw std::runtime_error("boom"); }) ==
          stockade::status::callback_failed);
#else
    CHECK(breaker.execute([&] { ++calls; return false; }) == stockade::status::callback_failed);
#endif
    CHECK(breaker.state() == STOCKADE_BREAKER_STATE_OPEN);
    CHECK(breaker.execute([&] { ++calls; return true; }) == stockade::status::breaker_open);
    CHECK(calls == 3 && breaker.metrics().failures == 2);
    auto again = stockade::breaker::get("cpp-breaker");
    CHECK(again.ok() && again.value().state() == STOCKADE_BREAKER_STATE_OPEN);
    CHECK(stockade::breaker::get("cpp-none").code() == stockade::status::not_found);
    breaker.dispose();
    config.failure_threshold = 0;
    auto bad = stockade::breaker::make(nullptr, config);
    CHECK(bad.code() == stockade::status::invalid_config && bad.problem().option_name == "failure_threshold");

    auto lc = stockade::limiter::defaults();
    lc.requests_per_period = 2;
    lc.period_ms = 60000;
    lc.queue_timeout_ms = 0;
    auto limiter = stockade::limiter::make(nullptr, lc).value();
    CHECK(limiter.acquire() == stockade::status::ok);
    CHECK(limiter.execute([] { return true; }) == stockade::status::ok);
    CHECK(limiter.try_acquire() == stockade::status::rate_limited);

    auto bc = stockade::bulkhead::defaults();
    bc.max_concurrent = 1;
    auto bulkhead = stockade::bulkhead::make(nullptr, bc).value();
    stockade::status inner = stockade::status::ok;
    CHECK(bulkhead.execute([&] { inner = bulkhead.try_execute([] { return true; }); return true; }) ==
          stockade::status::ok);
    CHECK(inner == stockade::status::bulkhead_full);

    auto rc = stockade::retry::defaults();
    rc.backoff.initial_delay_ms = 0;
    rc.backoff.max_delay_ms = 0;
    auto retry = stockade::retry::make(nullptr, rc).value();
    int attempts = 0;
    CHECK(retry.execute([&] { return ++attempts == 3; }) == stockade::status::ok && attempts == 3);
    CHECK(retry.execute([] { return false; }) == stockade::status::retries_exhausted);
    CHECK(retry.metrics().retries == 4);

    auto timeout = stockade::timeout::make(nullptr, 5s).value();
    CHECK(timeout.execute([] { return true; }) == stockade::status::ok);
    CHECK(timeout.execute([] { return false; }) == stockade::status::callback_failed);
    auto quick = stockade::timeout::make(nullptr, 50ms).value();
    auto done = std::make_shared<std::atomic<bool>>(false);
    auto t0 = std::chrono::steady_clock::now();
    // The lambda owns what it uses (a shared_ptr): it may outlive the call.
    CHECK(quick.execute([done] {
        std::this_thread::sleep_for(300ms);
        done->store(true);
        return true;
    }) == stockade::status::timed_out);
    CHECK(std::chrono::steady_clock::now() - t0 < 250ms);
    CHECK(!done->load());
    while (!done->load()) std::this_thread::sleep_for(10ms);
}

int main() {
    test_backoff();
    test_deadline();
    test_permits();
    test_blocking();
    std::printf("test_cpp: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
