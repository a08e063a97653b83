//! The timeline picture: plotters' SVG backend, whose text is plain
//! `<text>` elements (no font files are read).

use core::error::Error;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::sim::{Phase, Report, Run, Second, settings};
use crate::{Circuit, Totals};

/// Panel titles (the test looks for them).
pub const TITLES: [&str; 3] = [
    "Circuit breaker state (protected run)",
    "Outcomes per second: protected run stacked, unprotected as lines",
    "Caller latency per second, p50 and p99 (log scale)",
];

const WIDTH: u32 = 1100;
const HEIGHT: u32 = 1000;
const FONT: &str = "sans-serif";

const GREEN: RGBColor = RGBColor(46, 139, 87);
const RED: RGBColor = RGBColor(200, 40, 40);
const AMBER: RGBColor = RGBColor(230, 150, 20);
const PURPLE: RGBColor = RGBColor(120, 70, 170);
const BROWN: RGBColor = RGBColor(150, 100, 60);
const GREY: RGBColor = RGBColor(150, 150, 150);
const BLUE: RGBColor = RGBColor(30, 90, 200);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Result<T> = core::result::Result<T, Box<dyn Error>>;

/// Draws the timeline as an SVG document.
pub fn render(report: &Report) -> Result<String> {
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE)?;
        let (title, body) = root.split_vertically(50);
        title.draw(&Text::new(
            format!(
                "Stockade demo: the same traffic with and without protection (seed {}, {} s)",
                report.config.seed, report.config.seconds
            ),
            (20, 18),
            (FONT, 22).into_font().color(&BLACK),
        ))?;
        let (top, rest) = body.split_vertically(220);
        let (middle, bottom) = rest.split_vertically(370);
        breaker_panel(&top, report)?;
        outcomes_panel(&middle, report)?;
        latency_panel(&bottom, report)?;
        root.present()?;
    }
    Ok(out)
}

/// Shades the failure phases behind a panel's data.
fn phase_bands<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    seconds: u32,
    y: (f64, f64),
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    for (phase, start, end) in Phase::spans(seconds) {
        let color = match phase {
            Phase::Failing => RED,
            Phase::Slow => AMBER,
            Phase::Overload => PURPLE,
            Phase::Healthy | Phase::Recovery => continue,
        };
        chart
            .draw_series(core::iter::once(Rectangle::new(
                [(start, y.0), (end, y.1)],
                color.mix(0.08).filled(),
            )))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn phase_labels(area: &Area<'_>, report: &Report, x_of: impl Fn(f64) -> i32) -> Result<()> {
    for (phase, start, end) in Phase::spans(report.config.seconds) {
        let x = x_of((start + end) / 2.0);
        area.draw(&Text::new(
            phase.name(),
            (x - 25, 30),
            (FONT, 14).into_font().color(&RGBColor(90, 90, 90)),
        ))?;
    }
    Ok(())
}

fn breaker_panel(area: &Area<'_>, report: &Report) -> Result<()> {
    let secs = f64::from(report.config.seconds);
    let mut chart = ChartBuilder::on(area)
        .caption(TITLES[0], (FONT, 18))
        .margin(10)
        .margin_right(30)
        .x_label_area_size(30)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..secs, -0.5..2.5)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(7)
        .y_label_formatter(&|v: &f64| {
            let lane = v.round();
            if (v - lane).abs() > 0.01 {
                return String::new();
            }
            match lane as i32 {
                0 => "closed".into(),
                1 => "half-open".into(),
                2 => "open".into(),
                _ => String::new(),
            }
        })
        .x_desc("simulated seconds")
        .x_label_formatter(&|v: &f64| format!("{v:.0}"))
        .light_line_style(TRANSPARENT)
        .label_style((FONT, 13))
        .draw()?;
    phase_bands(&mut chart, report.config.seconds, (-0.5, 2.5))?;
    let lane = |c: Circuit| match c {
        Circuit::Closed => 0.0,
        Circuit::HalfOpen => 1.0,
        Circuit::Open => 2.0,
    };
    let changes = &report.protected.breaker_changes;
    let mut segments = Vec::new();
    for (i, &(t, state)) in changes.iter().enumerate() {
        let end = changes.get(i + 1).map_or(secs, |next| next.0).min(secs);
        segments.push((t, end, state));
    }
    chart.draw_series(segments.iter().map(|&(start, end, state)| {
        let color = match state {
            Circuit::Closed => GREEN,
            Circuit::HalfOpen => AMBER,
            Circuit::Open => RED,
        };
        let y = lane(state);
        Rectangle::new([(start, y - 0.3), (end, y + 0.3)], color.filled())
    }))?;
    let mut steps = Vec::new();
    for &(start, end, state) in &segments {
        steps.push((start, lane(state)));
        steps.push((end, lane(state)));
    }
    chart.draw_series(LineSeries::new(steps, BLACK.stroke_width(1)))?;
    let plot = chart.plotting_area().clone();
    let offset = plot.get_base_pixel().0 - area.get_base_pixel().0;
    phase_labels(area, report, |x| {
        offset + plot.map_coordinate(&(x, 0.0)).0 - plot.get_base_pixel().0
    })?;
    Ok(())
}

