//! Every real-heap shape on every runtime at a tiny size: each runs and holds its checks, or
//! says it cannot; CPython's `realheap.py` runs each shape too (skipped without python3).

use std::process::Command;

use reap_bench::realheap::{run, RUNTIMES, SHAPES};

const SIZE: f64 = 0.002;

#[test]
fn every_shape_runs_or_says_it_cannot_on_every_runtime() {
    let mut failures = Vec::new();
    for runtime in RUNTIMES {
        for shape in SHAPES {
            match run(runtime, shape, SIZE) {
                Ok(_) => {}
                Err(e) if e.starts_with("cannot") => {}
                Err(e) => failures.push(format!("{runtime} {shape}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // reap runs everything.
    for shape in SHAPES {
        assert!(run("reap", shape, SIZE).is_ok(), "reap {shape}");
    }
    assert!(run("reap", "no-such-shape", SIZE).is_err());
    assert!(run("no-such-runtime", SHAPES[0], SIZE).is_err());
}

#[test]
fn python_runs_every_shape() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/realheap.py");
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 missing: skipped");
        return;
    }
    let size = SIZE.to_string();
    let mut failures = Vec::new();
    for shape in SHAPES {
        let out = Command::new("python3")
            .args([script, shape, "--size", &size])
            .output()
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let ok = out.status.success() && stdout.trim().parse::<f64>().is_ok();
        if !ok {
            failures.push(format!(
                "{shape}: {:?} {stdout} {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
