// stockade.hpp: header-only C++17 wrappers over stockade.h.
//
// Design choices:
//  - Results, not exceptions: every fallible call returns
//    stockade::result<T> (status + value). A rejection ("breaker open",
//    "rate limited") is ordinary control flow, and game engines and
//    firmware often build with -fno-exceptions. result<T>::value() throws
//    stockade::error when exceptions are enabled and calls std::abort()
//    when they are not; or_throw() is the explicit throwing form.
//  - Durations are std::chrono; the C ABI's milliseconds stay inside.
//  - RAII: objects own their storage (inline, aligned as the header says);
//    permits release themselves in their destructor; blocking handles
//    (breaker, limiter, bulkhead, retry, timeout, fallback, hedging) free
//    themselves.
//  - Operations are std::function<bool()> (true = success); an exception
//    thrown by one is caught before it reaches the library and counted as
//    a failure. timeout::execute and hedging::execute copy the operation
//    to the heap: it may outlive the call and is freed when it finishes
//    (hedging: after its last attempt).
#ifndef STOCKADE_HPP
#define STOCKADE_HPP

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "stockade.h"

#if defined(__cpp_exceptions) || defined(__EXCEPTIONS) || defined(_CPPUNWIND)
#include <stdexcept>
#define STOCKADE_HPP_EXCEPTIONS 1
#endif

namespace stockade {

/// Every status of the C ABI (same numbers).
enum class status : uint32_t {
    ok = STOCKADE_STATUS_OK,
    null_argument = STOCKADE_STATUS_NULL_ARGUMENT,
    invalid_config = STOCKADE_STATUS_INVALID_CONFIG,
    invalid_argument = STOCKADE_STATUS_INVALID_ARGUMENT,
    storage_too_small = STOCKADE_STATUS_STORAGE_TOO_SMALL,
    storage_misaligned = STOCKADE_STATUS_STORAGE_MISALIGNED,
    internal_error = STOCKADE_STATUS_INTERNAL_ERROR,
    buffer_too_small = STOCKADE_STATUS_BUFFER_TOO_SMALL,
    breaker_open = STOCKADE_STATUS_BREAKER_OPEN,
    breaker_half_open_full = STOCKADE_STATUS_BREAKER_HALF_OPEN_FULL,
    token_already_used = STOCKADE_STATUS_TOKEN_ALREADY_USED,
    rate_limited = STOCKADE_STATUS_RATE_LIMITED,
    queue_full = STOCKADE_STATUS_QUEUE_FULL,
    queue_timeout = STOCKADE_STATUS_QUEUE_TIMEOUT,
    permits_exceed_burst = STOCKADE_STATUS_PERMITS_EXCEED_BURST,
    bulkhead_full = STOCKADE_STATUS_BULKHEAD_FULL,
    timed_out = STOCKADE_STATUS_TIMED_OUT,
    retries_exhausted = STOCKADE_STATUS_RETRIES_EXHAUSTED,
    budget_exhausted = STOCKADE_STATUS_BUDGET_EXHAUSTED,
    callback_failed = STOCKADE_STATUS_CALLBACK_FAILED,
    disposed = STOCKADE_STATUS_DISPOSED,
    not_found = STOCKADE_STATUS_NOT_FOUND,
    name_taken = STOCKADE_STATUS_NAME_TAKEN,
    token_stale = STOCKADE_STATUS_TOKEN_STALE,
    not_cancellable = STOCKADE_STATUS_NOT_CANCELLABLE,
    shared_unsupported = STOCKADE_STATUS_SHARED_UNSUPPORTED,
    shared_config_mismatch = STOCKADE_STATUS_SHARED_CONFIG_MISMATCH,
    shared_refused = STOCKADE_STATUS_SHARED_REFUSED,
    shared_incompatible = STOCKADE_STATUS_SHARED_INCOMPATIBLE,
    shared_io = STOCKADE_STATUS_SHARED_IO,
    shared_no_owner_slot = STOCKADE_STATUS_SHARED_NO_OWNER_SLOT,
    shared_busy = STOCKADE_STATUS_SHARED_BUSY,
};

/// The status's message ("circuit breaker is open").
inline const char *message(status s) noexcept { return stockade_status_str(static_cast<uint32_t>(s)); }

/// What an invalid config was: option number, name and message.
struct config_problem {
    uint16_t option = 0;
    std::string option_name;
    std::string message;
};

#ifdef STOCKADE_HPP_EXCEPTIONS
/// Thrown by result<T>::value() / or_throw() on a non-ok status.
class error : public std::runtime_error {
public:
    explicit error(status s, const std::string &detail = std::string())
        : std::runtime_error(detail.empty() ? std::string(message(s)) : detail), status_(s) {}
    status code() const noexcept { return status_; }

private:
    status status_;
};
#endif

/// A status and, when it is ok, a value.
template <class T>
class result {
public:
    result(T value) : status_(status::ok), value_(std::move(value)) {}  // NOLINT
    result(status s, config_problem problem = config_problem()) : status_(s), problem_(std::move(problem)) {}  // NOLINT

