//! `reap-stress` from the outside: bad input gets a one-line error and exit code 2, a tiny run
//! passes its invariants, its JSON is JSON with the report's fields, its charts are SVG with
//! labelled axes.

use std::process::Command;

fn stress(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_reap-stress"))
        .args(args)
        .output()
        .expect("run reap-stress")
}

/// A file name of this test's own in the temporary directory.
fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("reap-stress-{}-{name}", std::process::id()))
}

/// The text of each `<text>` element of an SVG document.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let inner = t.split_once('>')?.1.split_once("</text>")?.0;
            Some(inner.trim().to_string())
        })
        .collect()
}

#[track_caller]
fn assert_usage_error(args: &[&str], mentions: &str) {
    let out = stress(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    assert!(err.starts_with("reap-stress: "), "{args:?}: {err}");
    assert!(
        err.contains(mentions),
        "{args:?}: {mentions:?} not in {err}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
}

#[test]
fn bad_input_is_a_one_line_error_not_a_panic() {
    assert_usage_error(&["no-such-workload"], "'no-such-workload'");
    assert_usage_error(&["rings", "no-such-workload"], "possible values: trees");
    assert_usage_error(&["--size", "0"], "--size");
    assert_usage_error(&["--size", "-1"], "must be above 0 and at most 100");
    assert_usage_error(&["--size", "1e12"], "must be above 0 and at most 100");
    assert_usage_error(&["--size", "NaN"], "--size");
    assert_usage_error(&["--size", "many"], "not a number");
    assert_usage_error(&["--size"], "--size");
    assert_usage_error(&["--duration", "-1"], "--duration");
    assert_usage_error(&["--duration", "0"], "--duration");
    assert_usage_error(&["--duration", "soon"], "not a number");
    assert_usage_error(&["--frobnicate"], "--frobnicate");
    assert_usage_error(&["--sise", "1"], "a similar argument exists: '--size'");
    assert_usage_error(&["--rounds", "2"], "--compare");
    assert_usage_error(&["--compare", "--rounds", "0"], "--rounds");
    assert_usage_error(&["--compare", "--rounds", "-1"], "--rounds");
    assert_usage_error(&["--compare", "--rounds", "51"], "--rounds");
    assert_usage_error(&["--compare", "--rounds", "two"], "--rounds");
    assert_usage_error(&["--compare", "--json"], "--json");
    assert_usage_error(&["--compare", "--duration", "1"], "--duration");
    assert_usage_error(&["--compare", "no-such-workload"], "'no-such-workload'");
    assert_usage_error(&["--run-one", "reap", "trees"], "--run-one");
    assert_usage_error(&["--run-one", "reap", "trees", "-1"], "SIZE");
    assert_usage_error(
        &["--run-one", "reap", "trees", "0.01", "rings"],
        "--run-one",
    );
}

#[test]
fn help_lists_the_workloads_and_hides_run_one() {
    let out = stress(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.starts_with("A GC stress run on reap"), "{help}");
    for text in [
        "Usage: reap-stress [OPTIONS] [WORKLOAD]...",
        "--size <SCALE>",
        "--duration <SECONDS>",
        "--json",
        "--plot <FILE.svg>",
        "--list",
        "--compare",
        "--rounds <N>",
        "live-heap-touched",
        "GCBench",
    ] {
        assert!(help.contains(text), "{text} missing from\n{help}");
    }
    assert!(!help.contains("run-one"), "{help}");
    let out = stress(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("reap-stress "));
}

#[test]
fn a_tiny_run_reports_every_workload_and_holds_its_invariants() {
    let out = stress(&["--size", "0.01"]);
    assert!(out.status.success());
    let report = String::from_utf8(out.stdout).unwrap();
    for name in [
        "trees",
        "rings",
        "big-ring",
        "live-heap",
        "weak-churn",
        "finalizers",
        "mutator",
    ] {
        assert!(report.contains(name), "{name} missing from\n{report}");
    }
    assert!(report.contains("nothing left alive"));
    // Not a terminal: no progress display.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn json_is_json_with_the_reports_fields() {
    let out = stress(&["rings", "finalizers", "--size", "0.01", "--json"]);
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(json["invariants_hold"], true, "{json}");
    assert_eq!(json["size"], 0.01);
    let workloads = json["workloads"].as_array().unwrap();
    let names: Vec<_> = workloads
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["rings", "finalizers"]);
    for w in workloads {
        for field in [
            "seconds",
            "allocated",
            "freed",
            "allocations_per_second",
            "peak_live_objects",
            "peak_rss_growth_bytes",
            "bytes_per_live_object",
            "pauses",
        ] {
            assert!(w[field].is_number(), "{field} in {w}");
        }
        for field in ["collections", "collected"] {
            let gens = w[field].as_array().unwrap();
            assert_eq!(gens.len(), 3, "{field} in {w}");
            assert!(gens.iter().all(serde_json::Value::is_u64));
        }
        for p in ["p50", "p95", "p99", "max"] {
            assert!(w["pause_ns"][p].is_u64(), "pause_ns.{p} in {w}");
        }
        assert_eq!(w["allocated"], w["freed"], "{w}");
    }
    let finalizers = &json["finalizers"];
    assert!(finalizers["objects"].as_u64().unwrap() > 0, "{json}");
    assert_eq!(finalizers["objects"], finalizers["ran"]);
    assert_eq!(
        json["weak_callbacks"]["made"],
        json["weak_callbacks"]["ran"]
    );
}

#[test]
fn list_names_every_workload() {
    let out = stress(&["--list"]);
    assert!(out.status.success());
    let names = String::from_utf8(out.stdout).unwrap();
    assert_eq!(names.lines().count(), 10);
}

#[test]
fn plot_writes_an_svg_with_axes_and_an_unwritable_path_is_refused_before_the_run() {
    let path = temp("run.svg");
    let out = stress(&[
        "rings",
        "trees",
        "--size",
        "0.01",
        "--plot",
        path.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let svg = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let texts = svg_texts(&svg);
    assert!(
        texts.iter().any(|t| t.starts_with("live objects")),
        "{texts:?}"
    );
    assert!(
        texts.iter().any(|t| t.starts_with("collection pauses")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t == "seconds since the run began"));
    assert!(texts.iter().any(|t| t == "pause (ms)"));
    assert!(texts.iter().any(|t| t == "rings") && texts.iter().any(|t| t == "trees"));
    // Tick labels: numbers along the axes, more than a handful.
    let ticks = texts
        .iter()
        .filter(|t| t.trim_end_matches(['k', 'M']).parse::<f64>().is_ok())
        .count();
    assert!(ticks >= 10, "{texts:?}");

    let out = stress(&["rings", "--plot", "/nonexistent-dir/run.svg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "refused before running anything");
}

#[test]
fn compare_runs_every_peer_or_says_why_not_and_charts_the_ratios() {
    let path = temp("compare.svg");
    let out = stress(&[
        "--compare",
        "rings",
        "finalizers",
        "--rounds",
        "1",
        "--size",
        "0.01",
        "--plot",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    let peers = [
        "reap",
        "Rc",
        "rust-cc",
        "dumpster",
        "bacon_rajan_cc",
        "gcmodule",
        "CPython",
    ];
    for peer in peers {
        assert!(table.contains(peer), "{peer} missing from\n{table}");
    }
    assert!(table.contains("Rc leaks reference cycles"), "{table}");
    assert!(table.contains("median time of each runtime over reap's"));

    let svg = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let texts = svg_texts(&svg);
    for text in ["rings", "finalizers", "reap (1x)", "rust-cc", "gcmodule"] {
        assert!(texts.iter().any(|t| t == text), "{text} missing: {texts:?}");
    }
    assert!(
        texts
            .iter()
            .any(|t| t.ends_with('x') && t[..t.len() - 1].parse::<f64>().is_ok()),
        "no ratio tick labels: {texts:?}"
    );
}

#[test]
fn run_one_measures_or_says_why_not() {
    let out = stress(&["--run-one", "reap", "rings", "0.01"]);
    assert!(out.status.success());
    let seconds: f64 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(seconds >= 0.0);
    let out = stress(&["--run-one", "no-such-runtime", "rings", "0.01"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8(out.stdout).unwrap().contains("no peer"));
    let out = stress(&["--run-one", "reap", "no-such-workload", "0.01"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn compare_runs_the_real_heap_shapes_by_name_and_as_a_group() {
    let out = stress(&[
        "--compare",
        "cold-live-p40",
        "weak-first",
        "--size",
        "0.002",
        "--rounds",
        "1",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("cold-live-p40") && text.contains("weak-first"));
    // Rc cannot collect the live heap's garbage rings, and says so.
    assert!(text.contains("cannot"), "{text}");
    let out = stress(&["--run-one", "rust-cc", "cold-rings-2-p16", "0.002"]);
    assert!(out.status.success(), "{out:?}");
    // `real-heap` names every shape; the help lists it.
    let help = String::from_utf8(stress(&["--help"]).stdout).unwrap();
    assert!(help.contains("real-heap") && help.contains("cold-ring-1m-p100"));
}
