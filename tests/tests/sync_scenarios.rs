//! Shared-mode (`reap::sync`) scenarios: the death order of SEMANTICS 3.1 / 8.3 on the owner
//! thread and on other threads, biased counting's safe points (8.2), resurrection across
//! threads, weak references across threads (8.4), panics reported to the hook (5.4), deep
//! chains (3.3), handle coercion, the heap's lifetime and thread attachment.
//!
//! Where CPython has the scenario, the test ports it; what CPython prints was checked with
//! `python3` (3.11; the free-threaded build's rules are the same for these), and the program is
//! quoted in the test's doc comment. Each event records the thread it ran on, so a test can say
//! on which thread a death ran.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex};
use std::thread::{self, ThreadId};

use reap::sync::{Finalize, Gc, Heap, Weak};
use reap::{Trace, Unraisable, UnraisableKind};

/// An ordered record of events, each with the thread it happened on. Shared by the objects of
/// one test (each test has its own, so tests can run in parallel).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<(String, ThreadId)>>>);

impl Log {
    fn push(&self, s: impl Into<String>) {
        self.0
            .lock()
            .unwrap()
            .push((s.into(), thread::current().id()));
    }

    fn names(&self) -> Vec<String> {
        self.0.lock().unwrap().iter().map(|e| e.0.clone()).collect()
    }

    fn threads(&self) -> Vec<ThreadId> {
        self.0.lock().unwrap().iter().map(|e| e.1).collect()
    }

    fn is_empty(&self) -> bool {
        self.0.lock().unwrap().is_empty()
    }
}

