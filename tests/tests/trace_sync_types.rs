//! Tracing through std's shared interior mutability: `Mutex`, `RwLock`, `OnceLock` and the
//! atomics (SEMANTICS 5.3 for locks held during a collection).
//!
//! `Gc` is `!Send`, so every lock here lives and is locked on the test's own thread. A guard
//! that must stay alive while no handle to its object is held borrows the object through a raw
//! pointer ([`unbound`]): the object is then kept only by the collector's treatment of the
//! locked interior, which is what these tests check.

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, RwLock, TryLockError};

use reap::{Gc, Heap, Trace, Weak};

#[derive(Trace)]
struct MNode {
    next: Mutex<Option<Gc<MNode>>>,
    /// A second lock, for a cycle that does not go through the locked one.
    side: Mutex<Option<Gc<MNode>>>,
}

fn mnode(heap: &Heap) -> Gc<MNode> {
    heap.alloc(MNode {
        next: Mutex::new(None),
        side: Mutex::new(None),
    })
}

/// `a` and `b` pointing at each other through their `next` mutexes.
fn mutex_cycle(heap: &Heap) -> (Gc<MNode>, Gc<MNode>) {
    let (a, b) = (mnode(heap), mnode(heap));
    *a.next.lock().unwrap() = Some(b.clone());
    *b.next.lock().unwrap() = Some(a.clone());
    (a, b)
}

#[derive(Trace)]
struct RwNode {
    next: RwLock<Option<Gc<RwNode>>>,
}

/// `a` and `b` pointing at each other through their locks.
fn rwlock_cycle(heap: &Heap) -> (Gc<RwNode>, Gc<RwNode>) {
    let a = heap.alloc(RwNode {
        next: RwLock::new(None),
    });
    let b = heap.alloc(RwNode {
        next: RwLock::new(Some(a.clone())),
    });
    *a.next.write().unwrap() = Some(b.clone());
    (a, b)
}

/// A reference to `gc`'s value that does not borrow the handle, so the handle can be dropped
/// while a guard taken through the reference stays alive.
///
/// # Safety
/// The object must stay allocated for as long as the reference (and any guard taken through it)
/// is used: here, the collector keeps an object whose lock is held (checked by [`assert_kept`],
/// which leaves the guard unreleased if it was not), and each test releases the guard before the
/// collection that frees the object.
unsafe fn unbound<'a, T>(gc: &Gc<T>) -> &'a T {
    // SAFETY: the caller keeps the object allocated while the reference is used.
    unsafe { &*Gc::as_ptr(gc) }
}

/// Collects everything, asserting that nothing was freed while a guard into one of the objects
/// is alive. Those guards are held in a `ManuallyDrop` and released by hand, so that when this
/// fails (the guard's lock may be gone) the unwinding leaves the guard alone: a wrong collector
/// fails the test, natively and under Miri, instead of the guard releasing freed memory.
fn assert_kept(heap: &Heap, what: &str) {
    let n = heap.collect(2);
    assert_eq!(
        n, 0,
        "{what}: collected objects while a guard into one of them was alive"
    );
}

