//! Waiting without blocking (feature `async`): the [`AsyncTimer`] trait,
//! its implementations for tokio and async-io, and the waits the async
//! patterns share.

use core::future::{Future, poll_fn};
use core::pin::{Pin, pin};
use core::task::Poll;
use core::time::Duration;
use std::sync::Arc;

use super::Timer;
use super::wait::WaitList;
use crate::clock::Timestamp;

/// A [`Timer`] whose time a task can await: what the async forms of the
/// patterns (`execute_async`, [`AsyncPolicy`](super::AsyncPolicy)) wait
/// on. The patterns decide without blocking (a rate limiter's reservation
/// says until when to wait, a bulkhead's queue hands out permits through
/// [`Waker`](core::task::Waker)s), so this is all the runtime they need.
///
/// Implemented, with feature `tokio` or `async-io`, for the default
/// [`MonotonicClock`](crate::clock::MonotonicClock) (see its
/// `RuntimeSleep`), and with feature `tokio` for `TokioClock`, which
/// reads tokio's own time (so tokio's paused test time drives the
/// patterns deterministically). Implement it for your own runtime: a
/// sleep that completes once the clock reached the deadline. A sleep that
/// completes early is harmless: callers check the clock again and sleep
/// anew.
pub trait AsyncTimer: Timer {
    /// The future of one sleep.
    type Sleep: Future<Output = ()> + Send + 'static;

    /// A future that completes once this clock reached `deadline`.
    fn sleep_until_async(&self, deadline: Timestamp) -> Self::Sleep;

    /// A future that completes once `duration` of this clock's time passed.
    fn sleep_async(&self, duration: Duration) -> Self::Sleep {
        self.sleep_until_async(self.now().saturating_add(duration))
    }
}

impl<T: AsyncTimer + ?Sized> AsyncTimer for &T {
    type Sleep = T::Sleep;
    fn sleep_until_async(&self, deadline: Timestamp) -> T::Sleep {
        (**self).sleep_until_async(deadline)
    }
}

impl<T: AsyncTimer + ?Sized> AsyncTimer for Arc<T> {
    type Sleep = T::Sleep;
    fn sleep_until_async(&self, deadline: Timestamp) -> T::Sleep {
        (**self).sleep_until_async(deadline)
    }
}

#[cfg(any(feature = "tokio", feature = "async-io"))]
pin_project_lite::pin_project! {
    /// The sleep of [`MonotonicClock`](crate::clock::MonotonicClock)'s
    /// [`AsyncTimer`] (feature `tokio` or `async-io`): tokio's timer when the
    /// sleep is made inside a tokio runtime (feature `tokio`), otherwise
    /// async-io's (feature `async-io`), which works on any executor.
    ///
    /// The deadline is on the monotonic clock, the sleep on the runtime's
    /// timer: under tokio's paused time (tests) the two disagree, and a
    /// pattern waits until the monotonic clock reaches its deadline (sleeping
    /// again as often as paused time jumps ahead). Give patterns a
    /// [`TokioClock`] in tests on paused time.
    ///
    /// With feature `tokio` alone, a sleep made outside a tokio runtime (or in
    /// one built without `enable_time`) panics when polled, as
    /// `tokio::time::sleep` does: enable `async-io` too to wait elsewhere.
    pub struct RuntimeSleep {
        #[pin]
        on: SleepOn,
    }
}

/// tokio's sleep, or (without feature `tokio`) a stand-in never made.
#[cfg(feature = "tokio")]
type TokioSleep = tokio::time::Sleep;
#[cfg(all(not(feature = "tokio"), feature = "async-io"))]
type TokioSleep = core::future::Pending<()>;
/// async-io's timer, or (without feature `async-io`) a stand-in never
/// made.
#[cfg(feature = "async-io")]
type IoTimer = async_io::Timer;
#[cfg(all(not(feature = "async-io"), feature = "tokio"))]
type IoTimer = core::future::Pending<std::time::Instant>;

