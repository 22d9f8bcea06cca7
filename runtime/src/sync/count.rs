//! Biased reference counting (Choi et al., PACT 2018; CPython 3.13t's `ob_tid`,
//! `ob_ref_local`, `ob_ref_shared`): the counting protocol of a Shared-mode object, as
//! operations on its [`SharedHeader`]. No heap, thread table or user code here: each operation
//! says what the caller must do next (nothing, queue the object to its owner, or run its
//! death), and `sync::heap` / `sync::thread` do it.
//!
//! The fields (see [`SharedHeader`]): `owner` (the owner thread's id, 0 once the object is
//! merged), `local` (the owner's count) and `counts`, the shared word: a signed count of other
//! threads' references shifted left by [`SHIFT`], and a state in its low two bits:
//!
//! ```text
//!  31                                       2 1     0
//! [ shared count (signed, 30 bits)           | state ]
//! ```
//!
//! The shared count is the top of the word so that a foreign increment can be one `fetch_add`
//! and a merged object's decrement one `fetch_sub`: adding to a negative count carries out of
//! bit 31 and is lost, never reaching the state (see [`inc_shared`]). The object's true count is
//! `local + shared count`, minus one while it is [`QUEUED`] (the queue holds the reference
//! whose drop would have taken the shared count below zero).
//!
//! The owner id has a word of its own, apart from the shared count, so that deciding who owns
//! the object never reads the word the last atomic operation wrote: on x86 a load of the
//! bytes a locked instruction just wrote waits for it to drain (about as long as the locked
//! instruction itself), and a load of other bytes does not.
//!
//! Invariants, asserted in debug builds:
//! - merged ⇒ `owner` 0: a thread that merges stores 0 into `owner` *before* it publishes the
//!   merged state; so `owner` names thread `t` only while `t` owns the object unmerged, and
//!   only `t` ever writes its own id there (at the allocation, or the resurrection, of an
//!   object nobody else can reach; a resurrection by a thread with no owner id writes
//!   [`RESURRECTING`], which no thread has). Thread `t` reading its own id in `owner` is thus the
//!   whole ownership test, with no ordering needed; `owner` 0 with an unmerged state is a
//!   merge in progress on some thread;
//! - a merged object's shared count is its whole count, and the operation that takes it to 0
//!   starts the death; nothing writes to the header after publishing a merged count (the
//!   owner's `local` and `owner` are zeroed *before* the merge is published), since another
//!   thread may then free the object at any moment, except a collection on the final garbage
//!   it holds (its marks, and the reclaim's deferred drops in `local`): the hold keeps the
//!   object until its give-back, whose decrement comes after those writes;
//! - a negative shared count is queued (the decrement that takes it below zero queues the
//!   object in the same compare-and-swap);
//! - `owner` 0 on an unmerged object (a merge announced, not yet published) only while the
//!   object is queued or every reference to it is counted in the shared count, so that a
//!   decrement that reads the 0 can be one `fetch_sub` ([`dec_disowned`]);
//! - an object is queued at most once (`QUEUED` is left only by the merge);
//! - a weak upgrade is a try-increment that refuses a merged zero ([`try_inc`]);
//! - a count that would overflow aborts (panics in a loom build, so models can reach it).

use crate::object::shared::{SharedHeader, GC_FINALIZING};
use crate::shim::Ordering::{AcqRel, Acquire, Relaxed, Release};

/// Shift of the shared count in the shared word.
pub(crate) const SHIFT: u32 = 2;
/// The state bits of the shared word.
const STATE_MASK: u32 = 0b11;
/// Not queued, not merged: when the owner's count reaches zero with a shared count of zero
/// the object dies at once, unless a weak reference to it was ever made (its `meta` tagged).
pub(crate) const INIT: u32 = 0;
/// A weak-reference object (from its making, [`initial`]): as `INIT`, but the owner's last
/// drop never takes the plain fast death, since other threads try-increment it under its
/// referent's weak lock (a racing one may win): it decides the death under that lock
/// (`sync::weak::dies_unlisted`), or merges. A referent needs no such state: its tagged
/// `meta` is its mark ([`merge_zero_local`]).
pub(crate) const MAYBE_WEAK: u32 = 1;
/// In the owner's merge queue (holding one reference).
pub(crate) const QUEUED: u32 = 2;
/// Owner gone (owner 0): the shared count is the whole count.
pub(crate) const MERGED: u32 = 3;

/// One reference of the shared count, as a shared word: what a foreign increment adds.
pub(crate) const SHARED_ONE: u32 = 1 << SHIFT;

/// The largest count either half may reach before the protocol aborts. Small in loom builds
/// so that a model can spill and overflow in a few steps. The shared count's field holds
/// −2^29 ..= 2^29 − 1: the headroom beyond `±SHARED_MAX` is what lets [`inc_shared`] and
/// [`dec_shared`] check after their read-modify-write rather than before.
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

/// The owner of an object whose finalizer runs on a thread with no owner id on its heap (one
/// not attached to it, inside `Heap::detached`, or whose exit has begun): no thread has this
/// id, so every thread's operations on the object are foreign ones, while the finalizer's
/// temporary reference sits in `local`, unseen by other threads' upgrades as an owner's is
/// ([`resurrect_start`]); the finalizer's own thread's upgrades succeed
/// ([`try_inc_finalizing`]).
pub(crate) const RESURRECTING: u32 = u32::MAX - 1;

/// The bit that marks `owner` as a collection's scratch while its world is stopped: the
/// object is a candidate of the snapshot, and the rest of the word its index
/// (`sync::collect::Candidates`, which puts the owner back before the world restarts). No
/// thread id has it (`sync::thread` gives out ids below it), so no thread's `owned_by` matches
/// a tagged object, and every other use of `owner` waits at the heap's gate meanwhile, except
/// the collecting thread's own: a `Trace` that drops a handle against its contract, or the
/// `Drop` of an object that dies during the snapshot. Its decrement of a candidate changes no
/// count ([`dec_shared`]): the reference is held back until the world runs again
/// (`thread::queue` files it). ([`NO_OWNER`] and [`RESURRECTING`] have the bit too, and are no
/// tags: [`is_candidate_tag`].)
pub(crate) const CANDIDATE_TAG: u32 = 1 << 31;

/// Whether `owner` (as read from an object) is a snapshot's tag ([`CANDIDATE_TAG`]).
#[inline]
pub(crate) fn is_candidate_tag(owner: u32) -> bool {
    owner & CANDIDATE_TAG != 0 && owner < RESURRECTING
}

/// The state of a shared word (its low two bits).
#[inline]
pub(crate) fn state_of(word: u32) -> u32 {
    word & STATE_MASK
}

/// The signed shared count of a shared word (the top 30 bits, sign-extended).
#[inline]
pub(crate) fn count_of(word: u32) -> i32 {
    (word as i32) >> SHIFT
}

/// A shared word: `count << SHIFT | state`.
#[inline]
pub(crate) fn pack(count: i32, state: u32) -> u32 {
    debug_assert!(state <= STATE_MASK);
    ((count << SHIFT) as u32) | state
}

