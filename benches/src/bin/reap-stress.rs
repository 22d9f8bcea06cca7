//! `reap-stress`: a GC stress run on reap with a readable report.
//!
//! ```sh
//! cargo run --release --bin reap-stress                 # the default mix, under a minute
//! cargo run --release --bin reap-stress -- rings trees  # named workloads
//! cargo run --release --bin reap-stress -- --size 0.01 --json
//! cargo run --release --bin reap-stress -- --compare --plot compare.svg
//! ```
//!
//! The command line is [`clap`]'s, the JSON report [`serde_json`]'s, the charts [`plotters`]'
//! (see `reap_bench::plot`) and the progress display [`indicatif`]'s.

use std::cell::{Cell, RefCell};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::builder::PossibleValuesParser;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reap::{CollectPhase, Heap};
use reap_bench::threaded::{self, ThreadedWorkload};
use reap_bench::workloads::{self, Tally, Workload};
use serde::Serialize;

/// The workloads `--compare` (and so `--run-one`) accepts, in table order: the one list of them.
/// A comparison shape that is not a workload of the plain run is added here (and measured in
/// [`measure`]).
fn compared_workloads() -> Vec<&'static str> {
    let mut names = reap_bench::peers::COMPARED.to_vec();
    names.extend_from_slice(reap_bench::realheap::SHAPES);
    names
}

/// The name that stands for every real-heap shape (`reap_bench::realheap`) in `--compare`.
const REAL_HEAP: &str = "real-heap";

/// Every name a WORKLOAD argument may take: the plain run's workloads, then any shape only
/// `--compare` runs.
fn workload_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = workloads::WORKLOADS.iter().map(|w| w.name).collect();
    names.push(REAL_HEAP);
    for w in compared_workloads() {
        if !names.contains(&w) {
            names.push(w);
        }
    }
    for w in threaded::THREADED {
        if !names.contains(&w.name) {
            names.push(w.name);
        }
    }
    names
}

/// The text after `--help`'s options: each workload and what it does.
fn workloads_help() -> String {
    let mut s = String::from("Workloads (default: all of them):\n");
    for w in workloads::WORKLOADS {
        s.push_str(&format!("  {:<18} {}\n", w.name, w.about));
    }
    s.push_str(&format!(
        "  {REAL_HEAP:<18} (--compare only) every real-heap shape below: aged heaps, cold \
         collections of 1M objects, weak-reference costs\n"
    ));
    for w in compared_workloads() {
        if workloads::find(w).is_none() {
            s.push_str(&format!("  {w:<18} (--compare only)\n"));
        }
    }
    s.push_str(
        "\nWith --threads N, N mutator threads on one shared reap::sync::Heap (default: all):\n",
    );
    for w in threaded::THREADED {
        s.push_str(&format!("  {:<18} {}\n", w.name, w.about));
    }
    s.push_str(&format!(
        "\n--compare runs {} on reap, {} and CPython, each run in a fresh process, interleaved \
         over --rounds rounds, and prints each one's median time, min-max and ratio to reap.",
        compared_workloads().join(", "),
        reap_bench::peers::PEERS
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(", ")
    ));
    s.push_str(&format!(
        " With --threads N it runs the threaded workloads on reap, {} instead.",
        threaded::peers::PEERS
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(" and ")
    ));
    s
}

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "reap-stress",
    version,
    about = "A GC stress run on reap with a readable report; or, with --compare, reap against its peers",
    after_help = workloads_help()
)]
struct Cli {
    /// Workloads to run (default: all of them; --list names them)
    #[arg(
        value_name = "WORKLOAD",
        value_parser = PossibleValuesParser::new(workload_names()),
        hide_possible_values = true
    )]
    workloads: Vec<String>,

    /// Scale of each workload, above 0, at most 100 [default: 4; 1 with --compare]
    #[arg(
        long,
        value_name = "SCALE",
        value_parser = parse_size,
        allow_negative_numbers = true
    )]
    size: Option<f64>,

    /// Time budget of each workload, above 0, at most 3600
    #[arg(
        long,
        value_name = "SECONDS",
        allow_negative_numbers = true,
        default_value = "20",
        value_parser = parse_duration,
        conflicts_with = "compare"
    )]
    duration: Duration,

    /// Print the report as JSON
    #[arg(long, conflicts_with = "compare")]
    json: bool,

    /// Draw the run (or --compare's ratios) as an SVG chart
    #[arg(long, value_name = "FILE.svg", value_parser = parse_plot)]
    plot: Option<PathBuf>,

    /// Print the workloads' names, one a line
    #[arg(long)]
    list: bool,

    /// Compare reap with its peers and CPython (see below)
    #[arg(long)]
    compare: bool,

    /// Run the threaded workloads with N mutator threads on one shared reap::sync::Heap (with
    /// --compare: against dumpster::sync and Arc)
    #[arg(
        long,
        value_name = "N",
        value_parser = clap::value_parser!(u16).range(1..=64),
        allow_negative_numbers = true
    )]
    threads: Option<u16>,

    /// Rounds of --compare, 1 to 50
    #[arg(
        long,
        value_name = "N",
        default_value_t = 3,
        value_parser = clap::value_parser!(u32).range(1..=50),
        allow_negative_numbers = true,
        requires = "compare"
    )]
    rounds: u32,

    /// One measurement in this fresh process, for --compare: prints the seconds, or why the
    /// runtime cannot run the workload (exit 3). With THREADS, a threaded workload.
    #[arg(
        long,
        num_args = 3..=4,
        value_names = ["RUNTIME", "WORKLOAD", "SIZE", "THREADS"],
        hide = true,
        exclusive = true,
        allow_negative_numbers = true
    )]
    run_one: Option<Vec<String>>,
}