#[cfg(any(feature = "tokio", feature = "async-io"))]
pin_project_lite::pin_project! {
    /// The sleep inline (no allocation), pinned in place.
    #[project = SleepOnProj]
    #[allow(dead_code, reason = "one variant is a stand-in without its feature")]
    enum SleepOn {
        Tokio { #[pin] sleep: TokioSleep },
        AsyncIo { #[pin] timer: IoTimer },
    }
}

#[cfg(any(feature = "tokio", feature = "async-io"))]
impl Future for RuntimeSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut core::task::Context<'_>) -> Poll<()> {
        match self.project().on.project() {
            SleepOnProj::Tokio { sleep } => sleep.poll(cx),
            SleepOnProj::AsyncIo { timer } => timer.poll(cx).map(drop),
        }
    }
}

#[cfg(any(feature = "tokio", feature = "async-io"))]
impl core::fmt::Debug for RuntimeSleep {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RuntimeSleep").finish_non_exhaustive()
    }
}

#[cfg(any(feature = "tokio", feature = "async-io"))]
impl AsyncTimer for crate::clock::MonotonicClock {
    type Sleep = RuntimeSleep;

    /// Sleeps for the time left until `deadline` on the runtime's timer
    /// (see [`RuntimeSleep`] for which).
    fn sleep_until_async(&self, deadline: Timestamp) -> RuntimeSleep {
        use crate::clock::Clock;
        RuntimeSleep::after(deadline.saturating_duration_since(self.now()))
    }
}

/// The host clock of patterns shared between processes: its deadlines are
/// awaited as [`MonotonicClock`](crate::clock::MonotonicClock)'s are.
#[cfg(all(
    feature = "shared-memory",
    any(feature = "tokio", feature = "async-io")
))]
impl AsyncTimer for crate::shared::HostClock {
    type Sleep = RuntimeSleep;

    /// Sleeps for the time left until `deadline` on the runtime's timer
    /// (see [`RuntimeSleep`] for which).
    fn sleep_until_async(&self, deadline: Timestamp) -> RuntimeSleep {
        use crate::clock::Clock;
        RuntimeSleep::after(deadline.saturating_duration_since(self.now()))
    }
}

#[cfg(any(feature = "tokio", feature = "async-io"))]
impl RuntimeSleep {
    /// A sleep of `left` on the runtime's timer: tokio's inside a tokio
    /// runtime (feature `tokio`), async-io's otherwise.
    pub fn after(left: Duration) -> RuntimeSleep {
        #[cfg(all(feature = "tokio", feature = "async-io"))]
        let on_tokio = tokio::runtime::Handle::try_current().is_ok();
        #[cfg(all(feature = "tokio", not(feature = "async-io")))]
        let on_tokio = true;
        #[cfg(feature = "tokio")]
        if on_tokio {
            return RuntimeSleep {
                on: SleepOn::Tokio {
                    sleep: tokio::time::sleep(left),
                },
            };
        }
        #[cfg(feature = "async-io")]
        return RuntimeSleep {
            on: SleepOn::AsyncIo {
                timer: async_io::Timer::after(left),
            },
        };
        #[cfg(not(feature = "async-io"))]
        unreachable!("with `tokio` alone, every sleep is tokio's")
    }
}

/// tokio's clock (feature `tokio`): a [`Clock`](crate::clock::Clock) that
/// reads `tokio::time::Instant` (nanoseconds since the clock was made) and
/// an [`AsyncTimer`] that sleeps with `tokio::time::sleep_until`.
///
/// Give it to a pattern (`X::with_timer(name, config, TokioClock::new())`)
/// so the pattern's time is tokio's: under tokio's paused time
/// (`#[tokio::test(start_paused = true)]`, `tokio::time::pause`) a test of
/// rate limits, back-off and timeouts runs instantly and deterministically.
///
/// As a blocking [`Timer`] it sleeps and parks the thread in real time
/// until tokio's time, as that thread sees it, reaches the deadline: a
/// thread outside the runtime sees real time, and a thread of a runtime
/// whose time is paused would wait until something else advances it, so
/// make blocking calls on such a pattern from threads outside the runtime
/// or from `spawn_blocking` (which keeps a paused clock from
/// auto-advancing while it runs).
///
/// # Examples
///
/// ```
/// # #[cfg(feature = "tokio")] {
/// use std::time::Duration;
/// use stockade::blocking::{AsyncTimer, TokioClock};
/// use stockade::clock::Clock;
///
/// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
/// # runtime.block_on(async {
/// let clock = TokioClock::new();
/// clock.sleep_async(Duration::from_secs(3600)).await; // paused: instant
/// assert!(clock.now().as_nanos() >= 3_600_000_000_000);
/// # });
/// # }
/// ```
#[cfg(feature = "tokio")]
#[derive(Clone, Copy, Debug)]
pub struct TokioClock {
    origin: tokio::time::Instant,
}

