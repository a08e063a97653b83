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
//    permits release themselves in their destructor.
#ifndef STOCKADE_HPP
#define STOCKADE_HPP

#include <chrono>
#include <cstdint>
#include <cstdlib>
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
        uint64_t ms = 0;
        if (stockade_deadline_remaining_ms(&raw_, c.raw(), &ms) != STOCKADE_STATUS_OK) return {};
        if (ms > static_cast<uint64_t>(std::chrono::milliseconds::max().count()))
            return std::chrono::milliseconds::max();
        return std::chrono::milliseconds(static_cast<int64_t>(ms));
    }
    bool expired(const clock &c) const noexcept {
        bool e = true;
        return stockade_deadline_is_expired(&raw_, c.raw(), &e) != STOCKADE_STATUS_OK || e;
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

}  // namespace stockade

#endif  // STOCKADE_HPP
