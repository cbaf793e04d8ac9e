//! The figures of one run, read from its pgbench logs, and the markdown table and SVG chart
//! of all runs.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::load::Transaction;

/// One run as measured.
#[derive(Debug, Clone)]
pub struct Run {
    pub name: String,
    pub baseline_tps: f64,
    pub baseline_p99_ms: f64,
    pub zero_seconds: u32,
    pub change_max_ms: f64,
    pub change_p99_ms: f64,
    /// p99 of the transactions completed while the rows were filled (the backfill alone,
    /// without the expand and the index build around it).
    pub fill_p99_ms: f64,
    pub tps_drop_percent: f64,
    pub duration_s: f64,
    pub rows_per_second: f64,
    /// The monitor's server backend CPU, in % of one core over the runner's `up`.
    pub monitor_cpu_percent: Option<f64>,
    /// (seconds from the change's start, completed transactions in that second).
    pub tps_series: Vec<(i64, u32)>,
}

/// The `p` quantile of `sorted` latencies (µs), in ms; 0 for none.
pub fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)] as f64 / 1000.0
}

/// When the rows were filled, in epoch µs.
#[derive(Debug, Clone)]
pub struct Fill {
    pub start_us: i64,
    pub end_us: i64,
    /// CPU seconds the server spent on the runner's monitor connection (its two queries
    /// every 20 ms) during the whole `up`; `None` for runs without a monitor.
    pub monitor_cpu_s: Option<f64>,
    /// How long that `up` took, in seconds (the monitor's share is over it).
    pub up_s: f64,
    /// The runner's own report: which signals held the backfill, the application's measured
    /// change.
    pub impact: Option<String>,
}

impl Fill {
    fn seconds(&self) -> f64 {
        (self.end_us - self.start_us) as f64 / 1e6
    }
}

/// The figures of a run whose change ran from `start_us` to `end_us` (epoch µs), with a
/// baseline of `baseline_s` seconds before it, `rows` rows changed during `fill`.
pub fn measure(
    name: &str,
    log: &[Transaction],
    (start_us, end_us): (i64, i64),
    baseline_s: u32,
    rows: u64,
    fill: Fill,
) -> Run {
    // The first second of the load warms up its connections.
    let baseline_from = start_us - i64::from(baseline_s.saturating_sub(1)) * 1_000_000;
    let mut baseline: Vec<i64> = log
        .iter()
        .filter(|t| t.done_us >= baseline_from && t.done_us < start_us)
        .map(|t| t.latency_us)
        .collect();
    baseline.sort_unstable();
    let baseline_secs = (start_us - baseline_from) as f64 / 1e6;
    let baseline_tps = baseline.len() as f64 / baseline_secs;
    let completed = |from: i64, to: i64| {
        log.iter()
            .filter(move |t| t.done_us >= from && t.done_us <= to)
    };
    // Latency: transactions completed during the change or in the seconds after it (as
    // long as the baseline), so the ones queued behind it and completed later count.
    let mut change: Vec<i64> = completed(start_us, end_us + i64::from(baseline_s) * 1_000_000)
        .map(|t| t.latency_us)
        .collect();
    change.sort_unstable();
    let mut during_fill: Vec<i64> = completed(fill.start_us, fill.end_us)
        .map(|t| t.latency_us)
        .collect();
    during_fill.sort_unstable();
    let fill_s = fill.seconds();
    let duration_s = (end_us - start_us) as f64 / 1e6;
    let change_tps = completed(start_us, end_us).count() as f64 / duration_s.max(1e-9);
    // Whole seconds of the change window without one completed transaction.
    let whole = ((end_us - start_us) / 1_000_000).max(0);
    let mut per_second = vec![0u32; whole as usize];
    for t in log {
        let offset = t.done_us - start_us;
        if offset >= 0 && offset < whole * 1_000_000 {
            per_second[(offset / 1_000_000) as usize] += 1;
        }
    }
    let zero_seconds = per_second.iter().filter(|&&n| n == 0).count() as u32;
    let first = log.first().map_or(start_us, |t| t.done_us);
    let last = log.last().map_or(end_us, |t| t.done_us);
    let mut tps_series = Vec::new();
    let mut second = (first - start_us).div_euclid(1_000_000);
    while start_us + second * 1_000_000 <= last {
        let from = start_us + second * 1_000_000;
        let count = log
            .iter()
            .filter(|t| t.done_us >= from && t.done_us < from + 1_000_000)
            .count() as u32;
        tps_series.push((second, count));
        second += 1;
    }
    Run {
        name: name.to_owned(),
        baseline_tps,
        baseline_p99_ms: percentile(&baseline, 0.99),
        zero_seconds,
        change_max_ms: change.last().map_or(0.0, |&us| us as f64 / 1000.0),
        change_p99_ms: percentile(&change, 0.99),
        fill_p99_ms: percentile(&during_fill, 0.99),
        tps_drop_percent: if baseline_tps > 0.0 {
            (baseline_tps - change_tps) / baseline_tps * 100.0
        } else {
            0.0
        },
        duration_s,
        rows_per_second: if fill_s > 0.0 {
            rows as f64 / fill_s
        } else {
            0.0
        },
        monitor_cpu_percent: fill
            .monitor_cpu_s
            .filter(|_| fill.up_s > 0.0)
            .map(|cpu| cpu / fill.up_s * 100.0),
        tps_series,
    }
}