/// Loads the shared word. An `Acquire` load that sees the object merged has synchronised with
/// the merge, which zeroed `owner` first: checked in debug builds ("merged ⇒ owner 0"; while a
/// snapshot runs, a merged candidate's `owner` is the snapshot's tag, [`CANDIDATE_TAG`], which
/// a thread outside the stop may read, in `strong_count`).
#[inline]
fn load(h: &SharedHeader, order: crate::shim::Ordering) -> u32 {
    let word = h.counts.load(order);
    #[cfg(debug_assertions)]
    if matches!(order, Acquire) && state_of(word) == MERGED {
        let owner = h.owner.load(Relaxed);
        debug_assert!(
            owner == 0 || is_candidate_tag(owner),
            "reap: merged ⇒ owner 0 broken ({word:#x}, owner {owner:#x})"
        );
    }
    word
}

/// Whether thread `me` owns the object (unmerged): the one load that decides between the
/// owner's plain paths and everyone else's atomic ones (module invariants).
#[inline]
pub(crate) fn owned_by(h: &SharedHeader, me: u32) -> bool {
    h.owner.load(Relaxed) == me
}

/// Stores "merged" into `owner` before a merge is published (module invariants). `Release`,
/// paired with the `Acquire` loads of `owner` on the foreign decrement's paths: a thread that
/// reads the 0 then sees what came before it (the `QUEUED` mark of [`mark_queued`], a queue
/// entry's state), so its read-modify-write of `counts` is ordered after them. (On x86 both
/// are plain moves.)
#[inline]
fn disown(h: &SharedHeader) {
    h.owner.store(0, Release);
}

/// Whether the caller's handle is the only strong reference to `h` (CPython 3.13t's
/// `_PyObject_IsUniquelyReferenced`): thread `me` owns it with a count of one, and the shared
/// word is a zero count in the initial state (no other thread counts it, none queued it).
/// Then no other thread can take a strong reference but through a weak one (the caller
/// checks that there is none, after this), and a collection, which reads every object, needs
/// this thread stopped.
///
/// `Acquire`: a thread that dropped the last other reference (a `Release` read-modify-write,
/// which this load reads) did whatever it did to the object before (installing a weak-info
/// block, say), so its accesses happen before the caller's next reads and writes.
#[inline]
pub(crate) fn uniquely_referenced(h: &SharedHeader, me: u32) -> bool {
    owned_by(h, me) && h.local.load(Relaxed) == 1 && load(h, Acquire) == pack(0, INIT)
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
    /// The owner's count of a weak-reference object reached zero, and no other thread counts
    /// a reference to it (its word [`MAYBE_WEAK`] with a zero count): the caller asks
    /// `sync::weak::dies_unlisted`, which decides under the referent's weak lock, and then
    /// runs the death or, if another thread took a reference, calls [`merge_weak_taken`]
    /// (`sync::heap::weakref_zero`). The count module stays free of the weak module, and the
    /// death runs once the decrement's functions, whose arguments borrow the header, have
    /// returned.
    WeakZero,
}

/// The initial `(owner, counts, local)` of a new object owned by thread `owner` (or merged,
/// with owner 0); an owned weak-reference object (`weakref`) starts [`MAYBE_WEAK`]: other
/// threads try-increment it under its referent's weak lock, so its owner's last drop must not
/// take the plain fast death (CPython's `init_weakref` marks it so).
#[inline]
pub(crate) fn initial(owner: u32, weakref: bool) -> (u32, u32, u32) {
    if owner == 0 || owner == NO_OWNER {
        (0, pack(1, MERGED), 0)
    } else if weakref {
        (owner, pack(0, MAYBE_WEAK), 1)
    } else {
        (owner, pack(0, INIT), 1)
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

/// [`inc`] if `me` owns the object (returns whether it did): the handle's clone tries it
/// before it looks at the object's heap.
#[inline]
pub(crate) fn inc_if_owner(h: &SharedHeader, me: u32) -> bool {
    if !owned_by(h, me) {
        return false;
    }
    let l = h.local.load(Relaxed);
    debug_assert!(l > 0, "reap: owner increment of a dead object");
    inc_local(h, l);
    true
}

/// The owner's increment of its count `l` (just read from `local`): a plain store, or a spill
/// at [`LOCAL_MAX`].
#[inline]
fn inc_local(h: &SharedHeader, l: u32) {
    if l < LOCAL_MAX {
        h.local.store(l + 1, Relaxed);
    } else {
        spill(h);
    }
}

/// A non-owner's increment of the shared count: one `fetch_add` on the shared word, as `Arc`'s.
///
/// The shared count is the top 30 bits of the word, so the addition never reaches the state:
/// while the object is queued the count may be negative, and adding one to −1 carries out of
/// bit 31, where it is lost (the count becomes 0, the state bits are untouched).
///
/// The overflow check reads the *old* count, after the addition. Why the count cannot wrap
/// past 2^29 − 1 (into negative) before some increment sees the limit: every other operation
/// that raises the count ([`spill`], [`merge`], [`try_inc`], [`mark_queued`]) is a CAS that
/// refuses to publish more than [`SHARED_MAX`], and decrements only lower it; so the count exceeds
/// `SHARED_MAX` only through increments here whose old count was already `>= SHARED_MAX`, and
/// each of those is followed on its thread by [`overflow_inc`], which withdraws it and never
/// returns (abort; a panic in loom builds). A thread thus has at most one such increment
/// outstanding, and the count never exceeds `SHARED_MAX + T`, with `T` the number of threads
/// alive at once. Wrapping needs `T >= 2^29 − 2^28 = 2^28`: the bound relied on is that a
/// process never runs 2^28 (about 268 million) threads at once (Linux caps thread ids below
/// 2^22, `PID_MAX_LIMIT`, and each thread needs a stack); `Arc` makes the same argument with
/// `isize::MAX` of headroom. The same holds below `-SHARED_MAX` for the merged decrement's
/// `fetch_sub` ([`dec_disowned`]), which checks after it too.
#[inline]
pub(crate) fn inc_shared(h: &SharedHeader) {
    let old = h.counts.fetch_add(SHARED_ONE, Relaxed);
    if count_of(old) >= SHARED_MAX {
        overflow_inc(h);
    }
}

/// An increment in [`inc_shared`] found the count at [`SHARED_MAX`]: withdraw it (so that, in a
/// loom build where [`overflow`] panics, the handles made so far still add up) and abort.
#[cold]
#[inline(never)]
fn overflow_inc(h: &SharedHeader) -> ! {
    h.counts.fetch_sub(SHARED_ONE, Relaxed);
    overflow();
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
        let new = pack(count, state_of(word));
        match h.counts.compare_exchange_weak(word, new, Relaxed, Relaxed) {
            Ok(_) => break,
            Err(w) => word = w,
        }
    }
    let l = h.local.load(Relaxed);
    h.local.store(l - half + 1, Relaxed);
}

/// Who must finish a decrement that [`dec_fast`] did not.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Rest {
    /// Done: the owner's count is still above zero.
    Done,
    /// The owner's last local reference: [`dec_owner`].
    Owner,
    /// Another thread's reference: [`dec_shared`] (or the gate, when not attached).
    Foreign,
}

