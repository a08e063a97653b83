// The C++ wrappers of Fallback and Hedging (include/stockade.hpp): which
// failures a fallback replaces, hedging's winner, its classifier (a failure
// it does not choose is final), losers that outlive the call owning their
// operation, exceptions caught before the library, RAII handles and the
// registry. Built with and without exceptions by tests/c/run.sh; every wait
// on another thread has a watchdog.
#include "stockade.hpp"

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

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
static constexpr auto WATCHDOG = 20s;

/// A gate an attempt waits at; false when the watchdog fired first.
struct gate {
    std::mutex lock;
    std::condition_variable cond;
    bool open = false;
    void release() {
        {
            std::lock_guard<std::mutex> g(lock);
            open = true;
        }
        cond.notify_all();
    }
    bool wait() {
        std::unique_lock<std::mutex> g(lock);
        return cond.wait_for(g, WATCHDOG, [this] { return open; });
    }
};

/// Waits (yielding) until `cond` holds; false on the watchdog.
template <class F>
static bool eventually(F cond) {
    const auto start = std::chrono::steady_clock::now();
    while (!cond()) {
        if (std::chrono::steady_clock::now() - start > WATCHDOG) return false;
        std::this_thread::yield();
    }
    return true;
}

static void test_fallback() {
    auto made = stockade::fallback::make("cpp-fallback");
    CHECK(made.ok());
    auto fb = std::move(made).value();
    CHECK(stockade::fallback::make("cpp-fallback").code() == stockade::status::name_taken);

    // Every failure replaced (no classifier): the fallback sees what failed.
    int value = 0;
    stockade::status seen_status = stockade::status::ok;
    int seen_code = -1;
    auto replace = [&](stockade::status s, int code) {
        seen_status = s;
        seen_code = code;
        value = 42;
        return true;
    };
    CHECK(fb.execute([] { return false; }, replace) == stockade::status::ok);
    CHECK(value == 42 && seen_status == stockade::status::callback_failed && seen_code == 1);
    // A success: the fallback does not run.
    value = 0;
    CHECK(fb.execute([&] { value = 7; return true; }, replace) == stockade::status::ok && value == 7);

    // The classifier chooses: code 1 (returned false) is not replaced.
    int classified = 0;
    auto only_throws = [&](stockade::status, int code) {
        ++classified;
        return code == 2;
    };
    value = 0;
    CHECK(fb.execute([] { return false; }, replace, only_throws) == stockade::status::callback_failed);
    CHECK(value == 0 && classified == 1);
#ifdef STOCKADE_HPP_EXCEPTIONS
    // An exception is caught, seen as code 2 and replaced.
    CHECK(fb.execute([]() -> bool { throw std::runtime_error("boom"); }, replace, only_throws) ==
          stockade::status::ok);
    CHECK(value == 42 && seen_code == 2 && classified == 2);
    // A classifier that throws chooses nothing; a fallback that throws fails.
    CHECK(fb.execute([] { return false; }, replace,
                     [](stockade::status, int) -> bool { throw std::logic_error("bad classifier"); }) ==
          stockade::status::callback_failed);
    CHECK(fb.execute([] { return false; },
                     [](stockade::status, int) -> bool { throw std::logic_error("bad fallback"); }) ==
          stockade::status::callback_failed);
#endif
    // A fallback that fails fails the call.
    CHECK(fb.execute([] { return false; }, [](stockade::status, int) { return false; }) ==
          stockade::status::callback_failed);
    // No fallback: null_argument, nothing runs.
    bool ran = false;
    CHECK(fb.execute([&] { ran = true; return true; }, stockade::fallback::handler()) ==
          stockade::status::null_argument);
    CHECK(!ran);

    const stockade_metrics m = fb.metrics();
#ifdef STOCKADE_HPP_EXCEPTIONS
    CHECK(m.calls == 7 && m.successes == 1 && m.fallbacks == 4 && m.failures == 2);
#else
    CHECK(m.calls == 4 && m.successes == 1 && m.fallbacks == 2 && m.failures == 1);
#endif
    auto again = stockade::fallback::get("cpp-fallback");
    CHECK(again.ok() && again.value().metrics().calls == m.calls);
    fb.dispose();
    CHECK(fb.execute([&] { ran = true; return true; }, replace) == stockade::status::disposed && !ran);
    CHECK(stockade::fallback::get("cpp-fallback").code() == stockade::status::not_found);
}

/// What a hedged operation shares with the test: owned by the operation
/// (a shared_ptr), so the test sees when the library freed it.
struct attempts {
    std::atomic<int> started{0};
    std::vector<bool> succeed;  // attempt n succeeds if succeed[n - 1]
    gate first;                 // attempt 1 waits here when `block_first`
    bool block_first = false;
    std::atomic<bool> watchdog_fired{false};
};

static stockade::hedging::attempt_operation op_of(const std::shared_ptr<attempts> &a) {
    return [a](uint32_t n) {
        a->started.fetch_add(1);
        if (n == 1 && a->block_first && !a->first.wait()) a->watchdog_fired.store(true);
        return n <= a->succeed.size() && a->succeed[n - 1];
    };
}

