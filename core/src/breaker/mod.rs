//! Circuit breaker: closed → open → half-open → closed, lock-free.
//!
//! A [`CircuitBreaker`] stops calling a dependency that keeps failing. It
//! counts failures while **closed**; when a rule fires it **opens** and
//! rejects every call for [`reset_timeout`](BreakerConfig::reset_timeout);
//! then it goes **half-open** and lets a few *probe* calls through. A failed
//! probe opens it again; successful probes close it.
//!
//! ```text
//!            failure rule fires                 reset_timeout elapsed
//!  Closed ─────────────────────────► Open ─────────────────────────► HalfOpen
//!    ▲                                ▲                                 │
//!    │                                └──────── a probe fails ──────────┤
//!    │                                                                  │
//!    └─ half_open_timeout elapsed with ≥ 1 successful probe and none ◄──┘
//!       failed (or half_open_successes_to_close successes)
//! ```
//!
//! Manual modes sit beside the machine: [`trip`](CircuitBreaker::trip)
//! (open now), [`force_open`](CircuitBreaker::force_open) (open until
//! [`reset`](CircuitBreaker::reset)), [`disable`](CircuitBreaker::disable)
//! (admit everything, record nothing) and `reset` (closed, counters cleared).
//!
//! # Examples
//!
//! ```
//! use core::time::Duration;
//! use stockade::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
//! use stockade::clock::ManualClock;
//!
//! // A breaker can live in a `static`: `new` is a `const fn`.
//! static BREAKER: CircuitBreaker =
//!     match CircuitBreaker::new(BreakerConfig::DEFAULT.with_failure_threshold(2)) {
//!         Ok(breaker) => breaker,
//!         Err(_) => panic!("invalid breaker configuration"),
//!     };
//! static CLOCK: ManualClock = ManualClock::new();
//!
//! // Two consecutive failures open the circuit.
//! for _ in 0..2 {
//!     let permit = BREAKER.try_acquire(&CLOCK).expect("closed");
//!     permit.failure(&CLOCK); // the call failed
//! }
//! assert_eq!(BREAKER.state(), BreakerState::Open);
//! let rejected = BREAKER.try_acquire(&CLOCK).unwrap_err();
//! let retry_after = rejected.retry_after().expect("open: a time to come back");
//! assert!(retry_after >= Duration::from_secs(60));
//!
//! // After `reset_timeout` one probe is let through; others wait.
//! CLOCK.advance(retry_after);
//! let probe = BREAKER.try_acquire(&CLOCK).expect("half-open probe");
//! assert_eq!(BREAKER.state(), BreakerState::HalfOpen);
//! assert!(BREAKER.try_acquire(&CLOCK).is_err());
//! probe.success(&CLOCK);
//!
//! // The round lasts `half_open_timeout` (30 s); with a successful probe
//! // and no failed one, the next call after it closes the circuit.
//! CLOCK.advance(Duration::from_secs(31));
//! let permit = BREAKER.try_acquire(&CLOCK).expect("closed again");
//! assert_eq!(BREAKER.state(), BreakerState::Closed);
//! permit.success(&CLOCK);
//! ```
//!
//! # How the options are interpreted
//!
//! * `failure_threshold` (spec `failureThreshold`, default 5): that many
//!   *consecutive* failures while closed open the circuit; a success resets
//!   the count.
//! * `reset_timeout` (`resetTimeout`, 60 s): time open before half-open.
//! * `half_open_timeout` (`halfOpenTimeout`, 30 s, "time to wait in
//!   half-open state before fully closing"): a half-open *round* lasts this
//!   long. During it at most `half_open_max_probes` probes run at once (a
//!   probe that reports or is dropped frees its slot). Any failed probe
//!   re-opens the circuit. The circuit closes when the round has lasted
//!   `half_open_timeout` and at least one probe succeeded (checked when a
//!   probe reports success and on every [`try_acquire`](CircuitBreaker::try_acquire)).
//!   A round that ends with no successful probe, for instance because a
//!   caller crashed while holding the only probe permit, is followed by a
//!   fresh round (new generation) instead of staying wedged. So
//!   `half_open_timeout` should be longer than a call normally takes:
//!   verdicts of probes from an earlier round are ignored.
//!   `half_open_successes_to_close` (optional) closes the circuit early,
//!   after that many successful probes in one round.
//! * `monitor_interval` (`monitorInterval`, 5 s): validated and stored for
//!   the blocking layer, which emits metrics events at that interval. The
//!   state machine itself does not use it.
//! * `failure_rate` (beyond the spec, as in resilience4j): a count-based
//!   sliding window over the last `window_size` calls while closed; once it
//!   holds at least `minimum_calls` calls, a failure rate at or above
//!   `threshold_percent` opens the circuit. The window starts empty at each
//!   close. Either rule opening the circuit is enough.
//! * `slow_call_threshold` (beyond the spec): a call that reports success
//!   later than this after it was admitted counts as a failure. Only with
//!   this option does admission read the clock in the closed state.
//!
//! # Generations: stale verdicts are ignored
//!
//! Every state change (including a new half-open round and every manual
//! operation) increments a *generation* counter. A permit carries the
//! generation it was admitted in; a verdict whose generation is not the
//! current one is ignored. So a slow success that started before the
//! circuit opened cannot close it, and a late failure from an earlier
//! half-open round cannot re-open a later one (the stale-verdict bug
//! reported against Polly in #217/#219).
//!
//! The generation field wraps: it holds [`CircuitBreaker::GENERATIONS`]
//! values (2²⁹ with the 64-bit layout, 2¹³ = 8192 with the 32-bit layout).
//! A permit that outlives a whole multiple of that many state changes is
//! mistaken for a current one; a permit that lives across fewer than
//! `GENERATIONS` transitions is always recognised as stale. Automatic
//! transitions are on average at least `min(reset_timeout / 2,
//! half_open_timeout)` apart (30 s with the defaults), so with the 32-bit
//! layout and default timeouts a permit must live about 68 hours to be
//! mistaken (about 510 years with the 64-bit layout); manual operations
//! can cycle faster.
//!
//! # Permits and tokens
//!
//! [`try_acquire`](CircuitBreaker::try_acquire) returns a [`BreakerPermit`]
//! that borrows the breaker; give it a verdict with
//! [`success`](BreakerPermit::success), [`failure`](BreakerPermit::failure)
//! or [`ignore`](BreakerPermit::ignore). Dropping it without a verdict
//! counts as *ignored*: it frees a half-open probe slot and counts neither
//! as success nor as failure. Bindings that cannot hold a borrow turn the
//! permit into a plain-data [`BreakerToken`] with
//! [`into_token`](BreakerPermit::into_token) and later
//! [`report`](CircuitBreaker::report) it (or re-attach it with
//! [`BreakerPermit::from_token`]). Report each token at most once; what a
//! second report does, and what a token never reported does, is defined
//! exactly in [`CircuitBreaker::report`] and [`BreakerToken`]: never a
//! wedged breaker, never a count out of its bounds.
//!
//! # Transitions are values
//!
//! Every call that can change the state returns the [`Transition`] it
//! performed: [`BreakerPermit::transition`] for an admission,
//! [`report`](CircuitBreaker::report) and the permit's verdicts for a
//! report, [`trip`](CircuitBreaker::trip), [`reset`](CircuitBreaker::reset),
//! [`force_open`](CircuitBreaker::force_open) and
//! [`disable`](CircuitBreaker::disable) always. Exactly one call returns
//! each transition, so a layer that emits events needs no polling:
//! [`state`](CircuitBreaker::state) and [`metrics`](CircuitBreaker::metrics)
//! only read and never perform a transition (an open breaker past its
//! `reset_timeout` stays `Open` until the next admission).
//!
//! # Cost
//!
//! In the closed state with no slow-call threshold, `try_acquire` is one
//! atomic load. A success report with no pending consecutive failures, on
//! a breaker with neither a slow-call threshold nor a failure-rate window,
//! is one atomic load too, and dropping a permit without a verdict is one
//! atomic load in every state but half-open. These fast paths are inlined
//! into the caller, read no clock and write nothing; everything else goes
//! to an out-of-line general path. Failures, rejections, and all open and
//! half-open operations use compare-and-swap on one state word and bump a
//! statistics counter. With `failure_rate` enabled every closed-state
//! report also claims a window slot (one CAS), sets or clears its bit
//! (one read-modify-write), re-reads the position (one read-modify-write)
//! and loads up to four ring words.
//!
//! # Clock steps
//!
//! A clock that steps backwards by less than
//! [`CircuitBreaker::BACKWARD_HORIZON`] (≈ 9.77 hours with the 32-bit
//! layout, ≈ 417 days with the 64-bit one) means "no time passed": the
//! breaker never admits early because of it. A larger backwards step reads
//! as the clock moving forwards by [`CircuitBreaker::TIME_WRAP`] minus the
//! step.
//!
//! # Internals
//!
//! The bit layouts of the state words and their time horizons are
//! documented in `word.rs`; the time stamp and clock steps in `stamp.rs`;
//! the transitions, and what a race can cost, in `transition.rs` and
//! `window.rs`.

use core::convert::Infallible;
use core::fmt;
use core::mem::ManuallyDrop;
use core::time::Duration;

use crate::clock::{Clock, Timestamp, duration_to_nanos_saturating};
use crate::error::{ConfigError, ConfigOption, ConfigProblem, ConfigValue, explain};
use crate::sync::const_fn_unless_loom;
use crate::sync::{self, AtomicU32, AtomicWord, Ordering, WIDE, WORD_BITS, Word};
use crate::time::TickUnit;

/// `?` for `const fn`.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Err(e),
        }
    };
}

mod config;
mod machine;
mod metrics;
mod permit;
mod stamp;
mod state;
#[cfg(all(test, not(stockade_loom)))]
mod test_util;
mod transition;
mod window;
mod word;

use config::*;
pub use config::{BreakerConfig, FailureRateConfig, RawBreakerConfig};
pub use machine::CircuitBreaker;
pub use metrics::{BreakerMetrics, WindowMetrics};
pub use permit::{BreakerPermit, BreakerToken, TokenError};
use stamp::*;
pub use state::{BreakerRejected, BreakerState, Outcome};
pub use transition::Transition;
use transition::*;
use word::*;