/// The common decrement, inlined at every drop: the owner's, leaving its count above zero (a
/// load and a store).
#[inline]
pub(crate) fn dec_fast(h: &SharedHeader, me: u32) -> Rest {
    if !owned_by(h, me) {
        return Rest::Foreign;
    }
    let l = h.local.load(Relaxed);
    debug_assert!(l > 0, "reap: owner decrement of a dead object");
    // `l - 1` first and its test after (the subtraction's flags): one comparison fewer than
    // `l > 1`, the same verdict (the owner's handle is counted, so `l` is at least 1).
    let rest = l.wrapping_sub(1);
    if rest != 0 {
        h.local.store(rest, Relaxed);
        // The owner's count, still above zero, keeps the object (only the owner changes it).
        h.note_drop();
        return Rest::Done;
    }
    Rest::Owner
}

/// Drops one reference, by thread `me`.
#[inline]
pub(crate) fn dec(h: &SharedHeader, me: u32) -> Dec {
    if owned_by(h, me) {
        // A weak-reference object merges without asking for the unlisting verdict.
        match dec_owner(h, |_| false) {
            Dec::WeakZero => merge_weak_taken(h),
            then => then,
        }
    } else {
        dec_shared(h)
    }
}

/// [`dec`] by the object's owner (the caller has just read `owner` naming it);
/// `none_listed` as [`merge_zero_local`]'s.
#[inline]
pub(crate) fn dec_owner(h: &SharedHeader, none_listed: fn(&SharedHeader) -> bool) -> Dec {
    let l = h.local.load(Relaxed) - 1;
    h.local.store(l, Relaxed);
    if l == 0 {
        return merge_zero_local(h, none_listed);
    }
    // As in `dec_fast`.
    h.note_drop();
    Dec::Alive
}

/// The owner's count reached zero (CPython's `_Py_MergeZeroLocalRefcount`). If the shared word
/// is all zero (no other thread's reference counted, not queued, not a weak-reference object)
/// and no weak reference to the object is listed, it dies at once; otherwise ownership is
/// given up (owner 0, then state merged) and the shared count decides, against any upgrade
/// racing it. A weak-reference object that no other thread counts ([`MAYBE_WEAK`] with a zero
/// count) is [`Dec::WeakZero`]: the caller asks `sync::weak::dies_unlisted` first (which
/// decides under its referent's weak lock, where every try-increment of it runs, and unlists
/// it there: no compare-and-swap), and merges ([`merge_weak_taken`]) only if that says another
/// thread took a reference meanwhile or the object has weak references of its own.
///
/// The weak reference's mark is the referent's tagged `meta` (CPython 3.13t marks the shared
/// word instead, `_PyObject_SetMaybeWeakref`: one compare-and-swap more for every first weak
/// reference). The `Relaxed` load of `meta` sees the tag of any weak reference made so far:
/// one made by this thread comes before in program order; one made on another thread was
/// made with a strong reference there, and that reference's way back to this thread orders
/// the tag before this load: a foreign reference's drop is a `Release` read-modify-write of
/// the shared word, which the `Acquire` load here reads (or it queued the object, and the word
/// is not zero); a borrowed one (a scoped thread's) ended with a join or another
/// synchronisation before this thread could drop its last reference.
///
/// A weakly referenced object whose weak references have all died takes the fast death too
/// (seventeenth session): `none_listed` (`sync::weak::none_listed`, passed in so that this
/// module stays free of the weak module) loads the block's count of listed references with
/// `Acquire`, and the word is loaded again after it. An upgrade needs a listed weak
/// reference; one that succeeded through a reference unlisted since happened before that
/// unlisting's `Release` store of the count, so the second load sees its increment (or
/// later values: the word is zero again only if that reference was dropped too); and no new
/// weak reference can be made, as that takes a strong reference, which a zero word and this
/// owner's last drop leave to nobody. Loading the word only before the count would miss an
/// upgrade made between the two loads through a reference unlisted right after it.
#[inline]
pub(crate) fn merge_zero_local(h: &SharedHeader, none_listed: fn(&SharedHeader) -> bool) -> Dec {
    let word = load(h, Acquire);
    if word == 0 && (!h.has_weak_info() || (none_listed(h) && load(h, Acquire) == 0)) {
        return Dec::Dead;
    }
    if word == MAYBE_WEAK {
        return Dec::WeakZero;
    }
    give_up_ownership(h, word)
}

/// After [`Dec::WeakZero`], when `sync::weak::dies_unlisted` found the weak-reference object
/// still referenced (another thread took a reference, or it has weak references of its own):
/// ownership is given up as for any object other threads count, from the word as it is now.
#[inline]
pub(crate) fn merge_weak_taken(h: &SharedHeader) -> Dec {
    give_up_ownership(h, load(h, Acquire))
}

/// Whether a weak-reference object's shared word says no other thread counts a reference to
/// it ([`MAYBE_WEAK`] with a zero count), loaded with `Acquire`: the verdict of
/// `sync::weak::dies_unlisted` (see [`merge_zero_local`]).
pub(crate) fn unshared_weak_object(h: &SharedHeader) -> bool {
    load(h, Acquire) == MAYBE_WEAK
}

/// [`merge_zero_local`] for an object other threads counted, queued or weakly reference
/// (`word`: a load of the shared word, zero only if the object has weak references).
///
/// With weak references a zero is published merged too (the death), so that an upgrade
/// racing it either wins first (its compare-and-swap makes the word nonzero, and this one
/// fails) or refuses the merged zero: taking the death on a zero without the
/// compare-and-swap let an upgrade take the dying object (loom model 25).
///
/// Inlined: out of line (as the compiler left it once the zero test moved into the loop), its
/// call and the stack frame it gave the owner's last drop cost the weak-create round about
/// 10% (sixteenth session).
#[inline(always)]
fn give_up_ownership(h: &SharedHeader, mut word: u32) -> Dec {
    // Before the merge is published (module invariants). Another thread reading 0 here only
    // learns that it is not the owner, which it was not.
    disown(h);
    loop {
        // A queued object can get here too: the owner dropped references that other threads
        // had counted (their increments are in the shared count), so its local count reached
        // zero with the queue's reference still outstanding. Merging now is right; the queue
        // entry stays and its merge (`merge(h, -1)`) is then a plain decrement.
        debug_assert!(
            state_of(word) != QUEUED || count_of(word) >= 1,
            "reap: queued object merged at zero (the queue's reference is lost)"
        );
        debug_assert!(
            count_of(word) >= 0,
            "reap: negative count at the owner's merge"
        );
        let new = pack(count_of(word), MERGED);
        if count_of(new) > 0 {
            // It lives on, held by other threads, one of which may drop the last reference as
            // soon as this is published: marked first.
            h.note_drop();
        }
        match h.counts.compare_exchange_weak(word, new, AcqRel, Acquire) {
            Ok(_) => {
                return if count_of(new) == 0 {
                    Dec::Dead
                } else {
                    Dec::Alive
                };
            }
            Err(w) => {
                word = w;
                if word == 0 && !h.has_weak_info() {
                    // The other threads' references went meanwhile, and no weak reference
                    // exists: nobody can take a new one.
                    return Dec::Dead;
                }
            }
        }
    }
}

