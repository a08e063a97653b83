//! What the test binaries with their own `main` (`harness = false`) share:
//! they run real child processes (re-executing themselves in a role), so
//! they need no test threads before the children start, and they run
//! their tests themselves.
//!
//! Include with `#[macro_use] #[path = "common/processes.rs"] mod processes;`.

// Each test binary that includes this file uses part of it.
#![allow(dead_code)]

use core::time::Duration;
use std::io::Read;
use std::process::Child;
use std::time::Instant;

/// `[(name, fn)]` for [`run_tests`]: each test's name is its function's.
#[allow(unused_macros)]
macro_rules! tests {
    ($($t:ident),* $(,)?) => { [$((stringify!($t), $t as fn())),*] };
}

/// Runs `tests` in order (only those whose name contains a command-line
/// argument, if any is given), each under `catch_unwind`, printing one
/// line per test and a summary; exits with status 1 if any failed.
pub(crate) fn run_tests(suite: &str, tests: &[(&str, fn())]) {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for &(name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let started = Instant::now();
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                passed += 1;
                println!(
                    "test {name} ... ok ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    println!("{suite}: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

/// Waits for `child` under `watchdog` (killing and reaping it, then
/// failing, if it runs longer); it must exit 0. Returns what is left of
/// its stdout if it was piped and not taken (else an empty string).
pub(crate) fn finish(mut child: Child, watchdog: Duration) -> String {
    let deadline = Instant::now() + watchdog;
    let stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut stdout) = stdout {
            stdout.read_to_string(&mut s).unwrap();
        }
        s
    });
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "child failed: {status}");
            return reader.join().unwrap();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("watchdog: child still running after {watchdog:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A child role's numeric setting from the environment (the parent sets
/// it); panics naming it when it is missing or not a number.
pub(crate) fn env_u64(name: &str) -> u64 {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} not set"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}
