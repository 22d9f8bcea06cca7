//! Adversarial tests of the owner's lock-free weak upgrade (`sync::weak::owner_upgrade`, commit
//! 007208f) and of what its soundness argument rests on: the per-thread slab (remote frees,
//! slabs handed to the next attaching thread), the one-entry `(heap, state)` cache of the
//! thread-local `Hot`, thread exit, resurrection, and the merge of queued objects.
//!
//! Each test asserts outcomes (what `upgrade` returned, finalizers and drops run exactly once,
//! strong counts of objects that reused a dead referent's block, no live object left), and
//! runs natively and under Miri (`MIRIFLAGS=-Zmiri-strict-provenance cargo +nightly miri test
//! -p reap-tests --test adversarial_owner_upgrade`), whose data-race detector checks the
//! unlocked `counts` load against frees and allocations on other threads.
//!
//! Thread-local destructors cannot assert (a panic there aborts the process): they record what
//! they saw, and the test asserts it after `join`.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Gc, Heap, Weak, WeakRefObj};
use reap::{Trace, UnraisableKind};
use reap_tests::shared::{fin, reps, set_fin, Fin, Log};

/// Size of a slab chunk (the runtime's `shared_slab::CHUNK`): a slab block's chunk is its
/// address rounded down to this.
const CHUNK: usize = 64 * 1024;

fn chunk_of<T: ?Sized>(g: &Gc<T>) -> usize {
    (Gc::as_ptr(g) as *const u8 as usize) & !(CHUNK - 1)
}

