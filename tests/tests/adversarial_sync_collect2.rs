//! Second adversarial review of Shared-mode cycle collection (after b778757): lock guards kept
//! by the snapshot (`trace::HeldGuard`), the gate and its re-entrance across heaps
//! (`sync/thread.rs`), pause 2's weak clearing, and collections started from user code that
//! runs inside gated operations.
//!
//! Every scenario that could hang runs under a watchdog ([`within`]). Four tests failed against
//! the code they were written for (a detached section inside a gated death bypassing the gate,
//! a panicking `Trace` releasing an outer lock before a kept inner guard, collections started
//! from nested or crossed gates); their doc comments keep the diagnosis, with the line numbers
//! of then. All pass since the fixes (a per-thread stack of gates, left whole while a thread
//! waits or collects; guards kept before the value is traced, released last in first out).
//!
//! Natively: `cargo test -p reap-tests --test adversarial_sync_collect2`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test adversarial_sync_collect2`.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::mpsc;
use std::sync::{Arc, Barrier, Mutex, RwLock};
use std::thread;
use std::time::Duration;

use reap::sync::{Gc, Heap, Weak};
use reap::{Trace, Tracer};
use reap_tests::shared::{fin, fin_with, set_fin, within, Fin, Log};

/// Allocates with `make` on a helper thread that then exits: the objects' owner is gone, so
/// the drop of their last handle on a thread not attached to the heap runs their death right
/// there, inside the heap's gate.
fn orphaned<R: Send + 'static>(make: impl FnOnce() -> R + Send + 'static) -> R {
    thread::spawn(make).join().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Lock guards kept by the snapshot.

/// Several levels of locks: a mutex inside a read-write lock inside a mutex, and a mutex of a
/// mutex. Every guard is kept during the pause (inline), released in order.
#[derive(Trace)]
struct Deep {
    a: Mutex<RwLock<Mutex<Vec<Gc<Deep>>>>>,
    b: Mutex<Mutex<Option<Gc<Deep>>>>,
    c: RwLock<Option<RwLock<Option<Gc<Deep>>>>>,
    #[reap(skip)]
    log: Arc<Log>,
}

impl Drop for Deep {
    fn drop(&mut self) {
        self.log.drops.fetch_add(1, SeqCst);
    }
}

fn deep(heap: &Heap, log: &Arc<Log>) -> Gc<Deep> {
    heap.alloc(Deep {
        a: Mutex::new(RwLock::new(Mutex::new(Vec::new()))),
        b: Mutex::new(Mutex::new(None)),
        c: RwLock::new(Some(RwLock::new(None))),
        log: log.clone(),
    })
}

#[test]
fn nested_locks_cycle_is_collected_and_locks_are_released() {
    within("nested locks", || {
        let heap = Heap::new();
        let log = Log::new();
        let n = reps(6, 3);
        let objs: Vec<_> = (0..n).map(|_| deep(&heap, &log)).collect();
        for i in 0..n {
            let next = objs[(i + 1) % n].clone();
            objs[i]
                .a
                .lock()
                .unwrap()
                .write()
                .unwrap()
                .lock()
                .unwrap()
                .push(next.clone());
            *objs[i].b.lock().unwrap().lock().unwrap() = Some(next.clone());
            *objs[i].c.read().unwrap().as_ref().unwrap().write().unwrap() = Some(next);
        }
        // A live one: every lock must be free again after the collection.
        let keep = deep(&heap, &log);
        keep.a
            .lock()
            .unwrap()
            .write()
            .unwrap()
            .lock()
            .unwrap()
            .push(keep.clone());
        drop(objs);
        assert_eq!(heap.collect(), n);
        assert_eq!(log.drops(), n);
        assert!(keep.a.try_lock().is_ok());
        assert!(keep.a.lock().unwrap().try_write().is_ok());
        assert!(keep.b.try_lock().unwrap().try_lock().is_ok());
        assert!(keep.c.try_write().is_ok());
        keep.a
            .lock()
            .unwrap()
            .write()
            .unwrap()
            .lock()
            .unwrap()
            .clear();
        drop(keep);
        assert_eq!(heap.live_objects(), 0);
    });
}

const fn reps(native: usize, miri: usize) -> usize {
    reap_tests::shared::reps(native, miri)
}

/// A mutex poisoned by a panic while it was locked, in garbage: its value is still traced.
#[test]
fn poisoned_locks_in_garbage_are_traced() {
    within("poisoned", || {
        let heap = Heap::new();
        let log = Log::new();
        let a = deep(&heap, &log);
        let b = deep(&heap, &log);
        *a.b.lock().unwrap().lock().unwrap() = Some(b.clone());
        a.a.lock()
            .unwrap()
            .write()
            .unwrap()
            .lock()
            .unwrap()
            .push(b.clone());
        *b.b.lock().unwrap().lock().unwrap() = Some(a.clone());
        // Poison the outer and the inner mutex of `a.b`, and the rwlock of `b.c`.
        let aa = a.clone();
        let _ = thread::spawn(move || {
            let outer = aa.b.lock().unwrap();
            let _inner = outer.lock().unwrap();
            panic!("poison");
        })
        .join();
        let bb = b.clone();
        let _ = thread::spawn(move || {
            let _w = bb.c.write().unwrap();
            panic!("poison");
        })
        .join();
        assert!(a.b.is_poisoned());
        assert!(b.c.is_poisoned());
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        assert_eq!(log.drops(), 2);
    });
}

/// A lock held by another (unattached) thread throughout keeps its object; once released the
/// next collection takes the cycle.
#[test]
fn lock_held_elsewhere_keeps_then_collects() {
    within("held elsewhere", || {
        let heap = Heap::new();
        let log = Log::new();
        let a = deep(&heap, &log);
        let b = deep(&heap, &log);
        *a.b.lock().unwrap().lock().unwrap() = Some(b.clone());
        *b.b.lock().unwrap().lock().unwrap() = Some(a.clone());
        let (tx, rx) = mpsc::channel::<()>();
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let aa = a.clone();
        let t = thread::spawn(move || {
            let g = aa.b.lock().unwrap();
            ready_tx.send(()).unwrap();
            rx.recv().unwrap();
            drop(g);
            // Dropped on a thread that never attached: the gate.
            drop(aa);
        });
        ready_rx.recv().unwrap();
        drop((a, b));
        assert_eq!(heap.collect(), 0);
        tx.send(()).unwrap();
        t.join().unwrap();
        assert_eq!(heap.collect(), 2);
    });
}

// ---------------------------------------------------------------------------------------------
// The gate, nested across heaps.

/// A thread not attached to heap B drops the last handle of an object of B (its death runs
/// inside B's gate); that object's `Drop` drops the last handle of an object of heap A (a death
/// inside A's gate, nested in B's); *that* `Drop` asks B for a collection. `outside_gate(B)`
/// only leaves B's gate when B is the innermost one (`Hot.gate_heap`, thread.rs:254), so the
/// collector waits for its own thread to leave B's gate: it never stops the world, and
/// `try_collect` times out (`collect` would panic after 5 s).
#[test]
fn collect_from_nested_gate_of_another_heap() {
    within("nested gates", || {
        let heap_a = Heap::new();
        let heap_b = Heap::new();
        let log = Log::new();
        let result: Arc<Mutex<Option<Result<usize, String>>>> = Arc::default();
        let (ha, hb, l) = (heap_a.clone(), heap_b.clone(), log.clone());
        let r = result.clone();
        let hb2 = heap_b.clone();
        let obj_b = orphaned(move || {
            let obj_a = fin_with(
                &ha,
                1,
                &l,
                None,
                Some(Box::new(move || {
                    let got = hb2
                        .try_collect(Duration::from_millis(if cfg!(miri) { 2000 } else { 1000 }))
                        .map_err(|e| e.to_string());
                    *r.lock().unwrap() = Some(got);
                })),
            );
            let mut slot = Some(obj_a);
            fin_with(&hb, 2, &l, None, Some(Box::new(move || drop(slot.take()))))
        });
        // On a thread attached to neither heap.
        thread::spawn(move || drop(obj_b)).join().unwrap();
        let got = result.lock().unwrap().take();
        assert_eq!(got, Some(Ok(0)), "collection from a nested gate");
        drop((heap_a, heap_b));
    });
}

/// Two threads, each inside the gate of one heap (running the death of an object of it), each
/// collect the *other* heap. Each collector leaves only the gate of the heap it collects, so
/// each waits for the other's gate entry: neither world stops, both time out.
#[test]
fn crossed_collections_from_gates() {
    within("crossed", || {
        let heap_a = Heap::new();
        let heap_b = Heap::new();
        let log = Log::new();
        let barrier = Arc::new(Barrier::new(2));
        let results: Arc<Mutex<Vec<Result<usize, String>>>> = Arc::default();
        let make = |own: &Heap, other: &Heap, id: u32| {
            let (own, other, l, b, r) = (
                own.clone(),
                other.clone(),
                log.clone(),
                barrier.clone(),
                results.clone(),
            );
            orphaned(move || {
                fin_with(
                    &own,
                    id,
                    &l,
                    None,
                    Some(Box::new(move || {
                        b.wait();
                        let got = other
                            .try_collect(Duration::from_millis(1000))
                            .map_err(|e| e.to_string());
                        r.lock().unwrap().push(got);
                    })),
                )
            })
        };
        let in_a = make(&heap_a, &heap_b, 1);
        let in_b = make(&heap_b, &heap_a, 2);
        let t1 = thread::spawn(move || drop(in_a));
        let t2 = thread::spawn(move || drop(in_b));
        t1.join().unwrap();
        t2.join().unwrap();
        let got = results.lock().unwrap().clone();
        assert_eq!(got, vec![Ok(0), Ok(0)]);
    });
}

/// A gated death's `Drop` enters a detached section of the same heap and collects there: a
/// detached thread collects nothing (`Ok(0)`), and nothing waits.
#[test]
fn collect_inside_detached_inside_gated_death() {
    within("detached in gate", || {
        let heap = Heap::new();
        let log = Log::new();
        let result: Arc<Mutex<Option<usize>>> = Arc::default();
        let (h, l, r) = (heap.clone(), log.clone(), result.clone());
        let obj = orphaned(move || {
            let h2 = h.clone();
            fin_with(
                &h,
                1,
                &l,
                None,
                Some(Box::new(move || {
                    let n = h2.detached(|| h2.collect());
                    *r.lock().unwrap() = Some(n);
                })),
            )
        });
        thread::spawn(move || drop(obj)).join().unwrap();
        assert_eq!(*result.lock().unwrap(), Some(0));
        // And a collection from this thread still works.
        let a = fin(&heap, 2, &log);
        let b = fin(&heap, 3, &log);
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        drop((a, b));
        assert_eq!(heap.collect(), 2);
    });
}

/// A gated death's `Drop` collects the same heap while another thread is parked-waiting to
/// enter the gate, then the collection runs finalizers that drop more objects from other
/// threads' gates.
#[test]
fn collect_from_gated_death_with_gate_traffic() {
    within("gate traffic", || {
        let heap = Heap::new();
        let log = Log::new();
        let result: Arc<Mutex<Option<usize>>> = Arc::default();
        let (h, l, r) = (heap.clone(), log.clone(), result.clone());
        let (obj, spare) = orphaned(move || {
            let h2 = h.clone();
            let spare: Vec<Gc<Fin>> = (0..reps(20, 3))
                .map(|i| fin(&h, 100 + i as u32, &l))
                .collect();
            let a = fin(&h, 10, &l);
            let b = fin(&h, 11, &l);
            *a.next.lock().unwrap() = Some(b.clone());
            *b.next.lock().unwrap() = Some(a.clone());
            let mut cyc = Some((a, b));
            let obj = fin_with(
                &h,
                1,
                &l,
                None,
                Some(Box::new(move || {
                    drop(cyc.take());
                    *r.lock().unwrap() = Some(h2.collect());
                })),
            );
            (obj, spare)
        });
        let t = thread::spawn(move || {
            for s in spare {
                drop(s);
            }
        });
        thread::spawn(move || drop(obj)).join().unwrap();
        t.join().unwrap();
        assert_eq!(*result.lock().unwrap(), Some(2));
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Finalizers, weak references, heap handles.

/// A finalizer makes a weak reference to its own (still garbage) object and to its peer; pause
/// 2 must clear them before values are dropped: upgrading afterwards gives `None`.
#[test]
fn weak_made_by_finalizer_to_final_garbage_is_cleared() {
    within("weak in finalizer", || {
        let heap = Heap::new();
        let log = Log::new();
        let weaks: Arc<Mutex<Vec<Weak<Fin>>>> = Arc::default();
        let a = fin(&heap, 1, &log);
        let b = fin(&heap, 2, &log);
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        let w = weaks.clone();
        set_fin(&a, move |me| {
            let mut w = w.lock().unwrap();
            w.push(Weak::new(me));
            let peer = me.next.lock().unwrap().clone().unwrap();
            w.push(Weak::new(&peer));
        });
        drop((a, b));
        let n = heap.collect();
        assert_eq!(n, 2);
        for w in weaks.lock().unwrap().iter() {
            assert!(w.upgrade().is_none());
            assert!(!w.is_alive());
        }
        weaks.lock().unwrap().clear();
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A finalizer run by a collection drops a clone of the `Heap` and every other handle: the
/// collecting call's own `&Heap` keeps it; then the test drops the last handle.
#[test]
fn heap_handle_dropped_inside_finalizer() {
    within("heap dropped in finalizer", || {
        let heap = Heap::new();
        let log = Log::new();
        let a = fin(&heap, 1, &log);
        let b = fin(&heap, 2, &log);
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        let mut h2 = Some(heap.clone());
        set_fin(&a, move |_| drop(h2.take()));
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        drop(heap);
    });
}

/// A finalizer resurrects one object into a static-like holder on another thread, which keeps
/// using it while the collector runs pause 2 and reclaims the rest.
#[test]
fn resurrected_object_used_by_other_thread_during_pause_two() {
    within("resurrection", || {
        let heap = Heap::new();
        let log = Log::new();
        let (tx, rx) = mpsc::channel::<Gc<Fin>>();
        let a = fin(&heap, 1, &log);
        let b = fin(&heap, 2, &log);
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        let tx = Mutex::new(tx);
        set_fin(&a, move |me| {
            tx.lock().unwrap().send(me.clone()).unwrap();
        });
        let used = Arc::new(AtomicUsize::new(0));
        let u = used.clone();
        // The thread keeps its handle until the collection has returned: otherwise it could
        // finish and drop it before pause 2, and the pair would rightly be garbage again.
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let h = heap.clone();
        let t = thread::spawn(move || {
            let got = rx.recv().unwrap();
            for _ in 0..reps(1000, 10) {
                let c = got.clone();
                assert_eq!(c.id, 1);
                let n = c.next.lock().unwrap().clone();
                assert_eq!(n.map(|n| n.id), Some(2));
                u.fetch_add(1, SeqCst);
            }
            h.detached(|| done_rx.recv().unwrap());
            // Break the cycle by hand.
            *got.next.lock().unwrap() = None;
        });
        drop((a, b));
        let n = heap.collect();
        done_tx.send(()).unwrap();
        t.join().unwrap();
        assert_eq!(n, 0, "both resurrected (one reaches the other)");
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Two heaps, one thread collecting each.

#[test]
fn two_threads_two_heaps_collect_concurrently() {
    within("two heaps", || {
        let heap_a = Heap::new();
        let heap_b = Heap::new();
        let rounds = reps(30, 2);
        let barrier = Arc::new(Barrier::new(2));
        let mk = |first: &Heap, second: &Heap| {
            let (x, y, b) = (first.clone(), second.clone(), barrier.clone());
            thread::spawn(move || {
                let log = Log::new();
                let mut total = 0;
                for _ in 0..rounds {
                    // Attached to both.
                    let p = fin(&x, 1, &log);
                    let q = fin(&y, 2, &log);
                    *p.next.lock().unwrap() = Some(p.clone());
                    *q.next.lock().unwrap() = Some(q.clone());
                    drop((p, q));
                    // Blocking while attached must happen detached (from both heaps).
                    x.detached(|| y.detached(|| b.wait()));
                    total += x.collect();
                }
                total
            })
        };
        let t1 = mk(&heap_a, &heap_b);
        let t2 = mk(&heap_b, &heap_a);
        let n1 = t1.join().unwrap();
        let n2 = t2.join().unwrap();
        assert_eq!(n1 + n2 + heap_a.collect() + heap_b.collect(), 4 * rounds);
    });
}

/// A hand-written `Trace` that reports a handle held behind two nested std locks of its own,
/// beside one it hides (allowed: fewer handles). The hidden child must be kept.
struct Hidden {
    shown: Mutex<Mutex<Option<Gc<Hidden>>>>,
    hidden: Mutex<Option<Gc<Hidden>>>,
}

// SAFETY: visits only handles it owns, the same ones every time.
unsafe impl Trace for Hidden {
    fn trace(&self, t: &mut Tracer<'_>) {
        self.shown.trace(t);
    }
}

#[test]
fn hidden_handle_keeps_its_target() {
    within("hidden", || {
        let heap = Heap::new();
        let a = heap.alloc(Hidden {
            shown: Mutex::new(Mutex::new(None)),
            hidden: Mutex::new(None),
        });
        let b = heap.alloc(Hidden {
            shown: Mutex::new(Mutex::new(None)),
            hidden: Mutex::new(None),
        });
        *a.shown.lock().unwrap().lock().unwrap() = Some(b.clone());
        *b.hidden.lock().unwrap() = Some(a.clone());
        drop(a);
        assert_eq!(heap.collect(), 0);
        let a2 = b.hidden.lock().unwrap().clone().unwrap();
        assert!(a2.shown.lock().unwrap().lock().unwrap().is_some());
        *b.hidden.lock().unwrap() = None;
        drop((a2, b));
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// A panicking `Trace` and the kept guards.

/// Panics when traced (a hand-written `Trace` that fails: the collection abandons, SEMANTICS).
struct Bomb;

// SAFETY: holds no handle; it panics instead of visiting nothing.
unsafe impl Trace for Bomb {
    fn trace(&self, _: &mut Tracer<'_>) {
        panic!("trace bomb");
    }
}

/// A lock inside a lock's value, beside a field whose trace panics.
struct Inner {
    inner: Box<Mutex<Vec<Gc<Fin>>>>,
    bomb: Bomb,
}

// SAFETY: visits the handles of `inner`, which it owns.
unsafe impl Trace for Inner {
    fn trace(&self, t: &mut Tracer<'_>) {
        self.inner.trace(t);
        self.bomb.trace(t);
    }
}

/// Tells another thread when the trace unwinds past the outer lock, and waits for it.
struct Rendezvous {
    go: Mutex<mpsc::Sender<()>>,
    done: Mutex<mpsc::Receiver<()>>,
}

struct OnUnwind<'a>(&'a Rendezvous);

impl Drop for OnUnwind<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            // No runtime call: std channels only.
            let _ = self.0.go.lock().unwrap().send(());
            let _ = self.0.done.lock().unwrap().recv();
        }
    }
}

struct Outer {
    m: Mutex<Inner>,
    meet: Rendezvous,
}

// SAFETY: visits the handles of `m`, which it owns; runs no runtime code (the guard's drop
// only uses std channels).
unsafe impl Trace for Outer {
    fn trace(&self, t: &mut Tracer<'_>) {
        let _p = OnUnwind(&self.meet);
        self.m.trace(t);
    }
}

/// Found: the snapshot kept the guard of `inner`'s mutex (`Tracer::hold`) and then `Inner`'s
/// trace panicked: unwinding released (and poisoned) the *outer* mutex in `Mutex::trace`'s
/// frame, while the inner guard stayed in `find_garbage`'s `guards` until after `catch_unwind`.
/// Now the outer guard is kept before the value is traced, and guards are released last in,
/// first out, so the outer lock stays held as long as the inner guard. A thread
/// outside the stop (never attached) locks the outer mutex meanwhile and replaces the box:
/// the inner mutex is freed while its guard lives; dropping the guard then writes freed
/// memory (use after free; Miri reports it). trace.rs:214 (`hold` erases the guard's borrow on
/// the premise that nothing can free the lock before the pause ends) and collect.rs:327
/// (`drop(guards)` after the unwinding, not in it).
#[test]
fn panicking_trace_releases_outer_lock_before_held_inner_guard() {
    within("panicking trace", || {
        let heap = Heap::new();
        let reports = reap_tests::shared::hooked(&heap);
        let (go_tx, go_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel();
        let obj = heap.alloc(Outer {
            m: Mutex::new(Inner {
                inner: Box::new(Mutex::new(Vec::new())),
                bomb: Bomb,
            }),
            meet: Rendezvous {
                go: Mutex::new(go_tx),
                done: Mutex::new(done_rx),
            },
        });
        let theirs = obj.clone();
        // A possible root (a reference dropped): the collection traces it.
        drop(obj.clone());
        // Never attached: runs while the world is stopped.
        let t = thread::spawn(move || {
            let mut outer_was_free = false;
            if go_rx.recv().is_ok() {
                {
                    let g = match theirs.m.try_lock() {
                        Ok(g) => Some(g),
                        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                        Err(std::sync::TryLockError::WouldBlock) => None,
                    };
                    if let Some(mut g) = g {
                        outer_was_free = true;
                        // Would free the mutex whose guard the collector still keeps (a
                        // new box on purpose: the old one, and its mutex, must be freed).
                        #[allow(clippy::replace_box)]
                        {
                            g.inner = Box::new(Mutex::new(Vec::new()));
                        }
                    }
                }
                done_tx.send(()).unwrap();
            }
            (theirs, outer_was_free)
        });
        assert_eq!(heap.collect(), 0);
        let (theirs, outer_was_free) = t.join().unwrap();
        assert!(
            !outer_was_free,
            "the outer lock stays held while the collector keeps the inner one's guard"
        );
        assert!(!reports.lock().unwrap().is_empty());
        drop((theirs, obj));
    });
}

// ---------------------------------------------------------------------------------------------
// A detached section opened from inside a gated death.

/// Whether the traced object's death ran while the world was stopped.
static BYPASSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// An object whose `Trace` keeps its lock's guard (through `Mutex::trace`) and then waits,
/// with std channels only, for another thread to try to drop it while the world is stopped.
struct Waits {
    m: Mutex<Vec<Gc<Fin>>>,
    chan: Mutex<Option<(mpsc::Sender<()>, mpsc::Receiver<()>)>>,
}

// SAFETY: visits the handles of `m`, which it owns; the channels are no runtime code.
unsafe impl Trace for Waits {
    fn trace(&self, t: &mut Tracer<'_>) {
        self.m.trace(t);
        let c = self.chan.lock().unwrap().take();
        if let Some((traced, done)) = c {
            let _ = traced.send(());
            // With the gate closed, the other thread's drop waits for the restart: no `done`.
            if done.recv_timeout(Duration::from_millis(1500)).is_ok() {
                BYPASSED.store(true, SeqCst);
            }
        }
    }
}

/// A thread not attached to the heap runs an object's death inside the gate; its `Drop`
/// opens `Heap::detached` on the same heap (which leaves the gate, so that a collection need
/// not wait) and drops the last handle of another object there. `detached` releases the
/// gate's count (`leave_gate`, thread.rs:254) but leaves `Hot.gate_heap`/`gate_depth` as they
/// were, so the drop's `gated` (thread.rs:160) takes itself for a nested entry
/// (`Gate::enter`, thread.rs:174-186) and runs without counting in: the death runs while a
/// collection on another thread holds the world stopped. Here it frees the object whose
/// lock guard the snapshot keeps (use after free when the guard drops; Miri reports it);
/// generally any count change or free races the snapshot and the slab walk.
#[test]
fn detached_section_inside_gated_death_bypasses_the_gate() {
    within("detached in gated death", || {
        BYPASSED.store(false, SeqCst);
        let heap = Heap::new();
        let log = Log::new();
        let (ready_tx, ready_rx) = mpsc::channel::<()>();
        let (traced_tx, traced_rx) = mpsc::channel::<()>();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let (h, l) = (heap.clone(), log.clone());
        let x = orphaned(move || {
            let w = h.alloc(Waits {
                m: Mutex::new(Vec::new()),
                chan: Mutex::new(Some((traced_tx, done_rx))),
            });
            // A possible root (a reference dropped): the collection traces it.
            drop(w.clone());
            let h2 = h.clone();
            let mut w = Some(w);
            fin_with(
                &h,
                1,
                &l,
                None,
                Some(Box::new(move || {
                    h2.detached(|| {
                        ready_tx.send(()).unwrap();
                        traced_rx.recv().unwrap();
                        // Must wait at the gate: the world is stopped.
                        drop(w.take());
                        let _ = done_tx.send(());
                    });
                })),
            )
        });
        // Attached to nothing: the death of `x` runs inside the gate.
        let t = thread::spawn(move || drop(x));
        ready_rx.recv().unwrap();
        heap.collect();
        t.join().unwrap();
        assert!(
            !BYPASSED.load(SeqCst),
            "a death ran on a detached thread while the world was stopped"
        );
        assert_eq!(heap.live_objects(), 0);
    });
}

// ---------------------------------------------------------------------------------------------
// Reclaim: what a `Drop` of garbage does with its peers.

/// Garbage whose `Drop` keeps a handle to its (garbage) peer and makes weak references to it.
struct Keeper {
    next: Mutex<Option<Gc<Keeper>>>,
    out: Arc<Mutex<Vec<Gc<Keeper>>>>,
    weaks: Arc<Mutex<Vec<Weak<Keeper>>>>,
    data: String,
}

// SAFETY: visits the handle it owns (`out` and `weaks` are the test's, not its).
unsafe impl Trace for Keeper {
    fn trace(&self, t: &mut Tracer<'_>) {
        self.next.trace(t);
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        if let Some(n) = self.next.get_mut().unwrap().take() {
            self.weaks.lock().unwrap().push(Weak::new(&n));
            self.out.lock().unwrap().push(n);
        }
    }
}

#[test]
fn drop_of_garbage_keeps_zombie_and_weak_to_peer() {
    within("zombies", || {
        let heap = Heap::new();
        let out: Arc<Mutex<Vec<Gc<Keeper>>>> = Arc::default();
        let weaks: Arc<Mutex<Vec<Weak<Keeper>>>> = Arc::default();
        let mk = |s: &str| {
            heap.alloc(Keeper {
                next: Mutex::new(None),
                out: out.clone(),
                weaks: weaks.clone(),
                data: s.to_string(),
            })
        };
        let a = mk("a");
        let b = mk("b");
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        let zombies = std::mem::take(&mut *out.lock().unwrap());
        assert_eq!(zombies.len(), 2);
        for z in &zombies {
            // Deref of a reclaimed value panics, on any thread.
            let z2 = z.clone();
            let r = thread::spawn(move || {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| z2.data.len())).is_err()
            })
            .join()
            .unwrap();
            assert!(r, "deref of a zombie must panic");
        }
        for w in weaks.lock().unwrap().iter() {
            if let Some(g) = w.upgrade() {
                assert!(
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.data.len()))
                        .is_err()
                );
            }
        }
        drop(zombies);
        for w in weaks.lock().unwrap().iter() {
            assert!(w.upgrade().is_none());
        }
        weaks.lock().unwrap().clear();
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A node of a garbage 2-cycle whose `Drop` (run by the reclaim) sends a clone of its peer to
/// another thread.
struct Sender {
    next: Mutex<Option<Gc<Sender>>>,
    tx: Mutex<Option<mpsc::Sender<Gc<Sender>>>>,
    dropped: Arc<AtomicUsize>,
}

// SAFETY: visits the handle it owns.
unsafe impl Trace for Sender {
    fn trace(&self, t: &mut Tracer<'_>) {
        self.next.trace(t);
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, SeqCst);
        if let Some(tx) = self.tx.get_mut().unwrap().take() {
            let peer = self.next.get_mut().unwrap().clone();
            let _ = tx.send(peer.unwrap());
        }
    }
}

/// The collection gives back its hold on a zombie (a garbage object a `Drop` handed to another
/// thread) while that thread, never attached, makes a weak reference to it, drops it and
/// upgrades: the hold's give-back decides the death with a plain load only when it is the last
/// reference and no weak reference exists, so whichever goes last frees the zombie, once.
#[test]
fn zombie_sent_to_another_thread_races_the_holds_give_back() {
    within("zombie races the hold", || {
        let heap = Heap::new();
        let dropped = Arc::new(AtomicUsize::new(0));
        let reps = if cfg!(miri) { 12 } else { 300 };
        for _ in 0..reps {
            let (tx, rx) = mpsc::channel::<Gc<Sender>>();
            let taker = thread::spawn(move || {
                let mut took = 0;
                for zombie in rx {
                    let w = Weak::new(&zombie);
                    drop(zombie);
                    // Upgrades while the collector may be giving back its hold.
                    for _ in 0..4 {
                        drop(w.upgrade());
                    }
                    took += 1;
                }
                took
            });
            let mk = |tx: Option<mpsc::Sender<Gc<Sender>>>| {
                heap.alloc(Sender {
                    next: Mutex::new(None),
                    tx: Mutex::new(tx),
                    dropped: dropped.clone(),
                })
            };
            // Each node sends its peer: the first one dropped sends a node whose value is not
            // dropped yet, the second one a node already dropped.
            let (a, b) = (mk(Some(tx.clone())), mk(Some(tx)));
            *a.next.lock().unwrap() = Some(b.clone());
            *b.next.lock().unwrap() = Some(a.clone());
            drop((a, b));
            assert_eq!(heap.collect(), 2);
            assert_eq!(taker.join().unwrap(), 2, "each node sent its peer once");
        }
        assert_eq!(dropped.load(SeqCst), 2 * reps);
        assert_eq!(heap.live_objects(), 0, "every zombie freed");
    });
}

/// A garbage node that counts its links' references as its `Drop` lets them go.
struct Counter {
    links: Mutex<Vec<Gc<Counter>>>,
    seen: Arc<Mutex<Vec<usize>>>,
}

// SAFETY: visits the handles it owns.
unsafe impl Trace for Counter {
    fn trace(&self, t: &mut Tracer<'_>) {
        self.links.trace(t);
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        let mut links = std::mem::take(self.links.get_mut().unwrap());
        while let Some(l) = links.pop() {
            if let Some(other) = links.last() {
                drop(l);
                self.seen.lock().unwrap().push(Gc::strong_count(other));
            }
        }
    }
}

/// `Gc::strong_count` read by a `Drop` during the reclaim counts the references the reclaim
/// has dropped so far as gone, although their decrements are deferred to the hold's give-back
/// (the count the reader sees is the collection's hold and the one handle left).
#[test]
fn strong_count_in_a_reclaims_drop_leaves_out_its_deferred_drops() {
    within("strong count in reclaim", || {
        let heap = Heap::new();
        let seen: Arc<Mutex<Vec<usize>>> = Arc::default();
        let mk = || {
            heap.alloc(Counter {
                links: Mutex::new(Vec::new()),
                seen: seen.clone(),
            })
        };
        let (x, y) = (mk(), mk());
        // x holds y twice, y holds x once.
        x.links.lock().unwrap().extend([y.clone(), y.clone()]);
        y.links.lock().unwrap().push(x.clone());
        assert_eq!(Gc::strong_count(&y), 3);
        drop((x, y));
        assert_eq!(heap.collect(), 2);
        // x's `Drop` let one of its two handles to y go, then read y's count: the hold and the
        // other handle.
        assert_eq!(*seen.lock().unwrap(), vec![2]);
        assert_eq!(heap.live_objects(), 0);
    });
}

/// A finalizer makes a weak reference with a callback to its garbage peer and keeps it outside
/// the garbage: pause 2 clears it, the callback runs once, after the restart.
#[test]
fn weak_with_callback_made_by_finalizer_runs_once() {
    within("callback from finalizer", || {
        let heap = Heap::new();
        let log = Log::new();
        let keep: Arc<Mutex<Vec<Weak<Fin>>>> = Arc::default();
        let a = fin(&heap, 1, &log);
        let b = fin(&heap, 2, &log);
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        let (k, l) = (keep.clone(), log.clone());
        set_fin(&a, move |me| {
            let peer = me.next.lock().unwrap().clone().unwrap();
            let l2 = l.clone();
            k.lock().unwrap().push(Weak::with_callback(&peer, move |w| {
                assert!(w.upgrade().is_none());
                l2.cbs.fetch_add(1, SeqCst);
            }));
        });
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        assert_eq!(log.cbs(), 1);
        assert!(keep.lock().unwrap()[0].upgrade().is_none());
        keep.lock().unwrap().clear();
        assert_eq!(heap.live_objects(), 0);
    });
}

/// `collect` from inside `Heap::detached` collects nothing (`Ok(0)`), at once; another heap
/// the thread is attached to can still be collected from there.
#[test]
fn collect_inside_detached() {
    within("collect in detached", || {
        let heap = Heap::new();
        let other = Heap::new();
        let log = Log::new();
        let a = fin(&heap, 1, &log);
        *a.next.lock().unwrap() = Some(a.clone());
        let b = fin(&other, 2, &log);
        *b.next.lock().unwrap() = Some(b.clone());
        drop((a, b));
        let (n, m) = heap.detached(|| (heap.collect(), other.collect()));
        assert_eq!((n, m), (0, 1));
        assert_eq!(heap.collect(), 1);
    });
}

#[derive(Trace)]
struct WeakMaker {
    next: Mutex<Option<Gc<WeakMaker>>>,
    #[reap(skip)]
    made: Arc<Mutex<Vec<Weak<WeakMaker>>>>,
    #[reap(skip)]
    calls: Arc<AtomicUsize>,
}

impl Drop for WeakMaker {
    fn drop(&mut self) {
        // Reclaim drops this value: its garbage peer gets a weak reference with a callback,
        // and the handle to it goes (only the collection's hold is left on the peer).
        if let Some(n) = self.next.get_mut().unwrap().take() {
            let calls = self.calls.clone();
            self.made
                .lock()
                .unwrap()
                .push(Weak::with_callback(&n, move |w: &Weak<WeakMaker>| {
                    assert!(w.upgrade().is_none());
                    calls.fetch_add(1, SeqCst);
                }));
        }
    }
}

/// A `Drop` run by reclaim makes a weak reference with a callback to its garbage peer and
/// keeps no handle: the peer is freed when the collection gives its hold back, and the callback
/// runs then, once, seeing the reference cleared.
#[test]
fn weak_made_by_drop_during_reclaim_calls_back_when_hold_is_given_back() {
    within("weak made during reclaim", || {
        let heap = Heap::new();
        let made: Arc<Mutex<Vec<Weak<WeakMaker>>>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let mk = || {
            heap.alloc(WeakMaker {
                next: Mutex::new(None),
                made: made.clone(),
                calls: calls.clone(),
            })
        };
        let (a, b) = (mk(), mk());
        *a.next.lock().unwrap() = Some(b.clone());
        *b.next.lock().unwrap() = Some(a.clone());
        drop((a, b));
        assert_eq!(heap.collect(), 2);
        assert_eq!(calls.load(SeqCst), 2);
        let made = std::mem::take(&mut *made.lock().unwrap());
        assert_eq!(made.len(), 2);
        assert!(made.iter().all(|w| w.upgrade().is_none()));
        drop(made);
        assert_eq!(heap.live_objects(), 0);
    });
}
