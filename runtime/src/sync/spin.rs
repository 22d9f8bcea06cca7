//! The lock of the weak-reference stripes (`HeapState::weak_lock`): a spin lock whose release
//! is a plain `Release` store.
//!
//! A weak-reference critical section is a few loads and stores (a list edited, a count tried,
//! a target cleared), never user code and never a wait, and most rounds of the weak-reference
//! paths take one uncontended. `std::sync::Mutex` releases with a swap, to learn whether a
//! sleeper needs waking: a second locked instruction on every section. This lock has no
//! sleepers: a thread that finds it taken spins a little, then yields its time slice, and looks
//! again. That is only fair to the holder if sections stay short and never block, which is the
//! rule for every holder of a weak lock (`sync::weak`'s module docs).
//!
//! Under loom the weak stripes are loom's mutex ([`WeakLock`]): loom explores a blocking
//! acquisition as one step, while every look of a spin loop is a step of its own, and the
//! protocols the models check (deaths, upgrades, finalizers) then grew past ten minutes each
//! (model 25 ran that long without finishing; model 19 went from 7,939 executions to 13,439).
//! The spin lock itself is checked by its own loom model (below: two threads, exhaustive),
//! where its wait yields to loom's scheduler at every look, as loom requires of a spin loop.

use crate::shim::{AtomicU8, Ordering::*};

/// The lock of a weak-reference stripe: the spin lock, or loom's mutex in loom builds (module
/// docs).
#[cfg(not(reap_loom))]
pub(crate) type WeakLock = SpinLock;
/// The guard of a [`WeakLock`].
#[cfg(not(reap_loom))]
pub(crate) type WeakGuard<'a> = SpinGuard<'a>;

/// The lock of a weak-reference stripe: loom's mutex in loom builds (module docs).
#[cfg(reap_loom)]
pub(crate) struct WeakLock(crate::shim::Mutex<()>);
/// The guard of a [`WeakLock`].
#[cfg(reap_loom)]
pub(crate) type WeakGuard<'a> = crate::shim::MutexGuard<'a, ()>;

#[cfg(reap_loom)]
impl WeakLock {
    /// A released lock.
    pub(crate) fn new() -> WeakLock {
        WeakLock(crate::shim::Mutex::new(()))
    }

    /// Takes the lock.
    pub(crate) fn lock(&self) -> WeakGuard<'_> {
        crate::shim::lock(&self.0)
    }
}

/// Looks at a taken lock before yielding the time slice.
#[cfg(not(reap_loom))]
const SPINS: u32 = 64;

/// A spin lock guarding no data of its own (the data is elsewhere: a weak-reference block,
/// reached only by a holder of its referent's stripe).
#[cfg_attr(reap_loom, allow(dead_code))]
pub(crate) struct SpinLock {
    /// 1 while held.
    held: AtomicU8,
}

/// Holds a [`SpinLock`] until dropped.
#[must_use = "the lock is released when the guard is dropped"]
#[cfg_attr(reap_loom, allow(dead_code))]
pub(crate) struct SpinGuard<'a> {
    lock: &'a SpinLock,
}

#[cfg_attr(reap_loom, allow(dead_code))]
impl SpinLock {
    /// A released lock.
    pub(crate) fn new() -> SpinLock {
        SpinLock {
            held: AtomicU8::new(0),
        }
    }

    /// Takes the lock, waiting for its holder if it has one. `Acquire`: what the last holder
    /// wrote before its release is seen by this one.
    #[inline]
    pub(crate) fn lock(&self) -> SpinGuard<'_> {
        if self
            .held
            .compare_exchange_weak(0, 1, Acquire, Relaxed)
            .is_err()
        {
            self.lock_contended();
        }
        SpinGuard { lock: self }
    }

    /// The wait: spins on plain loads (no locked instruction while another thread holds the
    /// line), then tries again.
    #[cold]
    #[inline(never)]
    fn lock_contended(&self) {
        #[cfg(not(reap_loom))]
        let mut spins = 0;
        loop {
            while self.held.load(Relaxed) != 0 {
                #[cfg(not(reap_loom))]
                {
                    if spins < SPINS {
                        spins += 1;
                        std::hint::spin_loop();
                    } else {
                        spins = 0;
                        std::thread::yield_now();
                    }
                }
                #[cfg(reap_loom)]
                loom::thread::yield_now();
            }
            if self
                .held
                .compare_exchange_weak(0, 1, Acquire, Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }
}

impl Drop for SpinGuard<'_> {
    /// Releases the lock: one `Release` store (a plain move on x86).
    #[inline]
    fn drop(&mut self) {
        self.lock.held.store(0, Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A count behind a spin lock, read and written only by a holder of the lock (through a
    /// `shim::UnsafeCell`: loom's in loom builds, which checks each access against the
    /// others).
    struct Guarded {
        lock: SpinLock,
        n: crate::shim::UnsafeCell<u64>,
    }

    // SAFETY: `n` is read and written only by a holder of `lock`.
    unsafe impl Sync for Guarded {}

    impl Guarded {
        fn new() -> Guarded {
            Guarded {
                lock: SpinLock::new(),
                n: crate::shim::UnsafeCell::new(0),
            }
        }

        /// Adds one to the count `times` times, each under the lock (a non-atomic read and
        /// write).
        fn bump(&self, times: u64) {
            for _ in 0..times {
                let _l = self.lock.lock();
                // SAFETY: under the lock.
                self.n.with_mut(|n| unsafe { *n += 1 });
            }
        }

        /// The count, read under the lock.
        fn count(&self) -> u64 {
            let _l = self.lock.lock();
            // SAFETY: under the lock.
            self.n.with(|n| unsafe { *n })
        }
    }

    /// Two threads each take the lock twice and write the count under it: loom checks every
    /// access to the cell against the others (a second holder would race), and that no
    /// schedule deadlocks. Exhaustive.
    #[cfg(reap_loom)]
    #[test]
    fn loom_the_lock_excludes_other_holders() {
        use loom::sync::Arc;
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r = runs.clone();
        loom::model(move || {
            r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let g = Arc::new(Guarded::new());
            let g2 = g.clone();
            let t = loom::thread::spawn(move || g2.bump(2));
            g.bump(2);
            t.join().unwrap();
            assert_eq!(g.count(), 4);
        });
        let n = runs.load(std::sync::atomic::Ordering::Relaxed);
        assert!(n > 0, "no execution explored");
        println!("loom model the spin lock excludes other holders: {n} executions");
    }

    /// Three threads add to the count: no increment is lost (and Miri, which checks data
    /// races, sees the lock order every access).
    #[cfg(not(reap_loom))]
    #[test]
    fn the_lock_excludes_other_holders() {
        let g = std::sync::Arc::new(Guarded::new());
        let rounds = if cfg!(miri) { 50 } else { 20_000 };
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let g = std::sync::Arc::clone(&g);
                std::thread::spawn(move || g.bump(rounds))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(g.count(), 3 * rounds);
    }
}