static void test_hedging() {
    auto config = stockade::hedging::defaults();
    CHECK(config.delay_ms == 2000 && config.max_attempts == 2 && config.max_workers == 16);
    config.max_attempts = 0;
    auto bad = stockade::hedging::make(nullptr, config);
    CHECK(bad.code() == stockade::status::invalid_config && bad.problem().option_name == "max_attempts");

    config.delay_ms = 3600000;  // only a failure can launch a hedge
    config.max_attempts = 3;
    auto made = stockade::hedging::make("cpp-hedging", config);
    CHECK(made.ok());
    auto h = std::move(made).value();

    // A failure launches the next attempt at once; attempt 2 wins.
    auto a = std::make_shared<attempts>();
    a->succeed = {false, true, true};
    auto won = h.execute(op_of(a));
    CHECK(won.ok() && won.value() == 2 && a->started == 2);
    CHECK(eventually([&] { return a.use_count() == 1; }));  // the library freed its copy

    // A classifier choosing nothing: attempt 1's failure is final.
    a = std::make_shared<attempts>();
    a->succeed = {false, true, true};
    std::vector<int> codes;
    auto none = [&](stockade::status s, int code) {
        CHECK(s == stockade::status::callback_failed);
        codes.push_back(code);
        return false;
    };
    CHECK(h.execute_if(op_of(a), none).code() == stockade::status::callback_failed);
    CHECK(a->started == 1 && codes == std::vector<int>{1});
    // Choosing every failure: as execute().
    a = std::make_shared<attempts>();
    a->succeed = {false, false, true};
    won = h.execute_if(op_of(a), [](stockade::status, int) { return true; });
    CHECK(won.ok() && won.value() == 3 && a->started == 3);
    // An empty classifier: every failure hedged.
    a = std::make_shared<attempts>();
    a->succeed = {false, true};
    won = h.execute_if(op_of(a), stockade::classifier());
    CHECK(won.ok() && won.value() == 2);
#ifdef STOCKADE_HPP_EXCEPTIONS
    // A throwing attempt is code 2; here it is final.
    codes.clear();
    auto throws = std::make_shared<std::atomic<int>>(0);
    auto thrower = [throws](uint32_t) -> bool {
        throws->fetch_add(1);
        throw std::runtime_error("boom");
    };
    CHECK(h.execute_if(thrower, [&](stockade::status, int code) {
               codes.push_back(code);
               return code == 1;
           }).code() == stockade::status::callback_failed);
    CHECK(codes == std::vector<int>{2} && throws->load() == 1);
#endif
    // No operation: null_argument.
    CHECK(h.execute(stockade::hedging::attempt_operation()).code() == stockade::status::null_argument);

    const stockade_metrics m = h.metrics();
#ifdef STOCKADE_HPP_EXCEPTIONS
    CHECK(m.calls == 5 && m.successes == 3 && m.failures == 2 && m.hedges == 4 && m.hedges_won == 3);
#else
    CHECK(m.calls == 4 && m.successes == 3 && m.failures == 1 && m.hedges == 4 && m.hedges_won == 3);
#endif
    auto again = stockade::hedging::get("cpp-hedging");
    CHECK(again.ok() && again.value().metrics().calls == m.calls);
    h.dispose();
    a = std::make_shared<attempts>();
    CHECK(h.execute(op_of(a)).code() == stockade::status::disposed && a->started == 0);
    CHECK(eventually([&] { return a.use_count() == 1; }));
}

static void test_a_loser_outlives_the_call() {
    auto config = stockade::hedging::defaults();
    config.delay_ms = 20;  // attempt 2 starts while attempt 1 waits at its gate
    config.max_attempts = 3;
    auto h = stockade::hedging::make(nullptr, config).value();

    // Attempt 2 wins; attempt 1 runs on after execute() returned.
    auto a = std::make_shared<attempts>();
    a->succeed = {true, true};
    a->block_first = true;
    auto won = h.execute(op_of(a));
    CHECK(won.ok() && won.value() == 2);
    CHECK(a.use_count() == 2);  // the loser still holds the operation
    a->first.release();
    CHECK(eventually([&] { return a.use_count() == 1; }));
    CHECK(!a->watchdog_fired.load());

    // A failure the classifier does not choose ends the call while attempt 1 runs.
    a = std::make_shared<attempts>();
    a->succeed = {true, false, true};
    a->block_first = true;
    CHECK(h.execute_if(op_of(a), [](stockade::status, int) { return false; }).code() ==
          stockade::status::callback_failed);
    CHECK(a->started == 2 && a.use_count() == 2);
    a->first.release();
    CHECK(eventually([&] { return a.use_count() == 1; }));
    CHECK(!a->watchdog_fired.load());
    const stockade_metrics m = h.metrics();
    CHECK(m.calls == 2 && m.successes == 1 && m.failures == 1 && m.hedges_won == 1);
}

int main() {
    test_fallback();
    test_hedging();
    test_a_loser_outlives_the_call();
    std::printf("test_cpp_fallback_hedging: %d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