#[test]
fn mutex_cycle_is_collected() {
    let heap = Heap::new();
    let (a, b) = mutex_cycle(&heap);
    assert!(reap::is_tracked(&a));
    let (wa, wb) = (Weak::new(&a), Weak::new(&b));
    assert_eq!(heap.collect(2), 0, "held from outside");
    drop((a, b));
    assert_eq!(heap.collect(2), 2);
    assert!(!wa.is_alive() && !wb.is_alive());
    drop((wa, wb)); // weak references are objects of the heap too
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn locked_mutex_keeps_its_cycle_until_released() {
    let heap = Heap::new();
    let (a, b) = mutex_cycle(&heap);
    let (wa, wb) = (Weak::new(&a), Weak::new(&b));
    // SAFETY: `a` is kept while its lock is held (checked), and the guard goes before the
    // collection that frees it.
    let guard = ManuallyDrop::new(unsafe { unbound(&a) }.next.lock().unwrap());
    drop((a, b));
    assert_kept(&heap, "a's mutex locked");
    assert!(wa.is_alive() && wb.is_alive());
    // Still the same on another look: nothing changed while the lock was held.
    assert_kept(&heap, "a's mutex locked, again");
    assert!(guard.is_some(), "a still holds b");
    drop(ManuallyDrop::into_inner(guard));
    assert_eq!(heap.collect(2), 2, "collected once the lock is released");
    assert!(!wa.is_alive() && !wb.is_alive());
    drop((wa, wb)); // weak references are objects of the heap too
    assert_eq!(heap.live_objects(), 0);
}

/// The held lock is not on the cycle's path: only `mark_incomplete` keeps `a` here (a lock that
/// merely hid its handles would leave a cycle of two fully traced objects, garbage).
#[test]
fn locked_mutex_off_the_cycle_still_keeps_its_object() {
    let heap = Heap::new();
    let (a, b) = mutex_cycle(&heap);
    // SAFETY: as above.
    let guard = ManuallyDrop::new(unsafe { unbound(&a) }.side.lock().unwrap());
    assert!(guard.is_none());
    drop((a, b));
    assert_kept(&heap, "a's side mutex locked");
    assert_eq!(heap.live_objects(), 2);
    drop(ManuallyDrop::into_inner(guard));
    assert_eq!(heap.collect(2), 2);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn write_locked_rwlock_keeps_its_cycle_until_released() {
    let heap = Heap::new();
    let (a, b) = rwlock_cycle(&heap);
    let wb = Weak::new(&b);
    // SAFETY: as for the mutex: `b` is kept while its lock is held for writing.
    let guard = ManuallyDrop::new(unsafe { unbound(&b) }.next.write().unwrap());
    drop((a, b));
    assert_kept(&heap, "b's lock held for writing");
    assert!(wb.is_alive());
    assert_eq!(heap.live_objects(), 3, "a, b and the weak reference");
    drop(ManuallyDrop::into_inner(guard));
    assert_eq!(heap.collect(2), 2);
    assert!(!wb.is_alive());
    drop(wb);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn read_locked_rwlock_is_traced_and_its_cycle_collected() {
    let heap = Heap::new();
    let (a, b) = rwlock_cycle(&heap);
    let wa = Weak::new(&a);
    // Another reader holds `a`'s lock for the rest of its life. The guard is forgotten (the lock
    // stays read-locked) so that no guard outlives the object the collection frees.
    let reader = a.next.read().unwrap();
    assert!(matches!(a.next.try_write(), Err(TryLockError::WouldBlock)));
    std::mem::forget(reader);
    drop((a, b));
    assert_eq!(heap.collect(2), 2, "a read lock does not stop tracing");
    assert!(!wa.is_alive());
    drop(wa);
    assert_eq!(heap.live_objects(), 0);
}

#[test]
fn poisoned_mutex_still_reports_its_handle() {
    let heap = Heap::new();
    let (a, b) = mutex_cycle(&heap);
    let poisoned = catch_unwind(AssertUnwindSafe(|| {
        let _guard = a.next.lock().unwrap();
        // A panic that skips the panic hook (no message in the test output).
        resume_unwind(Box::new("poison"));
    }));
    assert!(poisoned.is_err());
    assert!(a.next.is_poisoned());
    assert_eq!(heap.collect(2), 0, "held from outside");
    // Tracing released the lock and left the poison alone.
    assert!(matches!(a.next.try_lock(), Err(TryLockError::Poisoned(_))));
    assert!(a.next.is_poisoned());
    drop((a, b));
    // Had the poisoned mutex hidden its handle to `b`, `b` would look held from outside and
    // keep both.
    assert_eq!(heap.collect(2), 2);
    assert_eq!(heap.live_objects(), 0);
}

#[derive(Trace)]
struct OnceNode {
    next: OnceLock<Gc<OnceNode>>,
}

#[test]
fn oncelock_cycle_is_collected_and_unset_is_fine() {
    let heap = Heap::new();
    let a = heap.alloc(OnceNode {
        next: OnceLock::new(),
    });
    let b = heap.alloc(OnceNode {
        next: OnceLock::new(),
    });
    assert!(reap::is_tracked(&a));
    // Unset cells: traced, nothing reported.
    assert_eq!(heap.collect(2), 0);
    assert!(a.next.get().is_none() && b.next.get().is_none());
    assert!(a.next.set(b.clone()).is_ok());
    assert!(b.next.set(a.clone()).is_ok());
    drop((a, b));
    assert_eq!(heap.collect(2), 2);
    // An unset cell is a plain object that dies by its count.
    let c = heap.alloc(OnceNode {
        next: OnceLock::new(),
    });
    assert_eq!(heap.live_objects(), 1);
    drop(c);
    assert_eq!(heap.live_objects(), 0);
    // A self-cycle through a cell set after allocation.
    let d = heap.alloc(OnceNode {
        next: OnceLock::new(),
    });
    assert!(d.next.set(d.clone()).is_ok());
    drop(d);
    assert_eq!(heap.collect(2), 1);
    assert_eq!(heap.live_objects(), 0);
}

#[derive(Trace)]
struct Counters {
    hits: AtomicUsize,
    done: AtomicBool,
}

#[test]
fn atomics_are_leaves() {
    let heap = Heap::new();
    let c = heap.alloc(Counters {
        hits: AtomicUsize::new(0),
        done: AtomicBool::new(false),
    });
    c.hits.fetch_add(2, Ordering::Relaxed);
    c.done.store(true, Ordering::Relaxed);
    assert!(!reap::is_tracked(&c), "atomics hold no handles");
    assert_eq!(c.hits.load(Ordering::Relaxed), 2);
    assert!(c.done.load(Ordering::Relaxed));

    // The locks and the once-cell forward `needs_trace`: around leaves they are leaves.
    #[derive(Trace)]
    struct Leaves {
        small: AtomicU8,
        signed: AtomicI64,
        ptr: AtomicPtr<u8>,
        count: Mutex<u32>,
        name: RwLock<String>,
        once: OnceLock<u64>,
    }
    let l = heap.alloc(Leaves {
        small: AtomicU8::new(1),
        signed: AtomicI64::new(-1),
        ptr: AtomicPtr::new(std::ptr::null_mut()),
        count: Mutex::new(3),
        name: RwLock::new("n".into()),
        once: OnceLock::new(),
    });
    assert!(!reap::is_tracked(&l));
    assert_eq!(l.small.load(Ordering::Relaxed), 1);
    assert_eq!(l.signed.load(Ordering::Relaxed), -1);
    assert!(l.ptr.load(Ordering::Relaxed).is_null());
    assert_eq!(*l.count.lock().unwrap(), 3);
    assert_eq!(*l.name.read().unwrap(), "n");
    assert!(l.once.get().is_none());
}

/// A lock around a type that cannot hold handles is not even tried: locked, in an object that
/// is tracked for another field, it does not keep a garbage cycle alive.
#[test]
fn lock_around_leaves_is_not_tried() {
    #[derive(Trace)]
    struct Mixed {
        count: Mutex<u32>,
        next: RefCell<Option<Gc<Mixed>>>,
    }
    let heap = Heap::new();
    let a = heap.alloc(Mixed {
        count: Mutex::new(0),
        next: RefCell::new(None),
    });
    assert!(reap::is_tracked(&a));
    *a.next.borrow_mut() = Some(a.clone());
    // Locked for good: the guard is forgotten, so none outlives the object.
    std::mem::forget(a.count.lock().unwrap());
    drop(a);
    assert_eq!(heap.collect(2), 1);
    assert_eq!(heap.live_objects(), 0);
}