/// `--size`: above 0 and at most 100.
fn parse_size(s: &str) -> Result<f64, String> {
    let v: f64 = s.parse().map_err(|_| "not a number".to_string())?;
    if v > 0.0 && v <= 100.0 {
        Ok(v)
    } else {
        Err("must be above 0 and at most 100".into())
    }
}

/// `--duration`: seconds above 0 and at most 3600.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| "not a number".to_string())?;
    if v > 0.0 && v <= 3600.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err("must be above 0 and at most 3600 seconds".into())
    }
}

/// `--plot`: a file that can be written, made now so that a bad path fails before the run.
fn parse_plot(s: &str) -> Result<PathBuf, String> {
    std::fs::File::create(s).map_err(|e| format!("cannot write it: {e}"))?;
    Ok(s.into())
}

/// A clap error as one line on stderr: its message, with any hint or list of possible values
/// folded in, and without the usage (which `--help` gives).
fn one_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let mut out = String::from("reap-stress:");
    for line in text.lines().map(str::trim) {
        if line.starts_with("Usage:") || line.starts_with("For more information") {
            break;
        }
        if !line.is_empty() {
            if !out.ends_with(':') {
                out.push(';');
            }
            out.push(' ');
            out.push_str(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    out.push_str(" (see --help)");
    out
}

/// A usage error found after parsing, as clap reports its own.
fn usage_error(message: String) -> ExitCode {
    let e = Cli::command().error(ErrorKind::InvalidValue, message);
    eprintln!("{}", one_line(&e));
    ExitCode::from(2)
}

/// A progress display on stderr, for a run that lasts: drawn only when stderr is a terminal, and
/// only once the run has gone on for a second (a shorter one shows nothing).
fn progress_bar(len: u64, template: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    let shown = bar.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(1));
        if !shown.is_finished() {
            shown.set_draw_target(ProgressDrawTarget::stderr());
            shown.enable_steady_tick(Duration::from_millis(100));
        }
    });
    bar
}

/// What a plain run (not `--compare`) was asked to do.
struct Options {
    workloads: Vec<&'static Workload>,
    size: f64,
    budget: Duration,
    json: bool,
    plot: Option<PathBuf>,
}

