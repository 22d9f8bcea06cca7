//! The one place Shared mode gets its atomics, locks, fences and raw allocation from: std's
//! normally, loom's when built with `--cfg reap_loom` (the project's own cfg name, so that a
//! workspace-wide `--cfg loom` does not switch other crates' code paths). Everything the
//! Shared-mode protocol reads or writes across threads goes through here, so loom sees and
//! permutes every such access.
//!
//! Not here: the counter that hands out thread ids (a plain std atomic: ids need only be
//! unique, their order is not part of any protocol) and Local mode, which has no atomics.

#[cfg(not(reap_loom))]
pub(crate) use std::sync::atomic::{
    fence, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(not(reap_loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

#[cfg(reap_loom)]
pub(crate) use loom::sync::atomic::{
    fence, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};
#[cfg(reap_loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

/// Allocates a block for a Shared-mode object or side block; loom's version tracks it, so a
/// model that leaks an object fails.
///
/// # Safety
/// As [`std::alloc::alloc`]: `layout` has a non-zero size.
#[inline]
pub(crate) unsafe fn alloc(layout: std::alloc::Layout) -> *mut u8 {
    #[cfg(not(reap_loom))]
    // SAFETY: forwarded contract (caller).
    unsafe {
        std::alloc::alloc(layout)
    }
    #[cfg(reap_loom)]
    // SAFETY: forwarded contract (caller).
    unsafe {
        loom::alloc::alloc(layout)
    }
}

/// Frees a block from [`alloc`].
///
/// # Safety
/// As [`std::alloc::dealloc`]: `ptr` came from [`alloc`] with this `layout`.
#[inline]
pub(crate) unsafe fn dealloc(ptr: *mut u8, layout: std::alloc::Layout) {
    #[cfg(not(reap_loom))]
    // SAFETY: forwarded contract (caller).
    unsafe {
        std::alloc::dealloc(ptr, layout)
    }
    #[cfg(reap_loom)]
    // SAFETY: forwarded contract (caller).
    unsafe {
        loom::alloc::dealloc(ptr, layout)
    }
}

/// Locks `m`, ignoring poisoning: the runtime's critical sections run no user code, so a
/// poisoned runtime lock can only come from a bug already reported by its panic.
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Waits on `cv`, ignoring poisoning (as [`lock`]).
#[inline]
pub(crate) fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    match cv.wait(g) {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// Waits on `cv` for at most `timeout`, ignoring poisoning (as [`lock`]). May wake early.
#[inline]
pub(crate) fn wait_timeout<'a, T>(
    cv: &Condvar,
    g: MutexGuard<'a, T>,
    timeout: std::time::Duration,
) -> MutexGuard<'a, T> {
    match cv.wait_timeout(g, timeout) {
        Ok((g, _)) => g,
        Err(p) => p.into_inner().0,
    }
}