fn addr<T: ?Sized>(g: &Gc<T>) -> usize {
    Gc::as_ptr(g) as *const u8 as usize
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Allocates with `make` on the calling thread until an object lands at `target` (a dead
/// object's block, expected back in this thread's slab); returns it, with the others made on
/// the way.
fn alloc_into<T: ?Sized>(target: usize, mut make: impl FnMut() -> Gc<T>) -> (Gc<T>, Vec<Gc<T>>) {
    let mut others = Vec::new();
    loop {
        let g = make();
        if addr(&g) == target {
            return (g, others);
        }
        others.push(g);
        assert!(
            others.len() < reps(100_000, 2_000),
            "the freed block was never reused"
        );
    }
}

/// Gives up the calling thread's (the owner's) only local reference to `g` after another
/// thread took one: the count is merged, and the last drop runs the death where it happens.
fn merged<T: ?Sized + Send + Sync + 'static>(g: Gc<T>) -> Gc<T> {
    let c = thread::scope(|s| s.spawn(|| g.clone()).join().unwrap());
    drop(g);
    c
}

/// Runs closures when dropped (a thread-local's destructor).
#[derive(Default)]
struct OnExit(Vec<Box<dyn FnOnce()>>);

impl Drop for OnExit {
    fn drop(&mut self) {
        for f in std::mem::take(&mut self.0) {
            f();
        }
    }
}

thread_local! {
    /// Touched before the thread uses a heap: destroyed after the runtime's thread-local.
    static EARLY: RefCell<OnExit> = const { RefCell::new(OnExit(Vec::new())) };
    /// Touched after: destroyed before the runtime's thread-local.
    static LATE: RefCell<OnExit> = const { RefCell::new(OnExit(Vec::new())) };
}

// ---------------------------------------------------------------------------------------------
// Blocks reused on the owner.

/// The referent dies on another thread and its block comes back to the owner's slab, where a
/// weak-reference object (another type of the same size class, made by `Weak::new` on another
/// referent) takes it: the old weak reference upgrades to `None`, and the new weak-reference
/// object's count and its own referent are untouched.
#[test]
fn referent_block_reused_by_a_weak_reference_object() {
    // A value the size of a `WeakRefObj`, so both share a size class.
    #[derive(Trace)]
    struct Same {
        #[reap(skip)]
        _pad: [u64; std::mem::size_of::<WeakRefObj>() / 8],
    }
    assert_eq!(std::mem::size_of::<WeakRefObj>() % 8, 0);
    let heap = Heap::new();
    let r = heap.alloc(Same {
        _pad: [7; std::mem::size_of::<WeakRefObj>() / 8],
    });
    let w = Weak::new(&r);
    let at = addr(&r) - 32; // header
    let r = merged(r);
    thread::spawn(move || drop(r)).join().unwrap();
    assert!(!w.is_alive());
    // New weak references (each to its own new referent) until one's object takes the block.
    let mut keep = Vec::new();
    let found = loop {
        let t = heap.alloc(5_u32);
        let wt = Weak::new(&t);
        let obj = Weak::as_object(&wt);
        let hit = addr(&obj) - 32 == at;
        keep.push((t, wt));
        if hit {
            break obj;
        }
        assert!(keep.len() < reps(100_000, 2_000), "block never reused");
    };
    assert!(w.upgrade().is_none());
    // `found` + the `Weak` in `keep`.
    assert_eq!(Gc::strong_count(&found), 2);
    let (t, wt) = keep.last().unwrap();
    assert_eq!(*wt.upgrade().unwrap(), 5);
    assert_eq!(Gc::strong_count(t), 1);
    drop((found, keep));
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// A weak reference to a weak-reference object (`Weak<WeakRefObj>`): upgraded on the owner
/// while alive; after the inner weak-reference object dies (on another thread) and its block
/// is reused by an object of this thread, `None`.
#[test]
fn weak_to_a_weak_reference_object_whose_block_is_reused() {
    let heap = Heap::new();
    let log = Log::new();
    let target = fin(&heap, 1, &log);
    let inner = Weak::new(&target);
    let inner_obj = Weak::as_object(&inner);
    let outer: Weak<WeakRefObj> = Weak::new(&inner_obj);
    for _ in 0..3 {
        let o = outer
            .upgrade()
            .expect("the inner weak-reference object is alive");
        assert!(Gc::ptr_eq(&o, &inner_obj));
    }
    let at = addr(&inner_obj);
    // The owner's handles go; another thread's is the last.
    let other = merged(inner_obj);
    drop(inner);
    assert!(outer.upgrade().is_some());
    thread::spawn(move || drop(other)).join().unwrap();
    assert!(outer.upgrade().is_none());
    // Another weak-reference object of this thread takes the block.
    let mut keep = Vec::new();
    let found = loop {
        let t = heap.alloc(1_u8);
        let wt = Weak::new(&t);
        let obj = Weak::as_object(&wt);
        let hit = addr(&obj) == at;
        keep.push((t, wt));
        if hit {
            break obj;
        }
        assert!(keep.len() < reps(100_000, 2_000), "block never reused");
    };
    assert!(outer.upgrade().is_none());
    assert_eq!(Gc::strong_count(&found), 2);
    // The target itself still upgrades through its new shared weak reference.
    assert_eq!(Weak::new(&target).upgrade().unwrap().id, 1);
    drop((found, keep, outer, target));
    assert_eq!((log.fin(), log.drops()), (1, 1));
    assert_eq!(heap.live_objects(), 0);
}

/// Objects of several types sharing one size class, each weakly referenced, die in turn on
/// other threads and their blocks are reused by the owner for the other types: every old weak
/// reference reads `None`, every new object keeps count 1.
#[test]
fn size_class_shared_by_several_types() {
    #[derive(Trace)]
    struct A(
        #[reap(skip)]
        #[allow(dead_code)]
        u64,
    );
    #[derive(Trace)]
    struct B(#[reap(skip)] [u32; 2]);
    #[derive(Trace)]
    struct C(#[reap(skip)] (u16, u16, u32));
    let heap = Heap::new();
    for round in 0..reps(20, 2) {
        let a = heap.alloc(A(round as u64));
        let wa = Weak::new(&a);
        let at = addr(&a);
        let a = merged(a);
        thread::spawn(move || drop(a)).join().unwrap();
        let (b, bs) = alloc_into(at, || heap.alloc(B([1, 2])));
        assert!(wa.upgrade().is_none());
        assert_eq!(Gc::strong_count(&b), 1);
        let wb = Weak::new(&b);
        assert_eq!(wb.upgrade().unwrap().0, [1, 2]);
        let b = merged(b);
        thread::spawn(move || drop(b)).join().unwrap();
        let (c, cs) = alloc_into(at, || heap.alloc(C((3, 4, 5))));
        assert!(wa.upgrade().is_none());
        assert!(wb.upgrade().is_none());
        assert_eq!(Gc::strong_count(&c), 1);
        let wc = Weak::new(&c);
        assert_eq!(wc.upgrade().unwrap().0, (3, 4, 5));
        drop((c, bs, cs));
        assert!(wc.upgrade().is_none());
    }
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Slabs handed over at thread exit.

/// A thread allocates a weakly referenced object and exits; a new thread attaches and takes
/// its slab over. The object (still owned by the exited thread's id) upgrades there (`Some`,
/// counted right); then it dies, its block comes back to the adopted slab, the adopter
/// allocates into it, and the upgrade is `None`.
#[test]
fn adopted_slab_upgrade_of_exited_creators_object_then_reuse() {
    let heap = Heap::new();
    let log = Log::new();
    heap.safepoint(); // this thread has its own slab
    let (h, l) = (heap.clone(), log.clone());
    let (r, w) = thread::spawn(move || {
        let r = fin(&h, 1, &l);
        let w = Weak::new(&r);
        (r, w)
    })
    .join()
    .unwrap();
    let at = addr(&r);
    let (to_y, from_main) = mpsc::channel::<Option<Gc<Fin>>>();
    let (to_main, from_y) = mpsc::channel::<&'static str>();
    let (h, l) = (heap.clone(), log.clone());
    let w2 = w.clone();
    let y = thread::spawn(move || {
        // Attach: this thread takes the exited thread's slab.
        let probe = fin(&h, 2, &l);
        let adopted = chunk_of(&probe) == at & !(CHUNK - 1);
        drop(probe);
        let s = w2.upgrade().expect("alive");
        assert_eq!(s.id, 1);
        assert_eq!(Gc::strong_count(&s), 2);
        drop(s);
        to_main.send("upgraded").unwrap();
        // Wait for the death on the main thread.
        assert!(from_main.recv().unwrap().is_none());
        assert!(w2.upgrade().is_none());
        let (n, others) = alloc_into(at, || fin(&h, 3, &l));
        let none = w2.upgrade().is_none();
        let count = Gc::strong_count(&n);
        drop((n, others));
        (adopted, none, count)
    });
    assert_eq!(from_y.recv().unwrap(), "upgraded");
    drop(r); // the owner exited: this thread merges and runs the death
    assert_eq!((log.fin(), log.drops()), (2, 2), "ids 2 and 1");
    to_y.send(None).unwrap();
    let (adopted, none, count) = y.join().unwrap();
    assert!(
        adopted,
        "precondition: the new thread took over the exited thread's slab"
    );
    assert!(none, "upgrade after the block was reused by the adopter");
    assert_eq!(count, 1);
    assert!(w.upgrade().is_none());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// The adopter of an exited thread's slab runs the death of an object in that slab (so its
/// finalizer's temporary reference makes the adopter the owner of a block of its own slab:
/// the lock-free path) and the finalizer resurrects the object through a weak upgrade. The
/// object lives on, finalized once; its next death drops it once and clears the weak reference.
#[test]
fn adopter_resurrects_through_owner_upgrade_in_finalizer() {
    let heap = Heap::new();
    let log = Log::new();
    heap.safepoint();
    let slot: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
    let (h, l) = (heap.clone(), log.clone());
    let (r, w) = thread::spawn(move || {
        let r = fin(&h, 1, &l);
        let w = Weak::new(&r);
        (r, w)
    })
    .join()
    .unwrap();
    let (w2, s2) = (w.clone(), slot.clone());
    let l2 = log.clone();
    set_fin(&r, move |_| {
        let up = w2.upgrade();
        l2.see(format!("fin upgrade some={}", up.is_some()));
        *s2.lock().unwrap() = up;
    });
    let at = addr(&r);
    let h = heap.clone();
    let l = log.clone();
    let (resurrected, adopted) = thread::spawn(move || {
        // First contact with the heap is this death: the thread attaches in it and takes the
        // exited thread's slab.
        drop(r);
        let probe = fin(&h, 2, &l);
        let adopted = chunk_of(&probe) == at & !(CHUNK - 1);
        drop(probe);
        (w.upgrade(), adopted)
    })
    .join()
    .unwrap();
    assert!(adopted, "precondition: the dying thread took over the slab");
    assert_eq!(log.seen(), ["fin upgrade some=true"]);
    let resurrected = resurrected.expect("resurrected");
    assert_eq!(resurrected.id, 1);
    assert_eq!(
        (log.fin(), log.drops()),
        (2, 1),
        "id 1 finalized, alive; id 2 dead"
    );
    let kept = slot.lock().unwrap().take().unwrap();
    assert!(Gc::ptr_eq(&kept, &resurrected));
    let w = Weak::new(&kept);
    drop(kept);
    drop(resurrected);
    heap.safepoint();
    assert_eq!(
        (log.fin(), log.drops()),
        (2, 2),
        "no second finalizer, one drop"
    );
    assert!(w.upgrade().is_none());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// A thread whose exit has begun (its thread-local destructors after the runtime's) frees
/// objects into its old slab while the thread that took the slab over allocates from it and
/// upgrades weak references, its own (lock-free) and the exiting thread's objects' (locked).
/// No upgrade is `Some` after one was `None`; each object is finalized and dropped once; a
/// weak reference whose referent's block the adopter reused reads `None`.
#[test]
fn exiting_thread_frees_into_its_slab_while_the_adopter_allocates() {
    let n = reps(40, 4);
    let heap = Heap::new();
    let log = Log::new();
    heap.safepoint();
    let go = Arc::new(Barrier::new(2));
    let (ws_tx, ws_rx) = mpsc::channel::<Vec<(usize, Weak<Fin>)>>();
    let (h, l, g) = (heap.clone(), log.clone(), go.clone());
    let t = thread::spawn(move || {
        EARLY.with(|_| ()); // destroyed after the runtime's thread-local
        let objs: Vec<Gc<Fin>> = (0..n).map(|i| fin(&h, i as u32, &l)).collect();
        let ws: Vec<(usize, Weak<Fin>)> = objs.iter().map(|o| (addr(o), Weak::new(o))).collect();
        ws_tx.send(ws).unwrap();
        EARLY.with(|e| {
            e.borrow_mut().0.push(Box::new(move || {
                // The runtime's exit ran: this thread owns nothing, its slab is in the pool.
                g.wait();
                for o in objs {
                    drop(o);
                }
            }))
        });
    });
    let ws = ws_rx.recv().unwrap();
    let (h, l) = (heap.clone(), log.clone());
    let y = thread::spawn(move || {
        // Wait for the exiting thread's slab to be in the pool.
        go.wait();
        let mut mine = Vec::new();
        let mut bad = Vec::new();
        let mut dead = vec![false; ws.len()];
        for round in 0..3 {
            for (i, (_, w)) in ws.iter().enumerate() {
                match w.upgrade() {
                    Some(s) => {
                        if dead[i] || s.id != i as u32 {
                            bad.push(format!("round {round} obj {i}: some after none"));
                        }
                    }
                    None => dead[i] = true,
                }
            }
            for k in 0..n {
                let o = fin(&h, 1000 + k as u32, &l);
                let wo = Weak::new(&o);
                if wo.upgrade().map(|s| s.id) != Some(1000 + k as u32) {
                    bad.push("own upgrade".into());
                }
                mine.push((o, wo));
            }
        }
        (mine, bad, ws)
    });
    t.join().unwrap();
    let (mine, bad, ws) = y.join().unwrap();
    assert!(bad.is_empty(), "{bad:?}");
    assert_eq!(
        (log.fin(), log.drops()),
        (n, n),
        "the exited thread's objects"
    );
    // Every old weak reference is dead, those whose block the adopter reused too.
    for (_, w) in &ws {
        assert!(w.upgrade().is_none());
    }
    for (o, wo) in &mine {
        assert_eq!(Gc::strong_count(o), 1);
        assert_eq!(wo.upgrade().unwrap().id, o.id);
    }
    drop(ws);
    let k = mine.len();
    drop(mine);
    assert_eq!((log.fin(), log.drops()), (n + k, n + k));
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Thread exit.

/// Upgrades in thread-local destructors on both sides of the runtime's own: before it (the
/// thread still owns its objects and its cache is warm: the lock-free path, including after a
/// block reuse), and after it (the thread owns nothing: its own old objects upgrade through
/// the lock; objects made there come from the global allocator).
#[test]
fn upgrades_in_thread_local_destructors_around_the_runtimes_exit() {
    let heap = Heap::new();
    let log = Log::new();
    let keep_tx: Arc<Mutex<Vec<Gc<Fin>>>> = Arc::default();
    let (h, l, kt) = (heap.clone(), log.clone(), keep_tx.clone());
    let weak_out = thread::spawn(move || {
        EARLY.with(|_| ());
        let a = fin(&h, 1, &l); // dies in LATE, before the runtime's exit
        let wa = Weak::new(&a);
        let b = fin(&h, 2, &l); // dies in EARLY, after it
        let wb = Weak::new(&b);
        let c = fin(&h, 3, &l); // outlives the thread (kept by the main thread)
        let wc = Weak::new(&c);
        kt.lock().unwrap().push(c);
        let (h2, l2) = (h.clone(), l.clone());
        let wc2 = wc.clone();
        LATE.with(|e| {
            e.borrow_mut().0.push(Box::new(move || {
                let s = wa.upgrade();
                l2.see(format!(
                    "late a some={}",
                    s.as_ref().map(|s| s.id) == Some(1)
                ));
                drop(s);
                let at = addr(&a);
                let a2 = a.clone();
                drop(a);
                drop(a2); // the owner's last: dies here, before the exit
                l2.see(format!("late a dead={}", wa.upgrade().is_none()));
                let (n, others) = alloc_into(at, || fin(&h2, 10, &l2));
                l2.see(format!(
                    "late reuse none={} count={}",
                    wa.upgrade().is_none(),
                    Gc::strong_count(&n)
                ));
                drop((n, others));
                l2.see(format!("late c some={}", wc2.upgrade().is_some()));
            }))
        });
        let (h3, l3) = (h.clone(), l.clone());
        EARLY.with(|e| {
            e.borrow_mut().0.push(Box::new(move || {
                let s = wb.upgrade();
                l3.see(format!(
                    "early b some={}",
                    s.as_ref().map(|s| s.id) == Some(2)
                ));
                drop(s);
                drop(b);
                l3.see(format!("early b dead={}", wb.upgrade().is_none()));
                // Made after the exit began: from the global allocator, merged at birth.
                let x = fin(&h3, 20, &l3);
                let wx = Weak::new(&x);
                let s = wx.upgrade();
                l3.see(format!(
                    "early x some={}",
                    s.as_ref().map(|s| s.id) == Some(20)
                ));
                drop(s);
                drop(x);
                l3.see(format!("early x dead={}", wx.upgrade().is_none()));
                drop(h3);
            }))
        });
        drop(h);
        wc
    })
    .join()
    .unwrap();
    let seen = log.seen();
    let expect: Vec<String> = [
        "late a some=true",
        "late a dead=true",
        "late reuse none=true count=1",
        "late c some=true",
        "early b some=true",
        "early b dead=true",
        "early x some=true",
        "early x dead=true",
    ]
    .map(String::from)
    .to_vec();
    assert_eq!(seen, expect);
    // a, the reuse loop's objects, b, x: finalized and dropped once each.
    let k = log.fin();
    assert_eq!(log.drops(), k);
    let c = keep_tx.lock().unwrap().pop().unwrap();
    assert_eq!(weak_out.upgrade().unwrap().id, 3);
    drop(c);
    heap.safepoint();
    assert!(weak_out.upgrade().is_none());
    assert_eq!((log.fin(), log.drops()), (k + 1, k + 1));
    drop(weak_out);
    assert_eq!(heap.live_objects(), 0);
}

/// Deaths run by the runtime's exit (merging what was queued to the exiting thread) with
/// finalizers that upgrade their own weak reference and resurrect into a global: finalized
/// once, alive afterwards, dropped once later.
#[test]
fn finalizer_run_by_thread_exit_resurrects_through_upgrade() {
    let heap = Heap::new();
    let log = Log::new();
    let slot: Arc<Mutex<Vec<Gc<Fin>>>> = Arc::default();
    let (h, l, s) = (heap.clone(), log.clone(), slot.clone());
    let (tx, rx) = mpsc::channel::<Gc<Fin>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let t = thread::spawn(move || {
        let o = fin(&h, 1, &l);
        let w = Weak::new(&o);
        let (w2, s2, l2) = (w.clone(), s.clone(), l.clone());
        set_fin(&o, move |_| {
            let up = w2.upgrade();
            l2.see(format!("fin some={}", up.is_some()));
            s2.lock().unwrap().extend(up);
        });
        tx.send(o.clone()).unwrap();
        drop(o); // the owner's count still holds the clone sent away
        done_rx.recv().unwrap(); // the other thread's drop is queued to this one
        drop(h);
        w
    });
    let o = rx.recv().unwrap();
    drop(o); // queued to the owner, which merges it when it exits
    done_tx.send(()).unwrap();
    let w = t.join().unwrap();
    assert_eq!(log.seen(), ["fin some=true"]);
    assert_eq!((log.fin(), log.drops()), (1, 0));
    let kept = slot.lock().unwrap().pop().unwrap();
    assert_eq!(w.upgrade().unwrap().id, 1);
    drop(kept);
    heap.safepoint();
    assert_eq!((log.fin(), log.drops()), (1, 1));
    assert!(w.upgrade().is_none());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Finalizers, panics.

/// The owner's finalizer upgrades its own weak references (lock-free: the temporary reference
/// makes this thread the owner of a block of its slab) and resurrects, then panics. The panic
/// is reported once; the object lives; its next death runs no finalizer and drops once.
#[test]
fn owner_finalizer_upgrades_resurrects_and_panics() {
    let heap = Heap::new();
    let reports: Arc<Mutex<Vec<UnraisableKind>>> = Arc::default();
    let r = reports.clone();
    heap.set_unraisable_hook(Some(Arc::new(move |u: &reap::Unraisable| {
        r.lock().unwrap().push(u.kind);
    })));
    let log = Log::new();
    let slot: Arc<Mutex<Option<Gc<Fin>>>> = Arc::default();
    let o = fin(&heap, 1, &log);
    let w = Weak::new(&o);
    let (w2, s2) = (w.clone(), slot.clone());
    set_fin(&o, move |_| {
        let a = w2.upgrade().expect("alive in its finalizer");
        let b = w2.upgrade().expect("again");
        assert_eq!(Gc::strong_count(&a), 3); // the temporary reference, a, b
        drop(b);
        *s2.lock().unwrap() = Some(a);
        panic!("after resurrecting");
    });
    drop(o); // the owner's last: the death runs here
    assert_eq!(*reports.lock().unwrap(), [UnraisableKind::Finalizer]);
    assert_eq!((log.fin(), log.drops()), (1, 0));
    let kept = slot.lock().unwrap().take().expect("resurrected");
    assert_eq!(Gc::strong_count(&kept), 1);
    let again = w.upgrade().expect("still weakly reachable");
    drop(again);
    drop(kept);
    assert_eq!((log.fin(), log.drops()), (1, 1));
    assert!(w.upgrade().is_none());
    assert_eq!(reports.lock().unwrap().len(), 1);
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// Upgrades during the owner's finalizer that do not resurrect, while another thread keeps
/// upgrading: the object dies once, and the other thread's upgrades are monotonic: once one
/// returned `None` (the count reached zero), none returns the object again, through the
/// finalizer (whose temporary reference other threads cannot upgrade, as in CPython 3.13t's
/// `_PyObject_ResurrectStart`). The finalizer's own upgrade, on the dying thread, succeeds.
#[test]
fn upgrades_during_the_owners_finalizer_without_resurrection() {
    let heap = Heap::new();
    let log = Log::new();
    for round in 0..reps(30, 3) as u32 {
        let o = fin(&heap, round, &log);
        let w = Weak::new(&o);
        let w2 = w.clone();
        let l2 = log.clone();
        set_fin(&o, move |this| {
            let s = w2.upgrade();
            l2.see(format!(
                "{}",
                s.as_ref().map(|s| Gc::ptr_eq(s, this)) == Some(true)
            ));
        });
        let stop = Arc::new(AtomicUsize::new(0));
        let (w3, st) = (w.clone(), stop.clone());
        let t = thread::spawn(move || {
            let (mut bad, mut seen_none) = (0, false);
            loop {
                let after = st.load(SeqCst) != 0;
                match w3.upgrade() {
                    Some(s) => {
                        bad += (after || seen_none) as usize;
                        drop(s); // if it was the last, the death runs here
                    }
                    None => {
                        seen_none = true;
                        if after {
                            break;
                        }
                    }
                }
            }
            bad
        });
        drop(o);
        stop.store(1, SeqCst);
        assert_eq!(
            t.join().unwrap(),
            0,
            "an upgrade returned the object after the death"
        );
        heap.safepoint();
        assert!(w.upgrade().is_none());
        assert_eq!(
            (log.fin(), log.drops()),
            (round as usize + 1, round as usize + 1)
        );
    }
    assert!(log.seen().iter().all(|s| s == "true"), "{:?}", log.seen());
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Counting: queued and merged referents.

/// The owner upgrades a referent sitting in its own merge queue whose true count is zero (the
/// only other reference was dropped on another thread): the upgrade wins (CPython's
/// `_Py_TryIncref` does too), the merge then leaves it alive, and it dies once when that
/// handle goes.
#[test]
fn owner_upgrade_of_a_queued_referent_with_count_zero() {
    let heap = Heap::new();
    let log = Log::new();
    let o = fin(&heap, 1, &log);
    let w = Weak::new(&o);
    let c = o.clone();
    drop(o); // the owner's local count still holds `c`, which goes away on another thread
    thread::spawn(move || drop(c)).join().unwrap(); // queued to this thread
    assert_eq!(log.fin(), 0, "not before the owner's safe point");
    let s = w.upgrade().expect("not dead until merged");
    heap.safepoint(); // the merge: alive, the upgrade's reference is the count
    assert_eq!((log.fin(), log.drops()), (0, 0));
    assert_eq!(Gc::strong_count(&s), 1);
    let again = w.upgrade().unwrap();
    drop(again);
    drop(s);
    assert_eq!((log.fin(), log.drops()), (1, 1));
    assert!(w.upgrade().is_none());
    drop(w);

    // The same without the upgrade: it dies at the safe point.
    let o = fin(&heap, 2, &log);
    let w = Weak::new(&o);
    let c = o.clone();
    drop(o);
    thread::spawn(move || drop(c)).join().unwrap();
    assert!(w.upgrade().is_some_and(|s| s.id == 2));
    heap.safepoint();
    assert_eq!((log.fin(), log.drops()), (2, 2));
    assert!(w.upgrade().is_none());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// The owner's local count reaches zero while the object sits in its merge queue (it dropped
/// a reference another thread had counted): merged then; upgrades on the owner go through the
/// lock and are right; the queue entry's merge is a plain decrement; one death.
#[test]
fn owner_local_zero_while_queued_then_upgrades() {
    let heap = Heap::new();
    let log = Log::new();
    let o = fin(&heap, 1, &log);
    let w = Weak::new(&o);
    let sent = o.clone();
    // Another thread drops `sent` (queued: the shared count was 0) and hands back a reference
    // it counted itself (a foreign upgrade).
    let back = thread::spawn({
        let w = w.clone();
        move || {
            drop(sent);
            w.upgrade().unwrap()
        }
    })
    .join()
    .unwrap();
    drop(o); // local 2 -> 1
    let s = w.upgrade().unwrap(); // local 2 (the owner's, lock-free)
    drop(s);
    drop(back); // a shared reference dropped by the owner: local 1 -> 0 while queued: merged
    assert_eq!(log.fin(), 0);
    // Merged, with the queue's reference outstanding: an upgrade takes the lock path.
    let s = w.upgrade().expect("the queue holds a reference");
    heap.safepoint();
    assert_eq!(log.fin(), 0);
    assert_eq!(Gc::strong_count(&s), 1);
    drop(s);
    assert_eq!((log.fin(), log.drops()), (1, 1));
    assert!(w.upgrade().is_none());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// A weak reference made on another thread, upgraded on the owner after the owner's count was
/// merged (its local count reached zero while another thread held a reference): the lock path,
/// counted in the shared count; the object dies when the last handle goes, wherever.
#[test]
fn weak_made_elsewhere_upgraded_on_owner_after_merge() {
    let heap = Heap::new();
    let log = Log::new();
    for round in 0..reps(20, 2) {
        let o = fin(&heap, round as u32, &log);
        let (o, w) = thread::spawn(move || {
            let w = Weak::new(&o);
            let c = o.clone();
            (c, (o, w))
        })
        .join()
        .map(|(c, (o, w))| {
            drop(o);
            (c, w)
        })
        .unwrap();
        // `o` is a reference the other thread counted; the owner's local count is now 0: merged.
        let s = w.upgrade().unwrap();
        assert_eq!(Gc::strong_count(&s), 2);
        drop(o);
        assert_eq!(Gc::strong_count(&s), 1);
        let before = log.fin();
        drop(s);
        assert_eq!(log.fin(), before + 1);
        assert!(w.upgrade().is_none());
    }
    assert_eq!(log.fin(), log.drops());
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// The one-entry cache.

/// One thread uses two heaps alternately (the one-entry cache flips at each use) and upgrades
/// weak references of both, while the referents die on another thread and their blocks are
/// reused by this thread: the right `Some`/`None` each time, each object dies once.
#[test]
fn two_heaps_alternately() {
    let h1 = Heap::new();
    let h2 = Heap::new();
    let log = Log::new();
    for round in 0..reps(10, 2) as u32 {
        let a = fin(&h1, round, &log);
        let b = fin(&h2, 100 + round, &log);
        let (wa, wb) = (Weak::new(&a), Weak::new(&b));
        for _ in 0..3 {
            assert_eq!(wa.upgrade().unwrap().id, round);
            let _ = h2.alloc(0_u8); // the cache now holds h2
            assert_eq!(wb.upgrade().unwrap().id, 100 + round);
            let _ = h1.alloc(0_u8);
        }
        let (at_a, at_b) = (addr(&a), addr(&b));
        let (a, b) = (merged(a), merged(b));
        thread::spawn(move || drop((a, b))).join().unwrap();
        // Reuse a's block in h1, then touch h2 (cache on h2), then upgrade a's weak reference.
        let (na, oa) = alloc_into(at_a, || fin(&h1, 1000, &log));
        let _ = h2.alloc(0_u8);
        assert!(wa.upgrade().is_none());
        let (nb, ob) = alloc_into(at_b, || fin(&h2, 2000, &log));
        assert!(wb.upgrade().is_none());
        let _ = h1.alloc(0_u8);
        assert!(wb.upgrade().is_none());
        assert!(wa.upgrade().is_none());
        assert_eq!((Gc::strong_count(&na), Gc::strong_count(&nb)), (1, 1));
        // New weak references on the reused blocks upgrade to the new objects.
        let (wna, wnb) = (Weak::new(&na), Weak::new(&nb));
        assert!(Gc::ptr_eq(&wna.upgrade().unwrap(), &na));
        let _ = h2.alloc(0_u8);
        assert!(Gc::ptr_eq(&wnb.upgrade().unwrap(), &nb));
        assert!(Gc::ptr_eq(&wna.upgrade().unwrap(), &na));
        drop((na, nb, oa, ob));
        assert!(wna.upgrade().is_none() && wnb.upgrade().is_none());
    }
    assert_eq!(log.fin(), log.drops());
    assert_eq!(h1.live_objects(), 0);
    assert_eq!(h2.live_objects(), 0);
}

/// A thread that only ever upgrades and drops on a heap it never attached to (no cache entry
/// for it, the cache on another heap): upgrades of another thread's objects, one of which
/// dies meanwhile.
#[test]
fn upgrades_on_a_thread_whose_cache_is_another_heap() {
    let h1 = Heap::new();
    let other = Heap::new();
    let log = Log::new();
    let a = fin(&h1, 1, &log);
    let b = fin(&h1, 2, &log);
    let (wa, wb) = (Weak::new(&a), Weak::new(&b));
    let a = merged(a);
    let (l, o) = (log.clone(), other.clone());
    let (tx, rx) = mpsc::channel::<()>();
    let (back_tx, back_rx) = mpsc::channel::<()>();
    let t = thread::spawn(move || {
        let _x = fin(&o, 9, &l); // the cache holds `other`
        let s1 = (wa.upgrade().map(|s| s.id), wb.upgrade().map(|s| s.id));
        back_tx.send(()).unwrap();
        rx.recv().unwrap();
        let s2 = (wa.upgrade().map(|s| s.id), wb.upgrade().map(|s| s.id));
        (s1, s2)
    });
    back_rx.recv().unwrap();
    drop(a);
    tx.send(()).unwrap();
    let (s1, s2) = t.join().unwrap();
    assert_eq!(s1, (Some(1), Some(2)));
    assert_eq!(s2, (None, Some(2)));
    drop(b);
    assert_eq!((log.fin(), log.drops()), (3, 3));
    // The weak-reference objects' last handles went on the other thread: queued to this one.
    h1.safepoint();
    assert_eq!(h1.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Detached sections, races.

/// Upgrades inside `Heap::detached` (the thread stays attached, its cache warm), including of
/// a referent whose last other reference is dropped meanwhile and queued to this thread: the
/// drain at the end of the section runs its death once.
#[test]
fn upgrades_inside_detached_sections() {
    let heap = Heap::new();
    let log = Log::new();
    let o = fin(&heap, 1, &log);
    let w = Weak::new(&o);
    let sent = o.clone();
    drop(o);
    let w2 = w.clone();
    let h = heap.clone();
    let ids = heap.detached(move || {
        let a = w2.upgrade().map(|s| s.id);
        let b = h.detached(|| w2.upgrade().map(|s| s.id));
        thread::spawn(move || drop(sent)).join().unwrap(); // queued to this thread
        let c = w2.upgrade().map(|s| s.id); // still not dead: queued, not merged
        (a, b, c)
    });
    assert_eq!(ids, (Some(1), Some(1), Some(1)));
    // The drain at the section's end merged it: dead.
    assert_eq!((log.fin(), log.drops()), (1, 1));
    assert!(w.upgrade().is_none());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// The owner upgrades and drops in a loop while other threads clone, drop, make weak
/// references (`Weak::new`, which marks the counts word) and upgrade the same referent; then
/// the last handles go on all threads at once. One finalizer, one drop, and no upgrade is
/// `Some` after one was `None` on the same thread.
#[test]
fn owner_upgrade_loop_races_foreign_counting() {
    let rounds = reps(20, 2);
    let iters = reps(2_000, 30);
    let heap = Heap::new();
    let log = Log::new();
    for round in 0..rounds {
        let o = fin(&heap, round as u32, &log);
        let w = Weak::new(&o);
        let start = Arc::new(Barrier::new(3));
        let mut ts = Vec::new();
        for _ in 0..2 {
            let (o2, s) = (o.clone(), start.clone());
            ts.push(thread::spawn(move || {
                s.wait();
                let mut bad = false;
                let mut hold = Vec::new();
                for i in 0..iters {
                    let w = Weak::new(&o2);
                    match w.upgrade() {
                        Some(x) => hold.push(x),
                        None => bad = true,
                    }
                    if i % 7 == 0 {
                        hold.clear();
                    }
                }
                drop(hold);
                drop(o2);
                bad
            }));
        }
        start.wait();
        let mut hold = Vec::new();
        for i in 0..iters {
            hold.push(w.upgrade().expect("the owner holds it"));
            if i % 5 == 0 {
                hold.clear();
            }
        }
        drop(hold);
        drop(o);
        for t in ts {
            assert!(
                !t.join().unwrap(),
                "an upgrade failed while references were held"
            );
        }
        heap.safepoint();
        assert_eq!((log.fin(), log.drops()), (round + 1, round + 1));
        assert!(w.upgrade().is_none());
    }
    assert_eq!(heap.live_objects(), 0);
}
