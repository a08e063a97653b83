//! What one clock read costs: the candidates for `MonotonicClock`.
//!
//! Group `clock`, one function per candidate. Before criterion runs, every
//! candidate's *observed resolution* (the smallest non-zero step between two
//! consecutive reads, in nanoseconds), how often two consecutive reads went
//! backwards in 30 ms of reading, and, for the `clock_gettime` clocks,
//! `clock_getres` are printed and written to
//! `<criterion home>/clock-resolution.json` for `scripts/bench-table.py`.
//!
//! The raw TSC candidates report ticks; their nanoseconds use the TSC
//! frequency measured here against `Instant` over 50 ms.

use core::hint::black_box;
use core::time::Duration;
use std::sync::OnceLock;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use stockade::clock::{Clock, MonotonicClock};

/// One clock candidate: a name and a read that returns a raw count.
struct Candidate {
    name: &'static str,
    read: fn() -> u64,
    /// Nanoseconds per unit of `read` (1.0 unless the unit is TSC ticks).
    tsc_units: bool,
    /// `clock_getres` of the underlying POSIX clock, if it is one.
    getres: Option<fn() -> u64>,
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn instant_now() -> u64 {
    // The `Instant` itself is the measured cost; fold it into a number so
    // that the optimiser keeps the read.
    let now = Instant::now();
    black_box(&now);
    0
}

/// Stockade's previous `MonotonicClock`: `Instant` since a process epoch.
fn instant_since_epoch() -> u64 {
    Instant::now().duration_since(epoch()).as_nanos() as u64
}

fn stockade_monotonic() -> u64 {
    MonotonicClock::new().now().as_nanos()
}

fn quanta_clock() -> &'static quanta::Clock {
    static CLOCK: OnceLock<quanta::Clock> = OnceLock::new();
    CLOCK.get_or_init(quanta::Clock::new)
}

/// `quanta::Clock::now`: scaled TSC (quanta's own calibration), as
/// nanoseconds since a first read.
fn quanta_now() -> u64 {
    static BASE: OnceLock<quanta::Instant> = OnceLock::new();
    let base = *BASE.get_or_init(|| quanta_clock().now());
    quanta_clock().now().duration_since(base).as_nanos() as u64
}

/// `quanta::Clock::raw`: the unscaled counter.
fn quanta_raw() -> u64 {
    quanta_clock().raw()
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod linux_x86 {
    use core::arch::x86_64::{__rdtscp, _mm_lfence, _rdtsc};

    fn gettime(clock: libc::clockid_t) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; clock_gettime only
        // writes it.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }

    fn getres(clock: libc::clockid_t) -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: as in `gettime`.
        unsafe { libc::clock_getres(clock, &mut ts) };
        (ts.tv_sec as u64)
            .wrapping_mul(1_000_000_000)
            .wrapping_add(ts.tv_nsec as u64)
    }

    pub(crate) fn monotonic() -> u64 {
        gettime(libc::CLOCK_MONOTONIC)
    }
    pub(crate) fn monotonic_raw() -> u64 {
        gettime(libc::CLOCK_MONOTONIC_RAW)
    }
    pub(crate) fn monotonic_coarse() -> u64 {
        gettime(libc::CLOCK_MONOTONIC_COARSE)
    }
    pub(crate) fn res_monotonic() -> u64 {
        getres(libc::CLOCK_MONOTONIC)
    }
    pub(crate) fn res_monotonic_raw() -> u64 {
        getres(libc::CLOCK_MONOTONIC_RAW)
    }
    pub(crate) fn res_monotonic_coarse() -> u64 {
        getres(libc::CLOCK_MONOTONIC_COARSE)
    }

    pub(crate) fn rdtsc() -> u64 {
        // SAFETY: RDTSC exists on every x86_64 CPU (kernel may disable it
        // for user space with CR4.TSD, which Linux does not by default).
        unsafe { _rdtsc() }
    }

    pub(crate) fn rdtscp() -> u64 {
        let mut aux = 0u32;
        // SAFETY: RDTSCP is checked by `has_rdtscp` before this candidate is
        // listed; `aux` is a valid out-pointer.
        unsafe { __rdtscp(&mut aux) }
    }

    pub(crate) fn lfence_rdtsc() -> u64 {
        // SAFETY: LFENCE is SSE2, part of the x86_64 baseline; RDTSC as
        // above.
        unsafe {
            _mm_lfence();
            _rdtsc()
        }
    }

    pub(crate) fn has_rdtscp() -> bool {
        use core::arch::x86_64::__cpuid;
        // CPUID.80000001h:EDX[27] = RDTSCP, if that leaf exists.
        __cpuid(0x8000_0000).eax >= 0x8000_0001 && __cpuid(0x8000_0001).edx & (1 << 27) != 0
    }
}