/// What the unraisable hook received: kind, type name, message, thread.
type Reports = Arc<Mutex<Vec<(UnraisableKind, &'static str, String, ThreadId)>>>;

fn record_unraisables(heap: &Heap) -> Reports {
    let reports: Reports = Arc::default();
    let r = reports.clone();
    heap.set_unraisable_hook(Some(Arc::new(move |u: &Unraisable| {
        r.lock().unwrap().push((
            u.kind,
            u.type_name,
            u.message.clone(),
            thread::current().id(),
        ));
    })));
    reports
}

/// A `D` with a finalizer that checks its shared weak reference still upgrades, and a `Drop`.
#[derive(Trace)]
#[reap(sync_finalize)]
struct D {
    #[reap(skip)]
    log: Log,
}

impl Finalize for D {
    fn finalize(this: &Gc<Self>) {
        // CPython: inside `__del__`, `wr()` still returns the object.
        let alive = Weak::new(this).upgrade().is_some();
        this.log.push(format!("fin weak_alive={alive}"));
    }
}

impl Drop for D {
    fn drop(&mut self) {
        self.log.push("drop");
    }
}

/// The shared weak reference `w0` and two with callbacks (`w1` older, `w2` newer); each
/// callback logs whether its own reference and `w0` are cleared when it runs.
fn arm(d: &Gc<D>, log: &Log) -> (Weak<D>, Weak<D>, Weak<D>) {
    let w0 = Weak::new(d);
    let cbs: Vec<Weak<D>> = (1..=2)
        .map(|i| {
            let (l, w0) = (log.clone(), w0.clone());
            Weak::with_callback(d, move |w: &Weak<D>| {
                l.push(format!(
                    "cb{i} self_cleared={} shared_cleared={}",
                    w.upgrade().is_none(),
                    !w0.is_alive()
                ))
            })
        })
        .collect();
    let mut it = cbs.into_iter();
    (w0, it.next().unwrap(), it.next().unwrap())
}

const DEATH_ORDER: [&str; 4] = [
    "fin weak_alive=true",
    "cb2 self_cleared=true shared_cleared=true",
    "cb1 self_cleared=true shared_cleared=true",
    "drop",
];

/// ```python
/// class D:
///     def __del__(self): log.append(("del", wr() is not None))
/// o = D(); wr = weakref.ref(o)
/// w1 = weakref.ref(o, lambda w: log.append(("cb1", w() is None)))
/// w2 = weakref.ref(o, lambda w: log.append(("cb2", w() is None)))
/// del o   # [('del', True), ('cb2', True), ('cb1', True)]
/// ```
#[test]
fn death_on_owner_runs_finalizer_then_clears_weakrefs_then_callbacks_newest_first_then_drop() {
    let heap = Heap::new();
    let log = Log::default();
    let d = heap.alloc(D { log: log.clone() });
    let (w0, w1, w2) = arm(&d, &log);
    drop(d);
    assert_eq!(log.names(), DEATH_ORDER);
    let me = thread::current().id();
    assert!(log.threads().iter().all(|&t| t == me));
    assert!(w0.upgrade().is_none() && !w1.has_callback() && !w2.has_callback());
    drop((w0, w1, w2));
    assert_eq!(heap.live_objects(), 0);
}

/// The same program with the last reference dropped by another thread after the owner exited:
/// the whole death runs on the dropping thread. CPython (`threading.Thread(target=box.pop)`):
/// `[('del', True, 'dropper'), ('cb2', True, 'dropper'), ('cb1', True, 'dropper')]`.
/// Here the weak references are made by the owner, as the object.
#[test]
fn death_after_owner_exited_runs_whole_order_on_dropping_thread() {
    let heap = Heap::new();
    let log = Log::default();
    let (h, l) = (heap.clone(), log.clone());
    let (d, weaks) = thread::spawn(move || {
        let d = h.alloc(D { log: l.clone() });
        let weaks = arm(&d, &l);
        (d, weaks)
    })
    .join()
    .unwrap();
    let dropper = thread::spawn(move || {
        drop(d);
        thread::current().id()
    });
    let dropper_id = dropper.thread().id();
    dropper.join().unwrap();
    assert_eq!(log.names(), DEATH_ORDER);
    assert!(log.threads().iter().all(|&t| t == dropper_id));
    assert!(weaks.0.upgrade().is_none());
    drop(weaks);
    assert_eq!(heap.live_objects(), 0);
}

/// As above, with the weak references made by the dropping thread, which then drops the last
/// handle of an object whose owner has exited.
#[test]
fn death_after_owner_exited_runs_on_dropping_thread_with_weakrefs_made_there() {
    let heap = Heap::new();
    let log = Log::default();
    let (h, l) = (heap.clone(), log.clone());
    let d = thread::spawn(move || h.alloc(D { log: l })).join().unwrap();
    let l = log.clone();
    let dropper = thread::spawn(move || {
        let weaks = arm(&d, &l);
        drop(d);
        assert!(weaks.0.upgrade().is_none());
        assert!(!weaks.1.has_callback() && !weaks.2.has_callback());
    });
    let dropper_id = dropper.thread().id();
    dropper.join().unwrap();
    assert_eq!(log.names(), DEATH_ORDER);
    assert!(log.threads().iter().all(|&t| t == dropper_id));
    assert_eq!(heap.live_objects(), 0);
}

/// SEMANTICS 8.2: a drop on a non-owner thread that would free the object is queued to the
/// owner; the object stays whole (weak references alive, no finalizer) until the owner's next
/// safe point, where the whole death runs, on the owner.
#[test]
fn object_dropped_on_foreign_thread_dies_at_owners_safepoint_not_before() {
    let heap = Heap::new();
    let log = Log::default();
    let d = heap.alloc(D { log: log.clone() });
    let (w0, w1, w2) = arm(&d, &log);
    thread::spawn(move || drop(d)).join().unwrap();
    assert!(log.is_empty(), "died before the owner's safe point");
    assert!(w0.is_alive() && w1.is_alive() && w2.is_alive());
    assert!(w1.has_callback() && w2.has_callback());
    assert_eq!(
        heap.live_objects(),
        4,
        "the object and its three weak references"
    );
    heap.safepoint();
    assert_eq!(log.names(), DEATH_ORDER);
    let me = thread::current().id();
    assert!(log.threads().iter().all(|&t| t == me));
    assert!(!w0.is_alive());
    drop((w0, w1, w2));
    assert_eq!(heap.live_objects(), 0);
}

/// The other safe points of 8.2: an allocation, and `Heap::detached` (before and after).
#[test]
fn owners_allocation_and_detached_are_safepoints_too() {
    let heap = Heap::new();
    let log = Log::default();
    let a = heap.alloc(D { log: log.clone() });
    let wa = Weak::new(&a);
    thread::spawn(move || drop(a)).join().unwrap();
    assert!(log.is_empty());
    let x = heap.alloc(0_u8);
    assert_eq!(log.names(), ["fin weak_alive=true", "drop"]);
    assert!(!wa.is_alive());
    // Queued before `detached`: merged as it starts.
    let b = heap.alloc(D { log: log.clone() });
    thread::spawn(move || drop(b)).join().unwrap();
    let inside = heap.detached(|| log.names().len());
    assert_eq!(inside, 4);
    // Queued while detached: merged as it ends.
    let c = heap.alloc(D { log: log.clone() });
    let after = heap.detached(|| {
        thread::spawn(move || drop(c)).join().unwrap();
        log.names().len()
    });
    assert_eq!(after, 4);
    assert_eq!(log.names().len(), 6);
    let me = thread::current().id();
    assert!(log.threads().iter().all(|&t| t == me));
    drop((x, wa));
    assert_eq!(heap.live_objects(), 0);
}

/// ```python
/// class R:
///     def __del__(self):
///         global KEEP, dels; dels += 1; KEEP = self
/// r = R(); wr = weakref.ref(r); del r
/// # dels 1, wr() alive
/// def taker():
///     global KEEP; x = KEEP; KEEP = None; del x
/// threading.Thread(target=taker).start() ...  # dels 1, wr() None
/// ```
/// A resurrected object is merged (CPython 3.13t's `_PyObject_ResurrectEnd` leaves it so):
/// the taker's drop is its last and runs the second death (no finalizer) on the taker, at once.
#[test]
fn resurrected_by_finalizer_then_released_on_another_thread_finalizes_once_drops_once() {
    static KEEP: Mutex<Option<Gc<R>>> = Mutex::new(None);
    #[derive(Trace)]
    #[reap(sync_finalize)]
    struct R {
        #[reap(skip)]
        log: Log,
    }
    impl Finalize for R {
        fn finalize(this: &Gc<Self>) {
            this.log.push("fin");
            *KEEP.lock().unwrap() = Some(this.clone());
        }
    }
    impl Drop for R {
        fn drop(&mut self) {
            self.log.push("drop");
        }
    }
    let heap = Heap::new();
    let log = Log::default();
    let r = heap.alloc(R { log: log.clone() });
    let wr = Weak::new(&r);
    drop(r);
    assert_eq!(log.names(), ["fin"]);
    let back = wr
        .upgrade()
        .expect("resurrected: the weak reference still upgrades");
    assert!(Gc::is_finalized(&back));
    drop(back);
    let taker = thread::spawn(|| {
        let x = KEEP
            .lock()
            .unwrap()
            .take()
            .expect("the finalizer stored it");
        drop(x);
    });
    let taker_id = taker.thread().id();
    taker.join().unwrap();
    assert_eq!(log.names(), ["fin", "drop"]);
    assert_eq!(log.threads(), [thread::current().id(), taker_id]);
    assert!(wr.upgrade().is_none());
    drop(wr);
    assert_eq!(heap.live_objects(), 0);
}

/// The owner exits; thread B drops the last handle and runs the finalizer, which resurrects
/// the object (merged from then on); thread C takes it out and drops it while B lives: the
/// second death (Drop only) runs on C at once, without waiting for B.
#[test]
fn resurrected_on_dropping_thread_released_by_a_third_while_it_lives_dies_on_the_third() {
    static KEEP: Mutex<Option<Gc<R2>>> = Mutex::new(None);
    #[derive(Trace)]
    #[reap(sync_finalize)]
    struct R2 {
        #[reap(skip)]
        log: Log,
    }
    impl Finalize for R2 {
        fn finalize(this: &Gc<Self>) {
            this.log.push("fin");
            *KEEP.lock().unwrap() = Some(this.clone());
        }
    }
    impl Drop for R2 {
        fn drop(&mut self) {
            self.log.push("drop");
        }
    }
    let heap = Heap::new();
    let log = Log::default();
    let (h, l) = (heap.clone(), log.clone());
    let r = thread::spawn(move || h.alloc(R2 { log: l }))
        .join()
        .unwrap();
    let (h, l) = (heap.clone(), log.clone());
    let (to_b, b_rx) = mpsc::channel::<()>();
    let (to_c, c_rx) = mpsc::channel::<()>();
    let b = thread::spawn(move || {
        drop(r);
        assert_eq!(l.names(), ["fin"]);
        to_c.send(()).unwrap(); // the death (and the finalizer) has returned
        b_rx.recv().unwrap(); // C has dropped it
        assert_eq!(l.names(), ["fin", "drop"], "died on C, not queued to B");
        h.safepoint();
        assert_eq!(l.names(), ["fin", "drop"]);
    });
    let b_id = b.thread().id();
    // C waits until B's finalizer has returned: a reference B's finalizer handed out and C
    // dropped while the finalizer still ran would be one B owned then, queued to B (and the
    // second death would run at B's safe point, also right, but not this scenario).
    let c = thread::spawn(move || {
        c_rx.recv().unwrap();
        let x = KEEP
            .lock()
            .unwrap()
            .take()
            .expect("B's finalizer stored it");
        drop(x);
        to_b.send(()).unwrap();
    });
    let c_id = c.thread().id();
    c.join().unwrap();
    b.join().unwrap();
    assert_eq!(log.threads(), [b_id, c_id]);
    assert_eq!(heap.live_objects(), 0);
}

/// The same, but B has exited when C drops the resurrected object: C runs the second death.
#[test]
fn resurrected_on_exited_thread_released_by_a_third_dies_on_the_third() {
    static KEEP: Mutex<Option<Gc<R3>>> = Mutex::new(None);
    #[derive(Trace)]
    #[reap(sync_finalize)]
    struct R3 {
        #[reap(skip)]
        log: Log,
    }
    impl Finalize for R3 {
        fn finalize(this: &Gc<Self>) {
            this.log.push("fin");
            *KEEP.lock().unwrap() = Some(this.clone());
        }
    }
    impl Drop for R3 {
        fn drop(&mut self) {
            self.log.push("drop");
        }
    }
    let heap = Heap::new();
    let log = Log::default();
    let (h, l) = (heap.clone(), log.clone());
    let r = thread::spawn(move || h.alloc(R3 { log: l }))
        .join()
        .unwrap();
    let b = thread::spawn(move || drop(r));
    let b_id = b.thread().id();
    b.join().unwrap();
    assert_eq!(log.names(), ["fin"]);
    let c = thread::spawn(|| drop(KEEP.lock().unwrap().take().unwrap()));
    let c_id = c.thread().id();
    c.join().unwrap();
    assert_eq!(log.names(), ["fin", "drop"]);
    assert_eq!(log.threads(), [b_id, c_id]);
    assert_eq!(heap.live_objects(), 0);
}

/// SEMANTICS 8.3: a weak upgrade on another thread while the finalizer runs returns `None`, as
/// every upgrade since the count reached zero did (CPython 3.13t's `_PyObject_ResurrectStart`
/// leaves the shared count at zero for this): the object is not resurrected by it and dies
/// when the finalizer returns, on this thread; the finalizer's own thread may still upgrade.
#[test]
fn weak_upgrade_on_another_thread_during_finalizer_returns_none() {
    #[derive(Trace)]
    #[reap(sync_finalize)]
    struct F {
        #[reap(skip)]
        log: Log,
        #[reap(skip)]
        in_fin: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
        #[reap(skip)]
        weak: Mutex<Option<Weak<F>>>,
    }
    impl Finalize for F {
        fn finalize(this: &Gc<Self>) {
            this.log.push("fin");
            let (go, done) = this.in_fin.lock().unwrap().take().unwrap();
            go.send(()).unwrap();
            done.recv().unwrap();
            let w = this.weak.lock().unwrap().take().unwrap();
            let mine = w.upgrade().is_some();
            this.log.push(format!("own upgrade {mine}"));
        }
    }
    impl Drop for F {
        fn drop(&mut self) {
            self.log.push("drop");
        }
    }
    let heap = Heap::new();
    let log = Log::default();
    let (go_tx, go_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let f = heap.alloc(F {
        log: log.clone(),
        in_fin: Mutex::new(Some((go_tx, done_rx))),
        weak: Mutex::new(None),
    });
    let w = Weak::new(&f);
    *f.weak.lock().unwrap() = Some(w.clone());
    let w2 = w.clone();
    let other = thread::spawn(move || {
        go_rx.recv().unwrap();
        let upgraded = w2.upgrade().is_some();
        done_tx.send(()).unwrap();
        upgraded
    });
    drop(f);
    assert!(
        !other.join().unwrap(),
        "the upgrade on another thread during the finalizer refuses the dying object"
    );
    assert_eq!(log.names(), ["fin", "own upgrade true", "drop"]);
    assert!(log.threads().iter().all(|t| *t == thread::current().id()));
    assert!(!w.is_alive());
    drop(w);
    heap.safepoint();
    assert_eq!(heap.live_objects(), 0);
}

/// ```python
/// o = D(); wr = weakref.ref(o)
/// Thread(target=lambda: res.append(wr() is not None)) ...   # True
/// del o
/// Thread(target=lambda: res.append(wr() is not None)) ...   # False
/// ```
#[test]
fn weak_upgrade_on_another_thread_some_while_alive_none_after_death() {
    let heap = Heap::new();
    let o = heap.alloc(String::from("data"));
    let w = Weak::new(&o);
    let w2 = w.clone();
    let got = thread::spawn(move || w2.upgrade().map(|s| (s.len(), s)))
        .join()
        .unwrap();
    let (len, handle) = got.expect("alive: the upgrade returns it");
    assert_eq!(len, 4);
    assert!(Gc::ptr_eq(&handle, &o));
    assert_eq!(Gc::strong_count(&o), 2);
    drop(handle);
    drop(o);
    assert_eq!(heap.live_objects(), 1, "only the weak reference");
    let w2 = w.clone();
    assert!(thread::spawn(move || w2.upgrade().is_none())
        .join()
        .unwrap());
    drop(w);
    // The clones of this thread's weak-reference object dropped on the other threads wait in
    // its queue: the last drop was here, but the queued ones still count until merged.
    assert_eq!(heap.live_objects(), 1);
    heap.safepoint();
    assert_eq!(heap.live_objects(), 0);
}

/// The same with the weak handle moved (not cloned) to the upgrading thread, and the object
/// owned by a thread that has exited.
#[test]
fn weak_moved_to_another_thread_upgrades_object_of_exited_owner() {
    let heap = Heap::new();
    let h = heap.clone();
    let (o, w) = thread::spawn(move || {
        let o = h.alloc(7_u64);
        let w = Weak::new(&o);
        (o, w)
    })
    .join()
    .unwrap();
    let (w, seen) = thread::spawn(move || {
        let seen = w.upgrade().map(|g| *g);
        (w, seen)
    })
    .join()
    .unwrap();
    assert_eq!(seen, Some(7));
    thread::spawn(move || drop(o)).join().unwrap();
    let (w, seen) = thread::spawn(move || {
        let seen = w.upgrade().map(|g| *g);
        (w, seen)
    })
    .join()
    .unwrap();
    assert_eq!(seen, None);
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// The owner's lock-free upgrade (`sync::weak`'s module docs) meets the memory of its referent
/// reused by a new object of its own: the referent died on another thread (merged first, as
/// the owner dropped its last handle while the weak reference and another thread's reference
/// existed), its block went back to the owner's slab through the remote stack, and the owner
/// allocated into it again. The weak reference was cleared before
/// the free, so the upgrade returns `None` and the new object is untouched.
#[test]
fn owner_upgrade_after_its_referents_block_is_reused_returns_none() {
    let heap = Heap::new();
    let o = heap.alloc(11_u64);
    let w = Weak::new(&o);
    let old_addr = &*o as *const u64;
    // A reference counted in the shared count (cloned on another thread): the owner's drop
    // then merges (it has a weak reference), and the other thread's drop runs the death.
    let other = thread::scope(|s| s.spawn(|| o.clone()).join().unwrap());
    drop(o);
    thread::spawn(move || drop(other)).join().unwrap();
    assert!(!w.is_alive());
    // Allocate objects of the same size until one lands in the freed block.
    let mut news = Vec::new();
    let reused = loop {
        let n = heap.alloc(22_u64);
        if std::ptr::eq(&*n, old_addr) {
            break n;
        }
        news.push(n);
        assert!(news.len() < 100_000, "the freed block was never reused");
    };
    assert!(w.upgrade().is_none());
    assert_eq!(*reused, 22);
    assert_eq!(
        Gc::strong_count(&reused),
        1,
        "the upgrade took no reference of it"
    );
    drop((reused, news));
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// The owner's lock-free upgrade loads its referent's counts while another thread runs the
/// referent's death and frees its block into the owner's slab: each upgrade is `Some` (and the
/// handle good) or `None`, and `None` for good once the death has begun. Under Miri the
/// data-race detector checks the unlocked load against the free's writes.
#[test]
fn owner_upgrades_while_another_thread_frees_its_referent() {
    let rounds = if cfg!(miri) { 3 } else { 200 };
    for _ in 0..rounds {
        let heap = Heap::new();
        let o = heap.alloc(String::from("referent"));
        let w = Weak::new(&o);
        let other = thread::scope(|s| s.spawn(|| o.clone()).join().unwrap());
        // The owner's count reaches zero with a weak reference and a reference in the shared
        // count: merged, so the other thread's drop is the last and runs the death there.
        drop(o);
        let go = Arc::new(Barrier::new(2));
        let g2 = go.clone();
        let t = thread::spawn(move || {
            g2.wait();
            drop(other);
        });
        go.wait();
        let mut dead = false;
        loop {
            match w.upgrade() {
                Some(s) => {
                    assert!(!dead, "an upgrade succeeded after one saw the death");
                    assert_eq!(*s, "referent");
                }
                None => {
                    dead = true;
                    if t.is_finished() {
                        break;
                    }
                }
            }
        }
        t.join().unwrap();
        assert!(w.upgrade().is_none());
        drop(w);
        assert_eq!(heap.live_objects(), 0);
    }
}

/// `weakref.ref(o) is weakref.ref(o)` is `True` (SEMANTICS 4.3, 8.4); a weak reference with a
/// callback is always new.
#[test]
fn weak_new_twice_returns_the_same_weak_reference() {
    let heap = Heap::new();
    let o = heap.alloc(1_u32);
    let a = Weak::new(&o);
    let b = Weak::new(&o);
    assert!(Weak::ptr_eq(&a, &b));
    let c = Weak::with_callback(&o, |_| {});
    assert!(!Weak::ptr_eq(&a, &c));
    drop((a, b, c));
    assert_eq!(heap.live_objects(), 1);
}

/// `Weak::new` on another thread, while the first thread's shared weak reference lives,
/// returns that one, and leaves it working.
#[test]
fn weak_new_on_another_thread_returns_the_same_weak_reference() {
    let heap = Heap::new();
    let o = heap.alloc(1_u32);
    let a = Weak::new(&o);
    let (o, a, b) = thread::scope(|s| {
        s.spawn(move || {
            let b = Weak::new(&o);
            (o, a, b)
        })
        .join()
        .unwrap()
    });
    assert!(
        a.is_alive(),
        "the first weak reference still refers to the live object"
    );
    assert_eq!(a.upgrade().map(|g| *g), Some(1));
    assert!(Weak::ptr_eq(&a, &b));
    drop((o, a, b));
    assert_eq!(heap.live_objects(), 0);
}

/// The smallest form of a fixed bug (weak-reference objects were not marked maybe-weak): a weak reference with a callback
/// made on this thread, to an object another thread owns and drops (so the death runs there):
/// the callback must run once, on that thread.
#[test]
fn callback_of_weakref_made_on_another_thread_runs_when_referent_dies_on_its_owner() {
    let heap = Heap::new();
    let ran = Arc::new(Mutex::new(Vec::new()));
    let (h, r) = (heap.clone(), ran.clone());
    let (obj_tx, obj_rx) = mpsc::channel::<Gc<u32>>();
    let (back_tx, back_rx) = mpsc::channel::<()>();
    let owner = thread::spawn(move || {
        let o = h.alloc(1_u32);
        obj_tx.send(o.clone()).unwrap();
        back_rx.recv().unwrap(); // the weak reference is made
        drop(o); // the last handle: dies here
    });
    let owner_id = owner.thread().id();
    let o = obj_rx.recv().unwrap();
    let w = Weak::with_callback(&o, move |_| r.lock().unwrap().push(thread::current().id()));
    drop(o); // not the last: the owner still holds one
    back_tx.send(()).unwrap();
    owner.join().unwrap();
    assert!(!w.is_alive());
    assert_eq!(
        *ran.lock().unwrap(),
        [owner_id],
        "the callback ran once, on the owner"
    );
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// A panicking object: its finalizer, `Drop`, and one of three callbacks panic.
#[derive(Trace)]
#[reap(sync_finalize)]
struct P {
    #[reap(skip)]
    log: Log,
}

impl Finalize for P {
    fn finalize(this: &Gc<Self>) {
        this.log.push("fin");
        panic!("fin boom");
    }
}

impl Drop for P {
    fn drop(&mut self) {
        self.log.push("drop");
        panic!("drop boom");
    }
}

fn arm_panicking(p: &Gc<P>, log: &Log) -> Vec<Weak<P>> {
    (1..=3)
        .map(|i| {
            let l = log.clone();
            Weak::with_callback(p, move |_: &Weak<P>| {
                l.push(format!("cb{i}"));
                if i == 2 {
                    panic!("cb boom");
                }
            })
        })
        .collect()
}

fn check_panicking_death(log: &Log, reports: &Reports, on: ThreadId) {
    assert_eq!(log.names(), ["fin", "cb3", "cb2", "cb1", "drop"]);
    assert!(log.threads().iter().all(|&t| t == on));
    let reports = reports.lock().unwrap();
    let kinds: Vec<_> = reports.iter().map(|r| (r.0, r.2.as_str())).collect();
    assert_eq!(
        kinds,
        [
            (UnraisableKind::Finalizer, "fin boom"),
            (UnraisableKind::WeakCallback, "cb boom"),
            (UnraisableKind::Drop, "drop boom"),
        ]
    );
    assert!(reports[0].1.ends_with("P"), "{}", reports[0].1);
    assert!(reports[2].1.ends_with("P"), "{}", reports[2].1);
    assert!(
        reports.iter().all(|r| r.3 == on),
        "the hook runs where caught"
    );
}

/// ```python
/// class P:
///     def __del__(self): raise ValueError("del")
/// p = P(); w = weakref.ref(p, lambda w: 1/0); del p
/// # unraisable: ValueError ... P.__del__; unraisable: ZeroDivisionError ... <lambda>
/// ```
/// Each panic is reported once, with its kind, and the death goes on (SEMANTICS 3.1, 5.4).
#[test]
fn panics_in_finalizer_callback_and_drop_reported_once_each_death_continues_on_owner() {
    let heap = Heap::new();
    let reports = record_unraisables(&heap);
    let log = Log::default();
    let p = heap.alloc(P { log: log.clone() });
    let weaks = arm_panicking(&p, &log);
    drop(p);
    check_panicking_death(&log, &reports, thread::current().id());
    assert!(weaks.iter().all(|w| !w.is_alive() && !w.has_callback()));
    drop(weaks);
    assert_eq!(heap.live_objects(), 0);
}

/// The same death run by another thread, after the owner exited; the weak references are made
/// on the dropping thread (see `death_after_owner_exited_runs_whole_order_on_dropping_thread`).
#[test]
fn panics_in_finalizer_callback_and_drop_reported_once_each_on_dropping_thread() {
    let heap = Heap::new();
    let reports = record_unraisables(&heap);
    let log = Log::default();
    let (h, l) = (heap.clone(), log.clone());
    let p = thread::spawn(move || h.alloc(P { log: l })).join().unwrap();
    let l = log.clone();
    let dropper = thread::spawn(move || {
        let weaks = arm_panicking(&p, &l);
        drop(p);
        weaks
    });
    let dropper_id = dropper.thread().id();
    let weaks = dropper.join().unwrap();
    check_panicking_death(&log, &reports, dropper_id);
    drop(weaks);
    assert_eq!(heap.live_objects(), 0);
}

/// The same death with the weak references made by the owner thread (which then exits).
#[test]
fn panics_in_callbacks_of_weakrefs_made_by_exited_owner_reported_on_dropping_thread() {
    let heap = Heap::new();
    let reports = record_unraisables(&heap);
    let log = Log::default();
    let (h, l) = (heap.clone(), log.clone());
    let (p, weaks) = thread::spawn(move || {
        let p = h.alloc(P { log: l.clone() });
        let weaks = arm_panicking(&p, &l);
        (p, weaks)
    })
    .join()
    .unwrap();
    let dropper = thread::spawn(move || drop(p));
    let dropper_id = dropper.thread().id();
    dropper.join().unwrap();
    check_panicking_death(&log, &reports, dropper_id);
    drop(weaks);
    assert_eq!(heap.live_objects(), 0);
}

#[cfg(not(miri))]
const CHAIN: usize = 100_000;
#[cfg(miri)]
const CHAIN: usize = 1_000;

/// A node of a singly linked chain, with a finalizer and a `Drop` that record their order.
#[derive(Trace)]
#[reap(sync_finalize)]
struct Node {
    id: usize,
    next: Option<Gc<Node>>,
    #[reap(skip)]
    seen: Arc<ChainSeen>,
}

#[derive(Default)]
struct ChainSeen {
    fins: AtomicUsize,
    drops: AtomicUsize,
    /// The ids of finalizers and drops that ran out of head-to-tail order.
    out_of_order: AtomicUsize,
}

impl Finalize for Node {
    fn finalize(this: &Gc<Self>) {
        if this.seen.fins.fetch_add(1, Ordering::Relaxed) != this.id {
            this.seen.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.seen.drops.fetch_add(1, Ordering::Relaxed) != self.id {
            self.seen.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A chain of `CHAIN` nodes, head id 0.
fn build_chain(heap: &Heap, seen: &Arc<ChainSeen>) -> Gc<Node> {
    let mut next = None;
    for id in (0..CHAIN).rev() {
        next = Some(heap.alloc(Node {
            id,
            next,
            seen: seen.clone(),
        }));
    }
    next.unwrap()
}

fn check_chain(seen: &ChainSeen) {
    assert_eq!(seen.fins.load(Ordering::Relaxed), CHAIN);
    assert_eq!(seen.drops.load(Ordering::Relaxed), CHAIN);
    assert_eq!(seen.out_of_order.load(Ordering::Relaxed), 0, "head to tail");
}

/// SEMANTICS 3.3: the deaths of a long chain do not nest past the trashcan's depth; the
/// finalizers and drops run head to tail, on the owner.
#[test]
fn long_chain_dropped_on_owner_no_stack_overflow_all_dropped_in_order() {
    let heap = Heap::new();
    let seen = Arc::new(ChainSeen::default());
    let head = build_chain(&heap, &seen);
    assert_eq!(heap.live_objects(), CHAIN);
    drop(head);
    check_chain(&seen);
    assert_eq!(heap.live_objects(), 0);
}

/// The same chain, built by a thread that then exits, dropped on another thread (each node's
/// drop there finds its owner gone and merges it: the nesting goes through the queue path).
#[test]
fn long_chain_dropped_on_foreign_thread_after_owner_exited_no_stack_overflow() {
    let heap = Heap::new();
    let seen = Arc::new(ChainSeen::default());
    let (h, s) = (heap.clone(), seen.clone());
    let head = thread::spawn(move || build_chain(&h, &s)).join().unwrap();
    assert_eq!(heap.live_objects(), CHAIN);
    thread::spawn(move || drop(head)).join().unwrap();
    check_chain(&seen);
    assert_eq!(heap.live_objects(), 0);
}

/// The same chain, its owner alive, dropped on another thread: the head's death waits for the
/// owner's safe point, and then the whole chain dies on the owner.
#[test]
fn long_chain_dropped_on_foreign_thread_while_owner_alive_dies_at_safepoint() {
    let heap = Heap::new();
    let seen = Arc::new(ChainSeen::default());
    let head = build_chain(&heap, &seen);
    thread::spawn(move || drop(head)).join().unwrap();
    assert_eq!(seen.fins.load(Ordering::Relaxed), 0);
    heap.safepoint();
    check_chain(&seen);
    assert_eq!(heap.live_objects(), 0);
}

trait Shape: Send + Sync {
    fn area(&self) -> u32;
}

#[derive(Trace)]
#[reap(sync_finalize)]
struct Square {
    side: u32,
    #[reap(skip)]
    log: Log,
}

impl Shape for Square {
    fn area(&self) -> u32 {
        self.side * self.side
    }
}

impl Finalize for Square {
    fn finalize(this: &Gc<Self>) {
        this.log.push(format!("fin {}", this.area()));
    }
}

impl Drop for Square {
    fn drop(&mut self) {
        self.log.push(format!("drop {}", self.side));
    }
}

/// `gc_coerce!` to a trait object and to `dyn Any`, `downcast` back (the wrong type gives the
/// handle back unchanged), on several threads; the coerced handle's death runs the concrete
/// type's finalizer and `Drop`.
#[test]
fn gc_coerce_and_downcast_on_sync_gc_across_threads() {
    let heap = Heap::new();
    let log = Log::default();
    let sq = heap.alloc(Square {
        side: 3,
        log: log.clone(),
    });
    let w = Weak::new(&sq);
    let shape: Gc<dyn Shape> = reap::gc_coerce!(sq.clone() => dyn Shape);
    assert_eq!(shape.area(), 9);
    assert!(Gc::ptr_eq(&shape, &sq));
    assert!(Gc::is::<Square>(&shape));
    assert!(Gc::type_name(&shape).ends_with("Square"));
    let any: Gc<dyn Any + Send + Sync> = reap::gc_coerce!(sq => dyn Any + Send + Sync);
    let (shape, any) = thread::spawn(move || {
        assert_eq!(shape.area(), 9);
        let any = match any.downcast::<String>() {
            Ok(_) => panic!("a Square is not a String"),
            Err(back) => back,
        };
        assert!(
            any.downcast_ref::<Square>().is_some(),
            "the handle came back whole"
        );
        (shape, any)
    })
    .join()
    .unwrap();
    let back: Gc<Square> = any.downcast::<Square>().expect("it is a Square");
    assert_eq!(back.side, 3);
    assert_eq!(Gc::strong_count(&back), 2);
    drop(back);
    assert!(log.is_empty());
    assert!(w.is_alive());
    // The last handle is the trait object: its death is the Square's.
    drop(shape);
    assert_eq!(log.names(), ["fin 9", "drop 3"]);
    assert!(w.upgrade().is_none());
    drop(w);
    // A coerced handle whose last drop is on another thread after its owner exited.
    let (h, l) = (heap.clone(), log.clone());
    let any: Gc<dyn Any + Send + Sync> = thread::spawn(
        move || reap::gc_coerce!(h.alloc(Square { side: 4, log: l }) => dyn Any + Send + Sync),
    )
    .join()
    .unwrap();
    assert_eq!(any.downcast_ref::<Square>().map(|s| s.side), Some(4));
    let t = thread::spawn(move || drop(any));
    let t_id = t.thread().id();
    t.join().unwrap();
    assert_eq!(log.names()[2..], ["fin 16", "drop 4"]);
    assert_eq!(log.threads()[2..], [t_id, t_id]);
    assert_eq!(heap.live_objects(), 0);
}

/// The heap's last handle goes before its objects: they stay usable and die normally, their
/// weak references and callbacks working, on the owner.
#[test]
fn heap_dropped_before_its_objects_on_owner() {
    let heap = Heap::new();
    let log = Log::default();
    let d = heap.alloc(D { log: log.clone() });
    drop(heap);
    let (w0, w1, w2) = arm(&d, &log);
    let d2 = d.clone();
    assert!(w0.upgrade().is_some());
    drop(d2);
    drop(d);
    assert_eq!(log.names(), DEATH_ORDER);
    assert!(!w0.is_alive());
    drop((w0, w1, w2));
}

/// The heap's last handle goes before its objects, the owner exits, and the last handle is
/// dropped on another thread: the death runs there, whole.
#[test]
fn heap_dropped_before_its_objects_die_on_another_thread() {
    let log = Log::default();
    let l = log.clone();
    let d = thread::spawn(move || {
        let heap = Heap::new();
        heap.alloc(D { log: l })
    })
    .join()
    .unwrap();
    let l = log.clone();
    let t = thread::spawn(move || {
        let weaks = arm(&d, &l);
        let d2 = thread::scope(|s| s.spawn(|| d.clone()).join().unwrap());
        drop(d);
        assert!(l.is_empty());
        drop(d2);
        weaks
    });
    let t_id = t.thread().id();
    let weaks = t.join().unwrap();
    assert_eq!(log.names(), DEATH_ORDER);
    assert!(log.threads().iter().all(|&x| x == t_id));
    assert!(weaks.0.upgrade().is_none());
    drop(weaks);
}

/// No heap handle is left, the owner lives, and the last handle goes on another thread: the
/// owner has no `safepoint` to call, so the death waits for the owner's exit, and runs there.
#[test]
fn heap_dropped_foreign_drop_waits_for_owner_exit() {
    let log = Log::default();
    let l = log.clone();
    let owner = thread::spawn(move || {
        let heap = Heap::new();
        let d = heap.alloc(D { log: l.clone() });
        let w = Weak::new(&d);
        drop(heap);
        thread::spawn(move || drop(d)).join().unwrap();
        assert!(l.is_empty(), "queued to this thread until it exits");
        assert!(w.is_alive());
        w
    });
    let owner_id = owner.thread().id();
    let w = owner.join().unwrap();
    assert_eq!(log.names(), ["fin weak_alive=true", "drop"]);
    assert!(log.threads().iter().all(|&x| x == owner_id));
    assert!(!w.is_alive());
}

/// A thread stores handles in a `thread_local!`, whose destructor runs at the thread's exit,
/// before or after reap's own per-thread state is torn down (`first` says which thread-local
/// the thread touches first). Its own objects die there, on it; an object of an exited thread
/// too; an object of a live thread waits for that thread's safe point.
fn thread_local_handles_die_at_thread_exit(keep_first: bool) {
    thread_local! {
        static KEEP: RefCell<Vec<Gc<D>>> = const { RefCell::new(Vec::new()) };
    }
    let heap = Heap::new();
    let log = Log::default();
    let mine = heap.alloc(D { log: log.clone() });
    let w_mine = Weak::new(&mine);
    let (h, l) = (heap.clone(), log.clone());
    let orphan = thread::spawn(move || h.alloc(D { log: l })).join().unwrap();
    let w_orphan = Weak::new(&orphan);
    let (h, l) = (heap.clone(), log.clone());
    let t = thread::spawn(move || {
        let mut orphan = Some(orphan);
        if keep_first {
            KEEP.with(|k| k.borrow_mut().push(orphan.take().unwrap()));
        }
        let own = h.alloc(D { log: l });
        let w_own = Weak::new(&own);
        KEEP.with(|k| {
            let mut k = k.borrow_mut();
            k.push(own);
            k.push(mine);
        });
        if let Some(orphan) = orphan {
            KEEP.with(|k| k.borrow_mut().push(orphan));
        }
        w_own
    });
    let t_id = t.thread().id();
    let w_own = t.join().unwrap();
    // `own` and `orphan` died at t's exit, on t.
    assert_eq!(log.names(), ["fin weak_alive=true", "drop"].repeat(2));
    assert!(log.threads().iter().all(|&x| x == t_id));
    assert!(!w_own.is_alive() && !w_orphan.is_alive());
    // `mine` was queued to this thread.
    assert!(w_mine.is_alive());
    heap.safepoint();
    assert_eq!(log.names().len(), 6);
    assert_eq!(log.threads()[4..], [thread::current().id(); 2]);
    assert!(!w_mine.is_alive());
    drop((w_mine, w_own, w_orphan));
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn thread_local_handles_die_at_thread_exit_thread_local_made_first() {
    thread_local_handles_die_at_thread_exit(true);
}

#[test]
fn thread_local_handles_die_at_thread_exit_thread_local_made_after_attach() {
    thread_local_handles_die_at_thread_exit(false);
}

/// `attached_threads` counts the threads that used the heap (an allocation, a weak reference
/// made) and have not exited; a new heap has none.
#[test]
fn attached_threads_counts_threads_that_used_the_heap_until_they_exit() {
    let heap = Heap::new();
    assert_eq!(heap.attached_threads(), 0);
    let o = heap.alloc(0_u32);
    assert_eq!(heap.attached_threads(), 1);
    let start = Arc::new(Barrier::new(5));
    let end = Arc::new(Barrier::new(5));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (heap, o, start, end) = (heap.clone(), o.clone(), start.clone(), end.clone());
            thread::spawn(move || {
                if i % 2 == 0 {
                    drop(heap.alloc(i));
                } else {
                    drop(Weak::new(&o));
                }
                start.wait();
                end.wait();
            })
        })
        .collect();
    start.wait();
    assert_eq!(heap.attached_threads(), 5);
    end.wait();
    workers.into_iter().for_each(|t| t.join().unwrap());
    assert_eq!(heap.attached_threads(), 1);
    // A thread that only reads the heap's counts does not attach.
    let h = heap.clone();
    thread::spawn(move || h.live_objects()).join().unwrap();
    assert_eq!(heap.attached_threads(), 1);
    drop(o);
    // The workers' clones of `o` were dropped on them: queued to this thread.
    assert_eq!(heap.live_objects(), 1);
    heap.safepoint();
    assert_eq!(heap.live_objects(), 0);
}

/// As the module docs say: a thread that only upgrades and drops handles (none of them the
/// last) does not attach to the heap; one that makes a weak reference does.
#[test]
fn a_thread_that_only_upgrades_and_drops_stays_unattached() {
    let heap = Heap::new();
    let o = heap.alloc(0_u32);
    let w = Weak::new(&o);
    let barrier = Arc::new(Barrier::new(2));
    let (b, o2, w2) = (barrier.clone(), o.clone(), w.clone());
    let t = thread::spawn(move || {
        drop(w2.upgrade());
        drop(o2);
        b.wait();
        b.wait();
        let w3 = Weak::new(&w2.upgrade().unwrap());
        b.wait();
        b.wait();
        drop(w3);
    });
    barrier.wait();
    let after_drops = heap.attached_threads();
    barrier.wait();
    barrier.wait();
    let after_weak = heap.attached_threads();
    barrier.wait();
    t.join().unwrap();
    assert_eq!((after_drops, after_weak), (1, 2));
    drop((o, w));
}

/// An object made by a thread that then exits, with handles on two other threads: it dies,
/// once, on the thread that drops the last handle.
#[test]
fn object_of_exited_thread_held_by_two_threads_dies_when_the_last_drops() {
    let heap = Heap::new();
    let log = Log::default();
    let (h, l) = (heap.clone(), log.clone());
    let (a, b, w) = thread::spawn(move || {
        let d = h.alloc(D { log: l });
        let w = Weak::new(&d);
        (d.clone(), d, w)
    })
    .join()
    .unwrap();
    let (to_c, c_rx) = mpsc::channel::<()>();
    let (l1, l2) = (log.clone(), log.clone());
    let tb = thread::spawn(move || {
        drop(a);
        assert!(l1.is_empty(), "one handle left");
        to_c.send(()).unwrap();
    });
    let tc = thread::spawn(move || {
        c_rx.recv().unwrap();
        assert!(l2.is_empty());
        drop(b);
    });
    let c_id = tc.thread().id();
    tb.join().unwrap();
    tc.join().unwrap();
    assert_eq!(log.names(), ["fin weak_alive=true", "drop"]);
    assert_eq!(log.threads(), [c_id, c_id]);
    assert!(w.upgrade().is_none());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// The same, with the first of the two drops made while the owner is still alive (queued to
/// it, merged at its exit, which does not free the object) and the second after it exited.
#[test]
fn object_queued_to_owner_merged_at_its_exit_dies_with_the_last_handle_elsewhere() {
    let heap = Heap::new();
    let log = Log::default();
    let (h, l) = (heap.clone(), log.clone());
    let (a_tx, a_rx) = mpsc::channel::<Gc<D>>();
    let owner = thread::spawn(move || {
        let d = h.alloc(D { log: l.clone() });
        let w = Weak::new(&d);
        let b = d.clone();
        a_tx.send(d).unwrap();
        // The other thread drops its handle while this one is alive: queued here.
        let dropper = thread::spawn(move || drop(a_rx.recv().unwrap()));
        dropper.join().unwrap();
        assert!(l.is_empty());
        (b, w)
    });
    let (b, w) = owner.join().unwrap();
    assert!(
        log.is_empty(),
        "the owner's exit merged, with one handle left"
    );
    assert!(w.is_alive());
    let t = thread::spawn(move || drop(b));
    let t_id = t.thread().id();
    t.join().unwrap();
    assert_eq!(log.names(), ["fin weak_alive=true", "drop"]);
    assert_eq!(log.threads(), [t_id, t_id]);
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// A weak reference with a callback, dropped on another thread before its referent dies: its
/// callback never runs (SEMANTICS 4.2).
#[test]
fn callback_of_weak_dropped_first_on_another_thread_never_runs() {
    let heap = Heap::new();
    let ran = Arc::new(AtomicUsize::new(0));
    let o = heap.alloc(5_u8);
    let r = ran.clone();
    let w = Weak::with_callback(&o, move |_| {
        r.fetch_add(1, Ordering::Relaxed);
    });
    thread::spawn(move || drop(w)).join().unwrap();
    heap.safepoint();
    drop(o);
    assert_eq!(ran.load(Ordering::Relaxed), 0);
    assert_eq!(heap.live_objects(), 0);
}

/// Biased counting with a queued object whose owner's count then reaches zero: the owner
/// holds two handles `a`, `b` (its count 2); `b` is dropped on another thread (the shared count
/// is 0: queued to the owner); another thread clones `a` (shared count 1), and the owner drops
/// that clone and `a` (its count 0, with the object still queued). CPython's
/// `_Py_MergeZeroLocalRefcount` merges then, and the queue's later `_Py_ExplicitMergeRefcount(ob,
/// -1)` takes the merged count to 0: the object dies at the owner's safe point, once.
#[test]
fn owner_count_reaching_zero_while_queued_dies_at_safepoint() {
    let heap = Heap::new();
    let log = Log::default();
    let a = heap.alloc(D { log: log.clone() });
    let w = Weak::new(&a);
    let b = a.clone();
    thread::spawn(move || drop(b)).join().unwrap();
    let x = thread::scope(|s| s.spawn(|| a.clone()).join().unwrap());
    drop(x);
    drop(a);
    assert!(log.is_empty(), "the queue still holds a reference");
    heap.safepoint();
    assert_eq!(log.names(), ["fin weak_alive=true", "drop"]);
    assert!(!w.is_alive());
    drop(w);
    assert_eq!(heap.live_objects(), 0);
}

/// The smallest use of a heap on a thread: its first allocation attaches the thread (a
/// `ThreadState` in the heap's table, reached through a pointer kept by the thread), and its
/// exit detaches it. Miri checks the aliasing of that state.
#[test]
fn first_use_of_a_heap_on_a_thread_attaches_and_exit_detaches() {
    let heap = Heap::new();
    let h = heap.clone();
    thread::spawn(move || {
        let a = h.alloc(1_u32);
        let b = h.alloc(2_u32);
        assert_eq!(*a + *b, 3);
        assert_eq!(h.attached_threads(), 1);
    })
    .join()
    .unwrap();
    assert_eq!(heap.attached_threads(), 0);
    assert_eq!(heap.live_objects(), 0);
}

#[cfg(not(miri))]
const MANY: usize = 5_000;
#[cfg(miri)]
const MANY: usize = 2_200;

/// Each thread holds heap references in advance for the objects it allocates and frees
/// (batches of 1024, the surplus past 2048 given back): thousands of objects made by one
/// thread and freed by another leave the counts balanced, while the freeing thread lives and
/// after it exits (and under Miri, the heap's state is freed at the end: no leak).
#[test]
fn reserves_balance_when_thousands_of_objects_die_on_another_thread() {
    let heap = Heap::new();
    let h = heap.clone();
    let objects = thread::spawn(move || (0..MANY).map(|i| h.alloc(i)).collect::<Vec<_>>())
        .join()
        .unwrap();
    assert_eq!(heap.live_objects(), MANY);
    let (h, go) = (heap.clone(), Arc::new(Barrier::new(2)));
    let g = go.clone();
    let freer = thread::spawn(move || {
        // Attached first (a thread that only drops handles is not: it would free through the
        // gate, giving each reference straight back to the heap).
        h.safepoint();
        let sum: usize = objects.iter().map(|o| **o).sum();
        drop(objects);
        // Attached, holding the freed objects' references in its reserve.
        assert_eq!(h.attached_threads(), 1);
        assert_eq!(h.live_objects(), 0);
        g.wait();
        g.wait();
        sum
    });
    go.wait();
    assert_eq!(heap.live_objects(), 0);
    go.wait();
    assert_eq!(freer.join().unwrap(), MANY * (MANY - 1) / 2);
    assert_eq!(heap.live_objects(), 0);
    assert_eq!(heap.attached_threads(), 0);
}

/// Reads its heap's `live_objects` when dropped.
struct CountsOnDrop {
    heap: Heap,
    seen: Arc<Mutex<Option<usize>>>,
}

// SAFETY: no handles.
unsafe impl Trace for CountsOnDrop {
    fn trace(&self, _: &mut reap::Tracer<'_>) {}
}

impl Drop for CountsOnDrop {
    fn drop(&mut self) {
        *self.seen.lock().unwrap() = Some(self.heap.live_objects());
    }
}

/// `live_objects` read while a thread is leaving the heap at its exit: the leaving thread's
/// merge of the objects queued to it runs their deaths after it left the heap's table and
/// before it gave back its attachment's reference, and a `Drop` there reads the count. It
/// sees the objects alive (the dying one, whose memory is not yet freed, and one kept), not
/// the leaving thread's reserve and attachment (before, it read about a thousand more).
/// Then, after the join, the kept one alone.
#[test]
fn live_objects_exact_while_a_thread_leaves_the_heap() {
    let heap = Heap::new();
    let seen = Arc::new(Mutex::new(None));
    let kept = heap.alloc(0_u32);
    let (to_main, from_owner) = mpsc::channel();
    let (to_owner, from_main) = mpsc::channel::<()>();
    let (h, s) = (heap.clone(), seen.clone());
    let owner = thread::spawn(move || {
        let o = h.alloc(CountsOnDrop {
            heap: h.clone(),
            seen: s,
        });
        to_main.send(o).unwrap();
        // Returns without a safe point once the handle is dropped over there: the drop is
        // queued here, and merged by this thread's exit.
        from_main.recv().unwrap();
    });
    let o = from_owner.recv().unwrap();
    drop(o);
    to_owner.send(()).unwrap();
    owner.join().unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(2));
    assert_eq!(heap.live_objects(), 1);
    drop(kept);
    assert_eq!(heap.live_objects(), 0);
    // This thread, which allocated `kept`, is attached; the owner has left.
    assert_eq!(heap.attached_threads(), 1);
}

/// The last `Heap` handle dropped while a thread that used the heap is still exiting (it has
/// left the thread table and is about to give back its attachment's reference): whichever of
/// the two gives back the last reference frees the heap's state, after the other is done
/// with it. (Found by a review of a first version, which gave the attachment's reference back
/// before unlocking the table's lock: the handle's drop could free the state, lock included,
/// under the unlock. Miri reported it on its first seed; natively the window is a few
/// instructions.)
#[test]
fn heap_dropped_while_an_exiting_thread_gives_back_its_attachment() {
    let rounds = if cfg!(miri) { 6 } else { 2_000 };
    for i in 0..rounds {
        let heap = Heap::new();
        let h = heap.clone();
        let (tx, rx) = mpsc::channel::<()>();
        let t = thread::spawn(move || {
            // Attached, with a reserve (one object made and freed here).
            drop(h.alloc(1_u32));
            drop(h);
            tx.send(()).unwrap();
            // The thread-local destructors now leave the heap.
        });
        rx.recv().unwrap();
        // Until the thread has left the table (it is then between its removal and its give
        // back), then a few spins more or less, and the last handle goes.
        while heap.attached_threads() != 0 {
            thread::yield_now();
        }
        for _ in 0..i % 7 {
            std::hint::spin_loop();
        }
        drop(heap);
        t.join().unwrap();
    }
}

/// `live_objects` read in a loop while three threads, which attached by allocating and
/// freeing (so their reserves are not empty) or by a safe point, exit: every read is the five
/// objects kept, whatever step of its leaving each thread is at.
#[test]
fn live_objects_exact_while_threads_exit() {
    let heap = Heap::new();
    let kept: Vec<_> = (0..5_u32).map(|i| heap.alloc(i)).collect();
    let rounds = if cfg!(miri) { 2 } else { 200 };
    for _ in 0..rounds {
        let n = 3;
        let ready = Arc::new(Barrier::new(n + 1));
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (h, r) = (heap.clone(), ready.clone());
                thread::spawn(move || {
                    if i % 2 == 0 {
                        for k in 0..10_u64 {
                            drop(h.alloc(k));
                        }
                    } else {
                        h.safepoint();
                    }
                    r.wait();
                    // A `Heap`'s drop changes two counts one after the other (outside what
                    // `live_objects` promises): before the second barrier.
                    drop(h);
                    r.wait();
                })
            })
            .collect();
        ready.wait();
        ready.wait();
        let mut reads = 0;
        while threads.iter().any(|t| !t.is_finished()) || heap.attached_threads() > 1 {
            assert_eq!(heap.live_objects(), 5);
            reads += 1;
            if reads > 1_000_000 {
                break;
            }
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(heap.live_objects(), 5);
    }
    drop(kept);
    assert_eq!(heap.live_objects(), 0);
}

/// An object held in a `thread_local!` touched before the thread attached (so its destructor
/// runs after the thread left the heap's table): its death runs during the thread's exit with
/// no thread state. Its finalizer resurrects it into a global and allocates a new object there;
/// both are usable afterwards, and die normally on the thread that drops them.
#[test]
fn death_during_thread_exit_can_resurrect_and_allocate() {
    static KEEP: Mutex<Vec<Gc<Phoenix>>> = Mutex::new(Vec::new());
    #[derive(Trace)]
    #[reap(sync_finalize)]
    struct Phoenix {
        gen: u32,
        #[reap(skip)]
        log: Log,
        #[reap(skip)]
        heap: Mutex<Option<Heap>>,
    }
    impl Finalize for Phoenix {
        fn finalize(this: &Gc<Self>) {
            this.log.push(format!("fin {}", this.gen));
            let mut keep = KEEP.lock().unwrap();
            // The first generation resurrects itself and makes the second.
            if let Some(heap) = this.heap.lock().unwrap().take() {
                keep.push(this.clone());
                keep.push(heap.alloc(Phoenix {
                    gen: this.gen + 1,
                    log: this.log.clone(),
                    heap: Mutex::new(None),
                }));
            }
        }
    }
    impl Drop for Phoenix {
        fn drop(&mut self) {
            self.log.push(format!("drop {}", self.gen));
        }
    }
    thread_local! {
        static HELD: RefCell<Option<Gc<Phoenix>>> = const { RefCell::new(None) };
    }
    let heap = Heap::new();
    let log = Log::default();
    let (h, l) = (heap.clone(), log.clone());
    let t = thread::spawn(move || {
        HELD.with(|_| ()); // registered before the heap's thread state
        let p = h.alloc(Phoenix {
            gen: 0,
            log: l,
            heap: Mutex::new(Some(h.clone())),
        });
        HELD.with(|k| *k.borrow_mut() = Some(p));
    });
    let t_id = t.thread().id();
    t.join().unwrap();
    assert_eq!(log.names(), ["fin 0"]);
    assert_eq!(log.threads(), [t_id]);
    let kept = std::mem::take(&mut *KEEP.lock().unwrap());
    assert_eq!(kept.iter().map(|p| p.gen).collect::<Vec<_>>(), [0, 1]);
    assert!(Gc::is_finalized(&kept[0]) && !Gc::is_finalized(&kept[1]));
    assert_eq!(heap.live_objects(), 2);
    let d = thread::spawn(move || drop(kept));
    let d_id = d.thread().id();
    d.join().unwrap();
    assert_eq!(log.names(), ["fin 0", "drop 0", "fin 1", "drop 1"]);
    assert_eq!(log.threads(), [t_id, d_id, d_id, d_id]);
    assert_eq!(heap.live_objects(), 0);
}
