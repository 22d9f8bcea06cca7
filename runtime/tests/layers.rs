//! Deliverable 9 of issue 12, checked: the runtime's modules import each other without a
//! circle. Reads `runtime/src`, takes every `crate::…` path outside comments (a braced group
//! `crate::a::{b, c}` counts each name; a name the crate root re-exports counts as the module it
//! comes from), and looks for a cycle in the module graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `local/heap.rs` → `local/heap`; `sync/mod.rs` → `sync`.
fn module_name(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let name = rel.to_string_lossy().replace('\\', "/");
    name.strip_suffix("/mod").unwrap_or(&name).to_string()
}

fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every path that follows `crate::` in `text`, as segment lists.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices("crate::") {
        let mut rest = &text[i + "crate::".len()..];
        let mut segs = Vec::new();
        loop {
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                for item in inner.split(',') {
                    let name = ident_at(item.trim());
                    if !name.is_empty() && name != "self" {
                        let mut p = segs.clone();
                        p.push(name.to_string());
                        out.push(p);
                    }
                }
                if inner.split(',').any(|i| i.trim() == "self") {
                    out.push(segs.clone());
                }
                break;
            }
            let name = ident_at(rest);
            if name.is_empty() {
                break;
            }
            segs.push(name.to_string());
            rest = &rest[name.len()..];
            match rest.strip_prefix("::") {
                Some(r) => rest = r,
                None => break,
            }
        }
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_name(&src, f)).collect();
    // The crate root's re-exports: `pub use a::b::{C, D};` → C, D come from `a/b`.
    let lib = strip_comments(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut reexports = BTreeMap::new();
    for stmt in lib.split(';') {
        let Some(body) = stmt.trim().strip_prefix("pub use ") else {
            continue;
        };
        let (path, names) = match body.find("::{") {
            Some(i) => (&body[..i], body[i + 3..].trim_end_matches('}').to_string()),
            None => match body.rfind("::") {
                Some(i) => (&body[..i], body[i + 2..].to_string()),
                None => continue,
            },
        };
        let module = path.replace("::", "/");
        for name in names.split(',') {
            let name = ident_at(name.trim());
            if !name.is_empty() && modules.contains(&module) {
                reexports.insert(name.to_string(), module.clone());
            }
        }
    }
    let mut g = Graph::new();
    for file in &files {
        let me = module_name(&src, file);
        if me == "lib" {
            continue;
        }
        let text = strip_comments(&std::fs::read_to_string(file).unwrap());
        let deps = g.entry(me.clone()).or_default();
        for path in crate_paths(&text) {
            let target = (1..=path.len())
                .rev()
                .map(|k| path[..k].join("/"))
                .find(|m| modules.contains(m))
                .or_else(|| reexports.get(&path[0]).cloned());
            if let Some(t) = target {
                // A folder's `mod.rs` only declares its modules: a path through it names one.
                if t != me && !modules.iter().any(|m| m.starts_with(&format!("{t}/"))) {
                    deps.insert(t);
                }
            }
        }
    }
    g
}

fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        n: &str,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            match state.get(d.as_str()).copied().unwrap_or(0) {
                1 => {
                    let start = stack.iter().position(|s| s == d).unwrap();
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(g, d, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(g, n, &mut state, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

#[test]
#[cfg_attr(miri, ignore = "reads the source tree (Miri isolates the file system)")]
fn runtime_modules_import_each_other_without_a_circle() {
    let g = graph();
    // The parser sees what it must: a few edges known to exist.
    assert!(
        g["local/heap"].contains("local/state"),
        "{:?}",
        g["local/heap"]
    );
    assert!(
        g["sync/heap"].contains("sync/thread"),
        "{:?}",
        g["sync/heap"]
    );
    assert!(g["local/weak"].contains("object/header"));
    if let Some(cycle) = find_cycle(&g) {
        panic!("import circle: {}", cycle.join(" -> "));
    }
}

#[test]
#[cfg_attr(miri, ignore = "reads the source tree (Miri isolates the file system)")]
fn the_object_layer_imports_nothing_above_it() {
    let g = graph();
    for (m, deps) in &g {
        if m.starts_with("object/") {
            for d in deps {
                assert!(
                    d.starts_with("object/") || d == "trace" || d == "shim",
                    "{m} imports {d}, above the object layer"
                );
            }
        }
    }
}
