//! Randomized end-to-end test on the real heap (SEMANTICS 2–4): random sequences of allocate /
//! link / unlink / drop root / weak reference with callback / drop weak reference / upgrade /
//! resurrecting finalizer / collect(g), checked after every step against a model of what the
//! program can reach.
//!
//! After every step:
//! - nothing the program can reach was finalized-and-freed: every reachable node's value is
//!   intact and its edges are the ones the model recorded;
//! - no node was dropped (freed) while reachable, and none twice;
//! - each finalizer ran at most once; each callback at most once, and only while its weak
//!   reference was held; a weak reference whose referent was freed while it was held has had
//!   its callback run, and reads dead;
//! - after `collect(2)`, every node the program cannot reach is freed (collection is complete).
//!
//! At the end the heap is dropped: every node was dropped exactly once.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use reap::{Finalize, Gc, Heap, Trace, Weak};
use reap_tests::Rng;

#[derive(Default)]
struct Events {
    finalized: Vec<u32>,
    dropped: Vec<u32>,
    fired: Vec<u32>,
}

type Shared = Rc<RefCell<Events>>;

#[derive(Trace, Default)]
struct Saved(RefCell<Vec<Gc<Node>>>);

#[derive(Trace)]
#[reap(finalize)]
struct Node {
    id: u32,
    resurrect: bool,
    edges: RefCell<Vec<Gc<Node>>>,
    saved: Gc<Saved>,
    #[reap(skip)]
    events: Shared,
}

