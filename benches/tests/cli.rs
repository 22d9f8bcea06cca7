//! `reap-stress` from the outside: bad input gets a one-line error and exit code 2, a tiny run
//! passes its invariants.

use std::process::Command;

fn stress(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_reap-stress"))
        .args(args)
        .output()
        .expect("run reap-stress")
}

#[test]
fn bad_input_is_a_one_line_error_not_a_panic() {
    for args in [
        &["no-such-workload"][..],
        &["--size", "0"],
        &["--size", "1e12"],
        &["--size", "many"],
        &["--duration", "-1"],
        &["--frobnicate"],
        &["--size"],
    ] {
        let out = stress(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        let first = err.lines().next().unwrap_or("");
        assert!(first.starts_with("reap-stress: "), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
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

    let out = stress(&["rings", "finalizers", "--size", "0.01", "--json"]);
    assert!(out.status.success());
    let json = String::from_utf8(out.stdout).unwrap();
    assert!(json.trim_start().starts_with('{') && json.trim_end().ends_with('}'));
    assert!(json.contains("\"invariants_hold\":true"), "{json}");
    assert!(json.contains("\"name\":\"rings\"") && json.contains("\"name\":\"finalizers\""));
}

#[test]
fn list_names_every_workload() {
    let out = stress(&["--list"]);
    assert!(out.status.success());
    let names = String::from_utf8(out.stdout).unwrap();
    assert_eq!(names.lines().count(), 10);
}

#[test]
fn plot_writes_an_svg_and_an_unwritable_path_is_refused_before_the_run() {
    let dir = std::env::temp_dir().join(format!("reap-stress-plot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.svg");
    let out = stress(&["rings", "--size", "0.01", "--plot", path.to_str().unwrap()]);
    assert!(out.status.success());
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(svg.contains("collection pauses"));
    std::fs::remove_dir_all(&dir).unwrap();

    let out = stress(&["rings", "--plot", "/nonexistent-dir/run.svg"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "refused before running anything");
}

#[test]
fn compare_runs_every_peer_or_says_why_not() {
    let out = stress(&[
        "--compare",
        "rings",
        "finalizers",
        "--rounds",
        "1",
        "--size",
        "0.01",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    for peer in [
        "reap",
        "Rc",
        "rust-cc",
        "dumpster",
        "bacon_rajan_cc",
        "gcmodule",
        "CPython",
    ] {
        assert!(table.contains(peer), "{peer} missing from\n{table}");
    }
    assert!(table.contains("Rc leaks reference cycles"), "{table}");

    let out = stress(&["--compare", "no-such-workload"]);
    assert_eq!(out.status.code(), Some(2));
    let out = stress(&["--compare", "--rounds", "0"]);
    assert_eq!(out.status.code(), Some(2));
}
