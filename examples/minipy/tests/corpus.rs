//! Runs the built `minipy` on every `corpus/*.py` (and `tests/smoke/*.py`) and compares its
//! stdout byte for byte with the `.out` file next to it (the stdout of python3 3.11). Every
//! failure is listed, with the first differing line, before the test fails.

use std::path::{Path, PathBuf};
use std::process::Command;

fn programs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "py") && p.with_extension("out").exists()
            })
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn first_difference(got: &str, want: &str) -> String {
    let (g, w): (Vec<&str>, Vec<&str>) = (got.lines().collect(), want.lines().collect());
    for i in 0..g.len().max(w.len()) {
        let (a, b) = (g.get(i), w.get(i));
        if a != b {
            return format!(
                "    line {}:\n      expected: {}\n      got:      {}",
                i + 1,
                b.map_or("<end of output>".to_string(), |s| format!("{s:?}")),
                a.map_or("<end of output>".to_string(), |s| format!("{s:?}"))
            );
        }
    }
    "    (outputs differ only in trailing newlines)".to_string()
}

fn run_dir(dir: &Path) -> (usize, Vec<String>) {
    let exe = env!("CARGO_BIN_EXE_minipy");
    let mut failures = Vec::new();
    let progs = programs(dir);
    for py in &progs {
        let want = std::fs::read_to_string(py.with_extension("out")).unwrap_or_default();
        let out = Command::new(exe).arg(py).current_dir(dir).output();
        let name = py
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        match out {
            Ok(o) => {
                let got = String::from_utf8_lossy(&o.stdout);
                if got != want {
                    let err = String::from_utf8_lossy(&o.stderr);
                    let tail: Vec<&str> = err.lines().rev().take(3).collect();
                    let tail: Vec<&str> = tail.into_iter().rev().collect();
                    failures.push(format!(
                        "{name}: stdout differs\n{}\n    stderr (last lines): {}",
                        first_difference(&got, &want),
                        tail.join(" | ")
                    ));
                }
            }
            Err(e) => failures.push(format!("{name}: could not run minipy: {e}")),
        }
    }
    (progs.len(), failures)
}

#[test]
fn corpus_matches_python3() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut total = 0;
    let mut failures = Vec::new();
    for dir in [root.join("corpus"), root.join("tests/smoke")] {
        let (n, f) = run_dir(&dir);
        total += n;
        failures.extend(f);
    }
    assert!(total > 0, "no programs found");
    if !failures.is_empty() {
        panic!(
            "{} of {total} programs differ from python3:\n\n{}",
            failures.len(),
            failures.join("\n\n")
        );
    }
}