/// A non-owner's decrement (CPython's `_Py_DecRefShared`). `owner` decides the way, with no
/// load of the shared word before the read-modify-write when it is 0 (module docs: a load of
/// the word the caller's last atomic operation wrote would wait for it).
#[inline]
pub(crate) fn dec_shared(h: &SharedHeader) -> Dec {
    // Marked while the reference still holds the object (another thread may drop the last
    // one right after the decrement). A collection skips a dead object whatever its mark.
    h.note_drop_before_rmw();
    // `Acquire`: see `disown`.
    let owner = h.owner.load(Acquire);
    if owner == 0 {
        dec_disowned(h)
    } else if (owner as i32) < 0 {
        // A snapshot's tag, or one of the two ids above it.
        dec_tagged_or_high(h, owner)
    } else {
        dec_owned_elsewhere(h)
    }
}

/// [`dec_shared`]'s common cases, for the drop of a handle (`heap::dec_ref_foreign`): a
/// merged object's `fetch_sub` ([`dec_disowned`]), and for an object another thread owns, a
/// compare-and-swap taking a shared count above zero, unmerged, one lower (the object stays
/// alive: the owner's count holds it), tried twice. [`Fast::Slow`] when it did nothing (a tag
/// or a high id in `owner`, a count of zero or less, a merged word, two lost races): the
/// caller then runs [`dec_shared`] from the start.
///
/// The first compare-and-swap expects `guess()`, the word this thread predicts, if it has a
/// prediction for the object (`thread::word_guess`: the word its last decrement of the object
/// published, plus one for each of its clones since), rather than a load of the word: on x86
/// a load of the word a locked instruction (a clone's `fetch_add`) just wrote waits for it to
/// drain, where a compare-and-swap from a value already known does not. The prediction is
/// exact unless another thread changed the count meanwhile (the nineteenth session's first
/// try guessed a constant, wrong whenever another handle was held). The guess decides
/// nothing: the compare-and-swap publishes only if the word is the guess, which is then the
/// word a load would have returned; a wrong guess fails with the word as it is, from which the
/// second try goes, as it would after a load. A guess whose count is not above zero, or
/// merged, is not tried (stale, or the slow path's anyway).
///
/// Returns [`Fast::AliveFrom`] with the word a compare-and-swap published, for the caller to
/// remember.
#[inline]
pub(crate) fn dec_shared_fast(h: &SharedHeader, guess: impl FnOnce() -> Option<u32>) -> Fast {
    h.note_drop_before_rmw();
    // `Acquire`: see `disown`.
    let owner = h.owner.load(Acquire);
    if owner == 0 {
        return match dec_disowned(h) {
            Dec::Alive => Fast::Alive,
            _ => Fast::Dead,
        };
    }
    if (owner as i32) > 0 {
        let usable = |w: u32| count_of(w) > 0 && state_of(w) != MERGED;
        let mut word = match guess() {
            Some(w) if usable(w) => w,
            _ => load(h, Relaxed),
        };
        for _ in 0..2 {
            if !usable(word) {
                break;
            }
            match h
                .counts
                .compare_exchange_weak(word, word - SHARED_ONE, AcqRel, Relaxed)
            {
                Ok(_) => return Fast::AliveFrom(word - SHARED_ONE),
                Err(w) => word = w,
            }
        }
    }
    Fast::Slow
}

/// What [`dec_shared_fast`] did (`Alive`, `AliveFrom` and `Dead` as [`Dec`]'s).
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub(crate) enum Fast {
    /// The decrement is done and the object alive.
    Alive,
    /// As `Alive`, by a compare-and-swap that published this word.
    AliveFrom(u32),
    /// The decrement is done and the count reached zero: the caller runs the death.
    Dead,
    /// Nothing done: the caller runs [`dec_shared`].
    Slow,
}

/// [`dec_shared`] of an object whose `owner` has the top bit: [`RESURRECTING`] (or
/// [`NO_OWNER`]) is decremented as any owned object; a candidate of the snapshot the collecting
/// thread (this one) is taking keeps its count, and the dropped reference goes to the caller
/// as if queued (`Dec::Queue` with the tag: `thread::queue` holds it back until the world
/// runs again). Changing the count would let the object die, its block be freed and reused,
/// while its entry in the snapshot is live and the snapshot still has to put its owner back.
#[cold]
#[inline(never)]
fn dec_tagged_or_high(h: &SharedHeader, owner: u32) -> Dec {
    if is_candidate_tag(owner) {
        Dec::Queue(owner)
    } else {
        dec_owned_elsewhere(h)
    }
}

/// [`dec_shared`] of an object with `owner` 0: one `fetch_sub`, as `Arc`'s drop.
///
/// `owner` 0 means merged, or a merge in progress on another thread (which zeroed `owner`
/// first). A merge runs only on a queued object (a queue's drain, or a thread merging for an
/// owner that exited), on an object the world holds stopped (a collection's hold), or when the
/// owner's local count reached zero; then every reference left is counted in the shared count
/// (no handle the owner counted is alive, and none was dropped by another thread unqueued), so
/// the caller's makes it at least 1. The finalizer's end ([`resurrect_end`]) marks the object
/// queued before it merges. So
/// the old word is merged, queued, or above zero, and in each the subtraction is the whole
/// decrement: nothing to queue. A merged object stays merged while anyone holds a reference
/// (owner 0 and `MERGED` are left only by [`resurrect_start`], on an object whose count has
/// reached zero), and its old count 1 means this was the last reference.
///
/// The decrement is `Release`: the death path pairs it with an acquire load of `counts`
/// (`heap::destroy`, `heap::give_back_hold`, after [`resurrect_end`]); every decrement is a
/// read-modify-write of `counts`, so the load synchronises with all of them (a fence would
/// too, but ThreadSanitizer does not model fences).
#[inline]
fn dec_disowned(h: &SharedHeader) -> Dec {
    let old = h.counts.fetch_sub(SHARED_ONE, Release);
    debug_assert!(
        count_of(old) >= 1 || state_of(old) == QUEUED,
        "reap: a disowned object's decrement from {old:#x}"
    );
    if count_of(old) == 1 && state_of(old) == MERGED {
        return Dec::Dead;
    }
    if count_of(old) <= -SHARED_MAX {
        overflow_dec(h);
    }
    Dec::Alive
}

/// [`dec_disowned`]'s decrement found a queued count at `-SHARED_MAX`: withdraw it, as
/// [`overflow_inc`] does for an increment, and abort.
#[cold]
#[inline(never)]
fn overflow_dec(h: &SharedHeader) -> ! {
    h.counts.fetch_add(SHARED_ONE, Relaxed);
    overflow();
}

/// [`dec_shared`] of an object another thread owns (as far as `owner` said): a CAS loop, as
/// a decrement of an unqueued zero count must queue the object in the same atomic step (a
/// `fetch_sub` followed by a second step to mark it queued would leave a moment where the
/// owner's spill or its merge at zero could count the dropped reference wrongly).
///
/// A handle's drop takes its common case, a count above zero, in [`dec_shared_fast`]; this
/// is the whole protocol, out of line.
#[inline(never)]
fn dec_owned_elsewhere(h: &SharedHeader) -> Dec {
    let mut word = load(h, Relaxed);
    loop {
        let (new, then) = if count_of(word) > 0 {
            one_less(word)
        } else {
            match dec_shared_at_most_zero(h, word) {
                Some(step) => step,
                None => {
                    // A merge ran since `word` was read: read the word again.
                    word = load(h, Relaxed);
                    continue;
                }
            }
        };
        match h.counts.compare_exchange_weak(word, new, AcqRel, Relaxed) {
            Ok(_) => return then,
            Err(w) => word = w,
        }
    }
}