fn status_kib(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

struct Outcome {
    name: String,
    seconds: f64,
    allocated: u64,
    freed: u64,
    collections: [u64; 3],
    collected: [u64; 3],
    pauses: Vec<Duration>,
    peak_live: usize,
    rss_growth_kib: u64,
    /// (seconds since the run began, live objects), at each collection's start and stop.
    live: Vec<(f64, usize)>,
    /// (seconds since the run began, pause in ms).
    pause_points: Vec<(f64, f64)>,
    /// When the workload began, in seconds since the run began.
    began: f64,
}

fn run_one(
    w: &'static Workload,
    opts: &Options,
    tally: &Rc<Tally>,
    bar: &ProgressBar,
    run_start: Instant,
) -> Outcome {
    bar.set_message(w.name);
    let heap = Rc::new(Heap::new());
    let pauses: Rc<RefCell<Vec<Duration>>> = Rc::default();
    let peak_live = Rc::new(Cell::new(0_usize));
    let live: Rc<RefCell<Vec<(f64, usize)>>> = Rc::default();
    let pause_points: Rc<RefCell<Vec<(f64, f64)>>> = Rc::default();
    {
        let p = pauses.clone();
        let weak_heap = Rc::downgrade(&heap);
        let peak = peak_live.clone();
        let (live, pp) = (live.clone(), pause_points.clone());
        let (bar, shown_at) = (bar.clone(), Cell::new(0.0_f64));
        heap.add_collect_callback(Box::new(move |phase, info| {
            let t = run_start.elapsed().as_secs_f64();
            let mut n = None;
            if let Some(h) = weak_heap.upgrade() {
                let live_now = h.live_objects();
                n = Some(live_now);
                peak.set(peak.get().max(live_now));
                live.borrow_mut().push((t, live_now));
            }
            if phase == CollectPhase::Stop {
                p.borrow_mut().push(info.duration);
                pp.borrow_mut()
                    .push((t, info.duration.as_secs_f64() * 1000.0));
                // The progress line, at most ten times a second: collections are many.
                if t - shown_at.get() >= 0.1 {
                    shown_at.set(t);
                    bar.set_message(format!(
                        "{}: {} collections, {} live",
                        w.name,
                        p.borrow().len(),
                        n.unwrap_or(0)
                    ));
                }
            }
        }));
    }
    let began = run_start.elapsed().as_secs_f64();
    let rss_before = status_kib("VmRSS:").unwrap_or(0);
    let start = Instant::now();
    workloads::run_all(&heap, &[w], opts.size, opts.budget, tally);
    let seconds = start.elapsed().as_secs_f64();
    let rss_peak = status_kib("VmHWM:").unwrap_or(0);
    let stats = heap.get_stats();
    let mut pauses = pauses.borrow().clone();
    pauses.sort();
    let outcome = Outcome {
        name: w.name.to_string(),
        seconds,
        allocated: heap.allocated_objects(),
        freed: heap.freed_objects(),
        collections: [0, 1, 2].map(|g| stats[g].collections),
        collected: [0, 1, 2].map(|g| stats[g].collected),
        pauses,
        peak_live: peak_live.get().max(heap.live_objects()),
        rss_growth_kib: rss_peak.saturating_sub(rss_before),
        live: live.take(),
        pause_points: pause_points.take(),
        began,
    };
    let left = heap.live_objects();
    if left != 0 {
        heap.collect(2);
    }
    assert_eq!(
        heap.live_objects(),
        0,
        "invariant broken: workload {} left {} objects alive",
        w.name,
        heap.live_objects()
    );
    bar.inc(1);
    outcome
}

fn fmt_d(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

fn print_report(outcomes: &[Outcome]) {
    println!(
        "{:<18} {:>8} {:>11} {:>11} {:>10} {:>15} {:>11} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "workload",
        "seconds",
        "allocated",
        "freed",
        "M allocs/s",
        "collections",
        "collected",
        "peak live",
        "p50",
        "p95",
        "p99",
        "max"
    );
    for o in outcomes {
        let p = &o.pauses;
        println!(
            "{:<18} {:>8.3} {:>11} {:>11} {:>10.1} {:>15} {:>11} {:>10} {:>9} {:>9} {:>9} {:>9}",
            o.name,
            o.seconds,
            o.allocated,
            o.freed,
            o.allocated as f64 / o.seconds / 1e6,
            format!(
                "{}/{}/{}",
                o.collections[0], o.collections[1], o.collections[2]
            ),
            o.collected.iter().sum::<u64>(),
            o.peak_live,
            fmt_d(percentile(p, 0.5)),
            fmt_d(percentile(p, 0.95)),
            fmt_d(percentile(p, 0.99)),
            fmt_d(p.last().copied().unwrap_or_default()),
        );
    }
    let peak = status_kib("VmHWM:").unwrap_or(0);
    // The workload that grew the resident set most set the peak: its growth over its peak live
    // objects is the cost of a live object, all bookkeeping included.
    let per_object = outcomes
        .iter()
        .filter(|o| o.peak_live > 0)
        .max_by_key(|o| o.rss_growth_kib)
        .filter(|o| o.rss_growth_kib > 0)
        .map(|o| {
            format!(
                "{:.1} bytes per live object ({})",
                (o.rss_growth_kib * 1024) as f64 / o.peak_live as f64,
                o.name
            )
        })
        .unwrap_or_else(|| "bytes per live object: n/a (no growth)".into());
    println!("peak RSS {:.1} MiB; {per_object}", peak as f64 / 1024.0);
}

/// `--json`: the report.
#[derive(Serialize)]
struct JsonReport<'a> {
    /// The scale the workloads ran at.
    size: f64,
    workloads: Vec<JsonWorkload<'a>>,
    finalizers: JsonFinalizers,
    weak_callbacks: JsonWeakCallbacks,
    invariants_hold: bool,
}

/// `--json`: one workload's line of the report.
#[derive(Serialize)]
struct JsonWorkload<'a> {
    name: &'a str,
    seconds: f64,
    allocated: u64,
    freed: u64,
    allocations_per_second: u64,
    /// Collections of generations 0, 1 and 2.
    collections: [u64; 3],
    /// Objects collected by collections of generations 0, 1 and 2.
    collected: [u64; 3],
    pause_ns: JsonPauses,
    /// Number of pauses the percentiles are taken over.
    pauses: usize,
    peak_live_objects: usize,
    peak_rss_growth_bytes: u64,
    bytes_per_live_object: f64,
}

/// `--json`: pause percentiles, in nanoseconds.
#[derive(Serialize)]
struct JsonPauses {
    p50: u64,
    p95: u64,
    p99: u64,
    max: u64,
}

/// `--json`: finalizable objects made and finalizer runs.
#[derive(Serialize)]
struct JsonFinalizers {
    objects: u64,
    ran: u64,
}

/// `--json`: weak references with callbacks made and callbacks run.
#[derive(Serialize)]
struct JsonWeakCallbacks {
    made: u64,
    ran: u64,
}

/// `x` rounded to `decimals` decimals, for a JSON number as short as the table's.
fn round_to(x: f64, decimals: i32) -> f64 {
    let scale = 10_f64.powi(decimals);
    (x * scale).round() / scale
}

fn json_report(outcomes: &[Outcome], ok: bool, tally: &Tally, size: f64) -> String {
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    let workloads = outcomes
        .iter()
        .map(|o| {
            let p = &o.pauses;
            JsonWorkload {
                name: &o.name,
                seconds: round_to(o.seconds, 4),
                allocated: o.allocated,
                freed: o.freed,
                allocations_per_second: (o.allocated as f64 / o.seconds).round() as u64,
                collections: o.collections,
                collected: o.collected,
                pause_ns: JsonPauses {
                    p50: ns(percentile(p, 0.5)),
                    p95: ns(percentile(p, 0.95)),
                    p99: ns(percentile(p, 0.99)),
                    max: ns(p.last().copied().unwrap_or_default()),
                },
                pauses: p.len(),
                peak_live_objects: o.peak_live,
                peak_rss_growth_bytes: o.rss_growth_kib * 1024,
                bytes_per_live_object: if o.peak_live > 0 {
                    round_to((o.rss_growth_kib * 1024) as f64 / o.peak_live as f64, 1)
                } else {
                    0.0
                },
            }
        })
        .collect();
    let report = JsonReport {
        size,
        workloads,
        finalizers: JsonFinalizers {
            objects: tally.finalizable.get(),
            ran: tally.finalized.get(),
        },
        weak_callbacks: JsonWeakCallbacks {
            made: tally.weak_callbacks_made.get(),
            ran: tally.weak_callbacks_run.get(),
        },
        invariants_hold: ok,
    };
    serde_json::to_string(&report).expect("the report serializes")
}

