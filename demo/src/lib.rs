//! Stockade's demo: a flaky upstream — healthy, a failure burst, a latency
//! spike, an overload, recovery — and the same traffic sent to it twice:
//! straight, and through rate limiter → bulkhead → circuit breaker → retry
//! → timeout.
//!
//! [`simulate`] runs both as a single-threaded discrete-event simulation
//! that drives the real `stockade` core state machines on a `ManualClock`
//! (deterministic for a seed), or paced by the wall clock. [`text::render`]
//! prints the legend, one line per second and a summary computed from those
//! lines ([`Totals`]); [`svg::render`] draws the timeline.

pub mod sim;
pub mod svg;
pub mod text;

mod rng;

pub use sim::{Circuit, Config, Outcome, Phase, Report, Run, Second, simulate};

/// One run's column sums and maxima: everything the summary says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Requests offered.
    pub offered: u32,
    /// Served.
    pub ok: u32,
    /// Shed by the rate limiter.
    pub shed: u32,
    /// Rejected by the full bulkhead.
    pub bulkhead_full: u32,
    /// Rejected by the open breaker.
    pub breaker_open: u32,
    /// Timed out.
    pub timed_out: u32,
    /// Failed by the upstream.
    pub failed: u32,
    /// Calls that reached the upstream.
    pub upstream_calls: u32,
    /// Upstream calls made while it was over its quota.
    pub over_quota: u32,
    /// The highest per-second p99 latency (ms) ...
    pub worst_p99_ms: u64,
    /// ... and the second it was seen in (the first, on a tie).
    pub worst_p99_second: usize,
    /// Seconds whose p99 latency was over one second.
    pub seconds_p99_over_1s: u32,
    /// The most callers waiting at once.
    pub peak_waiting: u32,
    /// Seconds in which offered ≠ the sum of the outcomes (0 when every
    /// request is accounted for exactly once).
    pub unbalanced_seconds: u32,
}

impl Totals {
    /// Sums and maxima over the per-second records.
    pub fn of(run: &Run) -> Totals {
        let mut t = Totals::default();
        for (second, s) in run.seconds.iter().enumerate() {
            t.offered += s.offered;
            t.ok += s.ok;
            t.shed += s.shed;
            t.bulkhead_full += s.bulkhead_full;
            t.breaker_open += s.breaker_open;
            t.timed_out += s.timed_out;
            t.failed += s.failed;
            t.upstream_calls += s.upstream_calls;
            t.over_quota += s.over_quota;
            if s.p99_ms > t.worst_p99_ms {
                t.worst_p99_ms = s.p99_ms;
                t.worst_p99_second = second;
            }
            t.seconds_p99_over_1s += u32::from(s.p99_ms > 1000);
            t.peak_waiting = t.peak_waiting.max(s.peak_waiting);
            t.unbalanced_seconds += u32::from(s.ended() != s.offered);
        }
        t
    }
}