/// [`dec_owned_elsewhere`]'s step for a shared count above zero, the common case in every
/// state: one less. Zero is the death only for a merged object (the owner may merge while the
/// loop retries); unmerged, the owner's count holds the rest.
#[inline]
fn one_less(word: u32) -> (u32, Dec) {
    let dead = count_of(word) == 1 && state_of(word) == MERGED;
    (word - SHARED_ONE, if dead { Dec::Dead } else { Dec::Alive })
}

/// [`dec_owned_elsewhere`]'s step for a shared count of zero or less (never merged: a merged
/// count is the whole count, above zero while the caller holds a reference): the new word and
/// what the caller must do once it is published, or `None` if `owner` says a merge ran since
/// `word` was read (the caller reads the word again).
#[cold]
fn dec_shared_at_most_zero(h: &SharedHeader, word: u32) -> Option<(u32, Dec)> {
    let (count, state) = (count_of(word), state_of(word));
    debug_assert!(state != MERGED, "reap: drop of a dead object");
    if count == 0 && state != QUEUED {
        // The reference dropped was counted by the owner: hand it to the owner's queue rather
        // than take the shared count below zero while it may still reach zero unmerged. The
        // owner's count holds that reference, so it is not merging (module invariants): its
        // id is still in `owner` if the compare-and-swap succeeds.
        // `Acquire` (see `disown`): a 0 here means a merge (of an object marked queued
        // first) ran since `word` was read, and this thread now sees its writes.
        let owner = h.owner.load(Acquire);
        if owner == 0 {
            return None;
        }
        // Tagged only by the collecting thread, which never gets here for a candidate
        // (`dec_shared`).
        debug_assert!(!is_candidate_tag(owner), "reap: a candidate queued");
        Some((pack(0, QUEUED), Dec::Queue(owner)))
    } else {
        if count <= -SHARED_MAX {
            overflow();
        }
        Some((pack(count - 1, state), Dec::Alive))
    }
}

/// Merges an object whose owner thread has left the heap, with the world stopped (a
/// collection's walk; CPython 3.13t's `gc_restore_tid` merges the objects of a segment whose
/// thread is gone). Until then every other thread's decrement of it is the unmerged
/// compare-and-swap from a load; afterwards it is the merged `fetch_sub` ([`dec_disowned`]).
/// Returns whether it merged.
///
/// Left alone: a merged object; a queued one (its queue entry merges it: an exiting thread
/// merges its queue, and what is queued to it later is merged by the thread queueing it, so
/// none is expected); one whose `local` is 0, which can only be an object whose death is
/// running (its owner's count reached zero on an unshared object, `merge_zero_local`).
/// Otherwise the owner's count holds at least one reference and the shared count is not
/// negative (negative is queued), so the merged count is above zero: nothing dies here.
///
/// Loads and stores, as [`collector_hold`]'s, for the same reason: no thread changes a count
/// while the world is stopped, and the restart publishes the stores.
pub(crate) fn merge_orphan(h: &SharedHeader) -> bool {
    let word = load(h, Relaxed);
    let local = h.local.load(Relaxed);
    if matches!(state_of(word), QUEUED | MERGED) || local == 0 {
        return false;
    }
    let total = count_of(word) as i64 + local as i64;
    debug_assert!(total >= 1, "reap: an orphan merged to {total}");
    if total > SHARED_MAX as i64 {
        overflow();
    }
    h.local.store(0, Relaxed);
    disown(h);
    h.counts.store(pack(total as i32, MERGED), Relaxed);
    true
}

/// Whether a collection's hold on an object of its final garbage, with the `deferred`
/// references the reclaiming thread dropped meanwhile (counted in `local`; see
/// `object::shared::GC_RECLAIM`), are the object's last references, with no weak reference to
/// it: its give-back (`heap::give_back_hold`) then frees it with no read-modify-write.
///
/// Most garbage is given back as its only reference (the values that held it were dropped
/// first) with no weak reference to it. Then no other thread can take a reference any more:
/// a strong one needs a handle to clone, a weak upgrade needs a weak reference, and both are
/// gone. So a load that sees the hold alone and no weak-information block decides the death,
/// as `Arc::get_mut` decides uniqueness. The load is `Acquire`: every other thread's last use
/// of the object happened before the decrement that left only the hold (all of them
/// read-modify-writes of `counts`, `Release`), and a weak reference some thread made
/// meanwhile (its block published before that decrement) is seen too.
#[inline]
pub(crate) fn hold_is_last(h: &SharedHeader, deferred: u32) -> bool {
    let word = load(h, Acquire);
    // The hold and the deferred drops: references the count still holds.
    let mine = 1 + deferred as i32;
    debug_assert!(
        state_of(word) == MERGED && count_of(word) >= mine,
        "reap: a held object not merged, or below its hold: {word:#x}"
    );
    word == pack(mine, MERGED) && !h.has_weak_info()
}

/// The decrement that gives back a collection's hold on an object of its final garbage when
/// [`hold_is_last`] said it may not be the last: the hold and the `deferred` references (now
/// zeroed in `local`) in one subtraction. [`collector_hold`] merged the object, and the hold
/// keeps it merged until this decrement (see [`dec_shared`]), on any thread and whatever a
/// `Drop` did meanwhile.
#[inline]
pub(crate) fn dec_hold(h: &SharedHeader, deferred: u32) -> Dec {
    let mine = 1 + deferred as i32;
    let old = h.counts.fetch_sub(mine as u32 * SHARED_ONE, Release);
    debug_assert!(
        state_of(old) == MERGED && count_of(old) >= mine,
        "reap: a held object not merged, or below its hold: {old:#x}"
    );
    if count_of(old) == mine {
        Dec::Dead
    } else {
        // Still referenced: a zombie (its value dropped, so never a candidate again: no
        // possible-root mark).
        Dec::Alive
    }
}

/// Merges the owner's count into the shared one, adding `extra` (−1 for a queued object, whose
/// queue entry held a reference), and gives up ownership; returns the object's count. Run by
/// the owner, or by another thread once the owner has exited (CPython's
/// `_Py_ExplicitMergeRefcount`). `local` and `owner` are zeroed before the merged count is
/// published.
///
/// A queued object may already be merged when its queue entry is drained (its owner's local
/// count reached zero meanwhile, see [`merge_zero_local`]); its `local` is then 0 and the merge
/// only drops the queue's reference. The caller holds that reference, so the header is still
/// allocated for the stores to `local` and `owner`.
pub(crate) fn merge(h: &SharedHeader, extra: i32) -> i32 {
    let local = h.local.load(Relaxed);
    h.local.store(0, Relaxed);
    disown(h);
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
        let new = pack(total as i32, MERGED);
        match h.counts.compare_exchange_weak(word, new, AcqRel, Relaxed) {
            Ok(_) => return total as i32,
            Err(w) => word = w,
        }
    }
}

