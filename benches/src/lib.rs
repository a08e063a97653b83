//! Shared helpers for Stockade's criterion benchmarks (the bench targets
//! live in `benches/benches/`).
//!
//! Every comparison is one criterion group named after the pattern
//! (`limiter`, `breaker`, `bulkhead`, `retry`), with one function per
//! implementation (`stockade`, `governor`, …) and one parameter per thread
//! count (`1t`, `2t`). `scripts/bench-table.py` reads the results back by
//! those names, so keep them stable.
//!
//! Multi-threaded points use [`run_threads`]: the threads share one
//! instance, start together at a barrier, and the reported time is the wall
//! time divided by the operations *of one thread* — the per-op time each
//! thread saw. With perfect scaling it equals the single-thread time; with
//! full serialisation it is `threads` times as long.

use core::sync::atomic::{AtomicU64, Ordering};
use core::time::Duration;
use std::path::PathBuf;
use std::sync::{Barrier, Condvar, Mutex};
use std::time::Instant;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion};

/// The thread counts every comparison is measured at.
pub const THREADS: [usize; 2] = [1, 2];

/// Criterion with short warm-up and measurement times, so that the whole
/// suite runs in a few minutes (override on the command line, e.g.
/// `cargo bench -p stockade-bench -- --measurement-time 10`).
pub fn criterion() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
        .configure_from_args()
}

/// The parameter label of a thread count: `1t`, `2t`, …
pub fn threads_label(threads: usize) -> String {
    format!("{threads}t")
}

/// Runs `op(state)` `iters` times on each of `threads` threads that start
/// together at a barrier, and returns the wall time of the slowest thread:
/// criterion divides it by `iters`, which gives the per-op time per thread.
///
/// With `threads == 1` the operation runs on the calling thread, so the
/// single-thread number has no spawn or barrier overhead at all.
pub fn run_threads<S, O>(threads: usize, iters: u64, state: &S, op: &O) -> Duration
where
    S: Sync + ?Sized,
    O: Fn(&S) + Sync + ?Sized,
{
    run_threads_with(threads, iters, &|| state, &|state: &mut &S| op(state))
}

/// [`run_threads`] with a state of each thread's own: every thread (the
/// calling one when `threads == 1`) makes its state with `make` before the
/// barrier, outside the timed region, then runs `op` on it `iters` times.
pub fn run_threads_with<T, M, O>(threads: usize, iters: u64, make: &M, op: &O) -> Duration
where
    M: Fn() -> T + Sync + ?Sized,
    O: Fn(&mut T) + Sync + ?Sized,
{
    let timed = |mut mine: T| {
        let start = Instant::now();
        for _ in 0..iters {
            op(&mut mine);
        }
        start.elapsed()
    };
    if threads <= 1 {
        return timed(make());
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mine = make();
                    barrier.wait();
                    timed(mine)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or(Duration::MAX))
            .max()
            .unwrap_or_default()
    })
}

/// Adds one benchmark per thread count in [`THREADS`] to `group`, under the
/// function name `name`.
///
/// `setup` builds a fresh shared instance for every criterion sample (so a
/// limiter on a clock that never moves cannot run out of permits over a
/// long run), outside the timed region; `op` is one operation on it, run
/// by every thread (see [`run_threads`]).
pub fn bench_threads<S, U, O>(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, setup: U, op: O)
where
    S: Sync,
    U: Fn() -> S,
    O: Fn(&S) + Sync,
{
    for threads in THREADS {
        group.bench_function(BenchmarkId::new(name, threads_label(threads)), |b| {
            b.iter_custom(|iters| {
                let state = setup();
                run_threads(threads, iters, &state, &op)
            });
        });
    }
}

/// Interleaved rounds per [`paired`] comparison (override with
/// `STOCKADE_PAIRED_ROUNDS`).
pub const PAIRED_ROUNDS: usize = 401;

/// Wall time of one batch of one side of a [`paired`] round.
const PAIRED_BATCH: Duration = Duration::from_micros(500);

/// The outcome of a [`paired`] comparison.
#[derive(Clone, Debug)]
pub struct Paired {
    /// Median of the per-round ratios `subject ÷ reference`.
    pub ratio: f64,
    /// 10th and 90th percentile of the per-round ratios.
    pub ratio_p10: f64,
    /// See `ratio_p10`.
    pub ratio_p90: f64,
    /// Median ns per operation of the subject over the rounds.
    pub subject_ns: f64,
    /// Median ns per operation of the reference over the rounds.
    pub reference_ns: f64,
    /// Rounds measured.
    pub rounds: usize,
}

