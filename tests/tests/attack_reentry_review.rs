//! User code calling back into the runtime in Shared mode (`reap::sync`) (written by the
//! twenty-fifth session's adversarial review), with a
//! focus on the points where the calling thread holds something: a stopped world (a
//! collection's snapshot, a `gc` walk), a claimed collection (finalizers, weak callbacks,
//! reclaim `Drop`s, the unraisable hook, collection callbacks), a heap's gate (a death on a
//! thread not attached to the heap), a thread's exit.
//!
//! Two groups:
//! - `trace_*`: a hand-written `Trace` that calls the runtime. That breaks the trait's contract
//!   (an `unsafe impl`), so the promise is only "a clear panic or a harmless outcome, never a
//!   hang or UB". Before the review's fixes, nine of them hung: a call that stops the world
//!   (a walk, `collect`, `detached` on its way back) waited for the stop its own thread held.
//!   Now `collect` returns 0 there, the walks panic with a message naming the misuse, and
//!   `detached` runs its closure attached (`thread::holds_a_stop`). Those nine run natively in
//!   a child process (this binary re-run on that one test) with a timeout, so that a
//!   regression fails with "deadlock" instead of hanging the run (a hung snapshot would also
//!   keep `sync::Mutex`'s process-wide frozen count raised for every other test); under Miri,
//!   which cannot spawn processes, in place.
//! - `safe_*`: safe code only (derived `Trace`, `Drop`, finalizers, weak callbacks, hooks,
//!   callbacks), under the `within` watchdog.
//!
//! Natively: `cargo test -p reap-tests --test attack_reentry_review`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test attack_reentry_review`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use reap::sync::{CollectInfo, CollectPhase, Gc, Heap, Weak};
use reap::{Trace, Tracer};
use reap_tests::shared::{
    ends_clean, fin, fin_pair, hook_node, hooked, in_child_process, set_fin, settled_live, within,
    Log,
};

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Runs `f` under the `within` watchdog on a fresh heap with automatic collection off and an
/// unraisable hook that records; afterwards nothing was reported and nothing is left alive.
fn scenario(what: &str, f: impl FnOnce(&Heap) + Send + 'static) {
    within(what, move || {
        let heap = Heap::new();
        heap.disable();
        let reports = hooked(&heap);
        f(&heap);
        ends_clean(&heap, &reports);
    });
}

/// How long a scenario that hung before the fixes may take in its child process.
const HANG: Option<Duration> = Some(Duration::from_secs(30));

/// The message of a panic payload.
fn message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string payload>".into()
    }
}

/// What a probe's `Trace` runs, once, when armed.
type Action = Box<dyn FnOnce(&Probe) + Send>;

/// A node whose hand-written `Trace` runs a one-shot action the test gives it (breaking the
/// trait's contract on purpose: the action calls the runtime), then visits its one handle.
struct Probe {
    next: Mutex<Option<Gc<Probe>>>,
    action: Mutex<Option<Action>>,
    armed: AtomicBool,
    drops: Arc<AtomicUsize>,
}