    bool ok() const noexcept { return status_ == status::ok; }
    explicit operator bool() const noexcept { return ok(); }
    status code() const noexcept { return status_; }
    /// For `invalid_config`: which option, and why.
    const config_problem &problem() const noexcept { return problem_; }

    T &value() & { check(); return *value_; }
    T &&value() && { check(); return std::move(*value_); }
    T &or_throw() & { return value(); }
    T &&or_throw() && { return std::move(*this).value(); }

private:
    void check() const {
        if (value_) return;
#ifdef STOCKADE_HPP_EXCEPTIONS
        throw error(status_, problem_.message.empty() ? std::string() : problem_.message);
#else
        std::abort();
#endif
    }
    status status_;
    config_problem problem_;
    std::optional<T> value_;
};

namespace detail {
inline config_problem problem_of(const stockade_config_error &e) {
    return config_problem{e.option, std::string(e.option_name), std::string(e.message)};
}
inline uint64_t to_ms(std::chrono::milliseconds d) noexcept {
    return d.count() <= 0 ? 0 : static_cast<uint64_t>(d.count());
}
}  // namespace detail

/// A clock: a stockade_clock (callback + user data). Plain value.
class clock {
public:
    explicit clock(stockade_clock raw) noexcept : raw_(raw) {}
#ifdef STOCKADE_HAS_BLOCKING
    /// The operating system's monotonic clock.
    static clock monotonic() noexcept { return clock(stockade_clock_monotonic()); }
#endif
    const stockade_clock *raw() const noexcept { return &raw_; }
    result<std::chrono::nanoseconds> now() const {
        uint64_t ns = 0;
        auto s = static_cast<status>(stockade_clock_now_ns(&raw_, &ns));
        if (s != status::ok) return s;
        return std::chrono::nanoseconds(static_cast<int64_t>(ns));
    }

private:
    stockade_clock raw_;
};

/// A deadline (plain value, 8 bytes).
class deadline {
public:
    deadline() noexcept : raw_(stockade_deadline_never()) {}
    explicit deadline(stockade_deadline raw) noexcept : raw_(raw) {}
    static deadline never() noexcept { return deadline(); }
    static result<deadline> after(const clock &c, std::chrono::milliseconds timeout) {
        stockade_deadline d;
        auto s = static_cast<status>(stockade_deadline_after(c.raw(), detail::to_ms(timeout), &d));
        if (s != status::ok) return s;
        return deadline(d);
    }
    /// Time left (zero once expired; milliseconds::max() for never).
    std::chrono::milliseconds remaining(const clock &c) const noexcept {
        const stockade_deadline_remaining r = stockade_deadline_remaining_ms(raw_, c.raw());
        if (r.status != STOCKADE_STATUS_OK) return {};
        const uint64_t ms = r.ms;
        if (ms > static_cast<uint64_t>(std::chrono::milliseconds::max().count()))
            return std::chrono::milliseconds::max();
        return std::chrono::milliseconds(static_cast<int64_t>(ms));
    }
    bool expired(const clock &c) const noexcept {
        const stockade_deadline_expiry e = stockade_deadline_is_expired(raw_, c.raw());
        return e.status != STOCKADE_STATUS_OK || e.expired;
    }
    deadline min(deadline other) const noexcept { return deadline(stockade_deadline_min(raw_, other.raw_)); }
    stockade_deadline raw() const noexcept { return raw_; }

private:
    stockade_deadline raw_;
};

/// A validated backoff policy; its storage lives inside the object (no
/// heap). Copyable: the policy is plain data.
class backoff {
public:
    static result<backoff> make(const stockade_backoff_config &config) {
        backoff b;
        stockade_config_error err;
        stockade_backoff *handle = nullptr;
        auto s = static_cast<status>(
            stockade_backoff_init(b.storage_, sizeof b.storage_, &config, &err, &handle));
        if (s == status::invalid_config) return result<backoff>(s, detail::problem_of(err));
        if (s != status::ok) return s;
        return b;
    }
    static stockade_backoff_config defaults() noexcept { return stockade_backoff_config_default(); }