/// Compares `subject` with `reference` on one thread, interleaved: each
/// round times a batch of about 0.5 ms of each (alternating which goes
/// first), and the result is the median of the per-round ratios.
///
/// Criterion measures one function after another, seconds apart, and on a
/// shared or frequency-scaling machine the speed of the whole machine
/// drifts between those windows by more than the difference between two
/// implementations at the same floor (the limiter against governor: both a
/// counter read and one compare-and-swap). A ratio taken within each round
/// cancels that drift; its spread (p10–p90) says how far to trust it. The
/// targets are checked on these ratios; criterion's tables stay beside
/// them.
///
/// Prints one line and writes `<criterion home>/paired/<group>--<subject>--
/// <reference>.json` for `scripts/bench-table.py`.
pub fn paired(
    group: &str,
    subject_name: &str,
    subject: impl FnMut(),
    reference_name: &str,
    reference: impl FnMut(),
) -> Paired {
    let rounds = std::env::var("STOCKADE_PAIRED_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or(PAIRED_ROUNDS);
    let (result, batch) = measure_paired(rounds, subject, reference);
    println!(
        "paired {group}: {subject_name} ÷ {reference_name} = {:.3} (p10 {:.3}, p90 {:.3}; \
         {:.1} ns vs {:.1} ns; {rounds} interleaved rounds of {batch} ops)",
        result.ratio, result.ratio_p10, result.ratio_p90, result.subject_ns, result.reference_ns,
    );
    let dir = criterion_home().join("paired");
    let json = format!(
        "{{\"group\": \"{group}\", \"subject\": \"{subject_name}\", \"reference\": \"{reference_name}\", \
         \"ratio\": {}, \"ratio_p10\": {}, \"ratio_p90\": {}, \"subject_ns\": {}, \
         \"reference_ns\": {}, \"rounds\": {rounds}, \"batch\": {batch}}}\n",
        result.ratio, result.ratio_p10, result.ratio_p90, result.subject_ns, result.reference_ns,
    );
    let file = dir.join(format!("{group}--{subject_name}--{reference_name}.json"));
    if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, json)) {
        eprintln!("paired {group}: cannot write {}: {e}", file.display());
    }
    result
}

/// [`paired`]'s measurement: the result and the batch size.
fn measure_paired(
    rounds: usize,
    mut subject: impl FnMut(),
    mut reference: impl FnMut(),
) -> (Paired, u64) {
    // One batch size for both sides (the slower one's), so each round
    // does the same number of operations of each.
    let batch = batch_for(&mut subject).min(batch_for(&mut reference));
    let time = |op: &mut dyn FnMut()| {
        let start = Instant::now();
        for _ in 0..batch {
            op();
        }
        start.elapsed().as_nanos() as f64 / batch as f64
    };
    // Warm-up: a tenth of the rounds, not recorded.
    for _ in 0..rounds / 10 + 1 {
        time(&mut subject);
        time(&mut reference);
    }
    let mut ratios = Vec::with_capacity(rounds);
    let mut subject_ns = Vec::with_capacity(rounds);
    let mut reference_ns = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            let a = time(&mut subject);
            (a, time(&mut reference))
        } else {
            let b = time(&mut reference);
            (time(&mut subject), b)
        };
        ratios.push(a / b);
        subject_ns.push(a);
        reference_ns.push(b);
    }
    let result = Paired {
        ratio: quantile(&mut ratios, 0.5),
        ratio_p10: quantile(&mut ratios, 0.1),
        ratio_p90: quantile(&mut ratios, 0.9),
        subject_ns: quantile(&mut subject_ns, 0.5),
        reference_ns: quantile(&mut reference_ns, 0.5),
        rounds,
    };
    (result, batch)
}

/// Operations of `op` that take about [`PAIRED_BATCH`].
fn batch_for(op: &mut impl FnMut()) -> u64 {
    let mut n = 64u64;
    loop {
        let start = Instant::now();
        for _ in 0..n {
            op();
        }
        let took = start.elapsed();
        if took >= PAIRED_BATCH / 4 || n >= 1 << 30 {
            let per_op = took.as_nanos().max(1) as f64 / n as f64;
            return ((PAIRED_BATCH.as_nanos() as f64 / per_op) as u64).max(1);
        }
        n *= 4;
    }
}

