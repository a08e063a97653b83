//! Shared-memory machines (`stockade::shared`) against the same machines in
//! process memory, across processes.
//!
//! Three operations, each on the grant path (every call is granted; a
//! refusal fails the run):
//! - `limiter`: `RateLimiter::try_acquire` (10^9 per second, so nothing is
//!   ever refused);
//! - `breaker`: a closed breaker's `try_acquire` + `success` (no call in
//!   between);
//! - `bulkhead`: `try_acquire` + drop of the permit (64 permits).
//!
//! Each in up to three implementations:
//! - `local`: the core machine in the process's own memory, on the clock
//!   the other benches use (`MonotonicClock`); at N processes each process
//!   has its own machine (the cost of not sharing);
//! - `shared`: the same machine in one region every process maps
//!   (`Shared<RateLimiter>`, `Shared<CircuitBreaker>` on `HostClock`,
//!   `SharedBulkhead`);
//! - `mutex` (limiter only): the nginx-style design, a process-shared
//!   robust pthread mutex (`PTHREAD_PROCESS_SHARED`,
//!   `PTHREAD_MUTEX_ROBUST`) in a shared mapping guarding the same GCRA
//!   arithmetic on a plain `u64`, the clock (`HostClock`) read before the
//!   lock.
//!
//! **Multi-process runs.** For each process count (1, 2 and 8) and each
//! repetition, every (operation, implementation) runs once, in an order
//! that rotates between repetitions so that drift of the machine's speed
//! hits them alike. A run forks N workers; each opens its object (the
//! shared ones by name, as an unrelated process would), warms up, waits at
//! a common start (a pipe the parent closes), then calls the operation for
//! a fixed wall-clock time, counting calls, and reports its calls, wall
//! time and CPU time through a shared mapping. Per run: the median over
//! the workers of wall ns per call (*per process*), the same for CPU ns
//! per call, and the host's aggregate (1 / Σ calls per second, ns per
//! call). Per row: the median of those over the repetitions. With more
//! processes than cores, the per-process wall time includes waiting for a
//! core; the CPU time does not.
//!
//! **One process, interleaved.** The target "shared ≤ 1.5 × local at 1
//! process" is decided on [`stockade_bench::paired`] comparisons in this
//! process (about 0.5 ms of each side per round, alternating): shared ÷
//! local for each operation; beside them `HostClock` ÷ `MonotonicClock`
//! (one clock read), the local limiter on `HostClock` (separating the
//! clock from the shared memory), and mutex ÷ shared.
//!
//! Settings (environment): `STOCKADE_SHARED_RUN_MS` (wall time of one
//! run, default 200), `STOCKADE_SHARED_RUNS` (repetitions, default 5),
//! `STOCKADE_SHARED_PROCESSES` (default `1,2,8`), `STOCKADE_PAIRED_ROUNDS`
//! (see `paired`), `STOCKADE_SHARED_ONLY` (only the operations whose name
//! contains it: `limiter`, `breaker` or `bulkhead`). Without `--bench` on
//! the command line (as `cargo test --benches` runs it) every row runs
//! once, briefly, as a smoke check, and nothing is written. Other
//! arguments (criterion's options, when `cargo bench` passes them to every
//! target) are ignored.
//!
//! Output: the Markdown tables on stdout, also written to `<criterion
//! home>/shared/report.md` (which `scripts/bench.sh` appends to its
//! report), and the interleaved comparisons to `<criterion
//! home>/paired/shared--*.json`. The regions live in a fresh directory
//! under `/dev/shm` (tmpfs: no write-back of the mapped pages), removed at
//! the end.

#[cfg(target_os = "linux")]
mod multi {
    use core::cell::UnsafeCell;
    use core::fmt::Write as _;
    use core::hint::black_box;
    use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use core::time::Duration;
    use std::path::{Path, PathBuf};
    use std::time::Instant;

    use stockade::breaker::{BreakerConfig, CircuitBreaker};
    use stockade::bulkhead::{Bulkhead, BulkheadConfig};
    use stockade::clock::{Clock, MonotonicClock};
    use stockade::limiter::{RateLimiter, RateLimiterConfig};
    use stockade::shared::{HostClock, Shared, SharedBulkhead, SharedOptions};
    use stockade_bench::{Paired, criterion_home, paired};

    /// Permits per second (and burst) of every limiter: never reached.
    const RATE: u32 = 1_000_000_000;
    /// Permits of every bulkhead: more than the processes.
    const PERMITS: u32 = 64;
    /// The most worker processes of one run.
    const MAX_PROCESSES: usize = 64;
    /// Calls between two reads of the deadline.
    const CHUNK: u64 = 256;
    /// A worker's calls before the common start (fault in the mapping,
    /// warm the caches and branch predictors).
    const WARM_UP_CALLS: u64 = 20_000;
    /// The target: shared at most this many times local, at 1 process.
    const TARGET_SHARED_OVER_LOCAL: f64 = 1.5;