    /// The base delay (no jitter) before retry number `retry` (1-based).
    std::chrono::milliseconds delay(uint32_t retry) const noexcept {
        uint64_t ms = 0;
        stockade_backoff_delay_ms(handle(), retry, &ms);
        return std::chrono::milliseconds(static_cast<int64_t>(ms));
    }
    const stockade_backoff *handle() const noexcept { return reinterpret_cast<const stockade_backoff *>(storage_); }

    /// The delays of one operation.
    class schedule {
    public:
        /// The next delay, or retries_exhausted.
        result<std::chrono::milliseconds> next(std::chrono::milliseconds elapsed) {
            uint64_t ms = 0;
            auto s = static_cast<status>(stockade_backoff_schedule_next(
                reinterpret_cast<stockade_backoff_schedule *>(storage_), detail::to_ms(elapsed), &ms));
            if (s != status::ok) return s;
            return std::chrono::milliseconds(static_cast<int64_t>(ms));
        }
        uint32_t attempts() const noexcept {
            uint32_t n = 0;
            stockade_backoff_schedule_attempts(reinterpret_cast<const stockade_backoff_schedule *>(storage_), &n);
            return n;
        }

    private:
        friend class backoff;
        schedule() = default;
        alignas(STOCKADE_BACKOFF_SCHEDULE_ALIGN) unsigned char storage_[STOCKADE_BACKOFF_SCHEDULE_SIZE] = {};
    };