/// A plain run: the workloads one after the other, each on a heap of its own; the report (a
/// table, or `--json`), the invariants checked, and the `--plot` chart.
fn run(opts: &Options) -> ExitCode {
    let tally = Rc::new(Tally::default());
    let mut outcomes = Vec::new();
    let bar = progress_bar(
        opts.workloads.len() as u64,
        "{spinner} reap-stress [{pos}/{len}] {msg} ({elapsed})",
    );
    // A panic's message (a broken invariant) is not to be drawn over by the progress line.
    let hook = std::panic::take_hook();
    let b = bar.clone();
    std::panic::set_hook(Box::new(move |info| b.suspend(|| hook(info))));
    let run_start = Instant::now();
    for &w in &opts.workloads {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_one(w, opts, &tally, &bar, run_start)
        }));
        match r {
            Ok(o) => outcomes.push(o),
            Err(_) => {
                bar.finish_and_clear();
                eprintln!(
                    "reap-stress: workload {} failed (see the message above)",
                    w.name
                );
                return ExitCode::FAILURE;
            }
        }
    }
    bar.finish_and_clear();
    let mut failures = Vec::new();
    if tally.finalized.get() != tally.finalizable.get() {
        failures.push(format!(
            "{} finalizable objects but {} finalizer runs (each must run exactly once)",
            tally.finalizable.get(),
            tally.finalized.get()
        ));
    }
    if tally.weak_callbacks_run.get() != tally.weak_callbacks_made.get() {
        failures.push(format!(
            "{} weak references with callbacks to objects that all died, but {} callbacks ran",
            tally.weak_callbacks_made.get(),
            tally.weak_callbacks_run.get()
        ));
    }
    if tally.weak_violations.get() != 0 {
        failures.push(format!(
            "{} weak references to freed objects could still be upgraded",
            tally.weak_violations.get()
        ));
    }
    if opts.json {
        println!(
            "{}",
            json_report(&outcomes, failures.is_empty(), &tally, opts.size)
        );
    } else {
        print_report(&outcomes);
        println!(
            "invariants: {} finalizers ran once each; {} weak-reference callbacks ran; nothing left alive",
            tally.finalized.get(),
            tally.weak_callbacks_run.get()
        );
    }
    if let Some(path) = &opts.plot {
        let live: Vec<_> = outcomes
            .iter()
            .flat_map(|o| o.live.iter().copied())
            .collect();
        let pauses: Vec<_> = outcomes
            .iter()
            .flat_map(|o| o.pause_points.iter().copied())
            .collect();
        let marks: Vec<_> = outcomes.iter().map(|o| (o.began, o.name.clone())).collect();
        let svg = reap_bench::plot::svg(&reap_bench::plot::Series {
            live: &live,
            pauses: &pauses,
            marks: &marks,
        });
        if let Err(code) = write_chart(path, svg) {
            return code;
        }
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in failures {
            eprintln!("reap-stress: invariant broken: {f}");
        }
        ExitCode::FAILURE
    }
}

/// What a `--threads N` run was asked to do.
struct ThreadedOptions {
    workloads: Vec<&'static ThreadedWorkload>,
    threads: usize,
    size: f64,
    budget: Duration,
    json: bool,
}

/// What the collection callback of a threaded workload gathers, from whichever thread collects.
#[derive(Default)]
struct Samples {
    /// Each stop of the world: a collection's first pause, and its second if it had one.
    pauses: Vec<Duration>,
    /// Each collection's time from asking the threads to stop until all had stopped.
    to_safepoint: Vec<Duration>,
    /// Each collection's whole time (pauses and the work between them).
    collections: Vec<Duration>,
    automatic: u64,
    explicit: u64,
    collected: u64,
    peak_live: usize,
}

/// One threaded workload's line of the report.
struct ThreadedOutcome {
    name: &'static str,
    seconds: f64,
    allocated: u64,
    samples: Samples,
}

