//! What a person reads: the legend, one line per second with both runs side
//! by side, a totals line, and a summary computed from those lines.

use core::fmt::Write;

use crate::sim::{NORMAL_RATE, OVERLOAD_RATE, Phase, Report, Second, UPSTREAM_QUOTA, settings};
use crate::{Circuit, Totals};

/// The first words of the per-second lines' header, for parsers.
pub const HEADER_START: &str = "   t  phase";
/// The first word of the totals line.
pub const TOTAL_START: &str = "total";

fn ms(d: core::time::Duration) -> u128 {
    d.as_millis()
}

/// The whole text the demo prints (except where the picture went).
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    legend(&mut out, report);
    table(&mut out, report);
    summary(&mut out, report);
    out
}

fn legend(out: &mut String, report: &Report) {
    use settings::*;
    let c = report.config;
    let clock = match c.real_time {
        None => "simulated time".to_string(),
        Some(speed) => format!("the wall clock at {speed}x"),
    };
    let phases: Vec<String> = Phase::spans(c.seconds)
        .iter()
        .map(|(phase, start, end)| format!("{} {start:.0}-{end:.0} s", phase.name()))
        .collect();
    let _ = write!(
        out,
        "\
Stockade demo: a flaky upstream, and the same traffic sent to it twice
(seed {seed}, {secs} seconds on {clock}).

The upstream serves {quota} calls in any second; past that quota it slows down and
fails more. Clients send about {normal:.0} requests/s ({overload:.0}/s during the overload).
Phases: {phases}.
  failing: 85% of calls fail fast   slow: each call takes 1.5-3 s
  overload: clients send more than the quota   recovery: healthy again

unprotected  every request goes straight to the upstream and waits as long as it takes.
protected    rate limiter ({lim}/s in any second, bursts of {burst}, waits at most {wait} ms)
             -> bulkhead ({bulk} callers inside at once)
             -> circuit breaker (opens after {fails} failed requests in a row, probes after {reset} s)
             -> retry ({attempts} attempts, {delay} ms back-off doubling, errors only)
             -> timeout ({timeout} ms per attempt)

Columns: requests count in the second they arrived; each ends exactly one way:
  offered  requests the clients sent (the same arrivals in both runs)
  ok       served
  fail     upstream failed: it answered with an error (protected: after the retries)
  shed     shed by the rate limiter: no slot within {wait} ms, never sent
  bulk     rejected: bulkhead full ({bulk} callers already inside)
  open     rejected: circuit breaker open (or all half-open probes busy), never sent
  t/o      timed out: no answer within {timeout} ms
  up       calls that reached the upstream, retries included, by the second they started
           (unprotected: one call per request, so the offered column)
  >quota   of those, calls that found the upstream over its quota of {quota}/s
  p99      ms within which 99% of the second's callers had their answer (rejections included)
  peak     most callers waiting at once during the second (blocked threads in a real service)
  breaker  the circuit's states during the second, the last one at its end

",
        seed = c.seed,
        secs = c.seconds,
        quota = UPSTREAM_QUOTA,
        normal = NORMAL_RATE,
        overload = OVERLOAD_RATE,
        phases = phases.join(", "),
        lim = LIMIT_PER_SECOND,
        burst = LIMIT_BURST,
        wait = ms(LIMIT_MAX_WAIT),
        bulk = BULKHEAD,
        fails = BREAKER_FAILURES,
        reset = BREAKER_RESET.as_secs(),
        attempts = RETRY_ATTEMPTS,
        delay = ms(RETRY_DELAY),
        timeout = ms(TIMEOUT),
    );
}