    schedule start(uint64_t seed) const noexcept {
        schedule s;
        stockade_backoff_schedule *out = nullptr;
        stockade_backoff_schedule_init(s.storage_, sizeof s.storage_, handle(), seed, &out);
        return s;
    }

private:
    backoff() = default;
    alignas(STOCKADE_BACKOFF_ALIGN) unsigned char storage_[STOCKADE_BACKOFF_SIZE] = {};
};


/// A bulkhead permit on the core tier: released in its destructor (or by
/// release(); a second release is a no-op). Move-only.
class bulkhead_slots;
class permit {
public:
    permit(permit &&o) noexcept : owner_(std::exchange(o.owner_, nullptr)), token_(o.token_) {}
    permit &operator=(permit &&o) noexcept {
        if (this != &o) {
            release();
            owner_ = std::exchange(o.owner_, nullptr);
            token_ = o.token_;
        }
        return *this;
    }
    permit(const permit &) = delete;
    permit &operator=(const permit &) = delete;
    ~permit() { release(); }
    /// Releases now; later calls (and the destructor) do nothing.
    void release() noexcept {
        if (owner_) stockade_bulkhead_release(owner_, &token_);
        owner_ = nullptr;
    }
    bool held() const noexcept { return owner_ != nullptr; }

private:
    friend class bulkhead_slots;
    permit(stockade_bulkhead *owner, stockade_bulkhead_token token) noexcept : owner_(owner), token_(token) {}
    stockade_bulkhead *owner_;
    stockade_bulkhead_token token_;
};

/// A core-tier bulkhead (no heap, no threads of its own; firmware too)
/// handing out RAII permits. Not movable: permits point into it.
class bulkhead_slots {
public:
    static std::unique_ptr<bulkhead_slots> make(uint32_t max_concurrent, status *why = nullptr) {
        std::unique_ptr<bulkhead_slots> b(new bulkhead_slots());
        stockade_bulkhead_config c = stockade_bulkhead_config_default();
        c.max_concurrent = max_concurrent;
        auto s = static_cast<status>(stockade_bulkhead_init(b->storage_, sizeof b->storage_, &c, nullptr, &b->raw_));
        if (why) *why = s;
        if (s != status::ok) return nullptr;
        return b;
    }
    /// A permit if a slot is free now, else bulkhead_full.
    result<permit> try_acquire() noexcept {
        stockade_bulkhead_token t;
        auto s = static_cast<status>(stockade_bulkhead_try_acquire(raw_, &t));
        if (s != status::ok) return s;
        return permit(raw_, t);
    }
    bulkhead_slots(const bulkhead_slots &) = delete;
    bulkhead_slots &operator=(const bulkhead_slots &) = delete;

private:
    bulkhead_slots() = default;
    alignas(STOCKADE_BULKHEAD_ALIGN) unsigned char storage_[STOCKADE_BULKHEAD_SIZE] = {};
    stockade_bulkhead *raw_ = nullptr;
};

#ifdef STOCKADE_HAS_BLOCKING
/// The operation the blocking patterns run: true = success.
using operation = std::function<bool()>;

namespace detail {
/// Runs a std::function<bool()>: 0 success, 1 failure, 2 an exception
/// (caught here: it must not cross into the library; counted as a failure).
inline int run_operation(void *f) noexcept {
#ifdef STOCKADE_HPP_EXCEPTIONS
    try {
        return (*static_cast<operation *>(f))() ? 0 : 1;
    } catch (...) {
        return 2;
    }
#else
    return (*static_cast<operation *>(f))() ? 0 : 1;
#endif
}
/// Frees a heap operation handed to a detached run (timeout, pipeline).
inline void delete_operation(void *f) noexcept { delete static_cast<operation *>(f); }

template <class H, void (*Free)(H *)>
struct deleter {
    void operator()(H *h) const noexcept { Free(h); }
};
template <class H, void (*Free)(H *)>
using owned = std::unique_ptr<H, deleter<H, Free>>;

/// Makes a handle: new_fn(name, &config, &err, &out).
template <class W, class H, class C, class New>
result<W> make(New new_fn, const char *name, const C &config) {
    stockade_config_error err;
    H *out = nullptr;
    auto s = static_cast<status>(new_fn(name, &config, &err, &out));
    if (s == status::invalid_config) return result<W>(s, problem_of(err));
    if (s != status::ok) return s;
    return W(out);
}
inline stockade_metrics no_metrics() noexcept { return stockade_metrics{}; }
}  // namespace detail

#define STOCKADE_HPP_HANDLE(cls, H, prefix)                                                  \
public:                                                                                      \
    H *raw() const noexcept { return h_.get(); }                                             \
    stockade_metrics metrics() const noexcept {                                              \
        stockade_metrics m = detail::no_metrics();                                           \
        prefix##_metrics(h_.get(), &m);                                                      \
        return m;                                                                            \
    }                                                                                        \
    void dispose() noexcept { prefix##_dispose(h_.get()); }                                  \
    static result<cls> get(const char *name) {                                               \
        H *out = nullptr;                                                                    \
        auto s = static_cast<status>(prefix##_get(name, &out));                              \
        if (s != status::ok) return s;                                                       \
        return cls(out);                                                                     \
    }                                                                                        \
                                                                                             \
    /* Takes ownership of a handle from the C API. */                                      \
    explicit cls(H *h) noexcept : h_(h) {}                                                   \
                                                                                             \
private:                                                                                     \
    detail::owned<H, prefix##_free> h_;

/// A blocking circuit breaker (RAII handle; movable).
class breaker {
public:
    using config_type = stockade_breaker_config;
    static config_type defaults() noexcept { return stockade_breaker_config_default(); }
    /// Named (registered) when `name` is not null.
    static result<breaker> make(const char *name, const config_type &c) {
        return detail::make<breaker, stockade_breaker_handle>(stockade_breaker_handle_new, name, c);
    }
    /// Runs `op` unless the breaker is open: ok, callback_failed, breaker_open, ...
    status execute(operation op) const noexcept {
        return static_cast<status>(stockade_breaker_handle_execute(h_.get(), detail::run_operation, &op));
    }
    stockade_breaker_state state() const noexcept {
        stockade_breaker_state st = STOCKADE_BREAKER_STATE_CLOSED;
        stockade_breaker_handle_get_state(h_.get(), &st);
        return st;
    }
    STOCKADE_HPP_HANDLE(breaker, stockade_breaker_handle, stockade_breaker_handle)
};

/// A blocking rate limiter (FIFO waiting; RAII handle).
class limiter {
public:
    using config_type = stockade_limiter_config;
    static config_type defaults() noexcept { return stockade_limiter_config_default(); }
    static result<limiter> make(const char *name, const config_type &c) {
        return detail::make<limiter, stockade_limiter_handle>(stockade_limiter_handle_new, name, c);
    }
    /// Waits for `n` permits, up to `timeout_ms` and never longer than the
    /// config's queue timeout (0 = the config's queue timeout).
    status acquire(uint32_t n = 1, uint64_t timeout_ms = 0) const noexcept {
        return static_cast<status>(stockade_limiter_handle_acquire(h_.get(), n, timeout_ms));
    }
    status try_acquire(uint32_t n = 1) const noexcept {
        return static_cast<status>(stockade_limiter_handle_try_acquire(h_.get(), n));
    }
    status execute(operation op) const noexcept {
        return static_cast<status>(stockade_limiter_handle_execute(h_.get(), detail::run_operation, &op));
    }
    STOCKADE_HPP_HANDLE(limiter, stockade_limiter_handle, stockade_limiter_handle)
};

/// A blocking bulkhead (callers queue for a slot; RAII handle).
class bulkhead {
public:
    using config_type = stockade_bulkhead_config;
    static config_type defaults() noexcept { return stockade_bulkhead_config_default(); }
    static result<bulkhead> make(const char *name, const config_type &c) {
        return detail::make<bulkhead, stockade_bulkhead_handle>(stockade_bulkhead_handle_new, name, c);
    }
    status execute(operation op) const noexcept {
        return static_cast<status>(stockade_bulkhead_handle_execute(h_.get(), detail::run_operation, &op));
    }
    status try_execute(operation op) const noexcept {
        return static_cast<status>(stockade_bulkhead_handle_try_execute(h_.get(), detail::run_operation, &op));
    }
    STOCKADE_HPP_HANDLE(bulkhead, stockade_bulkhead_handle, stockade_bulkhead_handle)
};

/// A blocking retry (sleeps between attempts; RAII handle).
class retry {
public:
    using config_type = stockade_retry_config;
    static config_type defaults() noexcept { return stockade_retry_config_default(); }
    static result<retry> make(const char *name, const config_type &c) {
        return detail::make<retry, stockade_retry>(stockade_retry_new, name, c);
    }
    /// Runs `op` until it returns true or the attempts run out:
    /// ok, retries_exhausted, disposed.
    status execute(operation op) const noexcept {
        return static_cast<status>(stockade_retry_execute(h_.get(), detail::run_operation, nullptr, &op));
    }
    STOCKADE_HPP_HANDLE(retry, stockade_retry, stockade_retry)
};

/// A blocking timeout: execute() returns on time; a late `op` keeps
/// running on the timeout's worker (it owns its copy of `op`, freed when
/// it finishes). RAII handle.
class timeout {
public:
    using config_type = stockade_timeout_config;
    static result<timeout> make(const char *name, std::chrono::milliseconds limit) {
        config_type c = stockade_timeout_config_default();
        c.timeout_ms = detail::to_ms(limit);
        return detail::make<timeout, stockade_timeout>(stockade_timeout_new, name, c);
    }
    /// ok, callback_failed, timed_out, queue_full, disposed.
    status execute(operation op) const {
        auto *heap = new operation(std::move(op));
        return static_cast<status>(
            stockade_timeout_execute(h_.get(), detail::run_operation, heap, detail::delete_operation));
    }
    STOCKADE_HPP_HANDLE(timeout, stockade_timeout, stockade_timeout)
};

/// Chooses failures (fallback: which it replaces; hedging: which launch
/// the next attempt): `s` is what failed (callback_failed for an
/// operation, whose `code` is 1 when it returned false and 2 when it
/// threw); true = chosen. An exception thrown by a classifier is caught
/// before it reaches the library and counts as false.
using classifier = std::function<bool(status s, int code)>;

namespace detail {
/// Calls a classifier; an empty one chooses every failure.
inline bool run_classifier(const classifier &c, stockade_status s, int code) noexcept {
    if (!c) return true;
#ifdef STOCKADE_HPP_EXCEPTIONS
    try {
        return c(static_cast<status>(s), code);
    } catch (...) {
        return false;
    }
#else
    return c(static_cast<status>(s), code);
#endif
}
}  // namespace detail

/// A blocking fallback (RAII handle): when the operation fails, a
/// fallback operation gives the outcome instead.
class fallback {
public:
    /// The fallback: called with what failed (as for a classifier);
    /// true = the call succeeds (leave the fallback value where the
    /// caller finds it), false = it fails with callback_failed.
    using handler = std::function<bool(status s, int code)>;

    /// Named (registered) when `name` is not null.
    static result<fallback> make(const char *name = nullptr) {
        stockade_fallback *out = nullptr;
        auto s = static_cast<status>(stockade_fallback_new(name, &out));
        if (s != status::ok) return s;
        return fallback(out);
    }
    /// Runs `op` on this thread; if it fails and `handles` chooses the
    /// failure (empty: every failure), runs `fb` instead: ok (`op` or
    /// `fb` succeeded), callback_failed (a failure not chosen, or `fb`
    /// failed or threw), disposed (nothing runs), null_argument (`fb`
    /// empty; nothing runs). Exceptions from `op` and `fb` are caught
    /// before the library and count as failures (code 2).
    status execute(operation op, handler fb, classifier handles = classifier()) const noexcept {
        if (!fb) return status::null_argument;
        call c{&op, &fb, &handles};
        return static_cast<status>(
            stockade_fallback_execute(h_.get(), &call::run, &call::choose, &call::replace, &c));
    }

private:
    struct call {
        operation *op;
        handler *fb;
        classifier *handles;
        static int run(void *self) noexcept { return detail::run_operation(static_cast<call *>(self)->op); }
        static bool choose(stockade_status s, int code, void *self) noexcept {
            return detail::run_classifier(*static_cast<call *>(self)->handles, s, code);
        }
        static int replace(stockade_status s, int code, void *self) noexcept {
            handler &fb = *static_cast<call *>(self)->fb;
#ifdef STOCKADE_HPP_EXCEPTIONS
            try {
                return fb(static_cast<status>(s), code) ? 0 : 1;
            } catch (...) {
                return 2;
            }
#else
            return fb(static_cast<status>(s), code) ? 0 : 1;
#endif
        }
    };
    STOCKADE_HPP_HANDLE(fallback, stockade_fallback, stockade_fallback)
};

/// A blocking hedging (RAII handle): runs an operation on the hedging's
/// worker pool and, when it is slow (or fails), runs it again; the first
/// success wins. The losers are not stopped: they run on to the end after
/// execute() returned, possibly several at once, so the operation is
/// copied to the heap (freed after the last attempt) and must own what it
/// uses (shared_ptr, not references to the caller's stack) and be safe to
/// run concurrently with itself.
class hedging {
public:
    using config_type = stockade_hedging_config;
    /// One attempt: its number (1, 2, ... in the order they start);
    /// true = success.
    using attempt_operation = std::function<bool(uint32_t attempt)>;

    static config_type defaults() noexcept { return stockade_hedging_config_default(); }
    /// Named (registered) when `name` is not null.
    static result<hedging> make(const char *name, const config_type &c) {
        return detail::make<hedging, stockade_hedging>(stockade_hedging_new, name, c);
    }
    /// Runs `op` hedged: the winning attempt's number, or callback_failed
    /// (every attempt failed or threw), disposed, null_argument (`op`
    /// empty; nothing runs).
    result<uint32_t> execute(attempt_operation op) const { return run(std::move(op), classifier(), false); }
    /// As execute(), but only the failures `hedge_on` chooses launch the
    /// next attempt at once; a failure it does not choose is final
    /// (callback_failed at once, no more attempts; those running are
    /// losers). `hedge_on` runs on this thread; empty: every failure
    /// (execute()). See stockade_hedging_execute_if.
    result<uint32_t> execute_if(attempt_operation op, classifier hedge_on) const {
        const bool filtered = static_cast<bool>(hedge_on);
        return run(std::move(op), std::move(hedge_on), filtered);
    }

private:
    struct call {
        attempt_operation op;
        classifier hedge_on;
        static int attempt(uint32_t n, void *self) noexcept {
            const attempt_operation &op = static_cast<call *>(self)->op;
#ifdef STOCKADE_HPP_EXCEPTIONS
            try {
                return op(n) ? 0 : 1;
            } catch (...) {
                return 2;
            }
#else
            return op(n) ? 0 : 1;
#endif
        }
        static bool choose(stockade_status s, int code, void *self) noexcept {
            return detail::run_classifier(static_cast<call *>(self)->hedge_on, s, code);
        }
        static void release(void *self) noexcept { delete static_cast<call *>(self); }
    };
    result<uint32_t> run(attempt_operation op, classifier hedge_on, bool filtered) const {
        if (!op) return status::null_argument;
        // Owned by the library from here: `release` deletes it after the
        // last attempt (or before returning when nothing runs).
        auto *heap = new call{std::move(op), std::move(hedge_on)};
        uint32_t won = 0;
        auto s = static_cast<status>(stockade_hedging_execute_if(
            h_.get(), &call::attempt, filtered ? &call::choose : nullptr, heap, &call::release, &won));
        if (s != status::ok) return s;
        return won;
    }
    STOCKADE_HPP_HANDLE(hedging, stockade_hedging, stockade_hedging)
};

#undef STOCKADE_HPP_HANDLE
#endif  // STOCKADE_HAS_BLOCKING

}  // namespace stockade

#endif  // STOCKADE_HPP