/// Runs one threaded workload on a heap of its own; the outcome, or the invariant it broke.
fn run_threaded_one(
    w: &'static ThreadedWorkload,
    opts: &ThreadedOptions,
    tally: &Arc<threaded::Tally>,
) -> Result<ThreadedOutcome, String> {
    let heap = reap::sync::Heap::new();
    let unraisable = Arc::new(Mutex::new(Vec::<String>::new()));
    let u = unraisable.clone();
    heap.set_unraisable_hook(Some(Arc::new(move |r: &reap::Unraisable| {
        u.lock()
            .unwrap()
            .push(format!("{:?} in {}: {}", r.kind, r.type_name, r.message));
    })));
    let samples = Arc::new(Mutex::new(Samples::default()));
    // The callback keeps a handle of the heap: it is removed once the workload is done.
    let (s, h) = (samples.clone(), heap.clone());
    let id = heap.add_collect_callback(Arc::new(
        move |phase: CollectPhase, info: &reap::sync::CollectInfo| {
            let live = h.live_objects();
            let mut s = s.lock().unwrap();
            s.peak_live = s.peak_live.max(live);
            if phase != CollectPhase::Stop {
                return;
            }
            s.pauses.push(info.first_pause);
            s.pauses.extend(info.second_pause);
            s.to_safepoint.push(info.time_to_safepoint);
            s.to_safepoint.extend(info.second_time_to_safepoint);
            s.collections.push(info.duration);
            if info.generation == 0 {
                s.automatic += 1;
            } else {
                s.explicit += 1;
            }
            s.collected += info.collected as u64;
        },
    ));
    let allocated_before = threaded::Tally::get(&tally.allocated);
    let start = Instant::now();
    let params = threaded::Params {
        threads: opts.threads,
        size: opts.size,
        deadline: start + opts.budget,
    };
    (w.run)(&heap, &params, tally);
    let seconds = start.elapsed().as_secs_f64();
    heap.remove_collect_callback(id);
    let left = threaded::settle(&heap);
    if left != 0 {
        return Err(format!("workload {} left {left} objects alive", w.name));
    }
    let reports = unraisable.lock().unwrap().clone();
    if !reports.is_empty() {
        return Err(format!(
            "workload {}: {} panic(s) caught in finalizers, callbacks or drops: {}",
            w.name,
            reports.len(),
            reports[0]
        ));
    }
    let mut samples = std::mem::take(&mut *samples.lock().unwrap());
    samples.pauses.sort();
    samples.to_safepoint.sort();
    samples.collections.sort();
    Ok(ThreadedOutcome {
        name: w.name,
        seconds,
        allocated: threaded::Tally::get(&tally.allocated) - allocated_before,
        samples,
    })
}

/// Median, 95th and 99th percentile and maximum of sorted durations, formatted.
fn fmt_percentiles(sorted: &[Duration]) -> String {
    format!(
        "{:>9} {:>9} {:>9} {:>9}",
        fmt_d(percentile(sorted, 0.5)),
        fmt_d(percentile(sorted, 0.95)),
        fmt_d(percentile(sorted, 0.99)),
        fmt_d(sorted.last().copied().unwrap_or_default())
    )
}

fn print_threaded_report(outcomes: &[ThreadedOutcome], threads: usize) {
    println!(
        "{threads} mutator thread(s) on one shared heap per workload; collections automatic/explicit; \
         pause: each stop of the world; to safepoint: each stop, from asking the threads to stop until all had"
    );
    println!(
        "{:<12} {:>8} {:>10} {:>10} {:>11} {:>10} {:>10} | {:>9} {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} {:>9}",
        "workload",
        "seconds",
        "allocated",
        "M allocs/s",
        "collections",
        "collected",
        "peak live",
        "pause p50",
        "p95",
        "p99",
        "max",
        "tts p50",
        "p95",
        "p99",
        "max"
    );
    for o in outcomes {
        let s = &o.samples;
        println!(
            "{:<12} {:>8.3} {:>10} {:>10.1} {:>11} {:>10} {:>10} | {} | {}",
            o.name,
            o.seconds,
            o.allocated,
            o.allocated as f64 / o.seconds / 1e6,
            format!("{}/{}", s.automatic, s.explicit),
            s.collected,
            s.peak_live,
            fmt_percentiles(&s.pauses),
            fmt_percentiles(&s.to_safepoint),
        );
    }
}

/// `--json` with `--threads`: the report.
#[derive(Serialize)]
struct JsonThreadedReport<'a> {
    threads: usize,
    /// The scale the workloads ran at.
    size: f64,
    workloads: Vec<JsonThreadedWorkload<'a>>,
    finalizers: JsonFinalizers,
    weak_callbacks: JsonWeakCallbacks,
    invariants_hold: bool,
}

/// `--json` with `--threads`: one workload's line.
#[derive(Serialize)]
struct JsonThreadedWorkload<'a> {
    name: &'a str,
    seconds: f64,
    allocated: u64,
    allocations_per_second: u64,
    /// Automatic collections and explicit `Heap::collect` calls that collected.
    collections: JsonCollections,
    collected: u64,
    peak_live_objects: usize,
    /// Number of stops of the world the pause percentiles are taken over.
    pauses: usize,
    /// Each stop of the world (a collection's first pause, and its second if it had one).
    pause_ns: JsonPauses,
    /// Each collection's time from asking the threads to stop until all had stopped.
    time_to_safepoint_ns: JsonPauses,
    /// Each collection's whole time.
    collection_ns: JsonPauses,
}

/// `--json` with `--threads`: collections by kind.
#[derive(Serialize)]
struct JsonCollections {
    automatic: u64,
    explicit: u64,
}

fn json_pauses(sorted: &[Duration]) -> JsonPauses {
    let ns = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    JsonPauses {
        p50: ns(percentile(sorted, 0.5)),
        p95: ns(percentile(sorted, 0.95)),
        p99: ns(percentile(sorted, 0.99)),
        max: ns(sorted.last().copied().unwrap_or_default()),
    }
}

