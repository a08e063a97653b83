//! Hedging's decisions, without threads or a runtime: [`HedgingConfig`]
//! and [`HedgeRound`], the bookkeeping of one hedged call — when to launch
//! the next attempt, how many are in flight, whether every one failed.
//!
//! The blocking layer's `blocking::Hedging` runs the attempts on a bounded
//! pool of threads and drives a `HedgeRound` from the results it receives;
//! an async runtime drives the same round from tasks and timers.
//!
//! The rules of a round:
//!
//! * The first attempt is launched at once.
//! * Another attempt is launched when `delay` has passed since the last
//!   launch without a success, or at once when an attempt fails, until
//!   `max_attempts` have been launched.
//! * The first attempt to **succeed** wins; the others are losers (a
//!   runtime cancels or abandons them).
//! * A launch that could not be made (no capacity) is not retried: the
//!   round goes on with the attempts in flight.
//! * When every launched attempt has failed and no more will be launched,
//!   the round has failed (the caller returns the last failure).
//! * A runtime that filters failures (the blocking layer's
//!   `Hedging::execute_if`) reports only the failures it hedges on with
//!   [`HedgeRound::failed`]; a failure it does not hedge on ends the call
//!   there, without asking the round (the attempts in flight are losers).
//!
//! ```
//! use std::time::Duration;
//! use stockade::clock::Timestamp;
//! use stockade::hedging::{HedgeRound, HedgeStep, HedgingConfig};
//!
//! let config = HedgingConfig::DEFAULT.with_delay(Duration::from_millis(100));
//! let mut round = HedgeRound::new(&config);
//! let t0 = Timestamp::ZERO;
//! assert_eq!(round.next_step(t0), HedgeStep::Launch { attempt: 1 });
//! round.launched(t0);
//! let t1 = t0.saturating_add(Duration::from_millis(100));
//! assert_eq!(round.next_step(t0), HedgeStep::WaitUntil(t1));
//! assert_eq!(round.next_step(t1), HedgeStep::Launch { attempt: 2 });
//! round.launched(t1);
//! assert_eq!(round.next_step(t1), HedgeStep::WaitForResult);
//! round.failed(t1);
//! round.failed(t1);
//! assert_eq!(round.next_step(t1), HedgeStep::Failed);
//! ```

use core::time::Duration;

use crate::clock::Timestamp;
use crate::error::{ConfigError, ConfigOption, ConfigValue};

/// The most attempts one hedged call may launch (the first included).
pub const MAX_HEDGED_ATTEMPTS: u32 = 64;

/// Hedging options.
///
/// * `delay` — how long an attempt runs without a success before the next
///   one is launched (default 2 s). Zero launches every attempt at once.
/// * `max_attempts` — attempts in all, the first included (default 2: one
///   hedge), 1 to [`MAX_HEDGED_ATTEMPTS`]. 1 never hedges.
/// * `max_workers` — the cap on attempts running at once over every call
///   of one hedging instance: the threads of its pool (default 16). A hedge
///   that finds them all busy is not launched (not an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HedgingConfig {
    /// The wait before each extra attempt.
    pub delay: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// Attempts running at once, over every call of one instance.
    pub max_workers: usize,
}

impl Default for HedgingConfig {
    fn default() -> Self {
        HedgingConfig::DEFAULT
    }
}

impl HedgingConfig {
    /// 2 s delay, 2 attempts in all (one hedge), 16 workers.
    pub const DEFAULT: HedgingConfig = HedgingConfig {
        delay: Duration::from_secs(2),
        max_attempts: 2,
        max_workers: 16,
    };