/// The `q` quantile (0..=1, nearest rank) of `values`; sorts them.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = ((values.len() - 1) as f64 * q).round() as usize;
    values[rank.min(values.len() - 1)]
}

static REJECTIONS: AtomicU64 = AtomicU64::new(0);

/// Counts a call that was refused where every call should be granted (the
/// benches measure the grant path). Only touched on a refusal, so it costs
/// the grant path nothing.
#[cold]
#[inline(never)]
pub fn note_rejection() {
    REJECTIONS.fetch_add(1, Ordering::Relaxed);
}

/// Panics if any call of `group` was refused (see [`note_rejection`]): the
/// numbers would not be the grant path's.
pub fn assert_no_rejections(group: &str) {
    let refused = REJECTIONS.swap(0, Ordering::Relaxed);
    assert!(
        refused == 0,
        "{group}: {refused} calls were refused; the bench must measure the grant path"
    );
}

/// Where criterion writes its results: `$CRITERION_HOME`, else
/// `$CARGO_TARGET_DIR/criterion`, else the `criterion` folder of the target
/// directory this bench binary was built in.
pub fn criterion_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    // The binary is `<target>/<profile>/deps/<name>-<hash>`.
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// A counting semaphore from a `Mutex` and a `Condvar`: the textbook
/// blocking baseline for the bulkhead comparison.
#[derive(Debug)]
pub struct CondvarSemaphore {
    state: Mutex<SemState>,
    freed: Condvar,
}

#[derive(Debug)]
struct SemState {
    available: u32,
    waiters: u32,
}

/// A permit of a [`CondvarSemaphore`], released on drop.
#[derive(Debug)]
#[must_use]
pub struct CondvarPermit<'a> {
    semaphore: &'a CondvarSemaphore,
}

impl CondvarSemaphore {
    /// A semaphore with `permits` permits.
    pub fn new(permits: u32) -> CondvarSemaphore {
        CondvarSemaphore {
            state: Mutex::new(SemState {
                available: permits,
                waiters: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SemState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a permit if one is free.
    pub fn try_acquire(&self) -> Option<CondvarPermit<'_>> {
        let mut state = self.lock();
        if state.available == 0 {
            return None;
        }
        state.available -= 1;
        Some(CondvarPermit { semaphore: self })
    }

    /// Takes a permit, waiting until one is free.
    pub fn acquire(&self) -> CondvarPermit<'_> {
        let mut state = self.lock();
        while state.available == 0 {
            state.waiters += 1;
            state = self.freed.wait(state).unwrap_or_else(|e| e.into_inner());
            state.waiters -= 1;
        }
        state.available -= 1;
        CondvarPermit { semaphore: self }
    }

    /// Free permits right now.
    pub fn available(&self) -> u32 {
        self.lock().available
    }
}

impl Drop for CondvarPermit<'_> {
    fn drop(&mut self) {
        let mut state = self.semaphore.lock();
        state.available += 1;
        let wake = state.waiters > 0;
        drop(state);
        if wake {
            self.semaphore.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use core::hint::black_box;

    use super::*;

    #[test]
    fn condvar_semaphore_counts() {
        let sem = CondvarSemaphore::new(2);
        let a = sem.try_acquire();
        let b = sem.acquire();
        assert!(a.is_some());
        assert!(sem.try_acquire().is_none());
        drop(b);
        assert_eq!(sem.available(), 1);
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert_eq!(quantile(&mut v, 0.5), 3.0);
        assert_eq!(quantile(&mut v, 0.0), 1.0);
        assert_eq!(quantile(&mut v, 1.0), 5.0);
        assert!(quantile(&mut [], 0.5).is_nan());
    }

    #[test]
    fn paired_sees_which_side_is_slower() {
        // The subject does 8 times the reference's work: the ratio must say so.
        let spin = |n: u64| {
            let mut x = 0u64;
            for i in 0..n {
                x = black_box(x.wrapping_add(i));
            }
            black_box(x);
        };
        let (result, _) = measure_paired(101, || spin(800), || spin(100));
        assert!(result.ratio > 2.0, "ratio {}", result.ratio);
        assert!(result.ratio_p10 <= result.ratio && result.ratio <= result.ratio_p90);
    }

    #[test]
    fn run_threads_runs_every_op() {
        let count = core::sync::atomic::AtomicU64::new(0);
        run_threads(2, 1000, &count, &|c: &core::sync::atomic::AtomicU64| {
            c.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
        });
        assert_eq!(count.into_inner(), 2000);
    }
}
