//! Adversarial tests of a weak-reference object's owner-side death decided under its
//! referent's weak lock with no compare-and-swap (`sync::weak::dies_unlisted`, nineteenth
//! session), from its review.
//!
//! The bug attacked by `weak_to_the_shared_weak_object_against_its_owners_last_drop`:
//! `count::merge_zero_local` picks `dies_unlisted` on a `!has_weak_info()` read made before
//! the referent's lock, and `dies_unlisted` never looks again. Another thread may meanwhile
//! take the shared weak reference (`Weak::new`, a try-increment under the referent's lock),
//! make a weak reference *to the weak-reference object* (`Weak::new(&Weak::as_object(..))`:
//! a block installed without any lock), and drop its handle; the owner's locked look then
//! reads "no other reference", unlists and declares the object dead, leaving its word
//! `MAYBE_WEAK` with a zero count, which `count::try_inc` accepts. The weak reference to it
//! upgrades under the weak-reference object's own stripe (not the referent's) and returns a
//! handle to an object whose death is running: a use after free (loom model 33 in
//! `runtime/tests/loom_weak.rs` finds it deterministically, a SIGSEGV). Here the weak-reference
//! object is dropped at depth 50 of a chain, where the trashcan defers deaths, so that its
//! general death (which a reference with weak references of its own takes) has a wide window
//! for the upgrade; since the twenty-fourth session a shared reference that `dies_unlisted`
//! declares dead is freed at once instead (`sync::heap::weakref_zero`), so should the bug
//! return, the upgrade would meet freed memory sooner, not later. The first window (the block
//! installed between the owner's two looks) is widened by threads hammering the referent's
//! stripe.
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use reap::sync::{Gc, Heap, Weak};
use reap::Trace;
use reap_tests::shared::{settled_live, within};

const N: usize = if cfg!(miri) { 4 } else { 3000 };

/// A link of a chain whose `Drop` drops the weak reference it holds, then runs `pause`.
#[derive(Trace)]
struct Node {
    next: Option<Gc<Node>>,
    #[reap(skip)]
    w: Mutex<Option<Weak<u64>>>,
    #[reap(skip)]
    #[allow(clippy::type_complexity)]
    pause: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    #[reap(skip)]
    before: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        let w = self.w.lock().unwrap().take();
        if let Some(w) = w {
            if let Some(b) = self.before.lock().unwrap().take() {
                b();
            }
            drop(w);
            if let Some(p) = self.pause.lock().unwrap().take() {
                p();
            }
        }
    }
}

/// Where in the chain (from its head) a death is deferred by the trashcan: the link at
/// this index runs its `Drop` with the trashcan's depth at its limit (50), so what it drops
/// dies only after the whole chain.
const DEFERRING_LINK: usize = 49;

/// A chain of `len` links on the calling thread, the link at `at` holding `w` and `pause`.
fn chain_with(
    heap: &Heap,
    len: usize,
    at: usize,
    w: Weak<u64>,
    pause: Box<dyn FnOnce() + Send>,
) -> Gc<Node> {
    let mut w = Some(w);
    let mut pause = Some(pause);
    let mut head: Option<Gc<Node>> = None;
    for i in (0..len).rev() {
        let (w, p) = if i == at {
            (w.take(), pause.take())
        } else {
            (None, None)
        };
        head = Some(heap.alloc(Node {
            next: head.take(),
            w: Mutex::new(w),
            pause: Mutex::new(p),
            before: Mutex::new(None),
        }));
    }
    head.unwrap()
}

/// Sanity of the harness (single thread): a weak-reference object dropped by the deferring
/// link dies after the link's `Drop` returns (its callback's captures are dropped with it).
#[test]
fn the_harness_defers_the_weak_objects_death() {
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, SeqCst);
        }
    }
    let heap = Heap::new();
    let obj = heap.alloc(1_u64);
    let gone = Arc::new(AtomicBool::new(false));
    let f = Flag(gone.clone());
    let w = Weak::with_callback(&obj, move |_| drop(f));
    let g = gone.clone();
    let seen_in_pause = Arc::new(AtomicBool::new(true));
    let s = seen_in_pause.clone();
    let head = chain_with(
        &heap,
        DEFERRING_LINK + 10,
        DEFERRING_LINK,
        w,
        Box::new(move || s.store(g.load(SeqCst), SeqCst)),
    );
    drop(head);
    assert!(!seen_in_pause.load(SeqCst), "the death was not deferred");
    assert!(gone.load(SeqCst), "the weak-reference object never died");
    drop(obj);
    assert_eq!(settled_live(&heap), 0);
}