    /// Checks the options.
    ///
    /// # Errors
    ///
    /// A [`ConfigError`] naming `max_attempts` (zero, or above
    /// [`MAX_HEDGED_ATTEMPTS`]) or `max_workers` (zero).
    ///
    /// ```
    /// use stockade::ConfigOption;
    /// use stockade::hedging::HedgingConfig;
    ///
    /// let err = HedgingConfig::DEFAULT.with_max_attempts(0).validate().unwrap_err();
    /// assert_eq!(err.option, ConfigOption::MaxAttempts);
    /// assert_eq!(err.to_string(), "invalid max_attempts = 0: must be greater than zero");
    /// ```
    pub const fn validate(&self) -> Result<(), ConfigError> {
        if self.max_attempts == 0 {
            return Err(ConfigError::zero(
                ConfigOption::MaxAttempts,
                ConfigValue::Count(0),
            ));
        }
        if self.max_attempts > MAX_HEDGED_ATTEMPTS {
            return Err(ConfigError::count_above(
                ConfigOption::MaxAttempts,
                self.max_attempts as u64,
                MAX_HEDGED_ATTEMPTS as u64,
            ));
        }
        if self.max_workers == 0 {
            return Err(ConfigError::zero(
                ConfigOption::MaxWorkers,
                ConfigValue::Count(0),
            ));
        }
        Ok(())
    }

    /// This config with `delay` set.
    #[must_use]
    pub const fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// This config with `max_attempts` set.
    #[must_use]
    pub const fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// This config with `max_workers` set.
    #[must_use]
    pub const fn with_max_workers(mut self, max_workers: usize) -> Self {
        self.max_workers = max_workers;
        self
    }
}

/// What the runtime of a hedged call does next (from
/// [`HedgeRound::next_step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HedgeStep {
    /// Launch attempt number `attempt` (1-based) now, then report it with
    /// [`HedgeRound::launched`] or [`HedgeRound::refused`].
    Launch {
        /// The attempt's number, 1 for the first.
        attempt: u32,
    },
    /// Wait for a result until this time, then ask again (the next hedge
    /// is due then).
    WaitUntil(Timestamp),
    /// Wait for a result: no more attempts will be launched.
    WaitForResult,
    /// Every launched attempt failed and no more will be launched: the
    /// call fails (with the last failure).
    Failed,
}

/// The bookkeeping of one hedged call (see the [module docs](self)).
#[derive(Clone, Debug)]
pub struct HedgeRound {
    delay: Duration,
    max_attempts: u32,
    launched: u32,
    finished: u32,
    /// A launch was refused: no more launches.
    stopped: bool,
    /// When the next attempt is due, once one was launched.
    next_at: Option<Timestamp>,
}

impl HedgeRound {
    /// A round under `config` (assumed valid: a zero `max_attempts` acts
    /// as 1).
    pub const fn new(config: &HedgingConfig) -> HedgeRound {
        HedgeRound {
            delay: config.delay,
            max_attempts: if config.max_attempts == 0 {
                1
            } else {
                config.max_attempts
            },
            launched: 0,
            finished: 0,
            stopped: false,
            next_at: None,
        }
    }

    /// What to do at `now`.
    pub fn next_step(&self, now: Timestamp) -> HedgeStep {
        if self.launched == 0 {
            return HedgeStep::Launch { attempt: 1 };
        }
        let more = !self.stopped && self.launched < self.max_attempts;
        if more {
            let due = self.next_at.unwrap_or(now);
            if now >= due || self.in_flight() == 0 {
                return HedgeStep::Launch {
                    attempt: self.launched + 1,
                };
            }
            return HedgeStep::WaitUntil(due);
        }
        if self.in_flight() == 0 {
            HedgeStep::Failed
        } else {
            HedgeStep::WaitForResult
        }
    }

    /// The attempt asked for was launched at `now`: the next is due
    /// `delay` later.
    pub fn launched(&mut self, now: Timestamp) {
        self.launched += 1;
        self.next_at = Some(now.saturating_add(self.delay));
    }

    /// The attempt asked for could not be launched: no more will be.
    pub fn refused(&mut self) {
        self.stopped = true;
    }

    /// An attempt failed at `now`: the next one (if any) is due at once.
    pub fn failed(&mut self, now: Timestamp) {
        self.finished = self.finished.saturating_add(1).min(self.launched);
        self.next_at = Some(now);
    }

