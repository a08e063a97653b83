//! Rate limiter: a token bucket as GCRA in one atomic word.
//!
//! A [`RateLimiter`] admits at most [`requests_per_period`] requests per
//! [`period`] on average, lets up to [`burst`] of them through at once, and
//! can book future slots for callers that are willing to wait (a FIFO queue
//! bounded by [`max_queue_size`] and [`queue_timeout`]).
//!
//! It is the *Generic Cell Rate Algorithm*: the whole state is one number,
//! the **theoretical arrival time** (TAT), kept in one atomic [`Word`]
//! (`u64`, or `u32` on targets without 64-bit compare-and-swap). With the
//! *emission interval* `T` (the time one permit "costs") and the burst
//! capacity `B`, a request for `n` permits at time `now` is granted when
//! `max(TAT, now) + n·T <= now + B·T`, and then moves the TAT there. Every
//! decision is one load and one compare-and-swap; a rejection writes nothing.
//!
//! [`requests_per_period`]: RateLimiterConfig::requests_per_period
//! [`period`]: RateLimiterConfig::period
//! [`burst`]: RateLimiterConfig::burst
//! [`max_queue_size`]: RateLimiterConfig::max_queue_size
//! [`queue_timeout`]: RateLimiterConfig::queue_timeout
//! [`Word`]: #memory-layout
//!
//! # Examples
//!
//! ```
//! use core::time::Duration;
//! use stockade::clock::{Clock, ManualClock};
//! use stockade::limiter::{RateLimitError, RateLimiter, RateLimiterConfig};
//!
//! // 2 requests per second, bursts of 2, a queue of at most 1 permit.
//! const CONFIG: RateLimiterConfig = RateLimiterConfig::DEFAULT
//!     .with_requests_per_period(2)
//!     .with_period(Duration::from_secs(1))
//!     .with_max_queue_size(1);
//! static LIMITER: RateLimiter = match RateLimiter::new(CONFIG) {
//!     Ok(limiter) => limiter,
//!     Err(_) => panic!("invalid rate limiter configuration"),
//! };
//! let clock = ManualClock::new();
//!
//! // One permit costs 500 ms, exactly, in both layouts.
//! let interval = LIMITER.emission_interval();
//! assert_eq!(interval, Duration::from_millis(500));
//!
//! assert!(LIMITER.try_acquire(&clock).is_ok());
//! assert!(LIMITER.try_acquire(&clock).is_ok());
//! assert_eq!(
//!     LIMITER.try_acquire(&clock),
//!     Err(RateLimitError::RateLimited { retry_after: interval })
//! );
//!
//! // A caller willing to wait books the next slot...
//! let booked = LIMITER.reserve(1, Duration::from_secs(1), &clock).unwrap();
//! assert_eq!(booked.wait(), interval);
//! assert_eq!(LIMITER.queue_depth(&clock), 1);
//! // ...and the queue (one permit) is now full.
//! assert!(matches!(
//!     LIMITER.reserve(1, Duration::from_secs(5), &clock),
//!     Err(RateLimitError::QueueFull { .. })
//! ));
//!
//! clock.advance(booked.wait()); // the blocking layer sleeps here
//! assert_eq!(clock.now(), booked.ready_at());
//! ```
//!
//! # Options
//!
//! | option (spec name) | default | meaning |
//! | --- | --- | --- |
//! | `requests_per_period` (`requestsPerPeriod`) | 10 | permits per `period` |
//! | `period` (`periodInMs`) | 1 s | the period |
//! | `burst` | `None` | permits available at once; `None` = `requests_per_period` ([`Mode::Bursty`]) or 1 ([`Mode::Strict`]) |
//! | `max_queue_size` (`maxQueueSize`) | 100 | permits that may be booked ahead (waiting) at once |
//! | `queue_timeout` (`queueTimeout`) | 30 s | the longest a reservation may wait |
//! | `mode` | [`Mode::Bursty`] | see below |
//!
//! # Which mode
//!
//! * **[`Mode::Bursty`]** (default) — protect *your own* service. The
//!   emission interval is `period / requests_per_period` and up to `burst`
//!   permits go through at once. A full bucket followed by a period of
//!   sustained traffic lets up to `burst + requests_per_period` permits
//!   through within one period (close to `2N` with the default burst): the
//!   documented bound is **at most `burst + floor(W / T)` permits in any
//!   closed time window of length `W`**, `T` being
//!   [`emission_interval`](RateLimiter::emission_interval). That is the
//!   right behaviour for a service (the average is what matters, idle time
//!   earns a burst), but it breaks a third party's quota that is counted
//!   over sliding windows (see governor issues #184 and #219).
//! * **[`Mode::Strict`]** — comply with *someone else's* quota: never more
//!   than `requests_per_period` (`N`) permits in **any** half-open window of
//!   length `period` (`P`). It keeps the single word: GCRA with burst `B`
//!   admits at most `B + floor(W / T)` permits in a window of length `W`, so
//!   choosing `T = P / (N - B + 1)` (rounded *up* to whole nanoseconds)
//!   gives at most `N` in any half-open window of length `P`. With the
//!   32-bit layout time is read in whole ticks, so the bound holds for any
//!   window of length `P - resolution + 1 ns` (the resolution is about
//!   1/1000 of `T`): a quota counted with that much tolerance — any real
//!   third party's, whose clock and network jitter are coarser — is kept,
//!   and a caller pacing itself at exactly `P / N` is admitted every time
//!   in both layouts. The price of a burst is sustained rate: the limiter
//!   sustains `N - B + 1` permits per period. The default strict burst is
//!   therefore **1 — pure pacing at `N / P`**, which keeps the full quota
//!   as throughput and simply spaces requests `P / N` apart; set `burst` up
//!   to `N` if a faster start matters more than throughput (`burst = N / 2`
//!   gives half the quota at once and about half of it sustained).
//!
//! # Reservations and the queue
//!
//! [`reserve`](RateLimiter::reserve) books the next free slot(s) and tells
//! the caller how long to wait: the blocking layer queues callers FIFO by
//! letting each one sleep until its [`Reservation::ready_at`]. The queue is
//! not stored anywhere — it *is* the part of the TAT that lies beyond
//! `now + B·T`: the **queue depth** is that distance divided by `T`,
//! rounded up ([`queue_depth`](RateLimiter::queue_depth)), counted in
//! permits (a reservation of `n` permits counts `n`). So the whole decision
//! stays one CAS, and a reservation is refused, booking nothing, when
//!
//! * the queue depth after booking would exceed `max_queue_size`
//!   ([`RateLimitError::QueueFull`], checked first), or
//! * its wait would exceed the caller's `max_wait` or `queue_timeout`,
//!   whichever is smaller ([`RateLimitError::WaitTooLong`]).
//!
//! `max_queue_size = 0` or `queue_timeout = 0` means "never wait":
//! `reserve` then only succeeds when the permits are available at once. A
//! caller that gives up before its `ready_at` may hand a waiting booking
//! back with [`cancel`](RateLimiter::cancel), which succeeds only while
//! nobody booked after it (otherwise the slot simply stays used:
//! conservative). A [`Reservation`] is not `Copy`: cancelling consumes it
//! (as a [`ReservationToken`]), so a Rust caller cannot hand a booking
//! back twice; the token's docs say what happens when a binding does.
//!
//! `max_queue_size` counts permits, not callers, and the depth is derived
//! from time: a reservation of `n` permits leaves the queue gradually, one
//! emission interval per permit, although its caller waits for all `n`.
//!
//! # Errors
//!
//! Rejections are [`RateLimitError`] values that say when to come back:
//! `RateLimited { retry_after }` (no permit now; nothing was consumed),
//! `QueueFull { retry_after }`, `WaitTooLong { wait, retry_after }`, and
//! `ExceedsCapacity { requested, capacity }` for a request of more than
//! `burst` permits, which can never succeed. Every `retry_after` is exact:
//! retrying that much later succeeds unless someone else took the permits
//! meanwhile, and retrying one nanosecond earlier fails. (The exception is
//! the end of the 64-bit clock range, below.)
//!
//! # Time, ticks and the wrap
//!
//! The TAT is stored as *ticks* of a whole number of nanoseconds
//! ([`resolution`](RateLimiter::resolution)), and the clock is read after
//! loading the word, so with a monotonic clock the TAT is never more than
//! `max_lead = B·T + min(queue_timeout, max_queue_size·T)` ahead of now.
//!
//! * **64-bit layout:** one tick is one nanosecond of the clock and the
//!   TAT does not wrap: it is compared in plain order, so the limiter is
//!   exact for any clock movement, forwards or backwards, however large.
//!   The one limit is the end of the clock's range: a grant or booking whose
//!   TAT would pass `u64::MAX` ns (584 years after the clock's epoch, in
//!   practice only a saturated test clock) is refused with
//!   `RateLimited { retry_after: Duration::MAX }`.
//! * **32-bit layout:** the tick is chosen per limiter at construction so
//!   that the emission interval (`P / N` in nanoseconds, rounded up) is
//!   **a whole number of ticks**: up to 2^10 ticks per interval, and an
//!   exact cut with between 2^9 and 2^10 ticks whenever one exists (for
//!   every round period and rate: 5 per second is 1000 ticks of 200 µs).
//!   So `N` per `P` is kept exactly, as with the 64-bit layout; only an
//!   interval with no such divisor is rounded up, by less than one tick
//!   (below 0.2 %). Fewer ticks per interval are used only if `max_lead`
//!   would not fit in 2^29 ticks (an eighth of the wrap); that always
//!   succeeds with at least 2^9 ticks per interval because the 32-bit
//!   layout limits `burst` and `max_queue_size` to 2^19. Ticks need not be
//!   powers of two: a clock reading becomes ticks by a multiply-high and
//!   shifts with a reciprocal computed at construction (exact; no 64-bit
//!   division, which 32-bit chips do in software). The word
//!   wraps after [`wrap_period`](RateLimiter::wrap_period) (119 hours with
//!   the default options). A TAT that appears more than `2·max_lead` ahead of now (or
//!   behind it) is stale and read as a full bucket, which keeps a limiter
//!   that idled across any number of wraps correct. The one remaining
//!   corner is conservative, never over-granting: an idle gap within
//!   `2·max_lead` *before* a multiple of the wrap period (for a fresh
//!   limiter: a first use within that distance before a multiple of the
//!   wrap after the clock's epoch) may show up to `2·max_lead` of time as
//!   used — the bucket partly or fully drained, possibly a wait — which
//!   heals as the clock moves on, within at most `2·max_lead`.
//!
//! A clock that steps backwards is "no time passed", or even more
//! conservative: decisions are made at the earlier time against the same
//! TAT, so the limiter may see fewer permits, never more. The 64-bit layout
//! guarantees that for any backwards step; the 32-bit layout for steps up
//! to `max_lead` (a larger one is indistinguishable from a wrap and may
//! grant up to one extra burst).
//!
//! # Memory layout
//!
//! [`RateLimiter`] is `#[repr(C)]` plain data — one atomic word plus
//! configuration numbers, no pointers — so it can live in a `static` or in
//! memory shared between processes. `Word` is `u64` where the target has
//! 64-bit atomics and `u32` otherwise (or with
//! `RUSTFLAGS="--cfg stockade_force_32bit"`); no wider atomic is ever used.
//! The size is 56 bytes with the 64-bit layout (8-byte TAT, three 8-byte
//! tick counts, burst, queue size, and 16 bytes of tick length with its
//! reciprocal) and 40 bytes with the 32-bit layout (everything 4 bytes).
//! The reciprocal makes reading the clock one multiply-high and shift
//! instead of a 64-bit division, which 32-bit chips do in software.
//!
//! `try_acquire` costs one load, one clock read and one compare-and-swap
//! (retried, with backoff, only under contention); a rejection costs no
//! write at all.
//!

// `Word` is `u64` or `u32` by layout: casts between it and `u64` are needed
// in one layout and no-ops in the other.
#![allow(clippy::unnecessary_cast)]

mod config;
mod error;
mod gcra;
mod plan;
mod reservation;
#[cfg(all(test, not(stockade_loom)))]
mod tests;

pub use config::{Mode, RateLimiterConfig, RawRateLimiterConfig};
pub use error::{RateLimitError, RateLimitErrorKind};
pub use gcra::RateLimiter;
pub use plan::TickPlan;
pub use reservation::{CancelError, Reservation, ReservationToken};
