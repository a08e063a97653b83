//! Runs a closed breaker's `execute` N times in one telemetry
//! configuration, for valgrind's callgrind to count instructions per call
//! (`scripts/telemetry-cost.sh`): a count does not depend on what else the
//! machine runs, as criterion's times (`benches/telemetry.rs`) do.
//!
//! `telemetry_count CONFIG N`, CONFIG one of `idle` (every build),
//! `metrics-collector` and `tracing-subscriber` (with `--features
//! telemetry` only), as in `benches/telemetry.rs`.

use core::hint::black_box;
use std::process::ExitCode;

use stockade::blocking::CircuitBreaker;
use stockade::breaker::BreakerConfig;

#[inline(never)]
fn healthy_call() -> Result<u32, u32> {
    Ok(black_box(42))
}

/// Out of line, so that callgrind counts only this (`--toggle-collect`):
/// not the setup of a configuration (a recorder's clock calibration runs
/// for a time, not for a number of instructions).
#[inline(never)]
fn run(n: u64) {
    let breaker =
        CircuitBreaker::unregistered("count-telemetry", BreakerConfig::DEFAULT).expect("valid");
    for _ in 0..n {
        // Only whether it succeeded is kept, as a caller keeps what it
        // uses: a `black_box` of the whole `Result` (about 80 bytes with
        // every feature's error) would count its copy to memory, whose
        // cost moves with register allocation by more than what is
        // measured here.
        assert!(black_box(breaker.execute(healthy_call).is_ok()));
    }
}

fn main() -> ExitCode {
    // `cargo bench` adds `--bench`; only the positional arguments count.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (Some(config), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: telemetry_count idle|metrics-collector|tracing-subscriber N");
        return ExitCode::from(2);
    };
    match config.as_str() {
        "idle" => run(n),
        #[cfg(feature = "telemetry")]
        "metrics-collector" => {
            // Without `install_recorder`'s upkeep thread, whose work would
            // count in the measurement.
            let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
            metrics::set_global_recorder(recorder).expect("the only recorder of this process");
            let _collector = stockade::telemetry::metrics::Collector::new();
            run(n);
        }
        #[cfg(feature = "telemetry")]
        "tracing-subscriber" => {
            tracing::subscriber::with_default(tracing_subscriber::registry(), || run(n));
        }
        other => {
            eprintln!("telemetry_count: unknown or not built-in configuration {other:?}");
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}
