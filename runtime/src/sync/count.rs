//! Biased reference counting (Choi et al., PACT 2018; CPython 3.13t's `ob_tid`,
//! `ob_ref_local`, `ob_ref_shared`): the counting protocol of a Shared-mode object, as
//! operations on its [`SharedHeader`]. No heap, thread table or user code here: each operation
//! says what the caller must do next (nothing, queue the object to its owner, or run its
//! death), and `sync::heap` / `sync::thread` do it.
//!
//! The words (see [`SharedHeader`]): `local` (the owner's count) and `counts` = owner id (high
//! half) and the shared word (low half: a signed count of other threads' references shifted left
//! by [`SHIFT`], and a [`State`] in the low two bits). The object's true count is
//! `local + shared count`, minus one while it is [`QUEUED`] (the queue holds the reference whose
//! drop would have taken the shared count below zero).
//!
//! Invariants, asserted in debug builds:
//! - owner 0 ⇔ state [`MERGED`] (they change together, in one atomic operation on `counts`);
//! - a merged object's shared count is its whole count, and the operation that takes it to 0
//!   starts the death; nothing writes to the header after publishing a merged count (the
//!   owner's `local` is zeroed *before* the merge is published), since another thread may
//!   then free the object at any moment;
//! - an object is queued at most once (`QUEUED` is left only by the merge);
//! - a weak upgrade is a try-increment that refuses a merged zero ([`try_inc`]);
//! - a count that would overflow aborts (panics in a loom build, so models can reach it).

use crate::object::shared::SharedHeader;
use crate::shim::Ordering::{AcqRel, Acquire, Relaxed};

/// Shift of the shared count in the shared word.
pub(crate) const SHIFT: u32 = 2;
/// The state bits of the shared word.
const STATE_MASK: u32 = 0b11;
/// Never shared, no weak reference: when the owner's count reaches zero the object dies at once.
pub(crate) const INIT: u32 = 0;
/// A weak reference may exist: the owner's last drop must merge (a racing upgrade may win).
pub(crate) const MAYBE_WEAK: u32 = 1;
/// In the owner's merge queue (holding one reference).
pub(crate) const QUEUED: u32 = 2;
/// Owner gone (owner 0): the shared count is the whole count.
pub(crate) const MERGED: u32 = 3;

/// The largest count either half may reach before the protocol aborts. Small in loom builds
/// so that a model can spill and overflow in a few steps.
#[cfg(not(reap_loom))]
pub(crate) const SHARED_MAX: i32 = 1 << 28;
#[cfg(reap_loom)]
pub(crate) const SHARED_MAX: i32 = 4;
/// The owner's count spills half of itself into the shared count when it reaches this.
#[cfg(not(reap_loom))]
pub(crate) const LOCAL_MAX: u32 = 1 << 27;
#[cfg(reap_loom)]
pub(crate) const LOCAL_MAX: u32 = 3;

/// The owner id of a thread that has none (not yet attached, or exited): never an object's owner.
pub(crate) const NO_OWNER: u32 = u32::MAX;

/// The owner half of `counts`.
#[inline]
pub(crate) fn owner_of(word: u64) -> u32 {
    (word >> 32) as u32
}

/// The shared half of `counts`.
#[inline]
fn shared_of(word: u64) -> u32 {
    word as u32
}

/// The state of a shared word.
#[inline]
pub(crate) fn state_of(word: u64) -> u32 {
    shared_of(word) & STATE_MASK
}

/// The signed shared count of a `counts` word.
#[inline]
pub(crate) fn count_of(word: u64) -> i32 {
    (shared_of(word) as i32) >> SHIFT
}

/// A `counts` word.
#[inline]
pub(crate) fn pack(owner: u32, count: i32, state: u32) -> u64 {
    debug_assert!(state <= STATE_MASK);
    debug_assert!(
        (owner == 0) == (state == MERGED),
        "reap: owner 0 ⇔ merged broken (owner {owner}, state {state})"
    );
    ((owner as u64) << 32) | (((count << SHIFT) as u32) | state) as u64
}

/// Loads `counts`, checking (in debug builds) the invariant "owner 0 ⇔ merged" on what it read.
#[inline]
fn load(h: &SharedHeader, order: crate::shim::Ordering) -> u64 {
    let word = h.counts.load(order);
    debug_assert!(
        (owner_of(word) == 0) == (state_of(word) == MERGED),
        "reap: owner 0 ⇔ merged broken ({word:#x})"
    );
    word
}

/// What a decrement leaves the caller to do.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Dec {
    /// Nothing: the object lives on.
    Alive,
    /// The count reached zero: run the object's death.
    Dead,
    /// The object must go into the merge queue of the thread `owner` (it now holds the
    /// dropped reference).
    Queue(u32),
}

/// The counts of a new object owned by thread `owner` (or merged, with owner 0).
pub(crate) fn initial(owner: u32) -> (u64, u32) {
    if owner == 0 || owner == NO_OWNER {
        (pack(0, 1, MERGED), 0)
    } else {
        (pack(owner, 0, INIT), 1)
    }
}

