//! Adversarial tests of the referent's death skipping its weak lock when its block lists
//! nothing (`sync::weak::clear_and_call`, `WeakInfo::listed`), from a review: weak references
//! and their referents dying at once on two threads (blocks from the global allocator and
//! from slabs), weak references made by finalizers and dropped elsewhere, zombies' weak
//! references, and `Drop`s and callbacks that make weak references and collect. Under Miri
//! they check that no block is touched after its free; natively and under Miri, that every
//! object is freed in the end.
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Finalize, Gc, Heap, Weak};
use reap::Trace;
use reap_tests::shared::settled_live;

const N: usize = if cfg!(miri) { 6 } else { 2000 };

/// Weak reference and referent, both made detached (block from the global allocator), last
/// handles dropped at once on two threads.
#[test]
fn weak_and_referent_die_together_detached() {
    let heap = Heap::new();
    for i in 0..N {
        let obj = heap.detached(|| heap.alloc(vec![i as u8; 3]));
        let w = heap.detached(|| Weak::new(&obj));
        let w2 = heap.detached(|| Weak::with_callback(&obj, |w| assert!(w.upgrade().is_none())));
        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        let t = thread::spawn(move || {
            b2.wait();
            drop(w);
            drop(w2);
        });
        b.wait();
        drop(obj);
        t.join().unwrap();
    }
    assert_eq!(settled_live(&heap), 0);
}

/// Same, attached threads (block in a slab, reused by later allocations).
#[test]
fn weak_and_referent_die_together_attached() {
    let heap = Heap::new();
    for i in 0..N {
        let obj = heap.alloc(vec![i as u8; 3]);
        let w = Weak::new(&obj);
        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        let t = thread::spawn(move || {
            b2.wait();
            drop(w);
        });
        b.wait();
        drop(obj);
        // Allocate into the slab the block may have gone back to.
        let _junk: Vec<_> = (0..4).map(|_| Weak::new(&heap.alloc(0_u64))).collect();
        t.join().unwrap();
    }
    assert_eq!(settled_live(&heap), 0);
}

/// A finalizer makes weak references to its dying object and hands them to another thread,
/// which drops them while the death goes on.
#[test]
fn finalizer_weak_refs_dropped_elsewhere() {
    type WeakPair = (Weak<F>, Weak<F>);
    #[derive(Trace)]
    #[reap(sync_finalize)]
    struct F {
        #[reap(skip)]
        tx: Mutex<Option<mpsc::Sender<WeakPair>>>,
        #[reap(skip)]
        calls: Arc<AtomicUsize>,
    }
    impl Finalize for F {
        fn finalize(this: &Gc<Self>) {
            let c = this.calls.clone();
            let w1 = Weak::new(this);
            let w2 = Weak::with_callback(this, move |w| {
                assert!(w.upgrade().is_none());
                c.fetch_add(1, SeqCst);
            });
            if let Some(tx) = this.tx.lock().unwrap().take() {
                let _ = tx.send((w1, w2));
            }
        }
    }
    let heap = Heap::new();
    for _ in 0..N {
        let calls = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = mpsc::channel();
        let obj = heap.alloc(F {
            tx: Mutex::new(Some(tx)),
            calls: calls.clone(),
        });
        let t = thread::spawn(move || {
            if let Ok((w1, w2)) = rx.recv() {
                let _ = w1.upgrade();
                drop(w1);
                drop(w2);
            }
        });
        drop(obj);
        t.join().unwrap();
        assert!(calls.load(SeqCst) <= 1);
    }
    assert_eq!(settled_live(&heap), 0);
}

/// A zombie (value dropped by a collection, a `Drop` kept a handle) gets a weak reference,
/// dropped on another thread while the zombie's last handle goes here.
#[test]
fn zombie_weak_dies_with_zombie() {
    type Stash = Arc<Mutex<Option<Gc<Z>>>>;
    #[derive(Trace)]
    struct Z {
        me: Mutex<Option<Gc<Z>>>,
        #[reap(skip)]
        stash: Stash,
    }
    impl Drop for Z {
        fn drop(&mut self) {
            let me = self.me.lock().unwrap().take();
            *self.stash.lock().unwrap() = me;
        }
    }
    let heap = Heap::new();
    for _ in 0..N {
        let stash: Stash = Arc::new(Mutex::new(None));
        {
            let z = heap.alloc(Z {
                me: Mutex::new(None),
                stash: stash.clone(),
            });
            let w0 = Weak::with_callback(&z, |_| {});
            *z.me.lock().unwrap() = Some(z.clone());
            drop(z);
            heap.collect();
            drop(w0);
        }
        let zombie = stash.lock().unwrap().take();
        let Some(zombie) = zombie else { continue };
        let w = Weak::new(&zombie);
        let w2 = Weak::with_callback(&zombie, |_| {});
        let b = Arc::new(Barrier::new(2));
        let b2 = b.clone();
        let t = thread::spawn(move || {
            b2.wait();
            drop(w);
            drop(w2);
        });
        b.wait();
        drop(zombie);
        t.join().unwrap();
    }
    assert_eq!(settled_live(&heap), 0);
}

/// Callbacks and `Drop`s that make and drop weak references to other objects, and collect.
#[test]
fn callbacks_and_drops_make_weak_refs() {
    #[derive(Trace)]
    struct D {
        other: Gc<u32>,
    }
    impl Drop for D {
        fn drop(&mut self) {
            let w = Weak::new(&self.other);
            let w2 = Weak::with_callback(&self.other, |_| {});
            let o = self.other.clone();
            thread::spawn(move || {
                drop(w2);
                drop(o);
                drop(w);
            })
            .join()
            .unwrap();
        }
    }
    let heap = Heap::new();
    for i in 0..N {
        let other = heap.alloc(i as u32);
        let d = heap.alloc(D {
            other: other.clone(),
        });
        let o2 = other.clone();
        let h2 = heap.clone();
        let wd = Weak::with_callback(&d, move |_| {
            let w = Weak::new(&o2);
            h2.collect();
            drop(w);
        });
        let wo = Weak::new(&other);
        drop(other);
        let t = thread::spawn(move || drop(wo));
        drop(d);
        t.join().unwrap();
        drop(wd);
    }
    assert_eq!(settled_live(&heap), 0);
}