#[cfg(feature = "tokio")]
impl TokioClock {
    /// A clock at zero now (tokio's now: paused time inside a paused
    /// runtime).
    pub fn new() -> TokioClock {
        TokioClock {
            origin: tokio::time::Instant::now(),
        }
    }

    /// The tokio instant of `time` on this clock.
    pub fn instant(&self, time: Timestamp) -> tokio::time::Instant {
        self.origin + Duration::from_nanos(time.as_nanos())
    }
}

#[cfg(feature = "tokio")]
impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

#[cfg(feature = "tokio")]
impl crate::clock::Clock for TokioClock {
    #[inline]
    fn now(&self) -> Timestamp {
        let since = tokio::time::Instant::now().saturating_duration_since(self.origin);
        Timestamp::from_nanos(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }
}

#[cfg(feature = "tokio")]
impl Timer for TokioClock {
    fn sleep_until(&self, deadline: Timestamp) {
        use crate::clock::Clock;
        loop {
            let left = deadline.saturating_duration_since(self.now());
            if left.is_zero() {
                return;
            }
            crate::sync::thread::sleep(left);
        }
    }

    fn park_until(&self, deadline: Timestamp) {
        use crate::clock::Clock;
        let left = deadline.saturating_duration_since(self.now());
        if !left.is_zero() {
            crate::sync::thread::park_timeout(left);
        }
    }
}

#[cfg(feature = "tokio")]
impl AsyncTimer for TokioClock {
    type Sleep = tokio::time::Sleep;

    fn sleep_until_async(&self, deadline: Timestamp) -> tokio::time::Sleep {
        tokio::time::sleep_until(self.instant(deadline))
    }
}

/// Sleeps until `timer` reaches `deadline`, unless `disposed` turns true
/// first (the pattern's `dispose` sets its flag, then wakes `list`):
/// `true` at the deadline, `false` when disposed.
pub(super) async fn sleep_until_or_disposed<T: AsyncTimer>(
    timer: &T,
    list: &WaitList,
    deadline: Timestamp,
    disposed: impl Fn() -> bool,
) -> bool {
    if timer.now() >= deadline {
        return !disposed();
    }
    let mut waiting = list.register_task();
    let mut sleep = pin!(timer.sleep_until_async(deadline));
    poll_fn(|cx| {
        // Registered before the check: a dispose after it wakes this task.
        waiting.set_waker(cx.waker());
        if disposed() {
            return Poll::Ready(false);
        }
        loop {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if timer.now() >= deadline {
                return Poll::Ready(true);
            }
            // Woke early by this clock: sleep again.
            sleep.set(timer.sleep_until_async(deadline));
        }
    })
    .await
}

/// Polls `sleep` (remade while `timer` is short of `deadline`): ready once
/// the deadline passed.
pub(super) fn poll_deadline<T: AsyncTimer>(
    timer: &T,
    deadline: Timestamp,
    sleep: &mut Pin<&mut T::Sleep>,
    cx: &mut core::task::Context<'_>,
) -> Poll<()> {
    loop {
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        if timer.now() >= deadline {
            return Poll::Ready(());
        }
        sleep.set(timer.sleep_until_async(deadline));
    }
}