    /// Attempts launched so far.
    pub const fn attempts_launched(&self) -> u32 {
        self.launched
    }

    /// Attempts launched and not finished yet.
    pub const fn in_flight(&self) -> u32 {
        self.launched - self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    fn config(delay_ms: u64, attempts: u32) -> HedgingConfig {
        HedgingConfig::DEFAULT
            .with_delay(Duration::from_millis(delay_ms))
            .with_max_attempts(attempts)
    }

    #[test]
    fn hedges_are_launched_one_delay_apart_up_to_the_cap() {
        let mut round = HedgeRound::new(&config(10, 3));
        assert_eq!(round.next_step(at(0)), HedgeStep::Launch { attempt: 1 });
        round.launched(at(0));
        assert_eq!(round.next_step(at(9)), HedgeStep::WaitUntil(at(10)));
        assert_eq!(round.next_step(at(10)), HedgeStep::Launch { attempt: 2 });
        round.launched(at(12));
        assert_eq!(round.next_step(at(12)), HedgeStep::WaitUntil(at(22)));
        assert_eq!(round.next_step(at(22)), HedgeStep::Launch { attempt: 3 });
        round.launched(at(22));
        assert_eq!(round.next_step(at(1000)), HedgeStep::WaitForResult);
        assert_eq!(round.in_flight(), 3);
        assert_eq!(round.attempts_launched(), 3);
    }

    #[test]
    fn a_failure_launches_the_next_attempt_at_once() {
        let mut round = HedgeRound::new(&config(10, 2));
        round.launched(at(0));
        round.failed(at(3));
        assert_eq!(round.next_step(at(3)), HedgeStep::Launch { attempt: 2 });
        round.launched(at(3));
        round.failed(at(4));
        assert_eq!(round.next_step(at(4)), HedgeStep::Failed);
    }

    #[test]
    fn the_round_fails_only_when_nothing_is_in_flight() {
        let mut round = HedgeRound::new(&config(10, 3));
        round.launched(at(0));
        round.launched(at(10));
        round.failed(at(11));
        // Attempt 3 is due at once; attempt 2 still runs.
        assert_eq!(round.next_step(at(11)), HedgeStep::Launch { attempt: 3 });
        round.refused();
        assert_eq!(round.next_step(at(11)), HedgeStep::WaitForResult);
        round.failed(at(12));
        assert_eq!(round.next_step(at(12)), HedgeStep::Failed);
    }

    #[test]
    fn one_attempt_never_hedges() {
        let mut round = HedgeRound::new(&config(0, 1));
        round.launched(at(0));
        assert_eq!(round.next_step(at(100)), HedgeStep::WaitForResult);
        round.failed(at(100));
        assert_eq!(round.next_step(at(100)), HedgeStep::Failed);
    }

    #[test]
    fn a_zero_delay_launches_every_attempt_at_once() {
        let mut round = HedgeRound::new(&config(0, 3));
        for attempt in 1..=3 {
            assert_eq!(round.next_step(at(5)), HedgeStep::Launch { attempt });
            round.launched(at(5));
        }
        assert_eq!(round.next_step(at(5)), HedgeStep::WaitForResult);
    }

    #[test]
    fn validation_names_the_option() {
        assert_eq!(HedgingConfig::DEFAULT.validate(), Ok(()));
        let zero = config(1, 0).validate().unwrap_err();
        assert_eq!(zero.option, ConfigOption::MaxAttempts);
        let big = config(1, MAX_HEDGED_ATTEMPTS + 1).validate().unwrap_err();
        assert_eq!(big.option, ConfigOption::MaxAttempts);
        assert_eq!(config(1, MAX_HEDGED_ATTEMPTS).validate(), Ok(()));
        let workers = HedgingConfig::DEFAULT
            .with_max_workers(0)
            .validate()
            .unwrap_err();
        assert_eq!(workers.option, ConfigOption::MaxWorkers);
    }
}