/// Too many references: abort, as `Arc` does (no safe program reaches this without leaking
/// about 2^28 handles). A panic in loom builds, where the limits are tiny.
#[cold]
fn overflow() -> ! {
    #[cfg(reap_loom)]
    panic!("reap: reference count overflow");
    #[cfg(not(reap_loom))]
    std::process::abort();
}

/// Adds one reference, by thread `me`.
#[inline]
pub(crate) fn inc(h: &SharedHeader, me: u32) {
    if owner_of(load(h, Relaxed)) == me {
        let l = h.local.load(Relaxed);
        debug_assert!(l > 0, "reap: owner increment of a dead object");
        if l < LOCAL_MAX {
            h.local.store(l + 1, Relaxed);
        } else {
            spill(h);
        }
    } else {
        inc_shared(h);
    }
}

/// A non-owner's increment of the shared count. Not a `fetch_add` on the whole word: while the
/// object is queued the shared count may be negative, and adding to its low half would carry
/// into the owner id in the high half.
#[inline]
fn inc_shared(h: &SharedHeader) {
    let mut word = load(h, Relaxed);
    loop {
        let count = count_of(word);
        if count >= SHARED_MAX {
            overflow();
        }
        let new = pack(owner_of(word), count + 1, state_of(word));
        match h.counts.compare_exchange_weak(word, new, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(w) => word = w,
        }
    }
}

/// The owner's count is at [`LOCAL_MAX`]: move half of it into the shared count (the total is
/// unchanged), then add the new reference locally.
#[cold]
fn spill(h: &SharedHeader) {
    let half = LOCAL_MAX / 2;
    let mut word = load(h, Relaxed);
    loop {
        let count = count_of(word) + half as i32;
        if count > SHARED_MAX {
            overflow();
        }
        let new = pack(owner_of(word), count, state_of(word));
        match h.counts.compare_exchange_weak(word, new, Relaxed, Relaxed) {
            Ok(_) => break,
            Err(w) => word = w,
        }
    }
    let l = h.local.load(Relaxed);
    h.local.store(l - half + 1, Relaxed);
}

/// Drops one reference, by thread `me`.
#[inline]
pub(crate) fn dec(h: &SharedHeader, me: u32) -> Dec {
    if owner_of(load(h, Relaxed)) == me {
        let l = h.local.load(Relaxed) - 1;
        h.local.store(l, Relaxed);
        if l == 0 {
            return merge_zero_local(h);
        }
        Dec::Alive
    } else {
        dec_shared(h)
    }
}

/// The owner's count reached zero (CPython's `_Py_MergeZeroLocalRefcount`). If the shared word
/// is all zero (never shared, no weak reference, not queued) the object dies at once; otherwise
/// ownership is given up (owner 0, state merged, in one step) and the shared count decides.
#[cold]
pub(crate) fn merge_zero_local(h: &SharedHeader) -> Dec {
    let mut word = load(h, Acquire);
    loop {
        if shared_of(word) == 0 {
            debug_assert!(
                h.meta.load(Relaxed).addr() & crate::object::header::META_WEAK_INFO == 0,
                "reap: a weakly referenced object took the fast death"
            );
            return Dec::Dead;
        }
        // A queued object can get here too: the owner dropped references that other threads
        // had counted (their increments are in the shared count), so its local count reached
        // zero with the queue's reference still outstanding. Merging now is right; the queue
        // entry stays and its merge (`merge(h, -1)`) is then a plain decrement.
        debug_assert!(
            state_of(word) != QUEUED || count_of(word) >= 1,
            "reap: queued object merged at zero (the queue's reference is lost)"
        );
        let new = pack(0, count_of(word), MERGED);
        match h.counts.compare_exchange_weak(word, new, AcqRel, Acquire) {
            Ok(_) => {
                debug_assert!(count_of(new) >= 0, "reap: negative merged count");
                return if count_of(new) == 0 {
                    Dec::Dead
                } else {
                    Dec::Alive
                };
            }
            Err(w) => word = w,
        }
    }
}

/// A non-owner's decrement (CPython's `_Py_DecRefShared`).
#[inline]
fn dec_shared(h: &SharedHeader) -> Dec {
    let mut word = load(h, Relaxed);
    loop {
        let (owner, count, state) = (owner_of(word), count_of(word), state_of(word));
        let (new, then) = if state == MERGED {
            debug_assert!(count > 0, "reap: drop of a dead object");
            let new = pack(0, count - 1, MERGED);
            (new, if count == 1 { Dec::Dead } else { Dec::Alive })
        } else if count == 0 && state != QUEUED {
            // The reference dropped was counted by the owner: hand it to the owner's queue
            // rather than take the shared count below zero while it may still reach zero
            // unmerged.
            (pack(owner, 0, QUEUED), Dec::Queue(owner))
        } else {
            if count <= -SHARED_MAX {
                overflow();
            }
            (pack(owner, count - 1, state), Dec::Alive)
        };
        match h.counts.compare_exchange_weak(word, new, AcqRel, Relaxed) {
            Ok(_) => return then,
            Err(w) => word = w,
        }
    }
}

