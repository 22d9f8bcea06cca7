//! `reap::sync::Mutex`'s release against a thread that takes the lock right after it and frees
//! it (a hand-over through a raw pointer, which std's `Mutex` allows: its unlock goes through a
//! reference to its atomic only, rust-lang/rust#55005). Written by the twenty-fifth session's
//! adversarial review of the "no frozen byte under a reference argument another thread may
//! free" class (the shared header's, `object::shared::Fixed`).
//!
//! `release` and `wake` were `&self` methods: the `&Mutex<u64>` argument covered the 4 bytes of
//! padding beside the `AtomicU32` state word (frozen: outside any `UnsafeCell`) across the
//! `swap` that lets the other thread in and the bucket's notification after it. A free in that
//! window is undefined behaviour under Stacked and Tree Borrows. With a `&self` release, Miri
//! reports both reap tests here within their 400 rounds (the protected tag is the method's
//! `&self`; checked by that mutation on nightly 2026-10-29, whose default schedule misses it
//! in 100 rounds), while the std control passes. They are now functions of the state word (`sync::mutex::release`), and all three
//! pass under Miri. Safe code cannot free a lock
//! another thread is still releasing (the releaser's borrow, or its `Gc`, keeps it), so this
//! needs unsafe user code; the runtime should still be as permissive as std here.
//!
//! Natively: `cargo test -p reap-tests --test attack_mutex_protector_review`.
//! Miri: `MIRIFLAGS="-Zmiri-strict-provenance" cargo +nightly miri test -p reap-tests --test attack_mutex_protector_review`.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;

/// The two locks, used through raw pointers: no function of the test holds a reference
/// argument to the lock across its release (only the lock's own code does).
trait Lockish: Send + Sync + 'static {
    fn make() -> Self;
    /// Locks, runs `f` on the value, unlocks.
    ///
    /// # Safety
    /// `p` is allocated for the call.
    unsafe fn with(p: *const Self, f: impl FnOnce(&mut u64));
}

impl Lockish for reap::sync::Mutex<u64> {
    fn make() -> Self {
        reap::sync::Mutex::new(0)
    }
    unsafe fn with(p: *const Self, f: impl FnOnce(&mut u64)) {
        // SAFETY: caller.
        let mut g = unsafe { (*p).lock() };
        f(&mut g);
    }
}

impl Lockish for std::sync::Mutex<u64> {
    fn make() -> Self {
        std::sync::Mutex::new(0)
    }
    unsafe fn with(p: *const Self, f: impl FnOnce(&mut u64)) {
        // SAFETY: caller.
        let mut g = unsafe { (*p).lock() }.unwrap();
        f(&mut g);
    }
}

/// Locks, yields `n` times while holding it (so that a waiter sleeps on it), then sets `v`.
///
/// # Safety
/// `p` is allocated for the call.
unsafe fn hold_then_set<L: Lockish>(p: *const L, n: usize, v: u64) {
    // SAFETY: caller.
    unsafe {
        L::with(p, |x| {
            for _ in 0..n {
                thread::yield_now();
            }
            *x = v;
        })
    };
}

/// Locks, reads the value.
///
/// # Safety
/// `p` is allocated for the call.
unsafe fn get<L: Lockish>(p: *const L) -> u64 {
    let mut v = 0;
    // SAFETY: caller.
    unsafe { L::with(p, |x| v = *x) };
    v
}

struct Sent<L>(*mut L);
// SAFETY: the pointer is used by one thread at a time for the free (ordered by the lock).
unsafe impl<L> Send for Sent<L> {}

const ROUNDS: usize = if cfg!(miri) { 400 } else { 2_000 };

/// One thread sets a flag under the lock and never touches the lock again; the other polls the
/// flag under the lock and, once it is set, frees the lock. `hold`: the setter holds the lock
/// for a while first, so that the poller sleeps on it (`PARKED`) and the release runs `wake`.
fn handoff<L: Lockish>(hold: usize) {
    let started = AtomicBool::new(false);
    for _ in 0..ROUNDS {
        let m: *mut L = Box::into_raw(Box::new(L::make()));
        let sent = Sent(m);
        thread::scope(|s| {
            let started = &started;
            s.spawn(move || {
                let sent = sent;
                // SAFETY: allocated until the other thread reads 1 under the lock, which comes
                // after this thread's last use of it (its release).
                let l: *const L = sent.0;
                started.store(true, SeqCst);
                // SAFETY: allocated until then (above).
                unsafe { hold_then_set(l, hold, 1) };
            });
            while !started.load(SeqCst) {
                thread::yield_now();
            }
            loop {
                // SAFETY: not freed yet (this thread frees it, below).
                if unsafe { get(m) } == 1 {
                    break;
                }
                thread::yield_now();
            }
            // The setter's last use of the lock was its release, which this thread's
            // acquisition came after: with std's lock, a free is allowed here.
            // SAFETY: made by `Box::new` above; the other thread no longer uses it.
            drop(unsafe { Box::from_raw(m) });
        });
        started.store(false, SeqCst);
    }
}

#[test]
fn reap_mutex_freed_after_the_handoff_release() {
    handoff::<reap::sync::Mutex<u64>>(0);
}

#[test]
fn reap_mutex_freed_after_the_handoff_wake() {
    handoff::<reap::sync::Mutex<u64>>(if cfg!(miri) { 150 } else { 200 });
}

#[test]
fn std_mutex_freed_after_the_handoff_control() {
    handoff::<std::sync::Mutex<u64>>(0);
    handoff::<std::sync::Mutex<u64>>(if cfg!(miri) { 150 } else { 200 });
}