/// The whole count of an object, read by a collection while the world is stopped (no thread
/// changes it meanwhile). A `QUEUED` object's queue entry (one an owner took out of its slot
/// to merge, and parked before it got to it) counts as one reference: from outside, so the
/// object is kept.
pub(crate) fn stopped_count(h: &SharedHeader) -> usize {
    let word = load(h, Acquire);
    let local = if state_of(word) == MERGED {
        0
    } else {
        h.local.load(Relaxed) as i64
    };
    (count_of(word) as i64 + local).max(0) as usize
}

/// Gives a collection one reference to an object of its garbage, while the world is stopped,
/// and merges the object (so that every later count change, on any thread, is an atomic one
/// on the shared word, and none queues it to an owner): its owner is parked, detached (its
/// handle operations then go through the gate, as a non-owner's) or gone.
///
/// No thread changes a count while the world is stopped (attached threads are parked, every
/// other one takes the gate before it touches a count), so this is loads and stores, not a
/// read-modify-write; the restart of the world publishes them.
pub(crate) fn collector_hold(h: &SharedHeader) {
    let word = load(h, Relaxed);
    let local = if state_of(word) == MERGED {
        debug_assert_eq!(
            h.local.load(Relaxed),
            0,
            "reap: a merged object with a local count"
        );
        0
    } else {
        h.local.load(Relaxed)
    };
    let total = count_of(word) as i64 + local as i64 + 1;
    if total > SHARED_MAX as i64 {
        overflow();
    }
    debug_assert!(total > 1, "reap: garbage held with no reference");
    if local != 0 {
        h.local.store(0, Relaxed);
    }
    disown(h);
    h.counts.store(pack(total as i32, MERGED), Relaxed);
}

/// Adds a reference unless the object's count is zero (a weak upgrade, called under the
/// referent's weak lock, which keeps its memory allocated): CPython's `_Py_TryIncref`.
///
/// A merged zero is dead or dying. An object whose finalizer runs on the refcount path
/// ([`GC_FINALIZING`], from [`resurrect_start`] to [`resurrect_end`]) is refused whatever its
/// count (SEMANTICS 8.3): the finalizer's clones, a drop of one queued to its own thread or
/// merged by a safe point, change the word without resurrecting the object. Any other word
/// is a living object, an all-zero one too: its count is in its owner's `local` (a weakly
/// referenced object never takes the owner's fast death while a weak reference, such as the
/// one upgraded here, is listed, [`merge_zero_local`]: its owner's last drop merges, and a
/// compare-and-swap here that wins keeps it alive). The mark is set,
/// and the word goes from a merged zero back to all zero, under the referent's weak lock when
/// it has weak references (`heap::destroy`), and this runs under that lock: so the
/// compare-and-swap below cannot succeed on the finalizer's zero after a load that saw the
/// zero of the living object; and [`resurrect_end`] clears the mark and publishes its verdict
/// under the lock too.
#[inline]
pub(crate) fn try_inc(h: &SharedHeader, me: u32) -> bool {
    if owned_by(h, me) {
        return try_inc_owner(h);
    }
    inc_shared_unless(h, true)
}

/// One more reference in the shared count by a compare-and-swap, unless the word is a merged
/// zero (dead or dying) or, if `refuse_finalizing`, the object's finalizer runs on the
/// refcount path: the weak upgrades' increment.
#[inline]
fn inc_shared_unless(h: &SharedHeader, refuse_finalizing: bool) -> bool {
    if refuse_finalizing && h.is_finalizing() {
        return false;
    }
    let mut word = load(h, Relaxed);
    loop {
        if word == MERGED {
            return false;
        }
        if count_of(word) >= SHARED_MAX {
            overflow();
        }
        let new = pack(count_of(word) + 1, state_of(word));
        match h.counts.compare_exchange_weak(word, new, Acquire, Relaxed) {
            Ok(_) => return true,
            Err(w) => word = w,
        }
    }
}

/// [`try_inc`] by the thread that runs the object's finalizer with no owner id on its heap (the
/// object held as [`RESURRECTING`]): the finalizer's own thread's upgrade succeeds, as an
/// owner's does (CPython's `_Py_TryIncrefFast`), here by one more reference in the shared
/// count, from zero too. Not in `local`: a handle counted there, dropped on another thread
/// at a shared count of zero, would be merged by that thread (`RESURRECTING` has no queue)
/// while this one may write `local` again. Once the count is above zero, other threads'
/// upgrades may take the object too: the finalizer's upgrade resurrected it (SEMANTICS 8.3).
pub(crate) fn try_inc_finalizing(h: &SharedHeader) -> bool {
    // A merged zero never comes while the temporary reference is counted.
    inc_shared_unless(h, false)
}

/// [`try_inc`] by the object's owner (the caller has read `owner` naming it): the owner's
/// count goes up unless it is zero, which means the object is dying on this thread (the death
/// in progress is further up this stack).
#[inline]
pub(crate) fn try_inc_owner(h: &SharedHeader) -> bool {
    let l = h.local.load(Relaxed);
    // One comparison for both rare cases: 0 (refused) and a spill.
    if l.wrapping_sub(1) < LOCAL_MAX - 1 {
        h.local.store(l + 1, Relaxed);
        return true;
    }
    if l == 0 {
        return false;
    }
    spill(h);
    true
}

/// Gives a dead object one temporary reference owned by thread `me` for its finalizer
/// (CPython 3.13t's `_PyObject_ResurrectStart`), and marks it [`GC_FINALIZING`] (under its
/// weak lock if it has weak references: `heap::destroy`). The shared word is left all zero;
/// the mark makes weak upgrades on other threads keep refusing the object ([`try_inc`]) until
/// [`resurrect_end`], as they did since its count reached zero: once an upgrade has returned
/// `None`, none returns the object again unless the finalizer resurrected it. The finalizer's
/// own thread may still upgrade (its owner path), and any reference it stores or hands on
/// resurrects the object (seen by other threads' upgrades once the finalizer has returned).
/// Until the sixteenth session the refusal rested on the all-zero word, which the
/// finalizer's own clones could change (a review found a clone dropped inside
/// `Heap::detached`, or one made on a thread with no owner id, letting other threads in).
///
/// A thread with no owner id (`me` = [`NO_OWNER`]) holds the reference as
/// [`RESURRECTING`], an owner no thread is: other threads' upgrades still refuse the object,
/// while the finalizer's own thread's succeed ([`try_inc_finalizing`], for the object it
/// records as finalizing); its other operations on the object are foreign ones.
/// Until the fifteenth session the reference went into a merged count there, where every
/// thread's upgrade could take it.
pub(crate) fn resurrect_start(h: &SharedHeader, me: u32) {
    h.set_gc_bit(GC_FINALIZING, true);
    let owner = if me == NO_OWNER { RESURRECTING } else { me };
    h.local.store(1, Relaxed);
    h.counts.store(pack(0, INIT), Relaxed);
    h.owner.store(owner, Relaxed);
}