/// `reap-stress --threads N`: the threaded workloads one after the other, each on a heap of its
/// own; the report (a table, or `--json`) and the invariants checked.
fn run_threaded(opts: &ThreadedOptions) -> ExitCode {
    let tally = Arc::new(threaded::Tally::default());
    let mut outcomes = Vec::new();
    for &w in &opts.workloads {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_threaded_one(w, opts, &tally)
        }));
        match r {
            Ok(Ok(o)) => outcomes.push(o),
            Ok(Err(why)) => {
                eprintln!("reap-stress: invariant broken: {why}");
                return ExitCode::FAILURE;
            }
            Err(_) => {
                eprintln!(
                    "reap-stress: workload {} failed (see the message above)",
                    w.name
                );
                return ExitCode::FAILURE;
            }
        }
    }
    let failures = threaded::broken(&tally);
    let get = threaded::Tally::get;
    if opts.json {
        let report = JsonThreadedReport {
            threads: opts.threads,
            size: opts.size,
            workloads: outcomes
                .iter()
                .map(|o| JsonThreadedWorkload {
                    name: o.name,
                    seconds: round_to(o.seconds, 4),
                    allocated: o.allocated,
                    allocations_per_second: (o.allocated as f64 / o.seconds).round() as u64,
                    collections: JsonCollections {
                        automatic: o.samples.automatic,
                        explicit: o.samples.explicit,
                    },
                    collected: o.samples.collected,
                    peak_live_objects: o.samples.peak_live,
                    pauses: o.samples.pauses.len(),
                    pause_ns: json_pauses(&o.samples.pauses),
                    time_to_safepoint_ns: json_pauses(&o.samples.to_safepoint),
                    collection_ns: json_pauses(&o.samples.collections),
                })
                .collect(),
            finalizers: JsonFinalizers {
                objects: get(&tally.finalizable),
                ran: get(&tally.finalized),
            },
            weak_callbacks: JsonWeakCallbacks {
                made: get(&tally.weak_callbacks_made),
                ran: get(&tally.weak_callbacks_run),
            },
            invariants_hold: failures.is_empty(),
        };
        println!(
            "{}",
            serde_json::to_string(&report).expect("the report serializes")
        );
    } else {
        print_threaded_report(&outcomes, opts.threads);
        println!(
            "invariants: {} finalizers ran once each; {} weak-reference callbacks ran; nothing left alive",
            get(&tally.finalized),
            get(&tally.weak_callbacks_run)
        );
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in failures {
            eprintln!("reap-stress: invariant broken: {f}");
        }
        ExitCode::FAILURE
    }
}

/// Writes a chart to the `--plot` file; an error is one line and exit code 2.
fn write_chart(path: &Path, svg: Result<String, String>) -> Result<(), ExitCode> {
    let written = svg.and_then(|s| std::fs::write(path, s).map_err(|e| e.to_string()));
    written.map_err(|e| {
        eprintln!("reap-stress: --plot {}: {e}", path.display());
        ExitCode::from(2)
    })
}

/// One measurement for `--compare`: `workload` at scale `size` on `runtime` (reap, or a peer of
/// `reap_bench::peers::PEERS`), the time it took, or why the runtime cannot run it. The one place
/// that maps a (runtime, workload) to what runs.
fn measure(
    runtime: &str,
    workload: &str,
    size: f64,
    threads: Option<usize>,
) -> Result<Duration, String> {
    if let Some(threads) = threads {
        if runtime == "reap" {
            return threaded::measure_reap(workload, size, threads);
        }
        return match threaded::peers::PEERS.iter().find(|p| p.name == runtime) {
            Some(p) => (p.run)(workload, size, threads),
            None => Err(format!("no threaded peer {runtime}")),
        };
    }
    if !compared_workloads().contains(&workload) {
        return Err(format!("no comparison workload {workload}"));
    }
    if reap_bench::realheap::SHAPES.contains(&workload) {
        return reap_bench::realheap::run(runtime, workload, size);
    }
    if runtime == "reap" {
        let w = workloads::find(workload).ok_or_else(|| format!("no workload {workload}"))?;
        let heap = Heap::new();
        let tally = Rc::new(Tally::default());
        let start = Instant::now();
        workloads::run_all(&heap, &[w], size, Duration::from_secs(3600), &tally);
        heap.collect(2);
        let t = start.elapsed();
        if tally.finalized.get() != tally.finalizable.get()
            || tally.weak_callbacks_run.get() != tally.weak_callbacks_made.get()
            || tally.weak_violations.get() != 0
            || heap.live_objects() != 0
        {
            return Err("invariant broken".to_string());
        }
        return Ok(t);
    }
    match reap_bench::peers::PEERS.iter().find(|p| p.name == runtime) {
        Some(p) => (p.run)(workload, size),
        None => Err(format!("no peer {runtime}")),
    }
}

/// `reap-stress --run-one RUNTIME WORKLOAD SIZE`: one timed run in a fresh process, for
/// `--compare`. Prints the seconds, or why not (exit 3).
fn run_one_for_compare(values: &[String]) -> ExitCode {
    let (runtime, workload, size, threads) = match values {
        [r, w, s] => (r, w, s, None),
        [r, w, s, t] => match t.parse::<usize>() {
            Ok(t) if (1..=64).contains(&t) => (r, w, s, Some(t)),
            _ => return usage_error(format!("--run-one: THREADS {t:?}: 1 to 64")),
        },
        _ => return usage_error("--run-one takes RUNTIME WORKLOAD SIZE [THREADS]".into()),
    };
    let size = match parse_size(size) {
        Ok(s) => s,
        Err(e) => return usage_error(format!("--run-one: SIZE {size:?}: {e}")),
    };
    match measure(runtime, workload, size, threads) {
        Ok(t) => {
            println!("{:.6}", t.as_secs_f64());
            ExitCode::SUCCESS
        }
        Err(why) => {
            println!("{why}");
            ExitCode::from(3)
        }
    }
}

/// How long one threaded `--run-one` measurement of `--compare --threads` may take before it is
/// killed (a peer that deadlocks must not hang the comparison).
const RUN_ONE_LIMIT: Duration = Duration::from_secs(120);

