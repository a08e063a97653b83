//! What telemetry costs a closed breaker's `execute` (group `telemetry`).
//!
//! Built twice by `scripts/bench.sh`: plainly (`execute-plain`: `stockade`
//! without its `metrics` and `tracing` features) and with this crate's
//! `telemetry` feature, which compiles them in:
//! - `execute-features-idle`: nobody listens (no collector, no recorder,
//!   no `tracing` subscriber);
//! - `execute-metrics-collector`: a Prometheus recorder installed and a
//!   `telemetry::metrics::Collector` alive (events are counted; a
//!   success emits none, and snapshots are read only by `collect`);
//! - `execute-tracing-subscriber`: a `tracing` subscriber (a bare
//!   `tracing_subscriber::registry()`) interested in everything, so each
//!   call makes, enters and closes its `stockade.execute` span.
//!
//! One thread, a trivial closure returning `Ok`; `scripts/bench-table.py`
//! prints each against `execute-plain`.

use core::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use stockade::blocking::CircuitBreaker;
use stockade::breaker::BreakerConfig;

/// The protected call (see benches/breaker.rs for why out of line).
#[inline(never)]
fn healthy_call() -> Result<u32, u32> {
    Ok(black_box(42))
}

fn run(c: &mut Criterion, name: &str) {
    let breaker =
        CircuitBreaker::unregistered("bench-telemetry", BreakerConfig::DEFAULT).expect("valid");
    c.benchmark_group("telemetry")
        .bench_function(BenchmarkId::new(name, "1t"), |b| {
            b.iter(|| black_box(breaker.execute(healthy_call)).is_ok());
        });
    assert!(
        breaker.execute(healthy_call).is_ok(),
        "the breaker stayed closed"
    );
}

#[cfg(not(feature = "telemetry"))]
fn telemetry(c: &mut Criterion) {
    run(c, "execute-plain");
}

#[cfg(feature = "telemetry")]
fn telemetry(c: &mut Criterion) {
    run(c, "execute-features-idle");
    {
        // Without `install_recorder`'s upkeep thread, whose work would
        // count in the measurement.
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        metrics::set_global_recorder(recorder).expect("the only recorder of this process");
        let _collector = stockade::telemetry::metrics::Collector::new();
        run(c, "execute-metrics-collector");
    }
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        run(c, "execute-tracing-subscriber");
    });
}

criterion_group! {
    name = benches;
    config = stockade_bench::criterion();
    targets = telemetry
}
criterion_main!(benches);