/// Drops the finalizer's temporary reference (CPython 3.13t's `_PyObject_ResurrectEnd`) on
/// thread `me`, which called [`resurrect_start`]: `true` if the object is dead after all
/// (nobody took a reference meanwhile), `false` if it was resurrected. A resurrected object is
/// merged (its whole count in the shared word), so that other threads' upgrades see it alive
/// and its last drop on any thread is its death.
pub(crate) fn resurrect_end(h: &SharedHeader, me: u32) -> bool {
    let me = if me == NO_OWNER { RESURRECTING } else { me };
    let word = load(h, Acquire);
    if !owned_by(h, me) {
        // Merged meanwhile (started merged, or a safe point in the finalizer drained a queue
        // entry for it): the temporary reference is in the merged count. The mark goes
        // first: after the decrement another thread may free the object.
        h.set_gc_bit(GC_FINALIZING, false);
        return match dec_shared(h) {
            Dec::Dead => true,
            Dec::Alive => false,
            Dec::Queue(_) => unreachable!("reap: merged object queued"),
            Dec::WeakZero => unreachable!("reap: a shared decrement is not the owner's"),
        };
    }
    if h.local.load(Relaxed) == 1 && word == 0 {
        // Only the temporary reference, and no other thread counted or queued one: dead. (A
        // concurrent foreign increment needs a handle, which only this thread could have
        // given out, and it would have counted it: in `local` as the owner, in the shared
        // word as `RESURRECTING`'s thread, whose every increment is a foreign one.) The mark
        // stays, or is set again if another thread's clone lifted it (`heap::inc_foreign`: a
        // handle the finalizer lent, cloned, the clone dropped and the handle given back to
        // be dropped here): the all-zero word now looks like a living object's, and the
        // mark is what keeps upgrades off it until its weak references are cleared.
        if !h.is_finalizing() {
            h.set_gc_bit(GC_FINALIZING, true);
        }
        h.local.store(0, Relaxed);
        return true;
    }
    // Resurrected, or dead after all by a decrement the merge settles: the mark goes before
    // anything is published (another thread may then free the object).
    h.set_gc_bit(GC_FINALIZING, false);
    let extra = mark_queued(h);
    let total = merge(h, extra);
    if extra == -1 && total == 1 {
        // Queued before (a handle the finalizer lent was dropped on another thread at a shared
        // count of zero), and the queue entry's is the only reference left: not resurrected,
        // dead once this thread's queue is drained. The mark goes back meanwhile, so that
        // other threads' upgrades keep refusing the object (the caller holds its weak lock if
        // it has weak references); writing it is safe, as nothing but this thread's drain
        // (at its next safe point, or a collection's while it is parked) can end it. Until
        // the sixteenth session's second review this left it upgradable in between.
        h.set_gc_bit(GC_FINALIZING, true);
    }
    total == 0
}

/// Marks an object this thread owns `QUEUED` before [`resurrect_end`] merges it, unless it is
/// queued already; returns what the merge must add (−2: this mark's reference and the
/// temporary one; −1: the temporary one, the queue entry's being dropped by its drain).
///
/// The merge stores `owner` 0 before it publishes the merged count, and a thread that reads
/// that 0 decrements with one `fetch_sub` ([`dec_disowned`]), which is right only if the old
/// word is merged, queued or above zero; but a handle the finalizer gave another thread is
/// counted in `local`, and its drop at a shared count of zero must queue. Marked queued first
/// (holding one reference in the shared count, as a queue entry does, so the total is
/// unchanged), every decrement on another thread is right whichever way it goes.
fn mark_queued(h: &SharedHeader) -> i32 {
    let mut word = load(h, Relaxed);
    loop {
        if state_of(word) == QUEUED {
            return -1;
        }
        debug_assert!(state_of(word) != MERGED, "reap: the owner's object merged");
        if count_of(word) >= SHARED_MAX {
            overflow();
        }
        let new = pack(count_of(word) + 1, QUEUED);
        match h.counts.compare_exchange_weak(word, new, Relaxed, Relaxed) {
            Ok(_) => return -2,
            Err(w) => word = w,
        }
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
        } else {
            // A merged object's `local` is 0, or the drops a reclaim deferred, which the
            // count still holds.
            n -= local as i64;
        }
        if state_of(word) == QUEUED {
            n -= 1;
        }
        return n.max(1) as usize;
    }
}

#[cfg(all(test, not(reap_loom)))]
mod tests {
    use super::*;
    use crate::object::header::Flags;
    use crate::object::header::META_WEAK_INFO as META_TAG;
    use crate::shim::{AtomicPtr, AtomicU32, AtomicU8};
    use std::ptr::NonNull;

    /// One reference more by thread `me`: the count's half of `heap::inc_ref` (which also
    /// lifts a finalizing mark).
    fn inc(h: &SharedHeader, me: u32) {
        if !inc_if_owner(h, me) {
            inc_shared(h);
        }
    }

    fn header(owner: u32, counts: u32, local: u32) -> SharedHeader {
        SharedHeader {
            heap: crate::object::shared::Fixed::new(NonNull::dangling()),
            counts: AtomicU32::new(counts),
            owner: AtomicU32::new(owner),
            meta: AtomicPtr::new(std::ptr::null_mut()),
            local: AtomicU32::new(local),
            flags: AtomicU8::new(0),
            in_slab: crate::object::shared::Fixed::new(false),
            gc_bits: AtomicU8::new(0),
            possible: AtomicU8::new(0),
        }
    }

    #[test]
    fn pack_round_trips() {
        for (count, state) in [
            (0, INIT),
            (-1, QUEUED),
            (SHARED_MAX, MAYBE_WEAK),
            (-SHARED_MAX, QUEUED),
            (5, MERGED),
        ] {
            let w = pack(count, state);
            assert_eq!((count_of(w), state_of(w)), (count, state));
        }
    }

    /// The foreign `fetch_add` on a negative count carries out of the top of the word: the
    /// state is untouched (the bug the CAS loop once worked around).
    #[test]
    fn foreign_increment_of_a_negative_count_keeps_the_state() {
        let owner = 0x7FFF_FFFF;
        let h = header(owner, pack(-2, QUEUED), 3);
        inc(&h, 9);
        assert_eq!(h.counts.load(Relaxed), pack(-1, QUEUED));
        inc(&h, 9);
        assert_eq!(h.counts.load(Relaxed), pack(0, QUEUED));
        inc(&h, 9);
        assert_eq!(h.counts.load(Relaxed), pack(1, QUEUED));
        assert_eq!(dec(&h, 9), Dec::Alive);
        assert_eq!(h.counts.load(Relaxed), pack(0, QUEUED));
        assert_eq!(dec(&h, 9), Dec::Alive);
        assert_eq!(h.counts.load(Relaxed), pack(-1, QUEUED));
        assert_eq!(h.local.load(Relaxed), 3);
        assert_eq!(h.owner.load(Relaxed), owner);
    }