/// The attack (module docs). Thread A owns the referent's shared weak reference and drops it
/// inside the deferring link; thread C takes the shared reference by `Weak::new`, makes a weak
/// reference to its object, drops its handle, and upgrades that weak reference while A's
/// link pauses. An upgrade that returns the weak-reference object must find it alive for as
/// long as the handle is held: its weak reference must not be cleared then.
#[test]
fn weak_to_the_shared_weak_object_against_its_owners_last_drop() {
    within("weak_to_the_shared_weak_object", || {
        let heap = Heap::new();
        // Merged (made detached): every other thread's upgrade takes the lock path, on the
        // referent's stripe.
        let obj = heap.detached(|| heap.alloc(7_u64));
        let stop = Arc::new(AtomicBool::new(false));
        let hammers: Vec<_> = (0..2)
            .map(|_| {
                let w = Weak::with_callback(&obj, |_| {});
                let stop = stop.clone();
                thread::spawn(move || {
                    while !stop.load(SeqCst) {
                        for _ in 0..if cfg!(miri) { 2 } else { 64 } {
                            drop(w.upgrade());
                        }
                        if cfg!(miri) {
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        let epoch = Arc::new(AtomicUsize::new(0));
        let tried = Arc::new(AtomicUsize::new(0));
        let dead = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(Barrier::new(2));
        let hits = Arc::new(AtomicUsize::new(0));
        let c = {
            let (obj, epoch, tried, dead, done, hits) = (
                obj.clone(),
                epoch.clone(),
                tried.clone(),
                dead.clone(),
                done.clone(),
                hits.clone(),
            );
            thread::spawn(move || {
                for i in 1..=N {
                    let mut n = 0_u32;
                    while epoch.load(SeqCst) != i {
                        n += 1;
                        if n % 256 == 0 {
                            thread::yield_now();
                        } else {
                            std::hint::spin_loop();
                        }
                    }
                    for _ in 0..(i * 7) % 13 {
                        std::hint::spin_loop();
                    }
                    let w2 = Weak::new(&obj);
                    let o = Weak::as_object(&w2);
                    drop(w2);
                    let ww = Weak::new(&o);
                    drop(o);
                    let g = ww.upgrade();
                    tried.store(i, SeqCst);
                    if let Some(g) = g {
                        hits.fetch_add(1, SeqCst);
                        // Held across the end of A's drop (the deferred deaths included).
                        let start = Instant::now();
                        while dead.load(SeqCst) != i && start.elapsed() < Duration::from_secs(2) {
                            thread::yield_now();
                        }
                        assert!(
                            ww.is_alive(),
                            "round {i}: a weak reference to a weak-reference object this thread \
                             holds was cleared (its death ran: a use after free)"
                        );
                        let _ = format!("{:?}", &*g);
                        drop(g);
                    }
                    drop(ww);
                    done.wait();
                }
            })
        };
        for i in 1..=N {
            let w = Weak::new(&obj);
            let t = tried.clone();
            let pause: Box<dyn FnOnce() + Send> = Box::new(move || {
                let start = Instant::now();
                while t.load(SeqCst) != i && start.elapsed() < Duration::from_millis(20) {
                    thread::yield_now();
                }
            });
            let head = chain_with(&heap, DEFERRING_LINK + 2, DEFERRING_LINK, w, pause);
            let e = epoch.clone();
            let mut link = head.clone();
            for _ in 0..DEFERRING_LINK {
                link = link.next.clone().unwrap();
            }
            *link.before.lock().unwrap() = Some(Box::new(move || e.store(i, SeqCst)));
            drop(link);
            drop(head);
            dead.store(i, SeqCst);
            done.wait();
            if i % 500 == 0 {
                eprintln!("round {i}, hits {}", hits.load(SeqCst));
            }
        }
        c.join().unwrap();
        stop.store(true, SeqCst);
        for h in hammers {
            h.join().unwrap();
        }
        drop(obj);
        eprintln!(
            "upgrades that returned the weak-reference object: {}",
            hits.load(SeqCst)
        );
        assert_eq!(settled_live(&heap), 0);
    });
}
