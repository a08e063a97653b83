//! The retry budget against a tiny reference model: a plain balance plus the
//! time of the last look, on absolute `u128` time, no wrapping.
//!
//! * With a clock that only moves forward (in steps that keep the 32-bit
//!   word far from its wrap) every decision, `retry_after`, balance and
//!   token count must equal the model's.
//! * With any clock moves — backwards steps, jumps past the 32-bit wrap, the
//!   end of the 64-bit range — the budget must never allow more retries
//!   than `max_tokens + ratio · calls + floor · (latest time seen - time of
//!   the first retry)`: time the clock spends behind is never paid twice.
//!   Its balance never exceeds the capacity.
#![cfg(not(stockade_loom))]

use core::time::Duration;

use proptest::prelude::*;
use stockade::budget::{MAX_TOKENS, RetryBudget, RetryBudgetConfig};
use stockade::clock::{ManualClock, Timestamp};

/// The 64-bit layout is in use.
fn wide() -> bool {
    MAX_TOKENS == u32::MAX
}

/// The expected `(tick_ns, token_units)` of a config, from the documented
/// rules: a token is `ceil(1 s / floor)`; the 32-bit tick is the coarsest
/// power of two keeping at least 1000 ticks per token; without a floor a
/// token is 1000 units.
fn expected_units(config: &RetryBudgetConfig) -> (u128, u128) {
    let r = config.min_retries_per_second as u128;
    if r == 0 {
        return (1, 1000);
    }
    let token_ns = 1_000_000_000u128.div_ceil(r);
    let mut tick = 1u128;
    if !wide() {
        while token_ns / (tick * 2) >= 1000 {
            tick *= 2;
        }
    }
    (tick, token_ns.div_ceil(tick))
}

/// The reference model, in units.
#[derive(Debug)]
struct Model {
    floor: bool,
    tick: u128,
    token: u128,
    deposit: u128,
    capacity: u128,
    balance: u128,
    /// Ticks at the last operation (with a floor).
    last: Option<u128>,
}

impl Model {
    fn new(config: &RetryBudgetConfig) -> Model {
        let (tick, token) = expected_units(config);
        let capacity = config.max_tokens as u128 * token;
        let deposit = ((config.ratio * token as f64).round() as u128).min(capacity);
        Model {
            floor: config.min_retries_per_second > 0,
            tick,
            token,
            deposit,
            capacity,
            balance: capacity,
            last: None,
        }
    }

    /// Refills for the time since the last look (forward moves only).
    fn look(&mut self, now_ns: u128) {
        if !self.floor {
            return;
        }
        let now = now_ns / self.tick;
        if let Some(last) = self.last {
            if now > last {
                self.balance = (self.balance + (now - last)).min(self.capacity);
            }
        }
        self.last = Some(now);
    }

    fn deposit(&mut self, now_ns: u128) {
        self.look(now_ns);
        self.balance = (self.balance + self.deposit).min(self.capacity);
    }

    fn withdraw(&mut self, now_ns: u128) -> Result<(), Option<Duration>> {
        self.look(now_ns);
        if self.balance >= self.token {
            self.balance -= self.token;
            Ok(())
        } else if self.floor {
            let ns = (self.token - self.balance) * self.tick;
            Err(Some(Duration::from_nanos(ns as u64)))
        } else {
            Err(None)
        }
    }

    fn balance(&mut self, now_ns: u128) -> u128 {
        self.look(now_ns);
        self.balance
    }
}

#[derive(Clone, Debug)]
enum Op {
    Deposit,
    Withdraw,
    Balance,
    Reset,
    /// Forward by this many nanoseconds.
    Forward(u64),
}

fn config_strategy() -> impl Strategy<Value = RetryBudgetConfig> {
    (
        prop_oneof![Just(0.0), Just(0.2), Just(1.0), Just(0.001), 0.0f64..3.0],
        prop_oneof![
            Just(0u32),
            Just(1),
            Just(10),
            Just(1_000_000),
            1u32..=1_000_000
        ],
        prop_oneof![Just(1u32), Just(100), 1u32..=64, Just(MAX_TOKENS)],
    )
        .prop_map(|(ratio, floor, max)| RetryBudgetConfig {
            ratio,
            min_retries_per_second: floor,
            max_tokens: max,
        })
}