fn candidates() -> Vec<Candidate> {
    let plain = |name, read| Candidate {
        name,
        read,
        tsc_units: false,
        getres: None,
    };
    #[allow(unused_mut)]
    let mut list = vec![
        plain("instant-now", instant_now as fn() -> u64),
        plain("instant-since-epoch", instant_since_epoch),
        plain("stockade-monotonic", stockade_monotonic),
        plain("quanta-now", quanta_now),
        Candidate {
            name: "quanta-raw",
            read: quanta_raw,
            tsc_units: true,
            getres: None,
        },
    ];
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    {
        use linux_x86::*;
        let posix = |name, read, res| Candidate {
            name,
            read,
            tsc_units: false,
            getres: Some(res),
        };
        let tsc = |name, read| Candidate {
            name,
            read,
            tsc_units: true,
            getres: None,
        };
        list.push(posix(
            "clock_gettime-monotonic",
            monotonic as fn() -> u64,
            res_monotonic as fn() -> u64,
        ));
        list.push(posix(
            "clock_gettime-monotonic-raw",
            monotonic_raw,
            res_monotonic_raw,
        ));
        list.push(posix(
            "clock_gettime-monotonic-coarse",
            monotonic_coarse,
            res_monotonic_coarse,
        ));
        list.push(tsc("rdtsc", rdtsc as fn() -> u64));
        list.push(tsc("lfence-rdtsc", lfence_rdtsc));
        if has_rdtscp() {
            list.push(tsc("rdtscp", rdtscp));
        }
    }
    list
}

/// TSC ticks per nanosecond, measured against `Instant` over 50 ms.
fn ticks_per_nano(read: fn() -> u64) -> f64 {
    let (t0, i0) = (read(), Instant::now());
    std::thread::sleep(Duration::from_millis(50));
    let (t1, i1) = (read(), Instant::now());
    t1.wrapping_sub(t0) as f64 / i1.duration_since(i0).as_nanos() as f64
}

/// The smallest non-zero step between consecutive reads within `span`, and
/// how many consecutive reads went backwards.
fn observed_step(read: fn() -> u64, span: Duration) -> (Option<u64>, u64) {
    let start = Instant::now();
    let mut best: Option<u64> = None;
    let mut backwards = 0u64;
    let mut last = read();
    loop {
        for _ in 0..1024 {
            let now = read();
            if now < last {
                backwards += 1;
            } else if now > last {
                let step = now - last;
                best = Some(best.map_or(step, |b| b.min(step)));
            }
            last = now;
        }
        if start.elapsed() >= span {
            return (best, backwards);
        }
    }
}

fn resolution_report() {
    let tsc_rate = {
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            Some(ticks_per_nano(linux_x86::rdtsc))
        }
        #[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
        {
            None::<f64>
        }
    };
    // Warm up the calibrating clocks (MonotonicClock switches to the TSC
    // after its calibration window).
    let _ = stockade_monotonic();
    let _ = quanta_now();
    std::thread::sleep(Duration::from_millis(20));
    let _ = stockade_monotonic();

    let mut entries = Vec::new();
    println!("clock resolution (smallest non-zero step between consecutive reads):");
    let list = candidates();
    for c in &list {
        if c.name == "instant-now" {
            continue; // `instant-since-epoch` is the same clock, as a number
        }
        let (step, backwards) = observed_step(c.read, Duration::from_millis(30));
        let step_ns = match (step, c.tsc_units, tsc_rate) {
            (Some(s), true, Some(rate)) => Some(s as f64 / rate),
            (Some(s), false, _) => Some(s as f64),
            _ => None,
        };
        let getres = c.getres.map(|f| f());
        println!(
            "  {:32} step {:>12} ns, {backwards} backward steps{}",
            c.name,
            step_ns.map_or("n/a".to_string(), |s| format!("{s:.1}")),
            getres.map_or(String::new(), |r| format!("  (clock_getres {r} ns)")),
        );
        entries.push(format!(
            "  \"{}\": {{\"step_ns\": {}, \"getres_ns\": {}, \"backward_steps\": {backwards}}}",
            c.name,
            step_ns.map_or("null".to_string(), |s| format!("{s:.3}")),
            getres.map_or("null".to_string(), |r| r.to_string()),
        ));
    }
    if let Some(rate) = tsc_rate {
        println!("  (TSC measured at {rate:.4} GHz)");
        entries.push(format!("  \"_tsc_ghz\": {rate:.6}"));
    }
    let json = format!("{{\n{}\n}}\n", entries.join(",\n"));
    let dir = stockade_bench::criterion_home();
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("clock-resolution.json"), json);
}

fn clocks(c: &mut Criterion) {
    resolution_report();
    let mut group = c.benchmark_group("clock");
    for candidate in candidates() {
        let read = candidate.read;
        group.bench_function(candidate.name, |b| b.iter(|| black_box(read())));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = stockade_bench::criterion();
    targets = clocks
}
criterion_main!(benches);