    /// A foreign decrement of an unqueued zero count queues the object to its owner, keeping
    /// the count at zero (the queue entry holds the reference), whatever the state's
    /// weak-reference mark; a second one while queued goes below zero.
    #[test]
    fn foreign_decrement_at_zero_queues_once() {
        for state in [INIT, MAYBE_WEAK] {
            let h = header(7, pack(0, state), 2);
            assert_eq!(dec(&h, 9), Dec::Queue(7));
            assert_eq!(h.counts.load(Relaxed), pack(0, QUEUED));
            assert_eq!(dec(&h, 9), Dec::Alive);
            assert_eq!(h.counts.load(Relaxed), pack(-1, QUEUED));
            // The owner drains the queue: its count of 2 held both dropped references.
            assert_eq!(merge(&h, -1), 0);
            assert_eq!(h.owner.load(Relaxed), 0);
            assert_eq!(state_of(h.counts.load(Relaxed)), MERGED);
        }
    }

    /// A merged object's decrements: the one that takes the count from 1 is the death.
    #[test]
    fn merged_decrements_find_the_last_reference() {
        let h = header(0, pack(2, MERGED), 0);
        assert_eq!(dec(&h, 9), Dec::Alive);
        assert_eq!(dec(&h, 9), Dec::Dead);
    }

    /// An orphan (its owner gone) is merged with its whole count; a queued, merged or dying
    /// one is left alone.
    #[test]
    fn an_orphan_merges_with_its_whole_count() {
        for state in [INIT, MAYBE_WEAK] {
            let h = header(7, pack(2, state), 3);
            assert!(merge_orphan(&h));
            assert_eq!(h.owner.load(Relaxed), 0);
            assert_eq!(h.local.load(Relaxed), 0);
            assert_eq!(h.counts.load(Relaxed), pack(5, MERGED));
            assert!(!merge_orphan(&h), "merged twice");
        }
        let queued = header(7, pack(0, QUEUED), 2);
        assert!(!merge_orphan(&queued));
        assert_eq!(queued.counts.load(Relaxed), pack(0, QUEUED));
        let dying = header(7, pack(0, INIT), 0);
        assert!(!merge_orphan(&dying));
        assert_eq!(dying.owner.load(Relaxed), 7);
        // Merged, the next foreign decrement is the merged one.
        let h = header(7, pack(0, INIT), 1);
        assert!(merge_orphan(&h));
        assert_eq!(dec(&h, 9), Dec::Dead);
    }

    /// A weakly referenced object's mark is its tagged `meta`: with a shared word of zero, the
    /// owner's last drop publishes a merged zero (the death) instead of taking the fast death,
    /// so that an upgrade racing it refuses; before that, an upgrade from another thread
    /// succeeds on the all-zero word, unless the object is in its finalizer (`FINALIZED`).
    #[test]
    fn a_weakly_referenced_object_merges_at_its_owners_last_drop() {
        let tagged = || AtomicPtr::new(std::ptr::without_provenance_mut(META_TAG));
        let mut h = header(7, pack(0, INIT), 1);
        h.meta = tagged();
        assert!(try_inc(&h, 9), "a living object's upgrade refused");
        assert_eq!(h.counts.load(Relaxed), pack(1, INIT));
        assert_eq!(dec(&h, 9), Dec::Alive);
        assert_eq!(dec(&h, 7), Dec::Dead);
        assert_eq!(
            h.counts.load(Relaxed),
            pack(0, MERGED),
            "the death not published"
        );
        assert_eq!(h.owner.load(Relaxed), 0);
        assert!(!try_inc(&h, 9), "a dead object upgraded");
        // Its finalizer on the refcount path: all zero again, refused by `FINALIZED`.
        h.set(Flags::FINALIZED);
        resurrect_start(&h, 7);
        assert!(
            !try_inc(&h, 9),
            "an object in its finalizer upgraded from another thread"
        );
        assert!(try_inc(&h, 7), "the finalizer's own thread refused");
        // Untagged, the same drop is the fast death, leaving the word as it was.
        let plain = header(7, pack(0, INIT), 1);
        assert_eq!(dec(&plain, 7), Dec::Dead);
        assert_eq!(plain.counts.load(Relaxed), 0);
    }

    /// A tagged object none of whose weak references is listed any more takes the fast death
    /// at its owner's last drop (the word left all zero); one with a listed reference merges;
    /// and a nonzero word is never the fast death, whatever the listing says.
    #[test]
    fn a_weakly_referenced_object_whose_weak_references_died_takes_the_fast_death() {
        let tagged = || AtomicPtr::new(std::ptr::without_provenance_mut(META_TAG));
        let mut gone = header(7, pack(0, INIT), 1);
        gone.meta = tagged();
        assert_eq!(dec_owner(&gone, |_| true), Dec::Dead);
        assert_eq!(
            gone.counts.load(Relaxed),
            0,
            "the fast death writes nothing"
        );
        let mut listed = header(7, pack(0, INIT), 1);
        listed.meta = tagged();
        assert_eq!(dec_owner(&listed, |_| false), Dec::Dead);
        assert_eq!(listed.counts.load(Relaxed), pack(0, MERGED));
        let mut held = header(7, pack(1, INIT), 1);
        held.meta = tagged();
        assert_eq!(dec_owner(&held, |_| true), Dec::Alive);
        assert_eq!(held.counts.load(Relaxed), pack(1, MERGED));
    }

    /// A weak-reference object no other thread counts is `WeakZero` at its owner's last drop,
    /// with nothing written (the unlisting verdict is the caller's); `merge_weak_taken` then
    /// merges it, and `dec` (which asks for no verdict) merges at once. One other threads count
    /// merges without the question.
    #[test]
    fn a_weak_objects_last_owner_drop_is_left_to_the_unlisting_verdict() {
        let asked = header(7, pack(0, MAYBE_WEAK), 1);
        assert_eq!(dec_owner(&asked, |_| true), Dec::WeakZero);
        assert_eq!(asked.counts.load(Relaxed), pack(0, MAYBE_WEAK));
        assert_eq!(asked.owner.load(Relaxed), 7, "nothing published");
        assert_eq!(merge_weak_taken(&asked), Dec::Dead);
        assert_eq!(asked.owner.load(Relaxed), 0);
        let merged = header(7, pack(0, MAYBE_WEAK), 1);
        assert_eq!(dec(&merged, 7), Dec::Dead);
        assert_eq!(merged.owner.load(Relaxed), 0);
        let counted = header(7, pack(1, MAYBE_WEAK), 1);
        assert_eq!(dec_owner(&counted, |_| true), Dec::Alive);
        assert_eq!(counted.counts.load(Relaxed), pack(1, MERGED));
    }

    /// The owner's last local drop gives up ownership: `owner` is 0 once merged, and a thread
    /// that was the owner is no longer one.
    #[test]
    fn the_owners_last_drop_disowns_before_merging() {
        let h = header(7, pack(1, MAYBE_WEAK), 1);
        assert_eq!(dec_fast(&h, 7), Rest::Owner);
        assert_eq!(dec(&h, 7), Dec::Alive);
        assert_eq!(h.owner.load(Relaxed), 0);
        assert_eq!(h.counts.load(Relaxed), pack(1, MERGED));
        assert!(!owned_by(&h, 7));
        assert_eq!(dec_fast(&h, 7), Rest::Foreign);
        assert_eq!(dec(&h, 7), Dec::Dead);
    }
}