fn table(out: &mut String, report: &Report) {
    let _ = writeln!(
        out,
        "{:22} | unprotected                 | protected: limiter -> bulkhead -> breaker -> retry -> timeout",
        ""
    );
    let _ = writeln!(
        out,
        "{HEADER_START:11}{:>11} |{:>5}{:>5}{:>7}{:>6}{:>5} |{:>5}{:>5}{:>5}{:>5}{:>5}{:>5}{:>5}{:>7}{:>6}{:>5}  breaker",
        "offered",
        "ok",
        "fail",
        ">quota",
        "p99",
        "peak",
        "ok",
        "shed",
        "bulk",
        "open",
        "t/o",
        "fail",
        "up",
        ">quota",
        "p99",
        "peak",
    );
    let seconds = report.config.seconds;
    let rows = report
        .unprotected
        .seconds
        .iter()
        .zip(&report.protected.seconds);
    for (t, (u, p)) in rows.enumerate() {
        let phase = Phase::at(t as u64 * 1_000_000_000, seconds);
        let _ = writeln!(
            out,
            "{:>4}  {:<9}{:>7} |{} |{}  {}",
            t,
            phase.name(),
            u.offered,
            unprotected_cells(u),
            protected_cells(p),
            breaker_path(&p.breaker)
        );
    }
    let (tu, tp) = (
        Totals::of(&report.unprotected),
        Totals::of(&report.protected),
    );
    let total = format!(
        "{TOTAL_START:<15}{:>7} |{:>5}{:>5}{:>7}{:>6}{:>5} |{:>5}{:>5}{:>5}{:>5}{:>5}{:>5}{:>5}{:>7}{:>6}{:>5}",
        tu.offered,
        tu.ok,
        tu.failed,
        tu.over_quota,
        "",
        "",
        tp.ok,
        tp.shed,
        tp.bulkhead_full,
        tp.breaker_open,
        tp.timed_out,
        tp.failed,
        tp.upstream_calls,
        tp.over_quota,
        "",
        "",
    );
    let _ = writeln!(out, "{}", total.trim_end());
    let _ = writeln!(
        out,
        "{:<22} |{:>17}{:>6}{:>5} |{:>45}{:>6}{:>5}",
        "worst second", "", tu.worst_p99_ms, tu.peak_waiting, "", tp.worst_p99_ms, tp.peak_waiting,
    );
}

fn unprotected_cells(s: &Second) -> String {
    format!(
        "{:>5}{:>5}{:>7}{:>6}{:>5}",
        s.ok, s.failed, s.over_quota, s.p99_ms, s.peak_waiting
    )
}

fn protected_cells(s: &Second) -> String {
    format!(
        "{:>5}{:>5}{:>5}{:>5}{:>5}{:>5}{:>5}{:>7}{:>6}{:>5}",
        s.ok,
        s.shed,
        s.bulkhead_full,
        s.breaker_open,
        s.timed_out,
        s.failed,
        s.upstream_calls,
        s.over_quota,
        s.p99_ms,
        s.peak_waiting
    )
}

/// `closed`, or `closed>OPEN` when the state changed during the second.
fn breaker_path(states: &[Circuit]) -> String {
    let names: Vec<&str> = states.iter().map(|s| s.name()).collect();
    names.join(">")
}

fn summary(out: &mut String, report: &Report) {
    let u = Totals::of(&report.unprotected);
    let p = Totals::of(&report.protected);
    let accounted = |t: &Totals| {
        if t.unbalanced_seconds == 0 {
            "yes".to_string()
        } else {
            format!("NO, in {} seconds", t.unbalanced_seconds)
        }
    };
    let _ = write!(
        out,
        "
Summary: what the protection did (each number is a sum or maximum of the lines above)
  served ok           {uok} of {offered} unprotected, {pok} of {offered} protected
  circuit breaker     {open} requests rejected while the circuit was open never reached the
                      failing upstream; upstream calls: {uup} unprotected, {pup} protected
  bulkhead + timeout  peak callers waiting at once: {upeak} unprotected, {ppeak} protected;
                      {bulk} turned away by the full bulkhead, {tout} timed out at {timeout} ms
  caller p99 latency  worst second: {up99} ms unprotected (t={up99s}), {pp99} ms protected (t={pp99s});
                      seconds with a p99 over 1 s: {uslow} unprotected, {pslow} protected
  rate limiter        {shed} requests shed; upstream calls over its quota of {quota}/s:
                      {uover} unprotected, {pover} protected
  accounted for       offered = ok + shed + bulk + open + t/o + fail in every line:
                      unprotected {ubal}, protected {pbal}
",
        offered = p.offered,
        uok = u.ok,
        pok = p.ok,
        open = p.breaker_open,
        uup = u.upstream_calls,
        pup = p.upstream_calls,
        upeak = u.peak_waiting,
        ppeak = p.peak_waiting,
        bulk = p.bulkhead_full,
        tout = p.timed_out,
        timeout = ms(settings::TIMEOUT),
        up99 = u.worst_p99_ms,
        up99s = u.worst_p99_second,
        pp99 = p.worst_p99_ms,
        pp99s = p.worst_p99_second,
        uslow = u.seconds_p99_over_1s,
        pslow = p.seconds_p99_over_1s,
        shed = p.shed,
        quota = UPSTREAM_QUOTA,
        uover = u.over_quota,
        pover = p.over_quota,
        ubal = accounted(&u),
        pbal = accounted(&p),
    );
}
