//! Metrics snapshots.

#[allow(unused_imports)]
use super::*;

/// A snapshot of a breaker's state and statistics, from
/// [`CircuitBreaker::metrics`].
///
/// Fields are read one after another, not atomically together; counters
/// wrap at `u32::MAX`. The state's own counts (`consecutive_failures`,
/// the probe counts, the window) start again with every state change; the
/// totals (`failures` and the fields after it) count over the breaker's
/// whole life, and [`CircuitBreaker::reset`] does not clear them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BreakerMetrics {
    /// The state.
    pub state: BreakerState,
    /// The generation (incremented by every state change, wrapping at
    /// [`CircuitBreaker::GENERATIONS`]).
    pub generation: u32,
    /// Consecutive failures (closed state; 0 otherwise).
    pub consecutive_failures: u32,
    /// Probes in flight (half-open state; 0 otherwise).
    pub probes_in_flight: u32,
    /// Successful probes in the current round (half-open; 0 otherwise).
    pub probe_successes: u32,
    /// The failure-rate window, when configured.
    pub window: Option<WindowMetrics>,
    /// Failures counted (including slow calls), wrapping.
    pub failures: u32,
    /// Slow calls counted as failures, wrapping.
    pub slow_calls: u32,
    /// Calls rejected, wrapping.
    pub rejections: u32,
    /// State changes (including new half-open rounds and manual
    /// operations), wrapping.
    pub transitions: u32,
    /// Transitions that changed the state (`from != to`: not new
    /// half-open rounds, not trips of an open breaker), wrapping. Equal to
    /// the number of [`Transition`]s with
    /// [`changes_state`](Transition::changes_state) the calls returned.
    pub state_changes: u32,
    /// Verdicts ignored because they came from an earlier generation,
    /// wrapping.
    pub stale_verdicts: u32,
    /// When the current generation began (to a tick). The current time if
    /// the transition is still being recorded or the clock stepped back.
    pub last_transition: Timestamp,
}

/// The failure-rate window's contents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WindowMetrics {
    /// Calls in the window (at most `window_size`; 0 unless closed).
    pub calls: u32,
    /// Failed calls among them.
    pub failures: u32,
}

impl WindowMetrics {
    /// `failures * 100 / calls`, or 0 for an empty window.
    pub const fn failure_rate_percent(self) -> u32 {
        if self.calls == 0 {
            0
        } else {
            (self.failures as u64 * 100 / self.calls as u64) as u32
        }
    }
}

impl CircuitBreaker {
    /// A snapshot of the state and statistics. Reads the clock once, to
    /// date the last transition.
    pub fn metrics<C: Clock + ?Sized>(&self, clock: &C) -> BreakerMetrics {
        let w = self.ctrl.load(Ordering::Acquire);
        let g = gen_of(w);
        let mode = mode_of(w);
        let (consecutive_failures, probes_in_flight, probe_successes) = match mode {
            CLOSED => (field_u32(a_of(w)), 0, 0),
            HALF_OPEN => (0, field_u32(a_of(w)), field_u32(b_of(w))),
            _ => (0, 0, 0),
        };
        let window = self.config.failure_rate().map(|_| {
            let p = self.window_pos.load(Ordering::Acquire);
            if mode == CLOSED && pos_gen(p) == g {
                let calls = field_u32(pos_filled(p));
                WindowMetrics {
                    calls,
                    failures: self.window_failures(calls),
                }
            } else {
                WindowMetrics {
                    calls: 0,
                    failures: 0,
                }
            }
        });
        let t = clock.now();
        let last_transition = match self.view_since(g, now_ticks(t)) {
            SinceView::Elapsed(e) => {
                let ago = UNIT
                    .to_nanos(e)
                    .saturating_add(t.as_nanos() & (UNIT.nanos_per_tick() - 1));
                Timestamp::from_nanos(t.as_nanos().saturating_sub(ago))
            }
            _ => t,
        };
        BreakerMetrics {
            state: BreakerState::from_mode(mode),
            generation: field_u32(g),
            consecutive_failures,
            probes_in_flight,
            probe_successes,
            window,
            failures: self.failures.load(Ordering::Relaxed),
            slow_calls: self.slow_calls.load(Ordering::Relaxed),
            rejections: self.rejections.load(Ordering::Relaxed),
            transitions: self.transitions.load(Ordering::Relaxed),
            state_changes: self.state_changes.load(Ordering::Relaxed),
            stale_verdicts: self.stale.load(Ordering::Relaxed),
            last_transition,
        }
    }
}

#[cfg(all(test, not(stockade_loom)))]
mod tests {
    use super::*;
    use crate::breaker::test_util::*;

    #[test]
    fn metrics_snapshot() {
        let b = breaker(BreakerConfig::DEFAULT.with_failure_threshold(2));
        let c = clock();
        let m = metrics(&b, &c);
        assert_eq!(m.state, BreakerState::Closed);
        assert_eq!(m.window, None);
        assert_eq!((m.generation, m.transitions, m.rejections), (0, 0, 0));
        c.advance(SEC);
        let t_trip = c.now();
        fail(&b, &c);
        fail(&b, &c);
        c.advance(SEC);
        let _ = b.try_acquire(&c);
        let m = metrics(&b, &c);
        assert_eq!(m.state, BreakerState::Open);
        assert_eq!(
            (m.generation, m.transitions, m.rejections, m.failures),
            (1, 1, 1, 2)
        );
        assert!(m.last_transition <= t_trip);
        assert!(t_trip.saturating_duration_since(m.last_transition) < CircuitBreaker::TICK);
        // Backwards clock: the transition is "now".
        c.set(Timestamp::from_nanos(7));
        assert_eq!(metrics(&b, &c).last_transition, Timestamp::from_nanos(7));
    }
}