/// Runs `cmd` to the end and returns its output, or kills it and returns `None` if it has not
/// finished within `limit`.
fn output_within(
    cmd: &mut std::process::Command,
    limit: Duration,
) -> std::io::Result<Option<std::process::Output>> {
    use std::io::Read;
    use std::process::Stdio;
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    // The pipes are drained while the child runs, so that a chatty child cannot block on them.
    let mut out = child.stdout.take().expect("piped");
    let mut err = child.stderr.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (
        out_reader.join().unwrap_or_default(),
        err_reader.join().unwrap_or_default(),
    );
    Ok(status.map(|status| std::process::Output {
        status,
        stdout,
        stderr,
    }))
}

/// One cell of the comparison: the times of the rounds, or why the runtime cannot run it.
enum Measured {
    Times(Vec<f64>),
    Cannot(String),
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

/// What `--compare` runs each measurement with.
struct Launcher {
    /// This executable, for `--run-one`.
    exe: PathBuf,
    /// CPython's counterpart of the workloads (`python/stress.py`); the real-heap shapes'
    /// (`python/realheap.py`) is beside it.
    script: PathBuf,
    /// Whether `python3` runs and the script is there.
    python_ok: bool,
}

impl Launcher {
    /// One round's measurement of `workload` on `runtime` in a fresh process: the seconds, or
    /// why not.
    fn measure(
        &self,
        runtime: &str,
        workload: &str,
        size: f64,
        threads: Option<usize>,
    ) -> Result<f64, String> {
        let out = if runtime == "CPython" {
            if !self.python_ok {
                return Err("skipped: python3 or benches/python/stress.py not found".into());
            }
            let script = if reap_bench::realheap::SHAPES.contains(&workload) {
                self.script.with_file_name("realheap.py")
            } else {
                self.script.clone()
            };
            std::process::Command::new("python3")
                .arg(script)
                .arg(workload)
                .arg("--size")
                .arg(size.to_string())
                .output()
        } else {
            let mut cmd = std::process::Command::new(&self.exe);
            cmd.args(["--run-one", runtime, workload, &size.to_string()]);
            match threads {
                // The threaded peers can deadlock: each run is given a time limit.
                Some(t) => match output_within(cmd.arg(t.to_string()), RUN_ONE_LIMIT) {
                    Ok(Some(o)) => Ok(o),
                    Ok(None) => {
                        return Err(format!(
                            "failed: no result within {} s (killed; a deadlock?)",
                            RUN_ONE_LIMIT.as_secs()
                        ))
                    }
                    Err(e) => Err(e),
                },
                None => cmd.output(),
            }
        };
        match out {
            Ok(o) if o.status.success() => {
                let text = String::from_utf8_lossy(&o.stdout);
                text.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("failed: printed {:?}", text.trim()))
            }
            Ok(o) if o.status.code() == Some(3) => {
                Err(String::from_utf8_lossy(&o.stdout).trim().to_string())
            }
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                let last = err
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                Err(format!("failed ({}): {}", o.status, last.trim()))
            }
            Err(e) => Err(format!("skipped: {e}")),
        }
    }
}