/// Merges the owner's count into the shared one, adding `extra` (−1 for a queued object, whose
/// queue entry held a reference), and gives up ownership; returns the object's count. Run by
/// the owner, or by another thread once the owner has exited (CPython's
/// `_Py_ExplicitMergeRefcount`). `local` is zeroed before the merged count is published.
///
/// A queued object may already be merged when its queue entry is drained (its owner's local
/// count reached zero meanwhile, see [`merge_zero_local`]); its `local` is then 0 and the merge
/// only drops the queue's reference. The caller holds that reference, so the header is still
/// allocated for the store to `local`.
pub(crate) fn merge(h: &SharedHeader, extra: i32) -> i32 {
    let local = h.local.load(Relaxed);
    h.local.store(0, Relaxed);
    let mut word = load(h, Relaxed);
    loop {
        debug_assert!(
            state_of(word) != MERGED || (extra == -1 && local == 0),
            "reap: merged twice"
        );
        let total = count_of(word) as i64 + local as i64 + extra as i64;
        if total > SHARED_MAX as i64 {
            overflow();
        }
        debug_assert!(total >= 0, "reap: negative count at merge");
        let new = pack(0, total as i32, MERGED);
        match h.counts.compare_exchange_weak(word, new, AcqRel, Relaxed) {
            Ok(_) => return total as i32,
            Err(w) => word = w,
        }
    }
}

/// Adds a reference unless the object's count is zero (a weak upgrade, called under the
/// referent's weak lock, which keeps its memory allocated): CPython's `_Py_TryIncref`.
pub(crate) fn try_inc(h: &SharedHeader, me: u32) -> bool {
    let mut word = load(h, Relaxed);
    if owner_of(word) == me {
        let l = h.local.load(Relaxed);
        if l == 0 {
            // Dying on this thread (the death in progress is further up this stack).
            return false;
        }
        inc(h, me);
        return true;
    }
    loop {
        if shared_of(word) == 0 || shared_of(word) == MERGED {
            // Never marked for weak references (so no weak reference existed when its last
            // local reference went), or merged at zero: dead or dying.
            return false;
        }
        if count_of(word) >= SHARED_MAX {
            overflow();
        }
        let new = pack(owner_of(word), count_of(word) + 1, state_of(word));
        match h.counts.compare_exchange_weak(word, new, Acquire, Relaxed) {
            Ok(_) => return true,
            Err(w) => word = w,
        }
    }
}

/// Marks the object as possibly weakly referenced (CPython's `_PyObject_SetMaybeWeakref`), so
/// that the owner's last drop merges instead of freeing at once; called under the referent's
/// weak lock when a weak reference is made.
pub(crate) fn set_maybe_weak(h: &SharedHeader) {
    let mut word = load(h, Relaxed);
    while state_of(word) == INIT {
        let new = pack(owner_of(word), count_of(word), MAYBE_WEAK);
        match h.counts.compare_exchange_weak(word, new, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(w) => word = w,
        }
    }
}

/// Gives a dead object one temporary reference owned by thread `me` for its finalizer
/// (CPython's `_PyObject_ResurrectStart`); weak upgrades from other threads may succeed
/// meanwhile if `weak` (the object has weak references), and resurrect it.
pub(crate) fn resurrect_start(h: &SharedHeader, me: u32, weak: bool) {
    if me == NO_OWNER {
        h.local.store(0, Relaxed);
        h.counts.store(pack(0, 1, MERGED), Relaxed);
    } else {
        h.local.store(1, Relaxed);
        let state = if weak { MAYBE_WEAK } else { INIT };
        h.counts.store(pack(me, 0, state), Relaxed);
    }
}

/// Drops the finalizer's temporary reference; `true` if the object is dead after all (nobody
/// took a reference meanwhile), `false` if it was resurrected.
pub(crate) fn resurrect_end(h: &SharedHeader, me: u32) -> bool {
    match dec(h, me) {
        Dec::Dead => true,
        Dec::Alive => false,
        // The finalizer's reference is the owner's (`me`), or the object is merged: a drop of
        // it never queues.
        Dec::Queue(_) => unreachable!("reap: finalizer reference queued"),
    }
}

/// The count of an object the caller holds a reference to: exact when no other thread changes
/// it meanwhile, a snapshot otherwise.
///
/// The count lives in two words (the owner's `local` and the shared word), which a thread
/// other than the owner cannot read in one step: it reads the shared word around its read of
/// `local` and retries until the shared word did not change. That still cannot see a merge in
/// flight (the merging thread zeroes `local` before it publishes the merged count, and the
/// reader may fall between the two), so the result is at least 1, the caller's own reference.
/// A merged object whose queue entry is not yet drained counts that entry's reference.
pub(crate) fn strong_count(h: &SharedHeader) -> usize {
    let mut word = load(h, Acquire);
    loop {
        let local = h.local.load(Acquire);
        let again = load(h, Acquire);
        if again != word {
            word = again;
            continue;
        }
        let mut n = count_of(word) as i64;
        if state_of(word) != MERGED {
            n += local as i64;
        }
        if state_of(word) == QUEUED {
            n -= 1;
        }
        return n.max(1) as usize;
    }
}
