//! Process-local objects after a real `fork()`: the child gets working
//! objects, not the parent's threads' bookkeeping.
//!
//! Each test forks; the child runs its checks and leaves with `_exit`
//! (never returning into the test harness), its exit status saying
//! whether the checks held. The parent waits for it with a watchdog and
//! kills a child that hangs.
#![cfg(all(unix, feature = "std", not(stockade_loom)))]

use core::panic::AssertUnwindSafe;
use core::time::Duration;
use std::panic::catch_unwind;
use std::time::Instant;

use std::sync::Arc;

use stockade::blocking::{Error, Refused, Timeout, WorkerPool};
use stockade::clock::MonotonicClock;
use stockade::deadline::TimeoutConfig;

/// How long a child may take before the parent kills it and fails.
const WATCHDOG: Duration = Duration::from_secs(20);

/// Exit status of a child whose checks panicked.
const FAILED: i32 = 101;

/// Forks; the child runs `child` and exits 0 if it returned, [`FAILED`]
/// if it panicked. The parent waits at most [`WATCHDOG`] and fails the
/// test (after killing the child) if the child hangs or failed.
fn in_child(child: impl FnOnce()) {
    // SAFETY: `fork` has no preconditions; the child only runs `child`
    // and leaves through `_exit`, never returning into the harness.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = match catch_unwind(AssertUnwindSafe(child)) {
            Ok(()) => 0,
            Err(_) => FAILED,
        };
        // SAFETY: ends the child without running the parent's exit
        // handlers or the harness.
        unsafe { libc::_exit(code) };
    }
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: `pid` is our child; `status` is a valid out-pointer.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        assert!(done >= 0, "waitpid failed");
        if done == pid {
            break;
        }
        if start.elapsed() > WATCHDOG {
            // SAFETY: `pid` is our child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("the forked child hung (killed after {WATCHDOG:?})");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        libc::WIFEXITED(status),
        "the forked child did not exit normally (status {status:#x})"
    );
    assert_eq!(
        libc::WEXITSTATUS(status),
        0,
        "the forked child's checks failed"
    );
}

fn timeout(max_workers: usize) -> Timeout {
    Timeout::unregistered("fork", TimeoutConfig::new(Duration::from_secs(10)).unwrap())
        .unwrap()
        .with_pool(max_workers, Duration::from_secs(60))
        .unwrap()
}

#[test]
fn a_timeout_used_before_the_fork_runs_calls_in_the_child() {
    let t = timeout(1);
    // A worker is started and parked idle: the child inherits the pool's
    // count of it, but not the thread.
    assert_eq!(t.execute(|| Ok::<_, ()>(1)).ok(), Some(1));
    assert_eq!(t.workers(), 1);
    in_child(|| {
        assert_eq!(t.workers(), 0, "the child has none of the parent's workers");
        for i in 0..3 {
            assert_eq!(t.execute(move || Ok::<_, ()>(40 + i)).ok(), Some(40 + i));
        }
        assert_eq!(t.workers(), 1);
        assert_eq!(t.busy_workers(), 0);
    });
    // The parent's pool is untouched.
    assert_eq!(t.execute(|| Ok::<_, ()>(2)).ok(), Some(2));
    t.dispose();
}

#[test]
fn a_job_running_in_the_parent_at_the_fork_does_not_take_the_childs_worker() {
    let t = timeout(1);
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let (started_tx, started) = std::sync::mpsc::channel::<()>();
    let busy = std::thread::scope(|s| {
        let caller = s.spawn(|| {
            t.execute(move || {
                let _ = started_tx.send(());
                let _ = gate.recv_timeout(WATCHDOG);
                Ok::<_, ()>(1)
            })
        });
        started
            .recv_timeout(WATCHDOG)
            .expect("the job never started");
        assert_eq!(t.busy_workers(), 1);
        // The parent's only worker is busy: the parent is full...
        assert!(matches!(t.execute(|| Ok::<_, ()>(0)), Err(Error::PoolFull)));
        // ...but the child has its own pool.
        in_child(|| {
            assert_eq!(t.busy_workers(), 0);
            assert_eq!(t.execute(|| Ok::<_, ()>(42)).ok(), Some(42));
            assert_eq!(t.execute(|| Ok::<_, ()>(43)).ok(), Some(43));
        });
        release.send(()).unwrap();
        caller.join().unwrap()
    });
    assert_eq!(busy.ok(), Some(1));
    t.dispose();
}

#[test]
fn a_pool_shut_down_before_the_fork_stays_shut_down_in_the_child() {
    let clock = MonotonicClock::new();
    let pool = Arc::new(WorkerPool::new("fork", 1, 0, Duration::from_secs(60)));
    pool.shutdown();
    in_child(|| {
        assert_eq!(pool.submit(&clock, || 1).err(), Some(Refused::Shutdown));
    });
}

#[test]
fn a_child_forgets_the_parents_coarse_clock_upkeep() {
    use stockade::clock::{Clock, CoarseClock};
    // A long interval: the upkeep thread publishes once, so the parent's
    // published time stands still, as a child's would if it trusted it.
    let mut upkeep = Some(CoarseClock::start_upkeep(Duration::from_secs(3600)).expect("upkeep"));
    assert!(CoarseClock::upkeep_running());
    in_child(|| {
        assert!(
            !CoarseClock::upkeep_running(),
            "the child believes the parent's upkeep runs"
        );
        let coarse = CoarseClock::new();
        let a = coarse.now();
        std::thread::sleep(Duration::from_millis(2));
        let b = coarse.now();
        assert!(
            b.saturating_duration_since(a) >= Duration::from_millis(2),
            "the child's coarse time stood still: {a:?} then {b:?}"
        );
        // The child may start its own upkeep; dropping the parent's copy
        // of the handle neither hangs nor stops the child's.
        let own = CoarseClock::start_upkeep(Duration::from_millis(1)).expect("child upkeep");
        drop(upkeep.take());
        assert!(CoarseClock::upkeep_running());
        drop(own);
        assert!(!CoarseClock::upkeep_running());
    });
    assert!(
        CoarseClock::upkeep_running(),
        "the parent's upkeep is untouched"
    );
    drop(upkeep);
    assert!(!CoarseClock::upkeep_running());
}
