//! The demo's promises: deterministic, every number adds up, a picture.

use std::path::PathBuf;
use std::process::Command;

use stockade_demo::{Config, Totals, simulate, svg, text};

const BIN: &str = env!("CARGO_BIN_EXE_stockade-demo");

fn temp_svg(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stockade-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn run_demo(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("the demo runs");
    assert!(
        out.status.success(),
        "demo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn the_same_seed_prints_the_same_bytes_and_draws_the_same_picture() {
    let path = temp_svg("same.svg");
    let p = path.to_str().unwrap();
    let first = run_demo(&["--seed", "7", "--svg", p]);
    let first_svg = std::fs::read(&path).unwrap();
    let second = run_demo(&["--seed", "7", "--svg", p]);
    let second_svg = std::fs::read(&path).unwrap();
    assert_eq!(first, second);
    assert_eq!(first_svg, second_svg);
    let other = run_demo(&["--seed", "8", "--svg", p]);
    assert_ne!(first, other, "the seed changes the traffic");
}

#[test]
fn default_run_is_deterministic_in_process() {
    assert_eq!(simulate(Config::default()), simulate(Config::default()));
}

/// The numbers of the per-second lines, the totals line and the worst-second line.
struct Table {
    rows: Vec<Vec<u64>>,
    total: Vec<u64>,
    worst: Vec<u64>,
}

fn numbers(s: &str) -> Vec<u64> {
    s.split(|c: char| c.is_whitespace() || c == '|')
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn parse_table(output: &str) -> Table {
    let mut lines = output
        .lines()
        .skip_while(|l| !l.starts_with(text::HEADER_START));
    lines.next().expect("a header line");
    let mut rows = Vec::new();
    let mut total = Vec::new();
    for line in lines.by_ref() {
        if line.starts_with(text::TOTAL_START) {
            total = numbers(line);
            break;
        }
        // t, offered, then 5 unprotected and 10 protected columns.
        let n = numbers(line);
        assert_eq!(n.len(), 17, "a per-second line: {line:?}");
        rows.push(n);
    }
    let worst = numbers(lines.next().expect("a worst-second line"));
    Table { rows, total, worst }
}

#[test]
fn the_summary_adds_up_with_the_per_second_lines() {
    let path = temp_svg("sums.svg");
    let output = run_demo(&["--svg", path.to_str().unwrap()]);
    let table = parse_table(&output);
    assert_eq!(table.rows.len(), 40);
    let sum = |col: usize| -> u64 { table.rows.iter().map(|r| r[col]).sum() };
    let max = |col: usize| -> u64 { table.rows.iter().map(|r| r[col]).max().unwrap() };
    // Columns: 0 t, 1 offered | 2 ok 3 fail 4 >quota 5 p99 6 peak |
    // 7 ok 8 shed 9 bulk 10 open 11 t/o 12 fail 13 up 14 >quota 15 p99 16 peak.
    for row in &table.rows {
        assert_eq!(
            row[1],
            row[2] + row[3],
            "unprotected accounted for: {row:?}"
        );
        assert_eq!(
            row[1],
            (7..=12).map(|c| row[c]).sum::<u64>(),
            "protected accounted for: {row:?}"
        );
    }
    let counted = [1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14];
    let expected_total: Vec<u64> = counted.iter().map(|&c| sum(c)).collect();
    assert_eq!(table.total, expected_total, "the totals line");
    assert_eq!(table.worst, vec![max(5), max(6), max(15), max(16)]);

    let summary = &output[output.find("Summary:").expect("a summary")..];
    let expect = [
        format!(
            "{} of {} unprotected, {} of {} protected",
            sum(2),
            sum(1),
            sum(7),
            sum(1)
        ),
        format!("{} requests rejected while the circuit was open", sum(10)),
        format!(
            "upstream calls: {} unprotected, {} protected",
            sum(1),
            sum(13)
        ),
        format!(
            "peak callers waiting at once: {} unprotected, {} protected",
            max(6),
            max(16)
        ),
        format!(
            "{} turned away by the full bulkhead, {} timed out",
            sum(9),
            sum(11)
        ),
        format!("worst second: {} ms unprotected", max(5)),
        format!("{} ms protected", max(15)),
        format!(
            "seconds with a p99 over 1 s: {} unprotected, {} protected",
            table.rows.iter().filter(|r| r[5] > 1000).count(),
            table.rows.iter().filter(|r| r[15] > 1000).count()
        ),
        format!("{} requests shed", sum(8)),
        format!("{} unprotected, {} protected\n  accounted", sum(4), sum(14)),
        "unprotected yes, protected yes".to_string(),
    ];
    for needle in expect {
        assert!(
            summary.contains(&needle),
            "summary lacks {needle:?}:\n{summary}"
        );
    }
}

#[test]
fn every_request_is_accounted_for_exactly_once() {
    for seed in [1, 2, 3, 42] {
        let report = simulate(Config {
            seed,
            ..Config::default()
        });
        for run in [&report.unprotected, &report.protected] {
            for s in &run.seconds {
                assert_eq!(s.offered, s.ended(), "seed {seed}: {s:?}");
                assert!(s.p50_ms <= s.p99_ms);
            }
            let t = Totals::of(run);
            assert_eq!(t.unbalanced_seconds, 0);
            assert_eq!(
                t.offered,
                run.seconds.iter().map(|s| s.offered).sum::<u32>()
            );
        }
        let (u, p) = (
            Totals::of(&report.unprotected),
            Totals::of(&report.protected),
        );
        assert_eq!(u.offered, p.offered, "the same arrivals");
        assert_eq!(
            u.upstream_calls, u.offered,
            "unprotected: one call per request"
        );
        assert_eq!(u.shed + u.bulkhead_full + u.breaker_open + u.timed_out, 0);
    }
}

#[test]
fn the_picture_is_written_and_has_its_three_panels() {
    let path = temp_svg("picture.svg");
    let output = run_demo(&["--seconds", "12", "--svg", path.to_str().unwrap()]);
    assert!(
        output
            .trim_end()
            .ends_with(&format!("Timeline picture: {}", path.display()))
    );
    let picture = std::fs::read_to_string(&path).unwrap();
    assert!(picture.starts_with("<svg"), "{}", &picture[..40]);
    assert!(picture.trim_end().ends_with("</svg>"));
    for title in svg::TITLES {
        assert!(picture.contains(title), "no panel titled {title:?}");
    }
    let in_process = svg::render(&simulate(Config {
        seconds: 12,
        ..Config::default()
    }))
    .unwrap();
    assert_eq!(picture, in_process);
}

#[test]
fn real_time_mode_runs_on_the_wall_clock() {
    let path = temp_svg("real.svg");
    let started = std::time::Instant::now();
    let output = run_demo(&[
        "--real-time",
        "--seconds",
        "6",
        "--speed",
        "6",
        "--svg",
        path.to_str().unwrap(),
    ]);
    let took = started.elapsed();
    assert!(
        took.as_secs_f64() >= 0.9,
        "paced by the wall clock: {took:?}"
    );
    assert!(output.contains("on the wall clock at 6x"));
    assert_eq!(parse_table(&output).rows.len(), 6);
    assert!(
        output.contains("unprotected yes, protected yes"),
        "{output}"
    );
}

#[test]
fn bad_options_are_refused() {
    let out = Command::new(BIN).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).args(["--seconds", "2"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(run_demo(&["--help"]).contains("--real-time"));
}