/// What the machine and the run were.
#[derive(Debug, Clone)]
pub struct Setup {
    pub cores: usize,
    pub memory: String,
    pub server_version: String,
    pub rows: u64,
    pub clients: u32,
    pub max_tps: f64,
    pub rate: u32,
    pub bulk_update_rows_per_second: f64,
    pub command: String,
}

pub fn markdown(setup: &Setup, runs: &[Run], svg_name: &str) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# Online impact of a schema change\n");
    let _ = writeln!(
        text,
        "Produced by `{}`. Machine: {} cores, {} memory, PostgreSQL {}. Table `users` of {} rows; \
         pgbench with {} clients, per-transaction logging (also when measuring the maximum): \
         maximum {:.0} TPS, runs at {} TPS (60%). The change: add `email_verified_at`, fill it \
         from `created_at`, index it. No-load bulk `UPDATE`: {:.0} rows/s.\n",
        setup.command,
        setup.cores,
        setup.memory,
        setup.server_version,
        setup.rows,
        setup.clients,
        setup.max_tps,
        setup.rate,
        setup.bulk_update_rows_per_second
    );
    let _ = writeln!(
        text,
        "| run | baseline TPS | baseline p99 ms | s with 0 tx | max ms during | p99 ms during | p99 ms during fill | mean TPS drop % | duration s | rows/s | rows/s vs bulk | monitor CPU |"
    );
    let _ = writeln!(
        text,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for run in runs {
        let share = if setup.bulk_update_rows_per_second > 0.0 {
            run.rows_per_second / setup.bulk_update_rows_per_second * 100.0
        } else {
            0.0
        };
        let _ = writeln!(
            text,
            "| {} | {:.0} | {:.1} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0}% | {} |",
            run.name,
            run.baseline_tps,
            run.baseline_p99_ms,
            run.zero_seconds,
            run.change_max_ms,
            run.change_p99_ms,
            run.fill_p99_ms,
            run.tps_drop_percent,
            run.duration_s,
            run.rows_per_second,
            share,
            run.monitor_cpu_percent
                .map_or_else(|| "-".to_owned(), |p| format!("{p:.1}%"))
        );
    }
    let _ = writeln!(
        text,
        "\nDuring = from the change's start to its end (for the runner: expand, backfill, index); \
         the latencies during also count the transactions completed in the baseline's length \
         after it (those queued behind the change); during fill = only the transactions completed \
         while the rows were filled (the backfill alone, without the index build). Latency is pgbench's with `--rate`: from \
         the scheduled start, so queueing counts. rows/s: rows filled over the fill's duration \
         (the backfill's, or the big bang's whole transaction). The control run changes \
         nothing: the load alone, measured like a change over the same kind of window, so its \
         TPS drop and its p99 during against its baseline are what the machine does by itself. \
         Monitor CPU: the server's CPU time on the runner's monitor connection (the lock, \
         session and probe readings every 20 ms), in % of one core over the whole `up`. \
         TPS over time: [{svg_name}]({svg_name})."
    );
    text
}

pub fn svg(path: &Path, runs: &[Run]) -> Result<(), String> {
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let x_min = runs
        .iter()
        .flat_map(|r| r.tps_series.first().map(|p| p.0))
        .min()
        .unwrap_or(0);
    let x_max = runs
        .iter()
        .flat_map(|r| r.tps_series.last().map(|p| p.0))
        .max()
        .unwrap_or(1);
    let y_max = runs
        .iter()
        .flat_map(|r| r.tps_series.iter().map(|p| p.1))
        .max()
        .unwrap_or(1);
    let mut chart = ChartBuilder::on(&root)
        .caption("TPS over time (0 = the change starts)", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x_min..x_max + 1, 0u32..y_max + y_max / 10 + 1)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("transactions per second")
        .draw()
        .map_err(|e| e.to_string())?;
    for (index, run) in runs.iter().enumerate() {
        let color = Palette99::pick(index).to_rgba();
        chart
            .draw_series(LineSeries::new(run.tps_series.iter().copied(), color))
            .map_err(|e| e.to_string())?
            .label(run.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