    /// An operation measured.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Op {
        Limiter,
        Breaker,
        Bulkhead,
    }

    impl Op {
        const ALL: [Op; 3] = [Op::Limiter, Op::Breaker, Op::Bulkhead];

        fn name(self) -> &'static str {
            match self {
                Op::Limiter => "limiter",
                Op::Breaker => "breaker",
                Op::Bulkhead => "bulkhead",
            }
        }

        fn what(self) -> &'static str {
            match self {
                Op::Limiter => "limiter grant (`try_acquire`)",
                Op::Breaker => "closed breaker (`try_acquire` + `success`)",
                Op::Bulkhead => "bulkhead `try_acquire` + release",
            }
        }

        fn imps(self) -> &'static [Imp] {
            match self {
                Op::Limiter => &[Imp::Local, Imp::Shared, Imp::Mutex],
                Op::Breaker | Op::Bulkhead => &[Imp::Local, Imp::Shared],
            }
        }
    }

    /// An implementation of an operation.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Imp {
        Local,
        Shared,
        Mutex,
    }

    impl Imp {
        fn name(self) -> &'static str {
            match self {
                Imp::Local => "local",
                Imp::Shared => "shared",
                Imp::Mutex => "mutex",
            }
        }

        /// The implementation as the tables name it, for `op`.
        fn what(self, op: Op) -> &'static str {
            match (self, op) {
                (Imp::Local, Op::Bulkhead) => "local (`Bulkhead`)",
                (Imp::Local, _) => "local (`MonotonicClock`)",
                (Imp::Shared, Op::Limiter) => "shared (`Shared<RateLimiter>`, `HostClock`)",
                (Imp::Shared, Op::Breaker) => "shared (`Shared<CircuitBreaker>`, `HostClock`)",
                (Imp::Shared, Op::Bulkhead) => "shared (`SharedBulkhead`)",
                (Imp::Mutex, _) => "robust pthread mutex + `u64` GCRA (`HostClock`)",
            }
        }
    }

    fn limiter_config() -> RateLimiterConfig {
        RateLimiterConfig::DEFAULT
            .with_requests_per_period(RATE)
            .with_period(Duration::from_secs(1))
    }

    fn local_limiter() -> RateLimiter {
        RateLimiter::new(limiter_config()).expect("valid limiter config")
    }

    fn bulkhead_config() -> BulkheadConfig {
        BulkheadConfig::DEFAULT.with_max_concurrent(PERMITS)
    }

    /// One grant of a limiter on `clock`.
    #[inline(always)]
    fn limiter_op<C: Clock>(limiter: &RateLimiter, clock: &C) -> bool {
        black_box(limiter.try_acquire(clock)).is_ok()
    }

    /// One call through a closed breaker on `clock`: admit, report success.
    #[inline(always)]
    fn breaker_op<C: Clock>(breaker: &CircuitBreaker, clock: &C) -> bool {
        match breaker.try_acquire(clock) {
            Ok(permit) => {
                black_box(permit.success(clock));
                true
            }
            Err(_) => false,
        }
    }

    #[inline(always)]
    fn bulkhead_op(bulkhead: &Bulkhead) -> bool {
        let permit = bulkhead.try_acquire();
        black_box(&permit).is_ok()
    }

    #[inline(always)]
    fn shared_bulkhead_op(bulkhead: &SharedBulkhead) -> bool {
        let permit = bulkhead.try_acquire();
        black_box(&permit).is_ok()
    }

    #[inline(always)]
    fn mutex_op(gcra: &MutexGcra) -> bool {
        gcra.try_acquire(HostClock.now().as_nanos())
    }

    // ------------------------------------------------------------------
    // The nginx-style baseline.

    /// GCRA on a plain `u64` (the theoretical arrival time) under a
    /// process-shared robust pthread mutex, all in one shared mapping.
    #[repr(C)]
    struct MutexGcra {
        mutex: UnsafeCell<libc::pthread_mutex_t>,
        tat: UnsafeCell<u64>,
        /// Nanoseconds per permit.
        emission: u64,
        /// How far the arrival time may run ahead of now: `(burst - 1) ×
        /// emission`.
        tolerance: u64,
    }

    impl MutexGcra {
        /// Builds the limiter in `place` (fresh, zeroed shared memory).
        ///
        /// # Safety
        ///
        /// `place` is valid for writes of a `MutexGcra`, suitably aligned,
        /// and nothing else uses it until this returns.
        unsafe fn init(place: *mut MutexGcra, emission: u64, tolerance: u64) {
            // SAFETY: `place` is writable and aligned (the caller's
            // contract); the attribute lives on this stack frame, is
            // initialised before use and destroyed after.
            unsafe {
                let mut attr: libc::pthread_mutexattr_t = core::mem::zeroed();
                check(
                    libc::pthread_mutexattr_init(&mut attr),
                    "pthread_mutexattr_init",
                );
                check(
                    libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                    "pthread_mutexattr_setpshared",
                );
                check(
                    libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
                    "pthread_mutexattr_setrobust",
                );
                check(
                    libc::pthread_mutex_init(UnsafeCell::raw_get(&raw const (*place).mutex), &attr),
                    "pthread_mutex_init",
                );
                libc::pthread_mutexattr_destroy(&mut attr);
                (&raw mut (*place).tat).write(UnsafeCell::new(0));
                (&raw mut (*place).emission).write(emission);
                (&raw mut (*place).tolerance).write(tolerance);
            }
        }

        /// One decision at `now` (ns of `CLOCK_MONOTONIC`), as the core's
        /// GCRA: grant if the arrival time, at least now, is within the
        /// tolerance; then move it one emission interval on.
        #[inline(always)]
        fn try_acquire(&self, now: u64) -> bool {
            // SAFETY: the mutex was initialised by `init` in this shared
            // mapping, which outlives every process using it.
            let rc = unsafe { libc::pthread_mutex_lock(self.mutex.get()) };
            if rc == libc::EOWNERDEAD {
                // The holder died mid-update; the state is one word written
                // in one store, so it is consistent either way.
                // SAFETY: this thread holds the mutex (EOWNERDEAD grants it).
                unsafe { libc::pthread_mutex_consistent(self.mutex.get()) };
            } else if rc != 0 {
                panic!("pthread_mutex_lock: error {rc}");
            }
            // SAFETY: `tat` is only touched under the mutex, which this
            // thread holds.
            let tat = unsafe { &mut *self.tat.get() };
            let start = (*tat).max(now);
            let granted = start - now <= self.tolerance;
            if granted {
                *tat = start + self.emission;
            }
            // SAFETY: this thread holds the mutex.
            unsafe { libc::pthread_mutex_unlock(self.mutex.get()) };
            granted
        }
    }

    fn check(rc: libc::c_int, what: &str) {
        assert!(rc == 0, "{what}: error {rc}");
    }

    // ------------------------------------------------------------------
    // Shared anonymous mappings, inherited by the workers.

    /// A `MAP_SHARED | MAP_ANONYMOUS` mapping holding one zeroed `T`.
    struct Mapping<T> {
        ptr: *mut T,
    }

    impl<T> Mapping<T> {
        /// A zeroed `T` in a fresh shared mapping. `T` must be valid when
        /// all zeros (the callers' types are atomics, integers and a mutex
        /// initialised after).
        fn zeroed() -> Mapping<T> {
            // SAFETY: an anonymous mapping touches no existing memory; the
            // result is checked.
            let ptr = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    size_of::<T>(),
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert!(
                ptr != libc::MAP_FAILED,
                "mmap: {}",
                std::io::Error::last_os_error()
            );
            Mapping { ptr: ptr.cast() }
        }

        fn get(&self) -> &T {
            // SAFETY: the mapping is page-aligned, zero-filled (a valid `T`
            // for the types used here) and lives as long as `self`.
            unsafe { &*self.ptr }
        }
    }

    impl<T> Drop for Mapping<T> {
        fn drop(&mut self) {
            // SAFETY: `ptr` is this mapping of `size_of::<T>()` bytes; no
            // reference to it outlives `self`.
            unsafe { libc::munmap(self.ptr.cast(), size_of::<T>()) };
        }
    }

    /// What one worker reports.
    #[repr(C)]
    struct Slot {
        calls: AtomicU64,
        wall_ns: AtomicU64,
        cpu_ns: AtomicU64,
        refused: AtomicU64,
    }

    /// The parent's view of a run.
    #[repr(C)]
    struct Control {
        ready: AtomicU32,
        slots: [Slot; MAX_PROCESSES],
    }

    // ------------------------------------------------------------------
    // Settings.

    struct Settings {
        run: Duration,
        runs: usize,
        processes: Vec<usize>,
        filter: Option<String>,
        /// `cargo test --benches`: one brief run of each row, no paired
        /// comparisons, nothing written.
        smoke: bool,
    }

    fn env_number(name: &str) -> Option<u64> {
        let value = std::env::var(name).ok()?;
        match value.trim().parse() {
            Ok(n) if n > 0 => Some(n),
            _ => panic!("{name}={value:?}: expected a positive whole number"),
        }
    }

    impl Settings {
        fn from_env() -> Settings {
            let args: Vec<String> = std::env::args().skip(1).collect();
            let smoke = !args.iter().any(|a| a == "--bench");
            let filter = std::env::var("STOCKADE_SHARED_ONLY").ok();
            let processes = match std::env::var("STOCKADE_SHARED_PROCESSES") {
                Ok(list) => list
                    .split(',')
                    .map(|n| match n.trim().parse::<usize>() {
                        Ok(n) if (1..=MAX_PROCESSES).contains(&n) => n,
                        _ => panic!(
                            "STOCKADE_SHARED_PROCESSES={list:?}: expected process counts \
                             1..={MAX_PROCESSES}, comma-separated"
                        ),
                    })
                    .collect(),
                Err(_) => vec![1, 2, 8],
            };
            if smoke {
                return Settings {
                    run: Duration::from_millis(10),
                    runs: 1,
                    processes,
                    filter,
                    smoke,
                };
            }
            Settings {
                run: Duration::from_millis(env_number("STOCKADE_SHARED_RUN_MS").unwrap_or(200)),
                runs: env_number("STOCKADE_SHARED_RUNS").unwrap_or(5) as usize,
                processes,
                filter,
                smoke,
            }
        }

        fn wants(&self, op: Op) -> bool {
            self.filter.as_deref().is_none_or(|f| op.name().contains(f))
        }
    }

    // ------------------------------------------------------------------
    // The objects of one bench run.

    /// Names and homes of the shared objects; the parent keeps each open
    /// (so each is created once, before any worker runs).
    struct Objects {
        dir: PathBuf,
        options: SharedOptions,
        limiter: Shared<RateLimiter>,
        breaker: Shared<CircuitBreaker>,
        bulkhead: SharedBulkhead,
        gcra: Mapping<MutexGcra>,
    }

    const LIMITER_NAME: &str = "bench-limiter";
    const BREAKER_NAME: &str = "bench-breaker";
    const BULKHEAD_NAME: &str = "bench-bulkhead";

    impl Objects {
        fn create() -> Objects {
            let base = if Path::new("/dev/shm").is_dir() {
                PathBuf::from("/dev/shm")
            } else {
                std::env::temp_dir()
            };
            let dir = base.join(format!("stockade-bench-{}", std::process::id()));
            std::fs::create_dir(&dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            let options = SharedOptions::new().directory(&dir);
            let limiter = Shared::<RateLimiter>::open(LIMITER_NAME, limiter_config(), &options)
                .expect("open the shared limiter");
            let breaker =
                Shared::<CircuitBreaker>::open(BREAKER_NAME, BreakerConfig::DEFAULT, &options)
                    .expect("open the shared breaker");
            let bulkhead = SharedBulkhead::open(BULKHEAD_NAME, bulkhead_config(), &options)
                .expect("open the shared bulkhead");
            let gcra = Mapping::<MutexGcra>::zeroed();
            let emission = 1_000_000_000 / u64::from(RATE);
            // SAFETY: a fresh, zeroed, page-aligned shared mapping of one
            // `MutexGcra`; no worker exists yet.
            unsafe { MutexGcra::init(gcra.ptr, emission, emission * (u64::from(RATE) - 1)) };
            Objects {
                dir,
                options,
                limiter,
                breaker,
                bulkhead,
                gcra,
            }
        }
    }

    impl Drop for Objects {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    // ------------------------------------------------------------------
    // One worker.

    /// What a worker measured.
    struct Measured {
        calls: u64,
        wall: Duration,
        cpu_ns: u64,
        refused: u64,
    }

    fn thread_cpu_ns() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        assert!(rc == 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }

    /// Warms up, reports ready, waits for the start (EOF on `start_fd`),
    /// then calls `op` for `run`.
    fn hammer(
        mut op: impl FnMut() -> bool,
        run: Duration,
        ready: &AtomicU32,
        start_fd: libc::c_int,
    ) -> Measured {
        let mut refused = 0;
        for _ in 0..WARM_UP_CALLS {
            if !op() {
                refused += 1;
            }
        }
        ready.fetch_add(1, Ordering::SeqCst);
        let mut byte = 0u8;
        // SAFETY: reads at most one byte into `byte`; the parent never
        // writes, so this returns 0 (EOF) when it closes its end.
        while unsafe { libc::read(start_fd, (&raw mut byte).cast(), 1) } < 0 {
            // EINTR: wait again.
        }
        let cpu0 = thread_cpu_ns();
        let start = Instant::now();
        let deadline = start + run;
        let mut calls = 0u64;
        loop {
            for _ in 0..CHUNK {
                if !op() {
                    refused += 1;
                }
            }
            calls += CHUNK;
            if Instant::now() >= deadline {
                break;
            }
        }
        let wall = start.elapsed();
        Measured {
            calls,
            wall,
            cpu_ns: thread_cpu_ns() - cpu0,
            refused,
        }
    }

    /// A worker's whole life after `fork`: build or open the object, run.
    fn worker(
        op: Op,
        imp: Imp,
        objects: &Objects,
        run: Duration,
        ready: &AtomicU32,
        fd: i32,
    ) -> Measured {
        let options = &objects.options;
        match (op, imp) {
            (Op::Limiter, Imp::Local) => {
                let (limiter, clock) = (local_limiter(), MonotonicClock::new());
                hammer(|| limiter_op(&limiter, &clock), run, ready, fd)
            }
            (Op::Limiter, Imp::Shared) => {
                let limiter = Shared::<RateLimiter>::open(LIMITER_NAME, limiter_config(), options)
                    .expect("open the shared limiter in a worker");
                hammer(|| limiter_op(&limiter, &HostClock), run, ready, fd)
            }
            (Op::Limiter, Imp::Mutex) => {
                let gcra = objects.gcra.get();
                hammer(|| mutex_op(gcra), run, ready, fd)
            }
            (Op::Breaker, Imp::Local) => {
                let breaker = CircuitBreaker::new(BreakerConfig::DEFAULT).expect("valid config");
                let clock = MonotonicClock::new();
                hammer(|| breaker_op(&breaker, &clock), run, ready, fd)
            }
            (Op::Breaker, Imp::Shared) => {
                let breaker =
                    Shared::<CircuitBreaker>::open(BREAKER_NAME, BreakerConfig::DEFAULT, options)
                        .expect("open the shared breaker in a worker");
                hammer(|| breaker_op(&breaker, &HostClock), run, ready, fd)
            }
            (Op::Bulkhead, Imp::Local) => {
                let bulkhead = Bulkhead::new(bulkhead_config()).expect("valid config");
                hammer(|| bulkhead_op(&bulkhead), run, ready, fd)
            }
            (Op::Bulkhead, Imp::Shared) => {
                let bulkhead = SharedBulkhead::open(BULKHEAD_NAME, bulkhead_config(), options)
                    .expect("open the shared bulkhead in a worker");
                hammer(|| shared_bulkhead_op(&bulkhead), run, ready, fd)
            }
            (Op::Breaker | Op::Bulkhead, Imp::Mutex) => {
                unreachable!("the mutex baseline is a limiter")
            }
        }
    }

    // ------------------------------------------------------------------
    // One run: fork, start together, collect.

    /// One run's numbers.
    #[derive(Clone, Debug)]
    struct RunResult {
        /// Median over the workers of wall ns per call.
        wall_ns: f64,
        /// Median over the workers of CPU ns per call.
        cpu_ns: f64,
        /// The host's ns per call: 1 / Σ (calls / wall).
        aggregate_ns: f64,
    }

    /// How long the parent waits for workers to get ready, and beyond the
    /// run for them to finish, before it kills them and fails.
    const WATCHDOG: Duration = Duration::from_secs(30);

    fn run_once(op: Op, imp: Imp, processes: usize, objects: &Objects, run: Duration) -> RunResult {
        let control = Mapping::<Control>::zeroed();
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` has room for the two descriptors.
        check(unsafe { libc::pipe(fds.as_mut_ptr()) }, "pipe");
        let [read_fd, write_fd] = fds;
        let mut pids = Vec::with_capacity(processes);
        for index in 0..processes {
            // SAFETY: this process is single-threaded (a `harness = false`
            // bench that starts no threads), so the child may run any code.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
            if pid == 0 {
                // The worker: report through `control`, leave with
                // `_exit` (no destructors or atexit handlers of the
                // parent's state), exit status 2 after a panic.
                let code = std::panic::catch_unwind(core::panic::AssertUnwindSafe(|| {
                    // SAFETY: closes this process's copy of the write end,
                    // so that only the parent's close ends the wait.
                    unsafe { libc::close(write_fd) };
                    let c = control.get();
                    let m = worker(op, imp, objects, run, &c.ready, read_fd);
                    let slot = &c.slots[index];
                    slot.calls.store(m.calls, Ordering::SeqCst);
                    slot.wall_ns
                        .store(m.wall.as_nanos() as u64, Ordering::SeqCst);
                    slot.cpu_ns.store(m.cpu_ns, Ordering::SeqCst);
                    slot.refused.store(m.refused, Ordering::SeqCst);
                }))
                .map_or(2, |()| 0);
                // SAFETY: ends this forked worker at once.
                unsafe { libc::_exit(code) };
            }
            pids.push(pid);
        }
        // SAFETY: the parent never reads the pipe.
        unsafe { libc::close(read_fd) };
        /// Kills and reaps the workers left, then fails the run.
        fn fail(pids: &[libc::pid_t], op: Op, imp: Imp, processes: usize, what: String) -> ! {
            for &pid in pids {
                // SAFETY: `pid` is a child of this process not yet reaped
                // (a zombie at worst), so the pid is not reused.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                // SAFETY: reaps that child; a null status pointer is allowed.
                unsafe { libc::waitpid(pid, core::ptr::null_mut(), 0) };
            }
            panic!(
                "{} {} at {processes} processes: {what}",
                op.name(),
                imp.name()
            );
        }
        let waiting = Instant::now();
        while (control.get().ready.load(Ordering::SeqCst) as usize) < processes {
            for (i, &pid) in pids.iter().enumerate() {
                let mut status = 0;
                // SAFETY: `pid` is a child of this process; `status` is
                // writable.
                if unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid {
                    let mut others = pids.clone();
                    others.remove(i);
                    fail(
                        &others,
                        op,
                        imp,
                        processes,
                        format!("worker {pid} ended before the start (status {status:#x})"),
                    );
                }
            }
            if waiting.elapsed() > WATCHDOG {
                fail(
                    &pids,
                    op,
                    imp,
                    processes,
                    format!("workers not ready within {WATCHDOG:?}"),
                );
            }
            // Cheap polling: the workers are warming up meanwhile.
            std::thread::sleep(Duration::from_micros(200));
        }
        // SAFETY: closing the write end wakes every worker (EOF).
        unsafe { libc::close(write_fd) };
        let started = Instant::now();
        let mut left = pids.clone();
        while !left.is_empty() {
            let mut i = 0;
            while i < left.len() {
                let mut status = 0;
                // SAFETY: `left[i]` is a child of this process; `status`
                // is writable.
                let r = unsafe { libc::waitpid(left[i], &mut status, libc::WNOHANG) };
                if r == left[i] {
                    let pid = left.swap_remove(i);
                    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
                        fail(
                            &left,
                            op,
                            imp,
                            processes,
                            format!("worker {pid} failed (status {status:#x})"),
                        );
                    }
                } else if r < 0 {
                    fail(
                        &left,
                        op,
                        imp,
                        processes,
                        format!("waitpid: {}", std::io::Error::last_os_error()),
                    );
                } else {
                    i += 1;
                }
            }
            if !left.is_empty() {
                if started.elapsed() > run + WATCHDOG {
                    fail(
                        &left,
                        op,
                        imp,
                        processes,
                        format!("workers still running after {:?}", run + WATCHDOG),
                    );
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let c = control.get();
        let slots = &c.slots[..processes];
        let refused: u64 = slots.iter().map(|s| s.refused.load(Ordering::SeqCst)).sum();
        assert!(
            refused == 0,
            "{} {} at {processes} processes: {refused} calls refused; the bench must measure \
             the grant path",
            op.name(),
            imp.name()
        );
        let mut wall: Vec<f64> = Vec::with_capacity(processes);
        let mut cpu: Vec<f64> = Vec::with_capacity(processes);
        let mut per_second = 0.0;
        for s in slots {
            let calls = s.calls.load(Ordering::SeqCst) as f64;
            let wall_ns = s.wall_ns.load(Ordering::SeqCst) as f64;
            assert!(calls > 0.0 && wall_ns > 0.0, "a worker reported no calls");
            wall.push(wall_ns / calls);
            cpu.push(s.cpu_ns.load(Ordering::SeqCst) as f64 / calls);
            per_second += calls / wall_ns;
        }
        RunResult {
            wall_ns: median(&mut wall),
            cpu_ns: median(&mut cpu),
            aggregate_ns: 1.0 / per_second,
        }
    }

    fn median(values: &mut [f64]) -> f64 {
        values.sort_by(f64::total_cmp);
        let n = values.len();
        if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            values[n / 2]
        } else {
            (values[n / 2 - 1] + values[n / 2]) / 2.0
        }
    }

    // ------------------------------------------------------------------
    // The report.

    /// One row of the multi-process table: medians over the runs.
    struct Row {
        op: Op,
        imp: Imp,
        processes: usize,
        wall_ns: f64,
        cpu_ns: f64,
        aggregate_ns: f64,
    }

    fn find(rows: &[Row], op: Op, imp: Imp, processes: usize) -> Option<&Row> {
        rows.iter()
            .find(|r| r.op == op && r.imp == imp && r.processes == processes)
    }

    fn ns(v: f64) -> String {
        if v.is_nan() {
            "—".to_owned()
        } else if v < 1000.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.0}")
        }
    }

    fn multi_table(rows: &[Row], settings: &Settings, out: &mut String) {
        let _ = writeln!(
            out,
            "#### Shared memory across processes (`benches/shared.rs`)\n\n\
             Each process count: {} runs of {} ms per row, rows interleaved; medians over the runs. \
             *ns/call per process*: wall time ÷ calls of one worker (median of the workers; with \
             more processes than cores it includes waiting for a core); *CPU ns/call*: the \
             worker's CPU time ÷ calls; *host ns/call*: 1 ÷ the calls per second of all workers \
             together. `local` at N processes: each process its own machine (no sharing). \
             Ratios: wall (ns/call per process) / CPU (CPU ns/call).\n",
            settings.runs,
            settings.run.as_millis(),
        );
        out.push_str(
            "| operation | implementation | processes | ns/call per process | CPU ns/call | \
             host ns/call | host Mcalls/s | ÷ local, wall / CPU | mutex ÷ shared, wall / CPU |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        let ratios =
            |a: &Row, b: &Row| format!("{:.2} / {:.2}", a.wall_ns / b.wall_ns, a.cpu_ns / b.cpu_ns);
        for op in Op::ALL {
            for &n in &settings.processes {
                for &imp in op.imps() {
                    let Some(r) = find(rows, op, imp, n) else {
                        continue;
                    };
                    let vs_local = match (imp, find(rows, op, Imp::Local, n)) {
                        (Imp::Local, _) | (_, None) => String::new(),
                        (_, Some(l)) => ratios(r, l),
                    };
                    let vs_shared = match (imp, find(rows, op, Imp::Shared, n)) {
                        (Imp::Mutex, Some(s)) => ratios(r, s),
                        _ => String::new(),
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {} | {n} | {} | {} | {} | {:.1} | {vs_local} | {vs_shared} |",
                        op.what(),
                        imp.what(op),
                        ns(r.wall_ns),
                        ns(r.cpu_ns),
                        ns(r.aggregate_ns),
                        1e3 / r.aggregate_ns,
                    );
                }
            }
        }
        out.push('\n');
    }

    /// One interleaved comparison at 1 process, with its target if any.
    struct Check {
        label: &'static str,
        result: Paired,
        target: Option<f64>,
    }

    fn paired_table(checks: &[Check], out: &mut String) {
        out.push_str(
            "#### Shared ÷ local at 1 process, interleaved (`stockade_bench::paired`)\n\n\
             In one process: about 0.5 ms of each side per round, alternating; *ratio* is the \
             median of the per-round ratios, *p10–p90* its spread, *ns* the medians of the \
             rounds.\n\n\
             | comparison | subject ns | reference ns | ratio | p10–p90 | target | met |\n\
             |---|---:|---:|---:|---|---|---|\n",
        );
        for c in checks {
            let r = &c.result;
            let (target, met) = match c.target {
                Some(t) => (
                    format!("≤ {t}×"),
                    if r.ratio <= t { "yes" } else { "**no**" }.to_owned(),
                ),
                None => ("—".to_owned(), "—".to_owned()),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.2} | {:.2}–{:.2} | {target} | {met} |",
                c.label,
                ns(r.subject_ns),
                ns(r.reference_ns),
                r.ratio,
                r.ratio_p10,
                r.ratio_p90,
            );
        }
        out.push('\n');
    }

    // ------------------------------------------------------------------
    // The interleaved comparisons at 1 process.

    fn paired_checks(objects: &Objects, settings: &Settings) -> Vec<Check> {
        let mut checks = Vec::new();
        let local_clock = MonotonicClock::new();
        if settings.wants(Op::Limiter) {
            let local = local_limiter();
            let local_host = local_limiter();
            let shared = &objects.limiter;
            let gcra = objects.gcra.get();
            checks.push(Check {
                label: "limiter: shared (`HostClock`) ÷ local (`MonotonicClock`)",
                result: paired(
                    "shared",
                    "limiter-shared",
                    || assert!(limiter_op(shared, &HostClock), "refused"),
                    "limiter-local",
                    || assert!(limiter_op(&local, &local_clock), "refused"),
                ),
                target: Some(TARGET_SHARED_OVER_LOCAL),
            });
            checks.push(Check {
                label: "limiter: shared ÷ local, both on `HostClock` (the memory alone)",
                result: paired(
                    "shared",
                    "limiter-shared",
                    || assert!(limiter_op(shared, &HostClock), "refused"),
                    "limiter-local-hostclock",
                    || assert!(limiter_op(&local_host, &HostClock), "refused"),
                ),
                target: None,
            });
            checks.push(Check {
                label: "limiter: mutex + `u64` GCRA ÷ shared",
                result: paired(
                    "shared",
                    "limiter-mutex",
                    || assert!(mutex_op(gcra), "refused"),
                    "limiter-shared",
                    || assert!(limiter_op(shared, &HostClock), "refused"),
                ),
                target: None,
            });
        }
        if settings.wants(Op::Breaker) {
            let local = CircuitBreaker::new(BreakerConfig::DEFAULT).expect("valid config");
            let shared = &objects.breaker;
            checks.push(Check {
                label: "breaker: shared (`HostClock`) ÷ local (`MonotonicClock`)",
                result: paired(
                    "shared",
                    "breaker-shared",
                    || assert!(breaker_op(shared, &HostClock), "refused"),
                    "breaker-local",
                    || assert!(breaker_op(&local, &local_clock), "refused"),
                ),
                target: Some(TARGET_SHARED_OVER_LOCAL),
            });
        }
        if settings.wants(Op::Bulkhead) {
            let local = Bulkhead::new(bulkhead_config()).expect("valid config");
            let shared = &objects.bulkhead;
            checks.push(Check {
                label: "bulkhead: shared ÷ local",
                result: paired(
                    "shared",
                    "bulkhead-shared",
                    || assert!(shared_bulkhead_op(shared), "refused"),
                    "bulkhead-local",
                    || assert!(bulkhead_op(&local), "refused"),
                ),
                target: Some(TARGET_SHARED_OVER_LOCAL),
            });
        }
        if settings.filter.is_none() {
            checks.push(Check {
                label: "clock read: `HostClock` ÷ `MonotonicClock`",
                result: paired(
                    "shared",
                    "clock-hostclock",
                    || {
                        black_box(HostClock.now());
                    },
                    "clock-monotonic",
                    || {
                        black_box(local_clock.now());
                    },
                ),
                target: None,
            });
        }
        checks
    }

    /// Every operation once on each implementation, in this process: they
    /// grant, and the shared objects are the ones the workers open.
    fn smoke_check(objects: &Objects) {
        let clock = MonotonicClock::new();
        for _ in 0..1000 {
            assert!(limiter_op(&local_limiter(), &clock));
            assert!(limiter_op(&objects.limiter, &HostClock));
            assert!(mutex_op(objects.gcra.get()));
            assert!(breaker_op(&objects.breaker, &HostClock));
            assert!(shared_bulkhead_op(&objects.bulkhead));
        }
        assert_eq!(
            objects.bulkhead.in_use(),
            0,
            "a shared permit was not returned"
        );
    }

    pub(crate) fn main() {
        let settings = Settings::from_env();
        let objects = Objects::create();
        smoke_check(&objects);
        println!(
            "shared: {} runs of {} ms per row at {:?} processes{}",
            settings.runs,
            settings.run.as_millis(),
            settings.processes,
            if settings.smoke {
                " (smoke check: run with `cargo bench` to measure)"
            } else {
                ""
            },
        );
        let configs: Vec<(Op, Imp)> = Op::ALL
            .into_iter()
            .filter(|&op| settings.wants(op))
            .flat_map(|op| op.imps().iter().map(move |&imp| (op, imp)))
            .collect();
        let mut rows = Vec::new();
        for &n in &settings.processes {
            let mut runs: Vec<Vec<RunResult>> = vec![Vec::new(); configs.len()];
            for rep in 0..settings.runs {
                // Rotate the order, so no row always runs first or last.
                for k in 0..configs.len() {
                    let i = (k + rep) % configs.len();
                    let (op, imp) = configs[i];
                    runs[i].push(run_once(op, imp, n, &objects, settings.run));
                }
            }
            for (&(op, imp), results) in configs.iter().zip(&runs) {
                let pick = |f: fn(&RunResult) -> f64| {
                    median(&mut results.iter().map(f).collect::<Vec<_>>())
                };
                let row = Row {
                    op,
                    imp,
                    processes: n,
                    wall_ns: pick(|r| r.wall_ns),
                    cpu_ns: pick(|r| r.cpu_ns),
                    aggregate_ns: pick(|r| r.aggregate_ns),
                };
                println!(
                    "  {:8} {:6} {n} processes: {} ns/call per process, {} CPU ns/call, {} host ns/call",
                    op.name(),
                    imp.name(),
                    ns(row.wall_ns),
                    ns(row.cpu_ns),
                    ns(row.aggregate_ns),
                );
                rows.push(row);
            }
        }
        assert_eq!(
            objects.bulkhead.in_use(),
            0,
            "a shared permit was not returned"
        );
        if settings.smoke {
            println!("shared: smoke check passed ({} rows)", rows.len());
            return;
        }
        let checks = paired_checks(&objects, &settings);
        let mut out = String::new();
        paired_table(&checks, &mut out);
        multi_table(&rows, &settings, &mut out);
        println!("\n{out}");
        let dir = criterion_home().join("shared");
        let file = dir.join("report.md");
        if let Err(e) = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&file, &out)) {
            eprintln!("shared: cannot write {}: {e}", file.display());
        }
    }
}

fn main() {
    #[cfg(target_os = "linux")]
    multi::main();
    #[cfg(not(target_os = "linux"))]
    println!("shared: `stockade::shared` regions exist on Linux only; nothing measured");
}
