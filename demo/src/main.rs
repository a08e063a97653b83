//! `stockade-demo`: run `stockade-demo --help` for the options.

use std::path::PathBuf;
use std::process::ExitCode;

use stockade_demo::{Config, simulate, svg, text};

const HELP: &str = "\
stockade-demo: a flaky upstream (healthy, failure burst, latency spike, overload,
recovery) and the same traffic sent to it twice: unprotected, and through
rate limiter -> bulkhead -> circuit breaker -> retry -> timeout.

Options:
  --seed N       seed for arrivals, upstream behaviour and retry jitter (default 42);
                 the same seed prints the same bytes
  --seconds N    simulated seconds of traffic, 5 to 3600 (default 40); the phases scale
  --svg PATH     where to write the timeline picture (default demo.svg)
  --real-time    run on the wall clock instead of simulated time: both runs at once,
                 each caller's waits really slept (not deterministic)
  --speed X      with --real-time: simulated seconds per real second (default 1)
  --help         this text
";

fn parse() -> Result<Option<(Config, PathBuf)>, String> {
    let mut config = Config::default();
    let mut svg_path = PathBuf::from("demo.svg");
    let mut real_time = false;
    let mut speed = 1.0f64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--seed" => {
                config.seed = value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?
            }
            "--seconds" => {
                config.seconds = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?;
                if !(5..=3600).contains(&config.seconds) {
                    return Err("--seconds must be between 5 and 3600".into());
                }
            }
            "--svg" => svg_path = PathBuf::from(value("--svg")?),
            "--real-time" => real_time = true,
            "--speed" => {
                speed = value("--speed")?
                    .parse()
                    .map_err(|e| format!("--speed: {e}"))?;
                if !(speed.is_finite() && speed > 0.0) {
                    return Err("--speed must be a positive number".into());
                }
            }
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown option {other:?} (try --help)")),
        }
    }
    config.real_time = real_time.then_some(speed);
    Ok(Some((config, svg_path)))
}

fn main() -> ExitCode {
    let (config, svg_path) = match parse() {
        Ok(Some(parsed)) => parsed,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("stockade-demo: {message}");
            return ExitCode::from(2);
        }
    };
    if let Some(speed) = config.real_time {
        println!(
            "Running on the wall clock: {:.1} s of real time ...\n",
            f64::from(config.seconds) / speed
        );
    }
    let report = simulate(config);
    print!("{}", text::render(&report));
    let picture = match svg::render(&report) {
        Ok(picture) => picture,
        Err(e) => {
            eprintln!("stockade-demo: drawing the timeline: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = std::fs::write(&svg_path, picture) {
        eprintln!("stockade-demo: writing {}: {e}", svg_path.display());
        return ExitCode::FAILURE;
    }
    println!("\nTimeline picture: {}", svg_path.display());
    ExitCode::SUCCESS
}