/// Forward steps, sized relative to one token of time so that both quick
/// and slow refills are explored.
fn forward_ops(config: &RetryBudgetConfig) -> impl Strategy<Value = Vec<Op>> + use<> {
    let token_ns = if config.min_retries_per_second == 0 {
        1_000_000u64
    } else {
        1_000_000_000u64.div_ceil(config.min_retries_per_second as u64)
    };
    let op = prop_oneof![
        4 => Just(Op::Deposit),
        4 => Just(Op::Withdraw),
        1 => Just(Op::Balance),
        1 => (0..=3 * token_ns).prop_map(Op::Forward),
        1 => (0..=token_ns / 3).prop_map(Op::Forward),
    ];
    proptest::collection::vec(op, 1..200)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn monotone_clock_matches_the_model(
        (config, ops, start) in config_strategy().prop_flat_map(|c| {
            (Just(c), forward_ops(&c), 0u64..(1 << 29))
        })
    ) {
        let budget = RetryBudget::new(config).expect("valid config");
        let mut model = Model::new(&config);
        prop_assert_eq!(budget.token_units() as u128, model.token);
        prop_assert_eq!(budget.deposit_units() as u128, model.deposit);
        prop_assert_eq!(budget.capacity_units() as u128, model.capacity);
        prop_assert_eq!(
            budget.resolution().map(|d| d.as_nanos()),
            model.floor.then_some(model.tick)
        );
        // Start within the first 2^29 ticks (the 32-bit word's first
        // eighth: a fresh budget is full there).
        let clock = ManualClock::starting_at(Timestamp::from_nanos(
            (start as u128 * model.tick).min(u64::MAX as u128) as u64,
        ));
        for op in ops {
            let now = clock.now_ns();
            match op {
                Op::Deposit => {
                    budget.deposit(&clock);
                    model.deposit(now);
                }
                Op::Withdraw => {
                    let got = budget.try_withdraw(&clock).map_err(|e| e.retry_after());
                    prop_assert_eq!(got, model.withdraw(now), "{:?}", model);
                }
                Op::Balance => {}
                Op::Reset => unreachable!(),
                Op::Forward(ns) => clock.advance(Duration::from_nanos(ns)),
            }
            let now = clock.now_ns();
            let balance = model.balance(now);
            prop_assert_eq!(budget.balance_units(&clock) as u128, balance);
            prop_assert_eq!(budget.available(&clock) as u128, balance / model.token);
        }
    }

    #[test]
    fn never_more_than_the_bound(
        config in config_strategy(),
        ops in proptest::collection::vec(
            prop_oneof![
                4 => Just(Op::Deposit),
                4 => Just(Op::Withdraw),
                1 => Just(Op::Balance),
                1 => Just(Op::Reset),
                2 => (0u64..=2_000_000_000).prop_map(Op::Forward),
                1 => (0u64..=u64::MAX).prop_map(Op::Forward),
            ],
            1..200,
        ),
        backs in proptest::collection::vec((0u32..200, any::<u64>()), 0..10),
    ) {
        let budget = RetryBudget::new(config).expect("valid config");
        let model = Model::new(&config);
        let clock = ManualClock::new();
        // Backwards steps are inserted by position. On the 32-bit layout the
        // guarantee covers steps that stay within the capacity of the latest
        // time seen (a larger one looks like a wrap).
        let cap_ns = model.capacity * model.tick;
        let (mut grants, mut deposits) = (0u128, 0u128);
        // The floor counts from the first grant (the bucket starts full
        // whatever the time) to the latest time seen.
        let mut first_grant: Option<u128> = None;
        let mut max_seen = 0u128;
        for (i, op) in ops.into_iter().enumerate() {
            for (_, back) in backs.iter().filter(|(at, _)| *at as usize == i) {
                let now = clock.now_ns();
                let mut to = now.saturating_sub(*back as u128);
                if !wide() && model.floor {
                    to = to.max((max_seen + model.tick).saturating_sub(cap_ns));
                }
                clock.set(Timestamp::from_nanos(to as u64));
            }
            let now = clock.now_ns();
            max_seen = max_seen.max(now);
            match op {
                Op::Deposit => {
                    budget.deposit(&clock);
                    deposits += 1;
                }
                Op::Withdraw => {
                    if budget.try_withdraw(&clock).is_ok() {
                        grants += 1;
                        first_grant.get_or_insert(now);
                    }
                }
                Op::Balance => {}
                Op::Reset => {
                    // A reset is a new budget: start the count again.
                    budget.reset();
                    grants = 0;
                    deposits = 0;
                    first_grant = None;
                }
                Op::Forward(ns) => clock.advance(Duration::from_nanos(ns)),
            }
            let now = clock.now_ns();
            max_seen = max_seen.max(now);
            let balance = budget.balance_units(&clock) as u128;
            prop_assert!(balance <= model.capacity);
            let floor_units = match first_grant {
                Some(first) if model.floor => max_seen / model.tick - first / model.tick,
                _ => 0,
            };
            let bound = model.capacity + deposits * model.deposit + floor_units;
            prop_assert!(
                grants * model.token <= bound,
                "{} grants of {} units > {} (deposits {}, floor {})",
                grants, model.token, bound, deposits, floor_units
            );
        }
    }
}

trait NowNs {
    fn now_ns(&self) -> u128;
}

impl NowNs for ManualClock {
    fn now_ns(&self) -> u128 {
        use stockade::clock::Clock;
        self.now().as_nanos() as u128
    }
}
