//! `reap-stress`: a GC stress run on reap with a readable report.
//!
//! ```sh
//! cargo run --release --bin reap-stress                 # the default mix, under a minute
//! cargo run --release --bin reap-stress -- rings trees  # named workloads
//! cargo run --release --bin reap-stress -- --size 0.01 --json
//! ```

use std::cell::RefCell;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use reap::{CollectPhase, Heap};
use reap_bench::workloads::{self, Tally, Workload};

const USAGE: &str = "usage: reap-stress [WORKLOAD...] [--size SCALE (default 4)] [--duration SECONDS per workload (default 20)] [--json] [--plot FILE.svg] [--list]
       reap-stress --compare [WORKLOAD...] [--size SCALE (default 1)] [--rounds N (default 3)]";

struct Options {
    workloads: Vec<&'static Workload>,
    size: f64,
    budget: Duration,
    json: bool,
    plot: Option<std::path::PathBuf>,
    compare: bool,
    rounds: usize,
    size_given: bool,
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut opts = Options {
        workloads: Vec::new(),
        size: 4.0,
        budget: Duration::from_secs(20),
        json: false,
        plot: None,
        compare: false,
        rounds: 3,
        size_given: false,
    };
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        let value = |i: usize| {
            args.get(i + 1)
                .ok_or_else(|| format!("{a} needs a value"))
                .map(String::as_str)
        };
        match a {
            "--help" | "-h" => {
                println!("{USAGE}\n\nworkloads (default: all of them):");
                for w in workloads::WORKLOADS {
                    println!("  {:<18} {}", w.name, w.about);
                }
                return Ok(None);
            }
            "--list" => {
                for w in workloads::WORKLOADS {
                    println!("{}", w.name);
                }
                return Ok(None);
            }
            "--json" => opts.json = true,
            "--compare" => opts.compare = true,
            "--rounds" => {
                let v = value(i)?;
                let n: usize = v
                    .parse()
                    .map_err(|_| format!("--rounds: not a whole number: {v}"))?;
                if !(1..=50).contains(&n) {
                    return Err(format!("--rounds must be 1 to 50, not {v}"));
                }
                opts.rounds = n;
                i += 1;
            }
            "--plot" => {
                let v = value(i)?;
                // Fail now, not after the run: the file must be writable.
                std::fs::File::create(v).map_err(|e| format!("--plot {v}: {e}"))?;
                opts.plot = Some(v.into());
                i += 1;
            }
            "--size" => {
                let v = value(i)?;
                let s: f64 = v
                    .parse()
                    .map_err(|_| format!("--size: not a number: {v}"))?;
                if !(s > 0.0 && s <= 100.0) {
                    return Err(format!("--size must be above 0 and at most 100, not {v}"));
                }
                opts.size = s;
                opts.size_given = true;
                i += 1;
            }
            "--duration" => {
                let v = value(i)?;
                let s: f64 = v
                    .parse()
                    .map_err(|_| format!("--duration: not a number: {v}"))?;
                if !(s > 0.0 && s <= 3600.0) {
                    return Err(format!(
                        "--duration must be above 0 and at most 3600 seconds, not {v}"
                    ));
                }
                opts.budget = Duration::from_secs_f64(s);
                i += 1;
            }
            _ if a.starts_with('-') => return Err(format!("unknown option {a}")),
            name => match workloads::find(name) {
                Some(w) => opts.workloads.push(w),
                None => {
                    return Err(format!(
                        "unknown workload {name:?} (reap-stress --list shows them)"
                    ))
                }
            },
        }
        i += 1;
    }
    if opts.workloads.is_empty() {
        opts.workloads = workloads::WORKLOADS.iter().collect();
    }
    Ok(Some(opts))
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
    progress: bool,
    run_start: Instant,
) -> Outcome {
    if progress {
        eprintln!("reap-stress: {} ...", w.name);
    }
    let heap = Rc::new(Heap::new());
    let pauses: Rc<RefCell<Vec<Duration>>> = Rc::default();
    let peak_live = Rc::new(std::cell::Cell::new(0_usize));
    let live: Rc<RefCell<Vec<(f64, usize)>>> = Rc::default();
    let pause_points: Rc<RefCell<Vec<(f64, f64)>>> = Rc::default();
    {
        let p = pauses.clone();
        let weak_heap = Rc::downgrade(&heap);
        let peak = peak_live.clone();
        let (live, pp) = (live.clone(), pause_points.clone());
        heap.add_collect_callback(Box::new(move |phase, info| {
            let t = run_start.elapsed().as_secs_f64();
            if let Some(h) = weak_heap.upgrade() {
                let n = h.live_objects();
                peak.set(peak.get().max(n));
                live.borrow_mut().push((t, n));
            }
            if phase == CollectPhase::Stop {
                p.borrow_mut().push(info.duration);
                pp.borrow_mut()
                    .push((t, info.duration.as_secs_f64() * 1000.0));
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

fn json_report(outcomes: &[Outcome], ok: bool, tally: &Tally) -> String {
    let mut s = String::from("{\"workloads\":[");
    for (i, o) in outcomes.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let p = &o.pauses;
        let bytes_per_live = if o.peak_live > 0 {
            (o.rss_growth_kib * 1024) as f64 / o.peak_live as f64
        } else {
            0.0
        };
        s.push_str(&format!(
            "{{\"name\":\"{}\",\"seconds\":{:.4},\"allocated\":{},\"freed\":{},\"allocations_per_second\":{:.0},\"collections\":[{},{},{}],\"collected\":[{},{},{}],\"pause_ns\":{{\"p50\":{},\"p95\":{},\"p99\":{},\"max\":{}}},\"peak_live_objects\":{},\"peak_rss_growth_bytes\":{},\"bytes_per_live_object\":{:.1}}}",
            o.name,
            o.seconds,
            o.allocated,
            o.freed,
            o.allocated as f64 / o.seconds,
            o.collections[0], o.collections[1], o.collections[2],
            o.collected[0], o.collected[1], o.collected[2],
            percentile(p, 0.5).as_nanos(),
            percentile(p, 0.95).as_nanos(),
            percentile(p, 0.99).as_nanos(),
            p.last().copied().unwrap_or_default().as_nanos(),
            o.peak_live,
            o.rss_growth_kib * 1024,
            bytes_per_live,
        ));
    }
    s.push_str(&format!(
        "],\"finalizers\":{{\"objects\":{},\"ran\":{}}},\"weak_callbacks\":{{\"made\":{},\"ran\":{}}},\"invariants_hold\":{}}}",
        tally.finalizable.get(),
        tally.finalized.get(),
        tally.weak_callbacks_made.get(),
        tally.weak_callbacks_run.get(),
        ok
    ));
    s
}

/// `reap-stress --run-one PEER WORKLOAD SIZE`: one timed run in a fresh process, for
/// `--compare`. Prints the seconds, or `cannot: why` (exit 3).
fn run_one_for_compare(args: &[String]) -> ExitCode {
    let (peer, workload, size) = match args {
        [p, w, s] => (p.as_str(), w.as_str(), s.parse::<f64>().unwrap_or(1.0)),
        _ => {
            eprintln!("reap-stress: --run-one PEER WORKLOAD SIZE");
            return ExitCode::from(2);
        }
    };
    let result = if peer == "reap" {
        match workloads::find(workload) {
            Some(w) => {
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
                    Err("invariant broken".to_string())
                } else {
                    Ok(t)
                }
            }
            None => Err(format!("no workload {workload}")),
        }
    } else {
        match reap_bench::peers::PEERS.iter().find(|p| p.name == peer) {
            Some(p) => (p.run)(workload, size),
            None => Err(format!("no peer {peer}")),
        }
    };
    match result {
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

/// One cell of the comparison: the times of the rounds, or why the peer cannot run it.
enum Cell {
    Times(Vec<f64>),
    Cannot(String),
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[s.len() / 2]
}

/// `reap-stress --compare`: the comparison workloads on reap, the Rust peers and CPython, each
/// run in a fresh process, interleaved over several rounds; a table of medians with min–max and
/// each peer's ratio to reap.
fn compare(opts: &Options) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("reap-stress: cannot find my own executable: {e}");
            return ExitCode::FAILURE;
        }
    };
    let size = if opts.size_given { opts.size } else { 1.0 };
    let chosen: Vec<&str> = if opts.workloads.len() == workloads::WORKLOADS.len() {
        reap_bench::peers::COMPARED.to_vec()
    } else {
        opts.workloads.iter().map(|w| w.name).collect()
    };
    for w in &chosen {
        if !reap_bench::peers::COMPARED.contains(w) {
            eprintln!(
                "reap-stress: --compare runs {}; not {w}",
                reap_bench::peers::COMPARED.join(", ")
            );
            return ExitCode::from(2);
        }
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("python/stress.py");
    let python_ok = script.exists()
        && std::process::Command::new("python3")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
    let mut runtimes: Vec<&str> = vec!["reap"];
    runtimes.extend(reap_bench::peers::PEERS.iter().map(|p| p.name));
    runtimes.push("CPython");
    let mut cells: Vec<Vec<Cell>> = chosen
        .iter()
        .map(|_| runtimes.iter().map(|_| Cell::Times(Vec::new())).collect())
        .collect();
    let progress = std::io::stderr().is_terminal();
    for round in 0..opts.rounds {
        for (wi, w) in chosen.iter().enumerate() {
            for (ri, rt) in runtimes.iter().enumerate() {
                if let Cell::Cannot(_) = cells[wi][ri] {
                    continue;
                }
                if progress {
                    eprint!(
                        "\rreap-stress: round {}/{} {w:<11} {rt:<15}",
                        round + 1,
                        opts.rounds
                    );
                }
                let out = if *rt == "CPython" {
                    if !python_ok {
                        cells[wi][ri] = Cell::Cannot(
                            "skipped: python3 or benches/python/stress.py not found".into(),
                        );
                        continue;
                    }
                    std::process::Command::new("python3")
                        .arg(&script)
                        .arg(w)
                        .arg("--size")
                        .arg(size.to_string())
                        .output()
                } else {
                    std::process::Command::new(&exe)
                        .args(["--run-one", rt, w, &size.to_string()])
                        .output()
                };
                let cell = match out {
                    Ok(o) if o.status.success() => {
                        let text = String::from_utf8_lossy(&o.stdout);
                        match text.trim().parse::<f64>() {
                            Ok(t) => {
                                if let Cell::Times(v) = &mut cells[wi][ri] {
                                    v.push(t);
                                }
                                continue;
                            }
                            Err(_) => Cell::Cannot(format!("failed: printed {:?}", text.trim())),
                        }
                    }
                    Ok(o) if o.status.code() == Some(3) => {
                        Cell::Cannot(String::from_utf8_lossy(&o.stdout).trim().to_string())
                    }
                    Ok(o) => {
                        let err = String::from_utf8_lossy(&o.stderr);
                        let last = err
                            .lines()
                            .rev()
                            .find(|l| !l.trim().is_empty())
                            .unwrap_or("");
                        Cell::Cannot(format!("failed ({}): {}", o.status, last.trim()))
                    }
                    Err(e) => Cell::Cannot(format!("skipped: {e}")),
                };
                cells[wi][ri] = cell;
            }
        }
    }
    if progress {
        eprintln!();
    }
    println!(
        "reap-stress --compare: {} round(s), size {size}, each run in a fresh process\n",
        opts.rounds
    );
    let mut notes = Vec::new();
    let mut reap_failed = false;
    let mut ratios: Vec<Vec<String>> = Vec::new();
    for (wi, w) in chosen.iter().enumerate() {
        println!("{w}");
        let reap_median = match &cells[wi][0] {
            Cell::Times(v) if !v.is_empty() => Some(median(v)),
            _ => None,
        };
        let mut row = Vec::new();
        for (ri, rt) in runtimes.iter().enumerate() {
            match &cells[wi][ri] {
                Cell::Times(v) if !v.is_empty() => {
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
                    row.push(format!("{ratio:.2}x"));
                }
                Cell::Times(_) => {
                    println!("  {rt:<15} -");
                    row.push("-".into());
                }
                Cell::Cannot(why) => {
                    if ri == 0 {
                        reap_failed = true;
                    }
                    println!("  {rt:<15} n/a: {why}");
                    notes.push(why.clone());
                    row.push("n/a".into());
                }
            }
        }
        ratios.push(row);
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
        for r in &ratios[wi][1..] {
            print!(" {r:>14}");
        }
        println!();
    }
    let _ = notes;
    if reap_failed {
        eprintln!("reap-stress: reap itself failed a workload");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--run-one") {
        return run_one_for_compare(&args[1..]);
    }
    let opts = match parse(&args) {
        Ok(Some(o)) => o,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("reap-stress: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if opts.compare {
        return compare(&opts);
    }
    let progress = std::io::stderr().is_terminal() && !opts.json;
    let tally = Rc::new(Tally::default());
    let mut outcomes = Vec::new();
    let run_start = Instant::now();
    for &w in &opts.workloads {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_one(w, &opts, &tally, progress, run_start)
        }));
        match r {
            Ok(o) => outcomes.push(o),
            Err(_) => {
                eprintln!(
                    "reap-stress: workload {} failed (see the message above)",
                    w.name
                );
                return ExitCode::FAILURE;
            }
        }
    }
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
        println!("{}", json_report(&outcomes, failures.is_empty(), &tally));
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
        if let Err(e) = std::fs::write(path, svg) {
            eprintln!("reap-stress: --plot {}: {e}", path.display());
            return ExitCode::from(2);
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
