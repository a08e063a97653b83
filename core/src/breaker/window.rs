//! The failure-rate window: a count-based bit ring.

#[allow(unused_imports)]
use super::*;

impl CircuitBreaker {
    /// Readies an empty window for generation `g`. Called before the
    /// control word moves to a closed generation, so no call of `g` sees an
    /// old window, and after every transition (see [`enter`](Self::enter)).
    /// Never moves the window back to an older generation: a report of an
    /// older generation cannot claim a slot afterwards.
    pub(super) fn prepare_window(&self, g: Word) {
        if !self.config.has_failure_rate() {
            return;
        }
        let installed = sync::update(&self.window_pos, Ordering::AcqRel, |p| {
            if gen_is_older(pos_gen(p), g) {
                Ok(((), pos_pack(g, 0, 0)))
            } else {
                Err(())
            }
        });
        if installed.is_ok() {
            for cell in &self.window_bits {
                cell.store(0, Ordering::Release);
            }
        }
    }

    /// Records a call of closed generation `g` in the window and opens the
    /// circuit if the failure rate calls for it (returning that transition).
    pub(super) fn record<C: Clock + ?Sized>(
        &self,
        g: Word,
        failed: bool,
        now: &mut LazyNow<'_, C>,
    ) -> Option<Transition> {
        let fr = self.config.failure_rate()?;
        let size = fr.window_size as Word;
        let claimed = sync::update(&self.window_pos, Ordering::AcqRel, |p| {
            if pos_gen(p) != g {
                return Err(());
            }
            let slot = pos_next(p);
            let next = if slot + 1 >= size { 0 } else { slot + 1 };
            let filled = (pos_filled(p) + 1).min(size);
            Ok((slot, pos_pack(g, filled, next)))
        });
        let slot = claimed.ok()?;
        let bit = 1u32 << (slot % 32);
        if let Some(cell) = self.window_bits.get((slot / 32) as usize) {
            if failed {
                cell.fetch_or(bit, Ordering::AcqRel);
            } else {
                cell.fetch_and(!bit, Ordering::AcqRel);
            }
        }
        // Re-read the position with a read-modify-write: all reporters'
        // re-reads are totally ordered on this word and each synchronizes
        // with the ones before it, so of two concurrent reporters the later
        // one sees the other's bit (in whichever ring word it is).
        let p = self.window_pos.fetch_add(0, Ordering::AcqRel);
        if pos_gen(p) != g {
            return None;
        }
        let calls = field_u32(pos_filled(p));
        if calls < fr.minimum_calls {
            return None;
        }
        let failures = self.window_failures(calls);
        // `failures <= calls <= 128` and `threshold_percent <= 100`: `u32`.
        if failures * 100 >= fr.threshold_percent * calls {
            let ((), old, new) = update_ctrl(self, |w| {
                if mode_of(w) != CLOSED || gen_of(w) != g {
                    return Err(());
                }
                Ok(((), pack(OPEN, next_gen(g), 0, 0)))
            })
            .ok()?;
            return self.commit(old, new, now);
        }
        None
    }

    /// Failure bits among the first `calls` slots.
    pub(super) fn window_failures(&self, calls: u32) -> u32 {
        let mut failures = 0;
        let mut base = 0u32;
        for cell in &self.window_bits {
            if base >= calls {
                break;
            }
            let bits = cell.load(Ordering::Acquire);
            let n = calls - base;
            let mask = if n >= 32 { u32::MAX } else { (1u32 << n) - 1 };
            failures += (bits & mask).count_ones();
            base += 32;
        }
        failures
    }
}

#[cfg(all(test, not(stockade_loom), feature = "failure-rate"))]
mod tests {
    use super::*;
    use crate::breaker::test_util::*;

    fn rate_breaker(percent: u32, window: u32, minimum: u32) -> CircuitBreaker {
        breaker(
            BreakerConfig::DEFAULT
                .with_failure_threshold(CircuitBreaker::MAX_COUNT)
                .with_failure_rate(FailureRateConfig::new(percent, window, minimum)),
        )
    }

    #[test]
    fn failure_rate_opens_after_minimum_calls() {
        let b = rate_breaker(50, 4, 4);
        let c = clock();
        succeed(&b, &c);
        fail(&b, &c);
        succeed(&b, &c);
        assert_eq!(
            metrics(&b, &c).window,
            Some(WindowMetrics {
                calls: 3,
                failures: 1
            })
        );
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(metrics(&b, &c).window.unwrap().calls, 0);
    }

    #[test]
    fn failure_rate_is_evaluated_on_success_too() {
        let b = rate_breaker(50, 10, 2);
        let c = clock();
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        succeed(&b, &c); // 1 of 2 failed: 50 %
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn failure_rate_window_slides() {
        let b = rate_breaker(50, 4, 4);
        let c = clock();
        fail(&b, &c);
        for _ in 0..4 {
            succeed(&b, &c); // the failure slides out
        }
        let w = metrics(&b, &c).window.unwrap();
        assert_eq!((w.calls, w.failures, w.failure_rate_percent()), (4, 0, 0));
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, &c); // 2 of the last 4, though only 3 of 7 overall
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn failure_rate_window_spans_several_words() {
        let b = rate_breaker(50, 100, 100);
        let c = clock();
        for _ in 0..60 {
            succeed(&b, &c);
        }
        for _ in 0..40 {
            fail(&b, &c);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(metrics(&b, &c).window.unwrap().failure_rate_percent(), 40);
        for _ in 0..9 {
            fail(&b, &c);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn failure_rate_window_starts_empty_after_closing() {
        let b = rate_breaker(50, 8, 2);
        let c = clock();
        for _ in 0..3 {
            fail(&b, &c);
            if b.state() == BreakerState::Open {
                break;
            }
        }
        assert_eq!(b.state(), BreakerState::Open);
        wait_out(&b, &c).success(&c);
        c.advance(Duration::from_secs(30) + SLACK);
        succeed(&b, &c);
        assert_eq!(b.state(), BreakerState::Closed);
        succeed(&b, &c);
        assert_eq!(
            metrics(&b, &c).window,
            Some(WindowMetrics {
                calls: 2,
                failures: 0
            })
        );
        // And after a manual reset.
        fail(&b, &c);
        b.reset(&c);
        succeed(&b, &c);
        assert_eq!(metrics(&b, &c).window.unwrap().failures, 0);
    }

    #[test]
    fn failure_rate_survives_a_long_time_without_closing() {
        // More than half the generation space of transitions without
        // closing (a dependency down for days: open, half-open, open, ...),
        // up to 20 000 (500 under Miri, which interprets every one): the
        // 32-bit layout's space is within reach, the 64-bit one's is not.
        let b = rate_breaker(50, 4, 2);
        let c = clock();
        let most = if cfg!(miri) { 500 } else { 20_000 };
        let flaps = (CircuitBreaker::GENERATIONS / 2 + 10).min(most);
        for _ in 0..flaps {
            b.trip(&c);
        }
        b.reset(&c);
        succeed(&b, &c);
        assert_eq!(metrics(&b, &c).window.unwrap().calls, 1);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn either_rule_opens_the_circuit() {
        let b = breaker(
            BreakerConfig::DEFAULT
                .with_failure_threshold(2)
                .with_failure_rate(FailureRateConfig::new(90, 10, 10)),
        );
        let c = clock();
        fail(&b, &c);
        fail(&b, &c);
        assert_eq!(b.state(), BreakerState::Open);
    }
}
