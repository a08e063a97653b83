//! The native half of the Python package `stockade` (`stockade._stockade`).
//!
//! A thin translation of the core: each Python pattern holds the core's
//! lock-free state machine (or the blocking layer's pattern for threads),
//! converts Python's options (seconds or `timedelta`, keyword arguments)
//! into the core's configs, and the core's refusals into Python
//! exceptions. `async def` functions are detected from what they return
//! and continued by the coroutines of `stockade/_aio.py`, which wait with
//! asyncio, never by blocking the loop.

mod breaker;
mod bulkhead;
mod call;
mod context;
mod convert;
mod errors;
mod events;
mod guarded;
mod hedging;
mod limiter;
mod machines;
mod monitor;
mod pipeline;
mod redis;
mod registry;
mod retry;
mod shared;
mod timeout;
mod wait;
mod wrap;

use pyo3::prelude::*;

/// The module declares itself safe without the GIL: every pattern is a
/// frozen class over atomics and locks of its own, and no state is shared
/// through the GIL.
#[pymodule(gil_used = false)]
fn _stockade(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<breaker::CircuitBreaker>()?;
    m.add_class::<breaker::BreakerToken>()?;
    m.add_class::<breaker::FleetCall>()?;
    m.add_class::<guarded::Guarded>()?;
    guarded::install_am_send(m.py());
    m.add_class::<limiter::RateLimiter>()?;
    m.add_class::<limiter::LimiterBooking>()?;
    m.add_class::<limiter::FleetBooking>()?;
    m.add_class::<bulkhead::Bulkhead>()?;
    m.add_class::<bulkhead::AsyncSlot>()?;
    m.add_class::<bulkhead::Permit>()?;
    m.add_class::<bulkhead::SharedPlace>()?;
    m.add_class::<retry::Retry>()?;
    m.add_class::<retry::RetryCall>()?;
    m.add_class::<timeout::Timeout>()?;
    m.add_class::<events::Event>()?;
    // `stockade.prometheus`'s event counts.
    m.add_class::<events::EventCounting>()?;
    m.add_function(wrap_pyfunction!(events::counting_events, m)?)?;
    m.add_function(wrap_pyfunction!(events::event_counts, m)?)?;
    m.add_function(wrap_pyfunction!(events::retry_delays, m)?)?;
    m.add_function(wrap_pyfunction!(events::count_event, m)?)?;
    m.add_class::<wrap::Protected>()?;
    m.add_class::<pipeline::Pipeline>()?;
    m.add_class::<pipeline::Stage>()?;
    m.add_class::<redis::PyRedisOptions>()?;
    m.add_function(wrap_pyfunction!(registry::py_register, m)?)?;
    m.add_function(wrap_pyfunction!(registry::py_registered, m)?)?;
    m.add_function(wrap_pyfunction!(registry::py_registered_instances, m)?)?;
    m.add_function(wrap_pyfunction!(registry::py_unregister, m)?)?;
    m.add_function(wrap_pyfunction!(registry::adhoc_timeout, m)?)?;
    m.add_function(wrap_pyfunction!(registry::seconds, m)?)?;
    // `stockade.Fallback` and `stockade.Hedging` (stockade/_fallback.py).
    m.add_class::<hedging::HedgeRound>()?;
    m.add_class::<hedging::AttemptPool>()?;
    m.add_function(wrap_pyfunction!(hedging::hedging_config, m)?)?;
    m.add_function(wrap_pyfunction!(hedging::event, m)?)?;
    m.add_function(wrap_pyfunction!(hedging::is_async, m)?)?;
    // `stockade.machines`: the core machines with explicit time.
    machines::register(m)?;
    // Monitor threads stop before the interpreter finalizes.
    let stop_monitors = wrap_pyfunction!(monitor::stop_all, m)?;
    m.py()
        .import("atexit")?
        .call_method1("register", (&stop_monitors,))?;
    m.add_function(stop_monitors)?;
    // A forked child gets monitor threads of its own (monitor.rs, "After
    // `fork`").
    let before = wrap_pyfunction!(monitor::before_fork, m)?;
    let in_parent = wrap_pyfunction!(monitor::after_fork_in_parent, m)?;
    let in_child = wrap_pyfunction!(monitor::after_fork_in_child, m)?;
    let os = m.py().import("os")?;
    if os.hasattr("register_at_fork")? {
        let hooks = pyo3::types::PyDict::new(m.py());
        hooks.set_item("before", &before)?;
        hooks.set_item("after_in_parent", &in_parent)?;
        hooks.set_item("after_in_child", &in_child)?;
        os.call_method("register_at_fork", (), Some(&hooks))?;
    }
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