impl Finalize for Node {
    fn finalize(this: &Gc<Self>) {
        this.events.borrow_mut().finalized.push(this.id);
        if this.resurrect {
            this.saved.0.borrow_mut().push(this.clone());
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.events.borrow_mut().dropped.push(self.id);
    }
}

struct HeldWeak {
    weak: Weak<Node>,
    target: u32,
    id: u32,
}

/// Everything reachable from the roots and the saved list, by id, with a handle to each.
fn reachable(roots: &[Gc<Node>], saved: &Gc<Saved>) -> BTreeMap<u32, Gc<Node>> {
    let mut seen = BTreeMap::new();
    let mut stack: Vec<Gc<Node>> = roots.to_vec();
    stack.extend(saved.0.borrow().iter().cloned());
    while let Some(n) = stack.pop() {
        if seen.contains_key(&n.id) {
            continue;
        }
        stack.extend(n.edges.borrow().iter().cloned());
        seen.insert(n.id, n);
    }
    seen
}

fn run_sequence(seed: u64, steps: usize) {
    let mut rng = Rng(seed | 1);
    let heap = Heap::new();
    // Small thresholds so automatic collections happen inside the sequence too.
    heap.set_threshold(1 + rng.below(20), 1 + rng.below(4), 1 + rng.below(4));
    let events: Shared = Rc::default();
    let saved = heap.alloc(Saved::default());
    let mut roots: Vec<Gc<Node>> = Vec::new();
    let mut weaks: Vec<HeldWeak> = Vec::new();
    let mut edges: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    let mut next_id = 0_u32;
    let mut next_weak = 0_u32;
    // Weak references the program dropped, with whether their callback had run by then.
    let mut dropped_weaks: BTreeMap<u32, bool> = BTreeMap::new();
    let mut log = Vec::new();

    for step in 0..steps {
        let live = reachable(&roots, &saved);
        let ids: Vec<u32> = live.keys().copied().collect();
        let op = rng.below(100);
        let desc;
        if op < 25 || ids.is_empty() {
            let n = heap.alloc(Node {
                id: next_id,
                resurrect: rng.below(5) == 0,
                edges: RefCell::new(Vec::new()),
                saved: saved.clone(),
                events: events.clone(),
            });
            edges.insert(next_id, Vec::new());
            desc = format!("alloc {next_id}");
            next_id += 1;
            roots.push(n);
        } else if op < 50 {
            let a = &live[&ids[rng.below(ids.len())]];
            let b = &live[&ids[rng.below(ids.len())]];
            a.edges.borrow_mut().push(b.clone());
            edges.get_mut(&a.id).unwrap().push(b.id);
            desc = format!("link {} -> {}", a.id, b.id);
        } else if op < 60 {
            let a = &live[&ids[rng.below(ids.len())]];
            let mut e = a.edges.borrow_mut();
            if e.is_empty() {
                desc = "unlink (none)".into();
            } else {
                let i = rng.below(e.len());
                let removed = e.remove(i);
                edges.get_mut(&a.id).unwrap().remove(i);
                desc = format!("unlink {} -> {}", a.id, removed.id);
                drop(e);
                drop(removed);
            }
        } else if op < 72 {
            if roots.is_empty() {
                desc = "drop root (none)".into();
            } else {
                let r = roots.swap_remove(rng.below(roots.len()));
                desc = format!("drop root {}", r.id);
                drop(live);
                drop(r);
                check(
                    &heap,
                    &roots,
                    &saved,
                    &edges,
                    &events,
                    &weaks,
                    &dropped_weaks,
                    step,
                    &log,
                );
                log.push(desc);
                continue;
            }
        } else if op < 80 {
            let a = &live[&ids[rng.below(ids.len())]];
            let wid = next_weak;
            next_weak += 1;
            let ev = events.clone();
            let weak = if rng.below(3) == 0 {
                Weak::new(a)
            } else {
                Weak::with_untraced_callback(a, move |w: &Weak<Node>| {
                    assert!(
                        w.upgrade().is_none(),
                        "a callback sees its weak reference dead"
                    );
                    ev.borrow_mut().fired.push(wid);
                })
            };
            weaks.push(HeldWeak {
                weak,
                target: a.id,
                id: wid,
            });
            desc = format!("weak {wid} -> {}", a.id);
        } else if op < 85 {
            if weaks.is_empty() {
                desc = "drop weak (none)".into();
            } else {
                let w = weaks.swap_remove(rng.below(weaks.len()));
                let had_fired = events.borrow().fired.contains(&w.id);
                dropped_weaks.insert(w.id, had_fired);
                desc = format!("drop weak {}", w.id);
            }
        } else if op < 90 {
            // Upgrading may rescue a node that is garbage but not yet collected.
            if weaks.is_empty() {
                desc = "upgrade (none)".into();
            } else {
                let w = &weaks[rng.below(weaks.len())];
                match w.weak.upgrade() {
                    Some(n) => {
                        assert_eq!(n.id, w.target);
                        desc = format!("upgrade {} -> root {}", w.id, n.id);
                        roots.push(n);
                    }
                    None => desc = format!("upgrade {} -> dead", w.id),
                }
            }
        } else {
            let g = rng.below(3);
            drop(live);
            let n = heap.collect(g);
            desc = format!("collect({g}) = {n}");
            log.push(desc);
            check(
                &heap,
                &roots,
                &saved,
                &edges,
                &events,
                &weaks,
                &dropped_weaks,
                step,
                &log,
            );
            if g == 2 {
                // Complete: everything unreachable is gone (resurrected nodes are reachable
                // through the saved list).
                let live = reachable(&roots, &saved);
                let dropped: BTreeSet<u32> = events.borrow().dropped.iter().copied().collect();
                for id in 0..next_id {
                    assert!(
                        live.contains_key(&id) || dropped.contains(&id),
                        "seed {seed}: node {id} unreachable but alive after collect(2); {log:#?}"
                    );
                }
            }
            continue;
        }
        drop(live);
        log.push(desc);
        check(
            &heap,
            &roots,
            &saved,
            &edges,
            &events,
            &weaks,
            &dropped_weaks,
            step,
            &log,
        );
    }

    drop(roots);
    drop(weaks);
    drop(saved);
    drop(heap);
    let ev = events.borrow();
    let mut dropped = ev.dropped.clone();
    dropped.sort_unstable();
    assert_eq!(
        dropped,
        (0..next_id).collect::<Vec<_>>(),
        "seed {seed}: every node dropped exactly once at shutdown"
    );
}

#[allow(clippy::too_many_arguments)]
fn check(
    heap: &Heap,
    roots: &[Gc<Node>],
    saved: &Gc<Saved>,
    edges: &BTreeMap<u32, Vec<u32>>,
    events: &Shared,
    weaks: &[HeldWeak],
    dropped_weaks: &BTreeMap<u32, bool>,
    step: usize,
    log: &[String],
) {
    let live = reachable(roots, saved);
    let ev = events.borrow();
    let dropped: BTreeSet<u32> = ev.dropped.iter().copied().collect();
    assert_eq!(
        dropped.len(),
        ev.dropped.len(),
        "step {step}: a node dropped twice; {log:#?}"
    );
    for (id, n) in &live {
        assert!(
            !dropped.contains(id),
            "step {step}: reachable node {id} was freed; {log:#?}"
        );
        let real: Vec<u32> = n.edges.borrow().iter().map(|e| e.id).collect();
        assert_eq!(
            &real, &edges[id],
            "step {step}: edges of {id} changed; {log:#?}"
        );
    }
    let mut fin = ev.finalized.clone();
    fin.sort_unstable();
    fin.dedup();
    assert_eq!(
        fin.len(),
        ev.finalized.len(),
        "step {step}: a finalizer ran twice; {log:#?}"
    );
    let mut fired = ev.fired.clone();
    fired.sort_unstable();
    fired.dedup();
    assert_eq!(
        fired.len(),
        ev.fired.len(),
        "step {step}: a callback ran twice; {log:#?}"
    );
    for w in weaks {
        if dropped.contains(&w.target) {
            assert!(
                w.weak.upgrade().is_none(),
                "step {step}: weak {} reads a freed node",
                w.id
            );
            if w.weak.has_callback() {
                panic!(
                    "step {step}: weak {}'s referent was freed, callback not run",
                    w.id
                );
            }
        }
    }
    for id in &ev.fired {
        assert!(
            dropped_weaks.get(id) != Some(&false),
            "step {step}: callback of weak {id} ran after the weak reference was dropped"
        );
    }
    let _ = heap;
}

#[test]
fn random_sequences_match_the_model() {
    let (cases, steps) = if cfg!(miri) { (6, 40) } else { (2000, 80) };
    for case in 0..cases {
        run_sequence(0x5DEE_CE66_D1CE_u64.wrapping_mul(case + 1), steps);
    }
}