/// `reap-stress --compare`: the comparison workloads on reap, the Rust peers and CPython, each
/// run in a fresh process, interleaved over several rounds; a table of medians with min–max and
/// each runtime's ratio to reap, and with `--plot` a chart of the ratios. With `threads`, the
/// threaded workloads on that many threads, on reap and the threaded peers.
fn compare(
    chosen: &[&str],
    size: f64,
    rounds: u32,
    plot: Option<&Path>,
    threads: Option<usize>,
) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("reap-stress: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/stress.py");
    let python_ok = script.exists()
        && std::process::Command::new("python3")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    let launcher = Launcher {
        exe,
        script,
        python_ok,
    };
    let mut runtimes: Vec<&str> = vec!["reap"];
    if threads.is_some() {
        runtimes.extend(threaded::peers::PEERS.iter().map(|p| p.name));
    } else {
        runtimes.extend(reap_bench::peers::PEERS.iter().map(|p| p.name));
        runtimes.push("CPython");
    }
    let mut cells: Vec<Vec<Measured>> = chosen
        .iter()
        .map(|_| {
            runtimes
                .iter()
                .map(|_| Measured::Times(Vec::new()))
                .collect()
        })
        .collect();
    let bar = progress_bar(
        u64::from(rounds) * (chosen.len() * runtimes.len()) as u64,
        "{spinner} reap-stress --compare [{bar:24}] {pos}/{len} {msg} ({elapsed}, about {eta} left)",
    );
    for round in 0..rounds {
        for (wi, w) in chosen.iter().enumerate() {
            for (ri, rt) in runtimes.iter().enumerate() {
                bar.set_message(format!("round {}/{rounds} {w} {rt}", round + 1));
                if let Measured::Times(times) = &mut cells[wi][ri] {
                    match launcher.measure(rt, w, size, threads) {
                        Ok(t) => times.push(t),
                        Err(why) => cells[wi][ri] = Measured::Cannot(why),
                    }
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    let on_threads = threads.map_or(String::new(), |t| {
        format!(", {t} mutator thread(s) on one shared heap")
    });
    println!(
        "reap-stress --compare: {rounds} round(s), size {size}{on_threads}, each run in a fresh process\n"
    );
    let mut reap_failed = false;
    let mut ratios: Vec<Vec<Option<f64>>> = Vec::new();
    let mut shown: Vec<Vec<String>> = Vec::new();
    for (wi, w) in chosen.iter().enumerate() {
        println!("{w}");
        let reap_median = match &cells[wi][0] {
            Measured::Times(v) if !v.is_empty() => Some(median(v)),
            _ => None,
        };
        let (mut row, mut text) = (Vec::new(), Vec::new());
        for (ri, rt) in runtimes.iter().enumerate() {
            match &cells[wi][ri] {
                Measured::Times(v) if !v.is_empty() => {
                    let m = median(v);
                    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = v.iter().copied().fold(0.0, f64::max);
                    let ratio = match reap_median {
                        Some(r) if r > 0.0 => m / r,
                        _ => f64::NAN,
                    };
                    println!(
                        "  {rt:<15} {:>9.1} ms  ({:.1}-{:.1})  {}",
                        m * 1e3,
                        lo * 1e3,
                        hi * 1e3,
                        if ri == 0 {
                            String::new()
                        } else {
                            format!("{ratio:.2}x reap")
                        }
                    );
                    row.push(ratio.is_finite().then_some(ratio));
                    text.push(format!("{ratio:.2}x"));
                }
                Measured::Times(_) => {
                    println!("  {rt:<15} -");
                    row.push(None);
                    text.push("-".into());
                }
                Measured::Cannot(why) => {
                    if ri == 0 {
                        reap_failed = true;
                    }
                    println!("  {rt:<15} n/a: {why}");
                    row.push(None);
                    text.push("n/a".into());
                }
            }
        }
        ratios.push(row.split_off(1));
        shown.push(text);
        println!();
    }
    println!(
        "median time of each runtime over reap's (lower is better for the runtime; n/a: see above)"
    );
    print!("{:<18}", "");
    for rt in &runtimes[1..] {
        print!(" {rt:>14}");
    }
    println!();
    for (wi, w) in chosen.iter().enumerate() {
        print!("{w:<18}");
        for r in &shown[wi][1..] {
            print!(" {r:>14}");
        }
        println!();
    }
    if let Some(path) = plot {
        let svg = reap_bench::plot::compare_svg(&reap_bench::plot::Comparison {
            workloads: chosen,
            runtimes: &runtimes[1..],
            ratios: &ratios,
        });
        if let Err(code) = write_chart(path, svg) {
            return code;
        }
    }
    if reap_failed {
        eprintln!("reap-stress: reap itself failed a workload");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    if let Some(values) = &cli.run_one {
        return run_one_for_compare(values);
    }
    if cli.list {
        for w in workloads::WORKLOADS {
            println!("{}", w.name);
        }
        return ExitCode::SUCCESS;
    }
    let threads = cli.threads.map(usize::from);
    if cli.compare && threads.is_some() {
        let mut chosen: Vec<&str> = Vec::new();
        for w in &cli.workloads {
            match threaded::find(w) {
                Some(t) => chosen.push(t.name),
                None => return usage_error(format!("{w} has no threaded form")),
            }
        }
        if chosen.is_empty() {
            chosen = threaded::THREADED.iter().map(|w| w.name).collect();
        }
        return compare(
            &chosen,
            cli.size.unwrap_or(1.0),
            cli.rounds,
            cli.plot.as_deref(),
            threads,
        );
    }
    if cli.compare {
        let accepted = compared_workloads();
        let chosen: Vec<&str> = if cli.workloads.is_empty() {
            // The real-heap shapes take long (1M objects each, on an aged heap): by name only.
            reap_bench::peers::COMPARED.to_vec()
        } else {
            let mut chosen = Vec::new();
            for w in &cli.workloads {
                if w == REAL_HEAP {
                    chosen.extend_from_slice(reap_bench::realheap::SHAPES);
                    continue;
                }
                match accepted.iter().find(|a| **a == w.as_str()) {
                    Some(a) => chosen.push(*a),
                    None => {
                        return usage_error(format!(
                            "--compare runs {}; not {w}",
                            accepted.join(", ")
                        ))
                    }
                }
            }
            chosen
        };
        return compare(
            &chosen,
            cli.size.unwrap_or(1.0),
            cli.rounds,
            cli.plot.as_deref(),
            None,
        );
    }
    if let Some(threads) = threads {
        if cli.plot.is_some() {
            return usage_error("--plot draws a plain run or --compare, not --threads".into());
        }
        let mut chosen = Vec::new();
        for name in &cli.workloads {
            match threaded::find(name) {
                Some(w) => chosen.push(w),
                None => return usage_error(format!("{name} has no threaded form")),
            }
        }
        if chosen.is_empty() {
            chosen = threaded::THREADED.iter().collect();
        }
        return run_threaded(&ThreadedOptions {
            workloads: chosen,
            threads,
            size: cli.size.unwrap_or(4.0),
            budget: cli.duration,
            json: cli.json,
        });
    }
    let mut chosen = Vec::new();
    for name in &cli.workloads {
        match workloads::find(name) {
            Some(w) => chosen.push(w),
            None if threaded::find(name).is_some() => {
                return usage_error(format!("{name} runs only with --threads"))
            }
            None => return usage_error(format!("{name} runs only with --compare")),
        }
    }
    if chosen.is_empty() {
        chosen = workloads::WORKLOADS.iter().collect();
    }
    run(&Options {
        workloads: chosen,
        size: cli.size.unwrap_or(4.0),
        budget: cli.duration,
        json: cli.json,
        plot: cli.plot,
    })
}