fn outcomes_panel(area: &Area<'_>, report: &Report) -> Result<()> {
    let secs = f64::from(report.config.seconds);
    let top = report
        .unprotected
        .seconds
        .iter()
        .map(|s| s.offered)
        .max()
        .unwrap_or(1)
        .max(10);
    let y_max = f64::from(top) * 1.1;
    let mut chart = ChartBuilder::on(area)
        .caption(TITLES[1], (FONT, 18))
        .margin(10)
        .margin_right(30)
        .x_label_area_size(30)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..secs, 0.0..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("simulated seconds (requests counted in the second they arrived)")
        .y_desc("requests")
        .y_label_formatter(&|v: &f64| format!("{v:.0}"))
        .x_label_formatter(&|v: &f64| format!("{v:.0}"))
        .light_line_style(TRANSPARENT)
        .label_style((FONT, 13))
        .draw()?;
    phase_bands(&mut chart, report.config.seconds, (0.0, y_max))?;
    type Pick = fn(&Second) -> u32;
    let stack: [(&str, RGBColor, Pick); 6] = [
        ("ok (served)", GREEN, |s| s.ok),
        ("upstream failed", RED, |s| s.failed),
        ("timed out", AMBER, |s| s.timed_out),
        ("rejected: breaker open", PURPLE, |s| s.breaker_open),
        ("rejected: bulkhead full", BROWN, |s| s.bulkhead_full),
        ("shed by rate limiter", GREY, |s| s.shed),
    ];
    let rows = &report.protected.seconds;
    let mut base = vec![0u32; rows.len()];
    for (label, color, pick) in stack {
        let bars: Vec<Rectangle<(f64, f64)>> = rows
            .iter()
            .enumerate()
            .map(|(t, s)| {
                let (lo, hi) = (base[t], base[t] + pick(s));
                base[t] = hi;
                Rectangle::new(
                    [
                        (t as f64 + 0.1, f64::from(lo)),
                        (t as f64 + 0.9, f64::from(hi)),
                    ],
                    color.filled(),
                )
            })
            .collect();
        chart
            .draw_series(bars)?
            .label(format!("{label} ({})", rows.iter().map(pick).sum::<u32>()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    let centre = |run: &Run, pick: Pick| -> Vec<(f64, f64)> {
        run.seconds
            .iter()
            .enumerate()
            .map(|(t, s)| (t as f64 + 0.5, f64::from(pick(s))))
            .collect()
    };
    let u = Totals::of(&report.unprotected);
    chart
        .draw_series(LineSeries::new(
            centre(&report.unprotected, |s| s.offered),
            BLACK.stroke_width(1),
        ))?
        .label(format!("offered, both runs ({})", u.offered))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLACK.stroke_width(1)));
    chart
        .draw_series(LineSeries::new(
            centre(&report.unprotected, |s| s.ok),
            BLUE.stroke_width(3),
        ))?
        .label(format!("unprotected ok ({})", u.ok))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], BLUE.stroke_width(3)));
    chart
        .draw_series(LineSeries::new(
            centre(&report.unprotected, |s| s.failed),
            RED.stroke_width(2),
        ))?
        .label(format!("unprotected failed ({})", u.failed))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}

fn latency_panel(area: &Area<'_>, report: &Report) -> Result<()> {
    let secs = f64::from(report.config.seconds);
    let mut chart = ChartBuilder::on(area)
        .caption(TITLES[2], (FONT, 18))
        .margin(10)
        .margin_right(30)
        .x_label_area_size(30)
        .y_label_area_size(90)
        .build_cartesian_2d(0.0..secs, (1.0..10_000.0).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(
            "simulated seconds (callers grouped by the second they arrived; rejections included)",
        )
        .y_desc("milliseconds")
        .y_label_formatter(&|v: &f64| format!("{v:.0}"))
        .x_label_formatter(&|v: &f64| format!("{v:.0}"))
        .light_line_style(TRANSPARENT)
        .label_style((FONT, 13))
        .draw()?;
    phase_bands(&mut chart, report.config.seconds, (1.0, 10_000.0))?;
    let timeout = settings::TIMEOUT.as_millis() as f64;
    chart
        .draw_series(LineSeries::new(
            [(0.0, timeout), (secs, timeout)],
            GREY.stroke_width(1),
        ))?
        .label(format!("per-attempt timeout ({timeout:.0} ms)"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 14, y)], GREY.stroke_width(1)));
    type Pick = fn(&Second) -> u64;
    let lines: [(&str, &Run, RGBColor, u32, Pick); 4] = [
        ("unprotected p99", &report.unprotected, RED, 3, |s| s.p99_ms),
        ("unprotected p50", &report.unprotected, RED, 1, |s| s.p50_ms),
        ("protected p99", &report.protected, BLUE, 3, |s| s.p99_ms),
        ("protected p50", &report.protected, BLUE, 1, |s| s.p50_ms),
    ];
    for (label, run, color, width, pick) in lines {
        let points: Vec<(f64, f64)> = run
            .seconds
            .iter()
            .enumerate()
            .map(|(t, s)| (t as f64 + 0.5, (pick(s) as f64).max(1.0)))
            .collect();
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(width)))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new([(x, y), (x + 14, y)], color.stroke_width(width))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 13))
        .draw()?;
    Ok(())
}