// SAFETY: (test) visits the one handle it holds, through its lock, once per call; the armed
// action breaks the contract on purpose (that is what the tests examine).
unsafe impl Trace for Probe {
    fn trace(&self, tracer: &mut Tracer<'_>) {
        if self.armed.swap(false, SeqCst) {
            let f = self.action.lock().unwrap().take();
            if let Some(f) = f {
                f(self);
            }
        }
        self.next.trace(tracer);
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

fn probe(heap: &Heap, drops: &Arc<AtomicUsize>, next: Option<Gc<Probe>>) -> Gc<Probe> {
    heap.alloc(Probe {
        next: Mutex::new(next),
        action: Mutex::new(None),
        armed: AtomicBool::new(false),
        drops: drops.clone(),
    })
}

fn arm(p: &Gc<Probe>, f: impl FnOnce(&Probe) + Send + 'static) {
    *p.action.lock().unwrap() = Some(Box::new(f));
    p.armed.store(true, SeqCst);
}

/// A self-cycle probe armed with `f`, its only handle dropped (a possible root): the next
/// collection traces it and runs `f`, then frees it.
fn armed_self_cycle(
    heap: &Heap,
    drops: &Arc<AtomicUsize>,
    f: impl FnOnce(&Probe) + Send + 'static,
) {
    let p = probe(heap, drops, None);
    *p.next.lock().unwrap() = Some(p.clone());
    arm(&p, f);
    drop(p);
}

/// Records what the action saw.
type Seen = Arc<Mutex<Vec<String>>>;

fn seen_of(s: &Seen) -> Vec<String> {
    s.lock().unwrap().clone()
}

/// A garbage cycle a <-> b of finalized `Fin`s, a's finalizer running `f`.
fn fin_cycle(
    heap: &Heap,
    log: &Arc<Log>,
    f: impl FnOnce(&Gc<reap_tests::shared::Fin>) + Send + 'static,
) {
    let (a, _b) = fin_pair(heap, 1, 2, log);
    set_fin(&a, f);
}

// ---------------------------------------------------------------------------------------------
// A hand-written `Trace` calling the runtime while its thread holds a world stopped.

/// What `f` returned, or the message it panicked with: `Ok(..)` / `Err("..")`.
fn outcome<R: std::fmt::Debug>(f: impl FnOnce() -> R) -> String {
    format!(
        "{:?}",
        catch_unwind(AssertUnwindSafe(f)).map_err(|p| message(&*p))
    )
}

/// A garbage self-cycle whose `Trace` runs `action` (given the heap) once, collected: asserts
/// the collection freed it (and nothing else), and returns the heap and what `action` returned.
fn during_a_collection(action: impl FnOnce(&Heap) -> String + Send + 'static) -> (Heap, String) {
    let heap = Heap::new();
    heap.disable();
    let drops = Arc::new(AtomicUsize::new(0));
    let seen: Seen = Arc::default();
    let (h, s) = (heap.clone(), seen.clone());
    armed_self_cycle(&heap, &drops, move |_| {
        let r = action(&h);
        s.lock().unwrap().push(r);
    });
    assert_eq!(heap.collect(), 1);
    assert_eq!(drops.load(SeqCst), 1);
    assert_eq!(settled_live(&heap), 0);
    let mut seen = seen_of(&seen);
    assert_eq!(seen.len(), 1, "{seen:?}");
    (heap, seen.remove(0))
}

/// Asserts that `seen` is a panic of `Heap::{what}` naming the misuse.
fn assert_misuse(seen: &str, what: &str) {
    let expected =
        format!("Err(\"reap: Heap::{what} called while this thread holds a heap's world stopped");
    assert!(seen.starts_with(&expected), "{seen}");
}

/// Control: a `Trace` that collects during the collection tracing it gets 0 (the claim is
/// this thread's: `Nested`), and the outer collection frees the cycle.
#[test]
fn trace_collects_during_its_collection() {
    within("trace collects", || {
        let (_, seen) = during_a_collection(|h| outcome(|| h.collect()));
        assert_eq!(seen, "Ok(0)");
    });
}

/// `Heap::detached` from a `Trace` in a collection's snapshot runs its closure attached. (It
/// hung: `thread::detached` marked the thread detached, ran the closure, and on the way back
/// `reenter_attached` found the heap `stopping`, by this thread's own stop, and parked.)
#[test]
fn trace_detaches_during_its_collection() {
    in_child_process("trace_detaches_during_its_collection", HANG, || {
        let (heap, seen) = during_a_collection(|h| outcome(|| h.detached(|| 5)));
        assert_eq!(seen, "Ok(5)");
        assert_eq!(heap.collect(), 0, "the world runs again");
    });
}

/// `get_objects` from a `Trace` in a collection's snapshot panics, naming the misuse; the
/// `Trace` catches it, and the collection goes on. (It hung: `with_world_stopped` called
/// `stop_the_world`, which found `stopping` set, by this very thread, and parked "for the
/// other stopper".)
#[test]
fn trace_lists_objects_during_its_collection() {
    in_child_process("trace_lists_objects_during_its_collection", HANG, || {
        let (heap, seen) = during_a_collection(|h| outcome(|| h.get_objects().len()));
        assert_misuse(&seen, "get_objects");
        assert_eq!(heap.get_objects().len(), 0, "the walks work again");
    });
}

/// `freeze` from a `Trace` in a collection's snapshot panics as `get_objects` does (it hung
/// the same way), and freezes nothing.
#[test]
fn trace_freezes_during_its_collection() {
    in_child_process("trace_freezes_during_its_collection", HANG, || {
        let (heap, seen) = during_a_collection(|h| outcome(|| h.freeze()));
        assert_misuse(&seen, "freeze");
        assert_eq!(heap.get_freeze_count(), 0);
    });
}

/// `shutdown` from a `Trace` in a collection's snapshot panics (its `unfreeze` is a walk; it
/// hung there), and the heap goes on.
#[test]
fn trace_shuts_down_during_its_collection() {
    in_child_process("trace_shuts_down_during_its_collection", HANG, || {
        let (heap, seen) = during_a_collection(|h| outcome(|| h.shutdown()));
        assert_misuse(&seen, "unfreeze");
        assert_eq!(
            heap.shutdown().ok(),
            Some(0),
            "shut down normally afterwards"
        );
    });
}

/// A `Trace` of heap A's object uses heap B, to which the thread is attached too: B's
/// `collect` returns 0 at once (B's garbage waits for a later collection) and B's
/// `get_objects` panics, naming the misuse (before the fixes, with the "inside
/// Heap::detached" message: during A's pause the thread counts as detached from B). No hang;
/// B's cycle is freed by the next collection of B.
#[test]
fn trace_uses_another_heap_during_a_collection() {
    within("trace uses another heap", || {
        let a = Heap::new();
        let b = Heap::new();
        a.disable();
        b.disable();
        let drops = Arc::new(AtomicUsize::new(0));
        // B: a garbage self-cycle; the thread is attached to B.
        let bd = Arc::new(AtomicUsize::new(0));
        armed_self_cycle(&b, &bd, |_| {});
        let seen: Seen = Arc::default();
        let (bb, s) = (b.clone(), seen.clone());
        armed_self_cycle(&a, &drops, move |_| {
            let r = catch_unwind(AssertUnwindSafe(|| bb.collect()));
            s.lock()
                .unwrap()
                .push(format!("b.collect {:?}", r.map_err(|p| message(&*p))));
            let r = catch_unwind(AssertUnwindSafe(|| bb.get_objects().len()));
            s.lock()
                .unwrap()
                .push(format!("b.get_objects {:?}", r.map_err(|p| message(&*p))));
        });
        let n = a.collect();
        let seen = seen_of(&seen);
        assert_eq!(n, 1);
        assert_eq!(seen[0], "b.collect Ok(0)");
        assert!(
            seen[1].starts_with("b.get_objects Err(\"reap: Heap::get_objects called while this thread holds a heap's world stopped"),
            "{seen:?}"
        );
        assert_eq!(b.collect(), 1);
        assert_eq!(bd.load(SeqCst), 1);
        assert_eq!(settled_live(&a), 0);
        assert_eq!(settled_live(&b), 0);
    });
}

/// As above, but heap B is new to the thread: B's `collect` returns 0 without attaching. (It
/// hung: the first use attached the thread to B, B's collection ran, and its
/// `OthersDetached::new(B)` detached the thread from A, whose world this thread held stopped;
/// on the way back `reenter_attached(A)` found A stopping and parked on the thread's own
/// stop.)
#[test]
fn trace_collects_a_fresh_heap_during_a_collection() {
    in_child_process(
        "trace_collects_a_fresh_heap_during_a_collection",
        HANG,
        || {
            let b = thread::spawn(|| {
                let b = Heap::new();
                b.disable();
                b
            })
            .join()
            .unwrap();
            let bb = b.clone();
            let (_a, seen) = during_a_collection(move |_| outcome(|| bb.collect()));
            assert_eq!(seen, "Ok(0)");
            assert_eq!(
                b.attached_threads(),
                0,
                "B's collect did not attach this thread"
            );
            assert_eq!(b.collect(), 0);
        },
    );
}

/// `safepoint` and `alloc` from a `Trace` in a collection's snapshot (against the contract,
/// but guarded: the safe point neither drains nor parks, the allocation is a fresh object no
/// candidate reaches). The collection frees the cycle; the new object lives and dies normally.
#[test]
fn trace_allocates_and_calls_safepoint_during_its_collection() {
    within("trace allocates", || {
        let heap = Heap::new();
        heap.disable();
        let drops = Arc::new(AtomicUsize::new(0));
        let made: Arc<Mutex<Option<Gc<u64>>>> = Arc::default();
        let (h, m) = (heap.clone(), made.clone());
        armed_self_cycle(&heap, &drops, move |_| {
            h.safepoint();
            *m.lock().unwrap() = Some(h.alloc(77_u64));
            h.safepoint();
        });
        assert_eq!(heap.collect(), 1);
        assert_eq!(drops.load(SeqCst), 1);
        assert_eq!(**made.lock().unwrap().as_ref().unwrap(), 77);
        assert_eq!(heap.live_objects(), 1);
        drop(made.lock().unwrap().take());
        assert_eq!(settled_live(&heap), 0);
    });
}

/// `get_referents` (no stop of its own) from a `Trace` in a collection's snapshot, on the
/// probe's own successor in a garbage 2-cycle: the handles it makes and drops to candidates go
/// through the snapshot's held-back drops. The cycle is still freed, exactly once each.
#[test]
fn trace_gets_referents_during_its_collection() {
    scenario("trace get_referents", |heap| {
        let drops = Arc::new(AtomicUsize::new(0));
        let b = probe(heap, &drops, None);
        let a = probe(heap, &drops, Some(b.clone()));
        *b.next.lock().unwrap() = Some(a.clone());
        let seen: Seen = Arc::default();
        let (h, s) = (heap.clone(), seen.clone());
        arm(&a, move |me: &Probe| {
            let next = me.next.try_lock().ok().and_then(|g| g.clone());
            let n = next.map(|n| h.get_referents(&n).len());
            s.lock().unwrap().push(format!("referents {n:?}"));
        });
        drop((a, b));
        let mut n = heap.collect();
        for _ in 0..3 {
            n += heap.collect();
        }
        eprintln!("seen {:?}", seen_of(&seen));
        assert_eq!(n, 2, "the 2-cycle freed, once");
        assert_eq!(drops.load(SeqCst), 2);
    });
}

/// `Weak::new` and `upgrade` on a candidate from a `Trace` in a collection's snapshot.
#[test]
fn trace_makes_weak_references_during_its_collection() {
    scenario("trace weak", |heap| {
        let drops = Arc::new(AtomicUsize::new(0));
        let b = probe(heap, &drops, None);
        let a = probe(heap, &drops, Some(b.clone()));
        *b.next.lock().unwrap() = Some(a.clone());
        let weaks: Arc<Mutex<Vec<Weak<Probe>>>> = Arc::default();
        let w2 = weaks.clone();
        arm(&a, move |me: &Probe| {
            let next = me.next.try_lock().ok().and_then(|g| g.clone());
            if let Some(n) = next {
                let w = Weak::new(&n);
                let up = w.upgrade();
                assert!(up.is_some());
                drop(up);
                w2.lock().unwrap().push(w);
            }
        });
        drop((a, b));
        let mut n = 0;
        for _ in 0..4 {
            n += heap.collect();
        }
        assert_eq!(n, 2);
        assert_eq!(drops.load(SeqCst), 2);
        for w in weaks.lock().unwrap().iter() {
            assert!(w.upgrade().is_none());
        }
        weaks.lock().unwrap().clear();
    });
}

// A hand-written `Trace` calling the runtime from a `gc` walk (get_referrers).

/// Two live probes, `p` holding `target`, `p`'s `Trace` running `action` (given the heap and
/// `target`) once, inside `heap.get_referrers(&target)`: asserts the walk found `p`, then that
/// both are freed with their handles; returns what `action` returned.
fn during_get_referrers(
    action: impl FnOnce(&Heap, &Gc<Probe>) -> String + Send + 'static,
) -> String {
    let heap = Heap::new();
    heap.disable();
    let drops = Arc::new(AtomicUsize::new(0));
    let target = probe(&heap, &drops, None);
    let p = probe(&heap, &drops, Some(target.clone()));
    let seen: Seen = Arc::default();
    let (h, s, t) = (heap.clone(), seen.clone(), target.clone());
    arm(&p, move |_| {
        let r = action(&h, &t);
        s.lock().unwrap().push(r);
    });
    let found = heap.get_referrers(&target);
    assert_eq!(found.len(), 1);
    drop((found, p, target));
    assert_eq!(settled_live(&heap), 0);
    assert_eq!(drops.load(SeqCst), 2);
    let mut seen = seen_of(&seen);
    assert_eq!(seen.len(), 1, "{seen:?}");
    seen.remove(0)
}

/// Control: `get_referents` from a `Trace` in `get_referrers` returns (no stop of its own).
#[test]
fn trace_gets_referents_during_get_referrers() {
    within("trace get_referents in walk", || {
        let seen = during_get_referrers(|h, t| outcome(|| h.get_referents(t).len()));
        assert_eq!(seen, "Ok(0)");
    });
}

/// `collect` from a `Trace` in `get_referrers` returns 0. (It hung: the walk does not claim
/// the collection, so the claim succeeded and `stop_the_world` parked waiting for the walk's
/// stop, this thread's.)
#[test]
fn trace_collects_during_get_referrers() {
    in_child_process("trace_collects_during_get_referrers", HANG, || {
        assert_eq!(
            during_get_referrers(|h, _| outcome(|| h.collect())),
            "Ok(0)"
        );
    });
}

/// `get_referrers` from a `Trace` in `get_referrers` panics, naming the misuse (it hung as
/// `collect` did); the outer walk finishes.
#[test]
fn trace_walks_during_get_referrers() {
    in_child_process("trace_walks_during_get_referrers", HANG, || {
        let seen = during_get_referrers(|h, t| outcome(|| h.get_referrers(t).len()));
        assert_misuse(&seen, "get_referrers");
    });
}

/// `Heap::detached` from a `Trace` in `get_referrers` runs its closure attached (it hung as in
/// a collection: the walk holds the world stopped).
#[test]
fn trace_detaches_during_get_referrers() {
    in_child_process("trace_detaches_during_get_referrers", HANG, || {
        assert_eq!(
            during_get_referrers(|h, _| outcome(|| h.detached(|| 5))),
            "Ok(5)"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Safe user code (finalizers, Drop, weak callbacks, hooks, callbacks) calling back.

/// A finalizer of a garbage cycle (collection claimed, world running) joins, inside
/// `detached`, a thread that attaches and uses the whole surface: its `collect` gets 0 (busy)
/// and is served by one more collection of the collector; the walks run while the collector
/// waits detached.
#[test]
fn safe_finalizer_joins_a_thread_using_the_whole_surface() {
    scenario("finalizer joins surface thread", |heap| {
        let log = Log::new();
        let seen: Seen = Arc::default();
        let (h, s) = (heap.clone(), seen.clone());
        fin_cycle(heap, &log, move |_| {
            let h2 = h.clone();
            let s2 = s.clone();
            let t = thread::spawn(move || {
                let x = h2.alloc(5_u32);
                let objs = h2.get_objects().len();
                let refs = h2.get_referrers(&x).len();
                h2.freeze();
                let frozen = h2.get_freeze_count();
                h2.unfreeze();
                let c = h2.collect();
                h2.safepoint();
                s2.lock().unwrap().push(format!(
                    "objs {objs} refs {refs} frozen {frozen} collect {c}"
                ));
            });
            h.detached(|| t.join().unwrap());
        });
        let n = heap.collect();
        // The cycle's objects are untouchable by the walks (garbage of the running collection).
        assert_eq!(seen_of(&seen), ["objs 0 refs 0 frozen 0 collect 0"]);
        assert_eq!(n, 2);
        assert_eq!(log.fin(), 2);
        assert_eq!(log.drops(), 2);
    });
}

/// The same finalizer joins the thread *without* `detached` (the program's error: it blocks
/// while attached): the thread's `get_objects` cannot stop the world and panics with the
/// documented message after `DEFAULT_STOP_TIMEOUT` (5 s); no hang, and the cycle is freed.
#[test]
#[cfg_attr(miri, ignore = "waits the 5 s stop timeout")]
fn safe_finalizer_joins_a_walker_while_attached_gets_a_clear_panic() {
    scenario("finalizer joins walker attached", |heap| {
        let log = Log::new();
        let seen: Seen = Arc::default();
        let (h, s) = (heap.clone(), seen.clone());
        fin_cycle(heap, &log, move |_| {
            let h2 = h.clone();
            let t = thread::spawn(move || h2.get_objects().len());
            let r = t.join().map_err(|p| message(&*p));
            s.lock().unwrap().push(format!("{r:?}"));
        });
        assert_eq!(heap.collect(), 2);
        let seen = seen_of(&seen);
        assert_eq!(seen.len(), 1);
        assert!(seen[0].contains("could not stop the world"), "{seen:?}");
    });
}

/// A reclaim `Drop` (garbage values being dropped, collection claimed) spawns a thread that
/// collects and walks, joined inside `detached`; then calls `detached(|| collect())` (0) and
/// `get_referrers` on a live object.
#[test]
fn safe_reclaim_drop_joins_a_collector_and_walks() {
    scenario("reclaim drop joins collector", |heap| {
        let live = hook_node(heap, None);
        let holder = hook_node(heap, Some(live.clone()));
        let seen: Seen = Arc::default();
        let a = hook_node(heap, None);
        let b = hook_node(heap, Some(a.clone()));
        *a.other.lock().unwrap() = Some(b.clone());
        let (h, s, l) = (heap.clone(), seen.clone(), live.clone());
        *a.on_drop.lock().unwrap() = Some(Box::new(move |_| {
            let h2 = h.clone();
            let t = thread::spawn(move || (h2.collect(), h2.get_objects().len()));
            let (c, objs) = h.detached(|| t.join().unwrap());
            let inner = h.detached(|| h.collect());
            let refs = h.get_referrers(&l).len();
            s.lock().unwrap().push(format!(
                "child collect {c} objs {objs} inner {inner} refs {refs}"
            ));
        }));
        drop((a, b));
        let n = heap.collect();
        // live, holder (and the child's nothing): 2 listed objects; `holder` refers to `live`.
        assert_eq!(seen_of(&seen), ["child collect 0 objs 2 inner 0 refs 1"]);
        assert_eq!(n, 2);
        drop((live, holder));
    });
}

/// A finalizer on the refcount path, run inside the gate of a thread never attached to the
/// heap: it walks (attaching that thread, leaving the gate), collects another garbage cycle,
/// and joins a collecting thread inside `detached`.
#[test]
fn safe_gated_finalizer_walks_and_collects() {
    scenario("gated finalizer", |heap| {
        let log = Log::new();
        // Another garbage cycle, of Fin 10 <-> 11.
        drop(fin_pair(heap, 10, 11, &log));
        let seen: Seen = Arc::default();
        let x = fin(heap, 1, &log);
        let (h, s) = (heap.clone(), seen.clone());
        set_fin(&x, move |me| {
            let objs = h.get_objects().len();
            let refs = h.get_referrers(me).len();
            let c = h.collect();
            let h2 = h.clone();
            let t = thread::spawn(move || h2.collect());
            let c2 = h.detached(|| t.join().unwrap());
            s.lock()
                .unwrap()
                .push(format!("objs {objs} refs {refs} collect {c} child {c2}"));
        });
        // Merged (owner 0): the never-attached thread's drop runs the death, in the gate.
        let x = reap_tests::shared::merged(x);
        heap.detached(|| thread::spawn(move || drop(x)).join().unwrap());
        // objs: x (in its finalizer, count 1) and the cycle's 2.
        assert_eq!(seen_of(&seen), ["objs 3 refs 0 collect 2 child 0"]);
        assert_eq!(log.fin(), 3);
        assert_eq!(log.drops(), 3);
    });
}

/// The unraisable hook, called for a panicking reclaim `Drop`, calls back: `collect` (0,
/// nested), `get_objects`, a thread collecting inside `detached`, `freeze`/`unfreeze`, and
/// panics itself (printed, not propagated).
#[test]
fn safe_hook_reenters_from_a_reclaim_panic() {
    within("hook reenters", || {
        let heap = Heap::new();
        heap.disable();
        let seen: Seen = Arc::default();
        let (h, s) = (heap.clone(), seen.clone());
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        heap.set_unraisable_hook(Some(Arc::new(move |u: &reap::Unraisable| {
            if c2.fetch_add(1, SeqCst) > 0 {
                return;
            }
            let c = h.collect();
            let objs = h.get_objects().len();
            let h2 = h.clone();
            let t = thread::spawn(move || h2.collect());
            let child = h.detached(|| t.join().unwrap());
            h.freeze();
            let frozen = h.get_freeze_count();
            h.unfreeze();
            s.lock().unwrap().push(format!(
                "{:?} {} collect {c} objs {objs} child {child} frozen {frozen}",
                u.kind, u.message
            ));
            panic!("the hook panics too");
        })));
        let keep = hook_node(&heap, None);
        let a = hook_node(&heap, None);
        let b = hook_node(&heap, Some(a.clone()));
        *a.other.lock().unwrap() = Some(b.clone());
        *a.on_drop.lock().unwrap() = Some(Box::new(|_| panic!("reclaim drop panics")));
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        assert_eq!(
            seen_of(&seen),
            ["Drop reclaim drop panics collect 0 objs 1 child 0 frozen 1"]
        );
        heap.set_unraisable_hook(None);
        drop(keep);
        assert_eq!(settled_live(&heap), 0);
    });
}

/// Two heaps, nested on one thread: a finalizer of A's garbage collects B; a finalizer of B's
/// garbage walks A, collects A (0: A's collection is this thread's) and B (0), and walks B.
#[test]
fn safe_cross_heap_finalizers_nest() {
    within("cross heap", || {
        let a = Heap::new();
        let b = Heap::new();
        a.disable();
        b.disable();
        let ra = hooked(&a);
        let rb = hooked(&b);
        let (la, lb) = (Log::new(), Log::new());
        let seen: Seen = Arc::default();
        let (aa, bb, s) = (a.clone(), b.clone(), seen.clone());
        fin_cycle(&b, &lb, move |_| {
            let objs = aa.get_objects().len();
            let ca = aa.collect();
            let cb = bb.collect();
            let objs_b = bb.get_objects().len();
            s.lock().unwrap().push(format!(
                "in B: A objs {objs} A collect {ca} B collect {cb} B objs {objs_b}"
            ));
        });
        let (bb, s) = (b.clone(), seen.clone());
        fin_cycle(&a, &la, move |_| {
            let cb = bb.collect();
            s.lock().unwrap().push(format!("in A: B collect {cb}"));
        });
        assert_eq!(a.collect(), 2);
        assert_eq!(
            seen_of(&seen),
            [
                "in B: A objs 0 A collect 0 B collect 0 B objs 0",
                "in A: B collect 2"
            ]
        );
        ends_clean(&a, &ra);
        ends_clean(&b, &rb);
    });
}

thread_local! {
    static KEPT: std::cell::RefCell<Option<Gc<reap_tests::shared::HookNode>>> =
        const { std::cell::RefCell::new(None) };
}

/// A `Drop` run at thread exit (a thread-local's destructor drops the last handle) calls back:
/// `collect` (0: exiting), `detached` (runs), `get_objects` and `freeze` (clear panics), `alloc`
/// (works, unattached), `Weak::new` and upgrade.
#[test]
fn safe_drop_at_thread_exit_reenters() {
    scenario("exit drop", |heap| {
        let log = Log::new();
        let (h, l) = (heap.clone(), log.clone());
        thread::spawn(move || {
            let n = hook_node(&h, None);
            let h2 = h.clone();
            *n.on_drop.lock().unwrap() = Some(Box::new(move |_| {
                let try_ = |what: &str, f: &dyn Fn() -> String| {
                    let r = catch_unwind(AssertUnwindSafe(f));
                    l.see(format!(
                        "{what}: {}",
                        match r {
                            Ok(v) => v,
                            Err(p) => format!("panic {}", message(&*p)),
                        }
                    ));
                };
                try_("collect", &|| h2.collect().to_string());
                try_("detached", &|| h2.detached(|| 5).to_string());
                try_("get_objects", &|| h2.get_objects().len().to_string());
                try_("freeze", &|| {
                    h2.freeze();
                    "ok".into()
                });
                try_("alloc+weak", &|| {
                    let g = h2.alloc(9_u32);
                    let w = Weak::new(&g);
                    let up = w.upgrade().map(|x| *x);
                    drop(g);
                    format!("{up:?} {:?}", w.upgrade().map(|x| *x))
                });
            }));
            KEPT.with(|k| *k.borrow_mut() = Some(n));
        })
        .join()
        .unwrap();
        let seen = log.seen();
        eprintln!("{seen:#?}");
        assert_eq!(seen.len(), 5);
        assert_eq!(seen[0], "collect: 0");
        assert_eq!(seen[1], "detached: 5");
        // Whether the runtime's thread data is gone yet when this thread-local dies is up to
        // the order of thread-local destructors: either the walk works (still attached), or
        // it panics clearly.
        assert!(
            seen[2] == "get_objects: 0"
                || seen[2].starts_with("get_objects: panic reap: Heap::get_objects called on a thread inside Heap::detached (or exiting)"),
            "{seen:?}"
        );
        assert!(
            seen[3] == "freeze: ok" || seen[3].starts_with("freeze: panic reap: Heap::freeze"),
            "{seen:?}"
        );
        assert_eq!(seen[4], "alloc+weak: Some(9) None");
    });
}

/// A refcount-path finalizer stores a handle to itself into a garbage 2-cycle and collects:
/// the cycle is freed inside the finalizer, its reclaim drops the only stored handle, so the
/// finalized object is not resurrected and dies once.
#[test]
fn safe_finalizer_feeds_a_garbage_cycle_then_collects() {
    scenario("finalizer feeds cycle", |heap| {
        let log = Log::new();
        let x = fin(heap, 1, &log);
        let seen: Seen = Arc::default();
        let (h, s, l) = (heap.clone(), seen.clone(), log.clone());
        set_fin(&x, move |me| {
            let (y, z) = fin_pair(&h, 2, 3, &l);
            // y also holds a handle to the finalizing object (through z's slot: z -> y, y -> z;
            // add x under a third node w held by y).
            let w = fin(&h, 4, &l);
            *w.next.lock().unwrap() = Some(me.clone());
            let w2 = w.clone();
            *y.on_drop.lock().unwrap() = Some(Box::new(move || drop(w2)));
            drop(w);
            drop((y, z));
            let c = h.collect();
            s.lock()
                .unwrap()
                .push(format!("collect {c} count {}", Gc::strong_count(me)));
        });
        drop(x);
        let mut more = 0;
        for _ in 0..3 {
            more += heap.collect();
        }
        eprintln!(
            "seen {:?} more {more} events {:?}",
            seen_of(&seen),
            log.events()
        );
        assert_eq!(log.drops(), 4);
        assert_eq!(log.fin(), 4, "each finalized once");
    });
}

/// A queued object (owned by another attached thread, detached meanwhile; its last reference
/// dropped by this thread) dies in this thread's collection's `settle_dead` (after pause 1
/// merged the owner's queue, the claim held): its `Drop` walks, collects (0) and joins a thread
/// that collects inside `detached`.
#[test]
fn safe_settled_death_reenters() {
    scenario("settled death", |heap| {
        let seen: Seen = Arc::default();
        let (obj_tx, obj_rx) = mpsc::channel();
        let (end_tx, end_rx) = mpsc::channel::<()>();
        let (h, s) = (heap.clone(), seen.clone());
        let owner = thread::spawn(move || {
            let n = hook_node(&h, None);
            let h3 = h.clone();
            *n.on_drop.lock().unwrap() = Some(Box::new(move |_| {
                let objs = h3.get_objects().len();
                let c = h3.collect();
                let h2 = h3.clone();
                let t = thread::spawn(move || h2.collect());
                let child = h3.detached(|| t.join().unwrap());
                s.lock().unwrap().push(format!(
                    "objs {objs} collect {c} child {child} on {:?}",
                    thread::current().name()
                ));
            }));
            // Sent from inside the detached section, so that the drop below always finds the
            // owner detached (sent before it, the drop could queue the object while the owner
            // was still attached, and the owner's safe point on its way in would run the
            // death).
            h.detached(move || {
                obj_tx.send(n).unwrap();
                end_rx.recv().unwrap()
            });
        });
        let n = obj_rx.recv().unwrap();
        // The owner is detached: this foreign drop queues the object to it.
        drop(n);
        assert_eq!(seen_of(&seen).len(), 0, "queued, not dead yet");
        heap.collect();
        let seen2 = seen_of(&seen);
        eprintln!("{seen2:?}");
        end_tx.send(()).unwrap();
        heap.detached(|| owner.join().unwrap());
        assert_eq!(seen2.len(), 1);
        assert!(
            seen2[0].starts_with("objs 0 collect 0 child 0"),
            "{seen2:?}"
        );
    });
}

/// A collection callback (stop phase) joins, inside `detached`, a thread that collects: it is
/// answered 0 and served by one more collection of the collector; the callback runs for both
/// collections, and nothing loops.
#[test]
fn safe_callback_joins_a_collector() {
    scenario("callback joins collector", |heap| {
        let log = Log::new();
        let phases: Arc<Mutex<Vec<String>>> = Arc::default();
        let (h, p) = (heap.clone(), phases.clone());
        let id =
            heap.add_collect_callback(Arc::new(move |phase: CollectPhase, info: &CollectInfo| {
                if phase == CollectPhase::Stop {
                    let h2 = h.clone();
                    let t = thread::spawn(move || {
                        let g = h2.alloc(1_u8);
                        drop(g);
                        h2.collect()
                    });
                    let c = h.detached(|| t.join().unwrap());
                    p.lock()
                        .unwrap()
                        .push(format!("stop {} child {c}", info.collected));
                }
            }));
        fin_cycle(heap, &log, |_| {});
        let n = heap.collect();
        assert!(heap.remove_collect_callback(id));
        let phases = phases.lock().unwrap().clone();
        eprintln!("{phases:?}");
        assert_eq!(n, 2);
        assert_eq!(phases[0], "stop 2 child 0");
        assert!(phases.len() <= 2, "{phases:?}");
    });
}

/// A weak callback of the collection (weak phase, claim held) drops the last `Heap` handle
/// the test passes it, and the last handles of a second cycle, then collects through a handle
/// it keeps (0) and detaches.
#[test]
fn safe_weak_callback_drops_heap_handles_and_reenters() {
    scenario("weak callback heap drop", |heap| {
        let log = Log::new();
        let (a, b) = fin_pair(heap, 1, 2, &log);
        let seen: Seen = Arc::default();
        let extra = Mutex::new(Some(heap.clone()));
        let keep = heap.clone();
        let s = seen.clone();
        let _w = Weak::with_callback(&a, move |_| {
            drop(extra.lock().unwrap().take());
            let c = keep.collect();
            let d = keep.detached(|| keep.collect());
            s.lock().unwrap().push(format!("collect {c} detached {d}"));
        });
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        assert_eq!(seen_of(&seen), ["collect 0 detached 0"]);
        drop(_w);
    });
}
