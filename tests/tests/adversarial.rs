//! Adversarial randomized test (issue 8; SEMANTICS 2–5, above all 5.1: safe code never causes
//! undefined behaviour): random graphs of nodes spread over two heaps, where every piece of user
//! code the runtime can call performs random API operations of its own.
//!
//! ## The world
//!
//! A case is a seeded sequence of driver steps (xorshift; replayable, see the end). The world lives
//! in a `thread_local!` (`W`) so that hooks can reach it: two heap slots holding `Rc<Heap>` (so a
//! hook can drop the last `Rc` of a heap while another frame still works on that heap's objects; a
//! later operation makes a new heap in the slot), the roots, weak references, `finalize`
//! registrations, a `WeakKeyMap`, a `WeakSet`, a `WeakValueMap`, weak-reference objects
//! (`Weak::as_object`) and weak references to them, weak proxies and weak methods. No `RefCell` of
//! the world is borrowed while reap is called (reap re-enters hooks), and every handle leaves the
//! world before it is dropped.
//!
//! A `Node` has edges (`RefCell<Vec<Gc<Node>>>`), a `Cell<Slot>`, and more `Cell<Slot>`s inside a
//! `RefCell`; edges and slots may point into the other heap. It may keep the weak reference to
//! itself that `Heap::alloc_cyclic` handed its `make` (`me`). User code that performs 0–2 random
//! operations (a hook) runs in: the node's `Drop`, finalizer and clear hook (`Clear`: the clear
//! mode, drawn per node, makes it only record, let go of every handle it holds as `tp_clear` does
//! and run a hook, or just run a hook); the `make` of `Heap::alloc_cyclic` (while the object has
//! count 0; it may stash `me` in the world, make a weak reference to `me`'s object, or panic, and
//! then there is no node); weak-reference callbacks (plain; traced with a `Cell<Slot>` state, or a
//! `CbState` that `callback_state` can clone; with a payload), proxy callbacks, weak-method
//! callbacks and callbacks of weak references to weak-reference objects; the unraisable hook;
//! collection callbacks; the node's `Eq` / `Hash` as a weak-map key; `Default` of `Slot` (`Trace
//! for Cell` used to call it); the callables given to `reap::finalize`; and the `Drop` of the
//! `Bomb` panic payload. The operations, for the driver (one per step) and for hooks: allocate a
//! node, by `alloc` or `alloc_cyclic` (or a chain longer than the trashcan depth) in either heap,
//! clone or drop roots, link or unlink edges, set slots, collect either heap at generation 0..=2,
//! `get_objects` / `get_referents` / `get_referrers`, create / upgrade / drop weak references
//! (held by the world, or by a node, so that a weak reference can be garbage itself and a cycle
//! can run through a callback's traced state or a payload: `Weak::new`, `with_untraced_callback`,
//! `with_callback`, `with_payload`, `with_payload_and_callback`), read or change a payload, read
//! `callback_state` / `has_callback`, keep weak-reference objects and make, upgrade and drop weak
//! references to them, make / use / drop weak proxies (shared or with a traced callback state) and
//! weak methods (over two nodes, with a traced callback state or none), use a node's `me`,
//! `finalize` and its `call` / `detach` / `peek` / `set_atexit(false)`, freeze / unfreeze, replace
//! the unraisable hook, add / remove collection callbacks, `SAVEALL` and `garbage()`,
//! `without_collection`, weak-map operations, `Heap::shutdown` (the heap stays usable), drop a heap
//! or make a new one, and, in hooks, dereference a zombie (below) or panic with a `&str`, a
//! `String` or a `Bomb` whose own `Drop` panics. Hooks nested more than two deep do nothing, and
//! each driver step has a budget of hook operations; every hook still records its event, whatever
//! its depth.
//!
//! ## The model
//!
//! Every edge and slot change goes through helpers that update the model; the model knows which
//! node each handle address belongs to, so a handle is recognised without dereferencing it. A
//! `Drop` run by the collector may store a handle to another member of its garbage cycle, whose
//! value the collector then drops anyway (a zombie: `Deref` panics, as documented): every node a
//! `Drop`, or code working from what a `Drop` handed it, stores anywhere is recorded as a possible
//! zombie, and so is every node a clear hook stores. Panics are followed: a hook's frame knows
//! whether the runtime catches its panics (`Drop`, finalizers, clear hooks, callbacks, hooks) or
//! whether they reach its caller by design (`Eq` / `Hash` in a map operation, `Default` in
//! `get_referents`, the callable in `Finalizer::call`, `make` in `alloc_cyclic`); every call into
//! reap is wrapped, so a panic coming out of one is known to be either a hook's own on its way to
//! the frame that catches it, or one that escaped the runtime.
//!
//! The test's own code lets go of every handle inside a frame (a node's `Drop` takes what the
//! node holds and drops it in a `Release` frame, as `Slot`'s `Drop` does for payloads and callback
//! states), and each heap's book-keeping collection callback records the frame depth its
//! collection started at: a node whose `Drop` starts at exactly that depth is dropped by the
//! collection itself, as its garbage.
//!
//! ## What is checked
//!
//! When it happens:
//! - a node's finalizer runs at most once and never after its `Drop`; its `Drop` runs at most once
//!   and only after its finalizer;
//! - a node's clear hook runs at most once, only while its heap collects or shuts down, on a node
//!   whose finalizer ran and whose value is whole, that the roots do not reach, after the
//!   callbacks of the weak references, proxies, weak methods and `finalize` registrations made
//!   before the clear phase began; there the node's `me` reads dead, and every handle it holds
//!   that the model does not know dead reads whole (`Gc::try_deref`); a node dropped by a
//!   collection itself had its clear hook run before;
//! - a weak callback (or proxy, weak-method, weak-to-weak callback) runs at most once and sees its
//!   weak reference dead, its callback taken (`has_callback`, `callback_state` read `None`) and
//!   its payload still there; for one the world holds, only if it was alive when its referent
//!   died; a `finalize` callable runs at most once and never after `detach`, nor after a shutdown
//!   released it (`atexit` off);
//! - inside `make`, `me` does not upgrade and reads dead; once `alloc_cyclic` returns, `me`
//!   upgrades to the node and is its shared weak reference (also later, while it reads alive); a
//!   node whose `make` panicked never appears (a stashed `me` reads dead for good);
//! - a weak reference's payload reads back (its type, its node) and a callback-less weak
//!   reference of another kind is never the shared one; `callback_state` clones the state while
//!   the callback is pending, and is `None` once it ran;
//! - `Weak::as_object` is the weak reference's object, a weak reference to it upgrades to that
//!   object; a new callback-less proxy is one of the live callback-less proxies to its referent
//!   when there is one (never with a callback), and reads its referent;
//! - no panic escapes the runtime (a call into reap at the top level, or one that lets out a panic
//!   no hook threw its way); every report the unraisable hook gets carries a panic some hook threw
//!   (or the zombie message), never an internal one; its `payload()` is that panic's payload, its
//!   `location()` (with `record_panic_locations`), when known, is in this file for the test's own
//!   panics, its `object()` is the node whose finalizer or clear hook panicked (in that state) or
//!   the weak-reference object whose callback did;
//! - `get_objects`, `get_referents`, `get_referrers`, `garbage()`, `upgrade`, map keys and values,
//!   `peek`, proxies, weak methods and callback states never hand out a node whose value was
//!   dropped;
//! - collection start / stop callbacks of a heap alternate, and a top-level `collect` runs;
//! - a heap dropped (or `Heap::shutdown` called) at the top level leaves alive only nodes held
//!   from outside it (after its last collection; unless user code froze it or turned `SAVEALL`
//!   on during `shutdown`), and after a shutdown every `finalize` registration on its objects has
//!   run, been detached, or (`atexit` off) been released.
//!
//! After every driver step (each runs under `catch_unwind`: a panic reaching the driver fails):
//! - every node reachable from the roots is intact (magic, id, key; its edges and slots are the
//!   model's), unless its value was dropped and it is a recorded possible zombie;
//! - every reachable node's strong count is at least its model in-degree;
//! - each heap's `live_objects()` is at least its reachable nodes and equals allocated − freed;
//! - a held weak reference (proxy, weak method) whose referent's value was dropped reads dead and
//!   had its callback run; a held weak reference keeps its payload, and has no callback once it
//!   ran; a weak reference to the object of a weak reference the world holds reads alive; every
//!   node whose clear hook ran was dropped;
//! - no collection is left running, no frame is left on the stack, and every panic a runtime frame
//!   caught was reported exactly once.
//!
//! At the end, everything is dropped with hooks active (roots, weak references, registrations,
//! maps, heaps), then whatever they made, with hooks inert. No node may be left alive unless it is
//! on, or reachable from, a cycle no collection can free any more (across heaps, or in a heap
//! already shut down). In half of the cases (all, under Miri) the test keeps a weak reference to
//! every node (renewed when a finalizer resurrects), breaks every edge left, and then requires
//! every node dropped exactly once (but for cycles it could not reach: resurrected only through a
//! node's weak-callback state). Every `finalize` registration must have run or been detached,
//! unless its object is left on such a cycle or its `atexit` is off. One case in 64 (not under
//! Miri) runs on a thread of its own that exits with its world full, which is destroyed after
//! reap's own thread-locals: the runtime must neither abort nor panic. Natively, cases run in
//! batches of 100 per thread (see `BATCH`).
//!
//! ## Replay
//!
//! A failure names its case: replay it with `REAP_ADV_SEED=<seed>` (and `REAP_ADV_STEPS=<n>` if it
//! was not the default), which also prints the operation log up to the first violation. Other
//! variables: `REAP_ADV_CASES`, `REAP_ADV_FIRST` (index of the first case), `REAP_ADV_STEPS`,
//! `REAP_ADV_BUDGET` (hook operations per step), `REAP_ADV_TRACK_ALL` (0 or 1: force the mode),
//! `REAP_ADV_KEEP_GOING=1` (run every case, report every failure), `REAP_ADV_TRACE=1` (print each
//! seed before its case: for a crash), `REAP_ADV_LOG_LIVE=1` (print the log as it goes: for a
//! crash), `REAP_ADV_FULL_LOG=1` (the whole log), `REAP_ADV_PANICS=1` (show every panic, most of
//! them expected), `REAP_ADV_STATS=1` (count operations and hooks). Under Miri, forward them with
//! `MIRIFLAGS=-Zmiri-env-forward=NAME`.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::panic::{catch_unwind, panic_any, resume_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use reap::{
    finalize, Clear, CollectInfo, CollectPhase, Finalize, Finalizer, Gc, Heap, Trace, Unraisable,
    UnraisableHook, UnraisableKind, Weak, WeakKeyMap, WeakMethod, WeakProxy, WeakRefObj, WeakSet,
    WeakValueMap,
};

/// Heap slots.
const SLOTS: usize = 2;
/// Hooks with more than this many hook frames below them do nothing.
const MAX_DEPTH: usize = 2;
/// Hook operations allowed per driver step.
const HOOK_BUDGET: u32 = if cfg!(miri) { 8 } else { 40 };
const MAGIC: u64 = 0x0AD7_E45A_121A_1000;
/// Every panic a hook throws on purpose starts with this.
const MARK: &str = "adv: ";
/// Part of the documented panic of `Deref` on a zombie.
const ZOMBIE: &str = "whose cycle the collector has broken";
/// What the runtime reports for a panic whose payload is not a string (a `Bomb`).
const NON_STRING: &str = "panic with a non-string payload";

// ---------------------------------------------------------------------------------------------
// The object types and their hooks.

#[derive(Trace)]
#[reap(finalize, clear)]
struct Node {
    magic: u64,
    id: u32,
    key: u32,
    /// What its clear hook does: 0 only records, 1 lets go of every handle the node holds (as
    /// CPython's `tp_clear`) and runs a hook, 2 runs a hook.
    clear_mode: u8,
    edges: RefCell<Vec<Gc<Node>>>,
    cell: Cell<Slot>,
    slots: RefCell<Vec<Cell<Slot>>>,
    /// Weak references this node holds, by id.
    weaks: RefCell<Vec<(u32, Weak<Node>)>>,
    /// The weak reference `Heap::alloc_cyclic` handed the node's `make`, if it kept it.
    me: Option<Weak<Node>>,
}

/// A handle in a `Cell`; its `Default` is a hook. Dropping one that holds a handle does so in a
/// `Release` frame (see `on_drop`).
#[derive(Trace, Clone)]
struct Slot(Option<Gc<Node>>);

impl Default for Slot {
    fn default() -> Slot {
        run_hook(Kind::Default, Vec::new());
        Slot(None)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(g) = self.0.take() {
            let _frame = ReleaseFrame::enter();
            drop(g);
        }
    }
}

/// The payload of a weak reference (`Weak::with_payload`): traced, so a cycle can run through it.
#[derive(Trace)]
struct Pay {
    /// The weak reference's id.
    wid: u32,
    slot: Cell<Slot>,
}

/// A traced callback state that `Weak::callback_state` can clone (weak references, proxies).
#[derive(Trace, Clone)]
struct CbState {
    /// The id of the weak reference (or proxy) it belongs to.
    id: u32,
    slot: Slot,
}

/// The traced state of a `WeakMethod` callback.
#[derive(Trace)]
struct MState {
    mid: u32,
    slot: Slot,
}

impl Finalize for Node {
    fn finalize(this: &Gc<Self>) {
        on_finalize(this);
    }
}

impl Clear for Node {
    fn clear(&self) {
        on_clear(self);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        on_drop(self);
    }
}

impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        run_hook(Kind::KeyEq, Vec::new());
        self.key == other.key
    }
}

impl Eq for Node {}

impl Hash for Node {
    fn hash<H: Hasher>(&self, state: &mut H) {
        run_hook(Kind::KeyHash, Vec::new());
        self.key.hash(state);
    }
}

/// A panic payload whose own `Drop` runs a hook and then panics.
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        run_hook(Kind::PayloadDrop, Vec::new());
        panic!("adv: the panic payload's own Drop panics");
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Drop,
    Finalize,
    WeakCallback,
    Unraisable,
    CollectCallback,
    KeyEq,
    KeyHash,
    Default,
    FinalizeFn,
    PayloadDrop,
    /// A node's clear hook.
    Clear,
    /// The `make` closure of `Heap::alloc_cyclic` (its panics reach the caller, which catches).
    Make,
    /// The callback of a `WeakMethod`.
    MethodCallback,
    /// The callback of a weak reference to a weak-reference object.
    WeakObjCallback,
}

/// A call into reap that runs user code synchronously, letting its panics through to the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SyncCall {
    /// `get_referents` / `get_referrers`: `Trace` (so `Default`, with the old `Cell` impl).
    Introspect,
    /// A weak-map operation: the keys' `Eq` and `Hash`.
    Map,
    /// `Finalizer::call`: the callable.
    Call,
}

#[derive(Clone, Copy, Debug)]
enum Frame {
    /// A hook; `caught` if the runtime catches its panics (else they reach its caller).
    Hook {
        caught: bool,
    },
    Sync(SyncCall),
    /// The test's own code letting go of handles (a `Slot`'s or a node's `Drop`): no hook, but
    /// it marks that what dies here was not dropped directly by a collection (see `on_drop`).
    Release,
}

/// A `Frame::Release` for a scope.
struct ReleaseFrame(Option<usize>);

impl ReleaseFrame {
    fn enter() -> ReleaseFrame {
        ReleaseFrame(
            W.try_with(|w| {
                let mut f = w.frames.try_borrow_mut().ok()?;
                f.push(Frame::Release);
                Some(f.len() - 1)
            })
            .ok()
            .flatten(),
        )
    }
}

impl Drop for ReleaseFrame {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            let _ = W.try_with(|w| {
                if let Ok(mut f) = w.frames.try_borrow_mut() {
                    f.truncate(i);
                }
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The world and the model.

#[derive(Default)]
struct Model {
    next_id: u32,
    next_wid: u32,
    next_fid: u32,
    next_hid: u32,
    nodes: IdMap<NodeMeta>,
    /// Value address of a node → its id (the latest node allocated there).
    addr: HashMap<usize, u32, BuildHasherDefault<AddrHasher>>,
    edges: IdMap<Vec<u32>>,
    /// Slot 0 is the node's `cell`, slot i > 0 is `slots[i - 1]`.
    slots: IdMap<Vec<Option<u32>>>,
    dropped: IdSet,
    finalized: IdSet,
    /// Nodes a `Drop` (or code working from what a `Drop` handed out) stored somewhere.
    maybe_zombie: IdSet,
    weaks: BTreeMap<u32, WeakMeta>,
    /// Weak references held by nodes, with a traced callback state: (holder, state) by id. The
    /// holder reaches the state through the weak reference while its callback is pending.
    node_weak_states: BTreeMap<u32, (u32, u32)>,
    fins: BTreeMap<u32, FinMeta>,
    heaps: BTreeMap<u32, HeapMeta>,
    /// Panics that left a runtime-caught frame (each owes one report), and reports received.
    expected_reports: u64,
    actual_reports: u64,
    violations: Vec<String>,
    logging: bool,
    log: Vec<String>,
    logged_violations: usize,
    /// Nodes whose `Heap::alloc` is running (their address is not known yet).
    allocating: Vec<u32>,
    /// Per heap: the nodes held from outside it when its shutdown report began (after its last
    /// collection), the one moment user code can still let go of what shutdown kept.
    shutdown_held: BTreeMap<u32, BTreeSet<u32>>,
    /// Nodes whose clear hook ran.
    cleared: IdSet,
    /// Nodes made by `Heap::alloc_cyclic` whose `make` panicked: they never existed (also in
    /// `dropped` and `finalized`, so that nothing expects more of them).
    stillborn: IdSet,
    /// Weak references held by nodes, with a payload holding a node: (holder, payload) by id.
    /// The payload lives as long as the weak-reference object.
    node_weak_payloads: BTreeMap<u32, (u32, u32)>,
    next_wwid: u32,
    /// Weak references to weak-reference objects, by id.
    wweaks: BTreeMap<u32, WwMeta>,
    next_pid: u32,
    proxies: BTreeMap<u32, ProxyMeta>,
    next_mid: u32,
    methods: BTreeMap<u32, MethodMeta>,
}

struct WwMeta {
    /// The weak reference whose object it refers to, if the world knows it.
    inner: Option<u32>,
    /// The weak-reference object's address.
    addr: usize,
    fired: u32,
}

struct ProxyMeta {
    target: u32,
    exempt: bool,
    callback: bool,
    held: bool,
    fired: u32,
    /// The node its pending callback's state holds.
    state: Option<u32>,
}

struct MethodMeta {
    receiver: u32,
    func: u32,
    exempt: bool,
    callback: bool,
    held: bool,
    fired: u32,
    state: Option<u32>,
}

/// A cheap hash for addresses (SipHash dominates the test's run time under Miri).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (self.0 ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

/// A set of node ids (dense: ids count up from 0).
#[derive(Default)]
struct IdSet(Vec<bool>);

impl IdSet {
    fn contains(&self, id: &u32) -> bool {
        self.0.get(*id as usize).copied().unwrap_or(false)
    }

    /// Adds `id`; returns whether it was new.
    fn insert(&mut self, id: u32) -> bool {
        let i = id as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, false);
        }
        !std::mem::replace(&mut self.0[i], true)
    }
}

/// A map from node ids (dense) to `T`.
struct IdMap<T>(Vec<T>);

impl<T> Default for IdMap<T> {
    fn default() -> Self {
        IdMap(Vec::new())
    }
}

impl<T: Default> IdMap<T> {
    fn get(&self, id: &u32) -> Option<&T> {
        self.0.get(*id as usize)
    }

    /// The entry of `id`, made (default) if missing.
    fn at(&mut self, id: u32) -> &mut T {
        let i = id as usize;
        if self.0.len() <= i {
            self.0.resize_with(i + 1, T::default);
        }
        &mut self.0[i]
    }

    fn iter(&self) -> impl Iterator<Item = (u32, &T)> {
        self.0.iter().enumerate().map(|(i, t)| (i as u32, t))
    }

    fn keys(&self) -> std::ops::Range<u32> {
        0..self.0.len() as u32
    }
}

impl<T> std::ops::Index<&u32> for IdMap<T> {
    type Output = T;
    fn index(&self, id: &u32) -> &T {
        &self.0[*id as usize]
    }
}

#[derive(Default)]
struct NodeMeta {
    hid: u32,
    key: u32,
}

struct WeakMeta {
    target: u32,
    callback: bool,
    /// Made to a node whose value was (or may be about to be) dropped: its fate is not checked.
    exempt: bool,
    held: bool,
    /// Dropped by the program while its referent was alive (not yet cleared): its callback must
    /// never run. (Dropped during its referent's callbacks, after clearing, it may still run:
    /// the runtime holds the weak references whose callbacks it owes, as CPython does.)
    dropped_alive: bool,
    fired: u32,
    /// The node held by its traced callback state, if any.
    state: Option<u32>,
    /// Which constructor made it (see `op_weak_new`).
    kind: usize,
    /// Held by a node (else by the world).
    in_node: bool,
    /// The node its payload holds, if any (kinds 3 and 4 have a payload).
    payload: Option<u32>,
    /// Handles to its weak-reference object the world holds (`Weak::as_object`).
    objs_held: u32,
}

struct FinMeta {
    target: u32,
    exempt: bool,
    ran: u32,
    detached: bool,
    /// `Finalizer::set_atexit(false)` was called (never set back).
    atexit_off: bool,
    /// Seen released by a heap shutdown without running (`atexit` off).
    released: bool,
}

#[derive(Default)]
struct HeapMeta {
    collecting: bool,
    starts: u64,
    hook_callbacks: Vec<u64>,
    /// Hook frames (all frames) on the stack when the running collection started: a node whose
    /// `Drop` starts at exactly this depth is dropped by the collection itself.
    base_depth: usize,
    /// Its last `Rc` was dropped (its collection callbacks are gone).
    closed: bool,
    /// `Heap::shutdown` calls running.
    in_shutdown: u32,
    /// A shutdown began (by `Heap::shutdown` or its drop).
    shut: bool,
    /// User code froze the heap, or turned `SAVEALL` on, while `Heap::shutdown` ran (after it
    /// unfroze the permanent set and turned debugging off): what was frozen or saved stays.
    kept_in_shutdown: bool,
    /// `[next_wid, next_fid, next_pid, next_mid]` when the running collection's clear phase
    /// began: the callbacks of the weak references, registrations, proxies and weak methods made
    /// before must have run by then.
    clear_boundary: Option<[u32; 4]>,
}

/// A handle and whether it may lead to a zombie (its taint).
type Handle = (Gc<Node>, bool);
/// A heap in a slot, with its id.
type HeapSlot = (u32, Rc<Heap>);
type FinRc = Rc<Finalizer<Node>>;
type Method = WeakMethod<Node, Node>;

struct World {
    rng: Cell<u64>,
    budget: Cell<u32>,
    /// Catching frames (indices into `frames`) of the panics hooks threw on purpose that are on
    /// their way out of a `SyncCall`.
    inflight: RefCell<Vec<usize>>,
    frames: RefCell<Vec<Frame>>,
    heaps: RefCell<[Option<HeapSlot>; SLOTS]>,
    roots: RefCell<Vec<Gc<Node>>>,
    weaks: RefCell<Vec<(u32, Weak<Node>)>>,
    fins: RefCell<Vec<(u32, FinRc)>>,
    maps: RefCell<Vec<Rc<WeakKeyMap<Node, u32>>>>,
    sets: RefCell<Vec<Rc<WeakSet<Node>>>>,
    vmaps: RefCell<Vec<Rc<WeakValueMap<u32, Node>>>>,
    /// Weak-reference objects (`Weak::as_object`), by the id of the weak reference.
    wobjs: RefCell<Vec<(u32, Gc<WeakRefObj>)>>,
    /// Weak references to weak-reference objects, by id.
    wweaks: RefCell<Vec<(u32, Weak<WeakRefObj>)>>,
    proxies: RefCell<Vec<(u32, Rc<WeakProxy<Node>>)>>,
    methods: RefCell<Vec<(u32, Method)>>,
    /// With `track_all`: a weak reference to every node, to break every edge at the end.
    all: RefCell<BTreeMap<u32, Weak<Node>>>,
    track_all: Cell<bool>,
    /// `REAP_ADV_TRACK_ALL`: track every node in every case (1) or in none (0).
    force_track_all: Cell<Option<bool>>,
    /// Hook operations allowed per driver step (`HOOK_BUDGET`, or `REAP_ADV_BUDGET`).
    hook_budget: Cell<u32>,
    /// Ids of the nodes the driver's current step holds handles to.
    driver_held: RefCell<Vec<u32>>,
    model: RefCell<Model>,
}

thread_local! {
    static W: World = World {
        rng: Cell::new(1),
        budget: Cell::new(0),
        inflight: RefCell::new(Vec::new()),
        frames: RefCell::new(Vec::new()),
        heaps: RefCell::new([None, None]),
        roots: RefCell::new(Vec::new()),
        weaks: RefCell::new(Vec::new()),
        fins: RefCell::new(Vec::new()),
        maps: RefCell::new(Vec::new()),
        sets: RefCell::new(Vec::new()),
        vmaps: RefCell::new(Vec::new()),
        wobjs: RefCell::new(Vec::new()),
        wweaks: RefCell::new(Vec::new()),
        proxies: RefCell::new(Vec::new()),
        methods: RefCell::new(Vec::new()),
        all: RefCell::new(BTreeMap::new()),
        track_all: Cell::new(false),
        force_track_all: Cell::new(None),
        hook_budget: Cell::new(HOOK_BUDGET),
        driver_held: RefCell::new(Vec::new()),
        model: RefCell::new(Model::default()),
    };
    /// Silences the panic hook for the expected panics of a case; the case's seed.
    static QUIET: Cell<Option<u64>> = const { Cell::new(None) };
}

/// With `REAP_ADV_STATS`: how often each thing happened, over the whole run (all threads).
static STATS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
static STATS_ON: AtomicBool = AtomicBool::new(false);

fn stat(what: impl FnOnce() -> String) {
    if STATS_ON.load(Ordering::Relaxed) {
        if let Ok(mut s) = STATS.lock() {
            *s.entry(what()).or_default() += 1;
        }
    }
}

fn world<R>(f: impl FnOnce(&World) -> R) -> R {
    W.with(f)
}

/// Runs `f` on the model. `f` must not call reap (nor anything that does).
fn model<R>(f: impl FnOnce(&mut Model) -> R) -> R {
    W.with(|w| f(&mut w.model.borrow_mut()))
}

fn violation(msg: String) {
    model(|m| m.violations.push(msg));
    log_violations();
}

/// With the log on, copies violations recorded so far into it, marked.
fn log_violations() {
    model(|m| {
        if m.logging {
            let from = m.logged_violations.min(m.violations.len());
            for v in &m.violations[from..] {
                m.log.push(format!("!! {v}"));
            }
            m.logged_violations = m.violations.len();
        }
    });
}

fn log(msg: impl FnOnce() -> String) {
    if model(|m| m.logging) {
        log_violations();
        let line = format!(
            "{}{}",
            "  ".repeat(world(|w| w.frames.borrow().len())),
            msg()
        );
        if std::env::var_os("REAP_ADV_LOG_LIVE").is_some() {
            eprintln!("{line}");
        }
        model(|m| m.log.push(line));
    }
}

fn rnd(n: usize) -> usize {
    W.with(|w| {
        let mut x = w.rng.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.rng.set(x);
        (x % n.max(1) as u64) as usize
    })
}

fn chance(percent: usize) -> bool {
    rnd(100) < percent
}

fn take_budget() -> bool {
    W.with(|w| {
        let b = w.budget.get();
        if b > 0 {
            w.budget.set(b - 1);
        }
        b > 0
    })
}

fn addr(g: &Gc<Node>) -> usize {
    Gc::as_ptr(g).addr()
}

fn id_of(g: &Gc<Node>) -> Option<u32> {
    let (id, ambiguous) = model(|m| {
        let id = m.addr.get(&addr(g)).copied();
        let reused = id.is_none_or(|id| m.dropped.contains(&id));
        (id, reused && !m.allocating.is_empty())
    });
    if ambiguous {
        // A node being allocated right now (its address not recorded yet: user code runs inside
        // `alloc` once the value is in place, automatic collections for one) may sit where a
        // freed one was, or anywhere new: read it (a zombie's `Deref` panics instead, and then it
        // is the old one; a handle to an unknown address can only be to such a new node).
        let read = catch_unwind(AssertUnwindSafe(|| (g.magic, g.id)));
        if let Ok((MAGIC, new_id)) = read {
            if model(|m| m.allocating.contains(&new_id)) {
                model(|m| m.addr.insert(addr(g), new_id));
                return Some(new_id);
            }
        }
    }
    id
}

/// Whether the node's value was dropped (or the handle is not one of ours): do not dereference.
fn is_dead(g: &Gc<Node>) -> bool {
    let id = id_of(g);
    model(|m| id.is_none_or(|id| m.dropped.contains(&id)))
}

/// Whether a handle may lead to a zombie: inherited taint, or a node recorded as one.
fn taint_of(g: &Gc<Node>, inherited: bool) -> bool {
    if inherited {
        return true;
    }
    let id = id_of(g);
    model(|m| id.is_none_or(|id| m.maybe_zombie.contains(&id) || m.dropped.contains(&id)))
}

/// A handle is being stored somewhere lasting: if it may lead to a zombie, record that.
fn stored(g: &Gc<Node>, tainted: bool) {
    if tainted {
        if let Some(id) = id_of(g) {
            model(|m| m.maybe_zombie.insert(id));
        }
    }
}

fn payload_msg(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if p.is::<Bomb>() {
        "a Bomb payload".to_string()
    } else {
        "a non-string payload".to_string()
    }
}

/// Drops a caught payload, whose `Drop` may panic (a `Bomb`), with a payload that may be a
/// `Bomb` in turn (its `Drop`'s hook panics with one): as the runtime does, a few rounds, then
/// the last payload is leaked.
fn drop_payload(p: Box<dyn Any + Send>) {
    let mut p = p;
    for _ in 0..8 {
        match catch_unwind(AssertUnwindSafe(move || drop(p))) {
            Ok(()) => return,
            Err(next) => p = next,
        }
    }
    std::mem::forget(p);
}

/// Calls into reap. A panic coming out is a failure unless a hook threw it on purpose and it is
/// on its way to the frame that catches it (then it goes on); at the top level the call returns
/// `None` after recording the failure.
fn api<R>(what: &str, f: impl FnOnce() -> R) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(p) => {
            let (legit, top) = W.with(|w| {
                let n = w.frames.borrow().len();
                let legit = w.inflight.borrow().last().is_some_and(|&c| c < n);
                (legit, n == 0)
            });
            if !legit {
                violation(format!(
                    "a panic escaped the runtime through {what}: {}",
                    payload_msg(&*p)
                ));
            }
            if top {
                drop_payload(p);
                None
            } else {
                resume_unwind(p)
            }
        }
    }
}

fn drop_handles<T>(what: &str, v: T) {
    api(what, move || drop(v));
}

// ---------------------------------------------------------------------------------------------
// Frames.

struct FrameGuard {
    index: usize,
    reportable: bool,
    done: bool,
}

impl Drop for FrameGuard {
    fn drop(&mut self) {
        let _ = W.try_with(|w| {
            if let Ok(mut f) = w.frames.try_borrow_mut() {
                f.truncate(self.index);
            }
            if let Ok(mut inflight) = w.inflight.try_borrow_mut() {
                while inflight.last() == Some(&self.index) {
                    inflight.pop();
                }
            }
            if !self.done && self.reportable {
                // Left by a panic that the runtime catches: it owes one report.
                if let Ok(mut m) = w.model.try_borrow_mut() {
                    m.expected_reports += 1;
                }
            }
        });
    }
}

struct SyncGuard(usize);

impl SyncGuard {
    fn new(s: SyncCall) -> SyncGuard {
        W.with(|w| {
            let mut f = w.frames.borrow_mut();
            f.push(Frame::Sync(s));
            SyncGuard(f.len() - 1)
        })
    }
}

impl Drop for SyncGuard {
    fn drop(&mut self) {
        let _ = W.try_with(|w| {
            if let Ok(mut f) = w.frames.try_borrow_mut() {
                f.truncate(self.0);
            }
        });
    }
}

/// Pushes a hook frame; returns the guard and the hook's depth (hook frames below it).
fn enter(kind: Kind) -> (FrameGuard, usize) {
    W.with(|w| {
        let mut f = w.frames.borrow_mut();
        let below = f.last().copied();
        let propagating = match kind {
            Kind::KeyEq | Kind::KeyHash => true,
            Kind::Default => matches!(below, Some(Frame::Sync(SyncCall::Introspect))),
            Kind::FinalizeFn => matches!(below, Some(Frame::Sync(SyncCall::Call))),
            _ => false,
        };
        let depth = f.iter().filter(|x| matches!(x, Frame::Hook { .. })).count();
        f.push(Frame::Hook {
            caught: !propagating,
        });
        let guard = FrameGuard {
            index: f.len() - 1,
            // The runtime reports what it catches, but for the unraisable hook's own panics (and
            // a payload's); a `make`'s panic goes through `alloc_cyclic` to the test, which
            // catches it.
            reportable: !propagating
                && !matches!(kind, Kind::Unraisable | Kind::PayloadDrop | Kind::Make),
            done: false,
        };
        (guard, depth)
    })
}

/// Where a panic thrown by the current hook now would be caught: the index of the nearest
/// runtime-caught hook frame, this one included; `None` if it would reach the driver.
fn catcher() -> Option<usize> {
    W.with(|w| {
        let f = w.frames.borrow();
        (0..f.len())
            .rev()
            .find(|&i| matches!(f[i], Frame::Hook { caught: true }))
    })
}

/// Whether the current hook's own panic is caught by the runtime right where it is.
fn own_frame_caught() -> bool {
    W.with(|w| matches!(w.frames.borrow().last(), Some(Frame::Hook { caught: true })))
}

// ---------------------------------------------------------------------------------------------
// Hooks.

/// One hook: records nothing itself (the caller did), performs 0–2 random operations from a pool
/// of handles (`ctx`, each with its taint) and the roots.
fn run_hook(kind: Kind, ctx: Vec<Handle>) {
    let (mut guard, depth) = enter(kind);
    stat(|| format!("hook {kind:?} at depth {depth}"));
    let active = depth <= MAX_DEPTH && world(|w| w.budget.get() > 0);
    if active {
        log(|| format!("hook {kind:?}"));
        let mut cx = Cx {
            hook: true,
            pool: ctx,
        };
        for _ in 0..rnd(3) {
            if !take_budget() {
                break;
            }
            do_op(&mut cx);
        }
        drop_handles("dropping a hook's handles", std::mem::take(&mut cx.pool));
    } else {
        drop_handles("dropping a hook's handles", ctx);
    }
    guard.done = true;
}

fn hooks_active() -> bool {
    world(|w| {
        let frames = w.frames.borrow();
        let n = frames
            .iter()
            .filter(|f| !matches!(f, Frame::Release))
            .count();
        w.budget.get() > 0 && n <= MAX_DEPTH + 2
    })
}

fn on_drop(n: &mut Node) {
    let id = n.id;
    let magic = n.magic;
    // Every handle the test's own code lets go of dies in a `Release` or hook frame, so a node's
    // `Drop` that starts at the depth its heap's running collection started at is called by the
    // collection itself: the node is its garbage, and its clear hook must have run.
    let depth = world(|w| w.frames.borrow().len());
    let by_collection = model(|m| {
        let hid = m.nodes.get(&id).map(|n| n.hid);
        hid.and_then(|hid| m.heaps.get(&hid))
            .is_some_and(|h| h.collecting && !h.closed && h.base_depth == depth)
    });
    if by_collection {
        stat(|| "Drop run by a collection (its clear hook checked)".to_string());
    }
    model(|m| {
        if by_collection && !m.cleared.contains(&id) {
            m.violations.push(format!(
                "node {id} was dropped by a collection of its heap that never ran its clear hook"
            ));
        }
        if magic != MAGIC {
            m.violations
                .push(format!("Drop of node {id}: its memory is corrupt"));
        }
        if !m.dropped.insert(id) {
            m.violations.push(format!("node {id} dropped twice"));
        }
        if !m.finalized.contains(&id) {
            m.violations
                .push(format!("node {id} dropped before its finalizer ran"));
        }
    });
    log(|| format!("Drop {id}"));
    n.magic = 0;
    // What the value holds goes in a frame, here (not after, by the drop glue), also when the
    // hook panics: the frame is dropped last.
    let _frame = ReleaseFrame::enter();
    let held = (
        std::mem::take(n.edges.get_mut()),
        n.cell.get_mut().0.take(),
        std::mem::take(n.slots.get_mut()),
        std::mem::take(n.weaks.get_mut()),
        n.me.take(),
    );
    let mut ctx = Vec::new();
    if hooks_active() {
        // What a Drop holds may be garbage of its own cycle: tainted.
        for e in held.0.iter().take(2) {
            ctx.push((e.clone(), true));
        }
        if let Some(s) = &held.1 {
            ctx.push((s.clone(), true));
        }
    }
    run_hook(Kind::Drop, ctx);
    drop_handles("dropping what a node held", held);
}

fn on_finalize(this: &Gc<Node>) {
    let id = id_of(this);
    model(|m| match id {
        None => m
            .violations
            .push("a finalizer ran on a node the test never made".to_string()),
        Some(id) => {
            if !m.finalized.insert(id) {
                m.violations
                    .push(format!("finalizer of node {id} ran twice"));
            }
            if m.dropped.contains(&id) {
                m.violations
                    .push(format!("finalizer of node {id} ran after its Drop"));
            }
        }
    });
    log(|| format!("finalize {id:?}"));
    if !is_dead(this) {
        check_me(this, "in its finalizer");
    }
    if let Some(id) = id {
        let cleared =
            world(|w| w.track_all.get() && w.all.borrow().get(&id).is_some_and(|w| !w.is_alive()));
        if cleared && !is_dead(this) {
            // A collection cleared the weak references to this garbage (and to the garbage it
            // reaches) before its finalizer: what the finalizer resurrects must stay trackable.
            track_reachable(this, &mut BTreeSet::new());
        }
    }
    let mut ctx = Vec::new();
    if hooks_active() {
        let t = taint_of(this, false);
        ctx.push((this.clone(), t));
        if !is_dead(this) {
            let e = this.edges.borrow();
            if !e.is_empty() {
                let c = e[rnd(e.len())].clone();
                drop(e);
                let tc = taint_of(&c, t);
                ctx.push((c, tc));
            }
        }
    }
    run_hook(Kind::Finalize, ctx);
}

/// A node's `me` (from `alloc_cyclic`), if it upgrades, leads to the node itself; while alive
/// it is the node's shared weak reference. `g` must be intact.
fn check_me(g: &Gc<Node>, when: &str) {
    let Some(me) = &g.me else { return };
    let id = g.id;
    if let Some(Some(up)) = api("Weak::upgrade of a node's me", || me.upgrade()) {
        if !Gc::ptr_eq(&up, g) {
            violation(format!(
                "node {id}'s alloc_cyclic weak reference upgrades to another object {when}"
            ));
        }
        drop_handles("dropping an upgraded handle", up);
    }
    if me.is_alive() {
        if let Some(shared) = api("Weak::new", || Weak::new(g)) {
            if !shared.ptr_eq(me) {
                violation(format!(
                    "node {id}'s alloc_cyclic weak reference is alive {when}, but Weak::new \
                     makes another"
                ));
            }
            drop_handles("dropping a weak reference", shared);
        }
    }
}

/// The clear hook: runs on garbage of a collection (of a heap collecting or shutting down),
/// once, after its finalizer and the callbacks of the weak references to it, before any value of
/// the garbage drops. Mode 1 lets go of everything the node holds, as `tp_clear` does.
fn on_clear(n: &Node) {
    let id = n.id;
    let intact = n.magic == MAGIC;
    let roots: Vec<usize> = world(|w| w.roots.borrow().iter().map(addr).collect());
    let driver: Vec<u32> = world(|w| w.driver_held.borrow().clone());
    model(|m| {
        let mut v = Vec::new();
        if !intact {
            v.push(format!("clear hook of node {id}: its value reads dropped"));
        }
        if !m.cleared.insert(id) {
            v.push(format!("clear hook of node {id} ran twice"));
        }
        if m.dropped.contains(&id) {
            v.push(format!("clear hook of node {id} ran after its Drop"));
        }
        if !m.finalized.contains(&id) {
            v.push(format!("clear hook of node {id} ran before its finalizer"));
        }
        let hid = m.nodes.get(&id).map_or(u32::MAX, |n| n.hid);
        let next = [m.next_wid, m.next_fid, m.next_pid, m.next_mid];
        let (boundary, in_collection, shut) = match m.heaps.get_mut(&hid) {
            Some(h) => {
                let b = *h.clear_boundary.get_or_insert(next);
                (b, h.collecting || h.closed || h.in_shutdown > 0, h.shut)
            }
            None => ([0; 4], false, false),
        };
        if !in_collection {
            v.push(format!(
                "clear hook of node {id} ran while no collection of its heap {hid} runs"
            ));
        }
        for (wid, w) in &m.weaks {
            if w.target == id
                && *wid < boundary[0]
                && w.callback
                && w.held
                && !w.in_node
                && w.fired == 0
            {
                v.push(format!(
                    "clear hook of node {id} ran before the callback of weak {wid}"
                ));
            }
        }
        for (fid, f) in &m.fins {
            let released = f.atexit_off && shut;
            if f.target == id && *fid < boundary[1] && f.ran == 0 && !f.detached && !released {
                v.push(format!(
                    "clear hook of node {id} ran before finalize registration {fid}"
                ));
            }
        }
        for (pid, p) in &m.proxies {
            if p.target == id && *pid < boundary[2] && p.callback && p.held && p.fired == 0 {
                v.push(format!(
                    "clear hook of node {id} ran before the callback of proxy {pid}"
                ));
            }
        }
        for (mid, x) in &m.methods {
            let target = x.receiver == id || x.func == id;
            if target && *mid < boundary[3] && x.callback && x.held && x.fired == 0 {
                v.push(format!(
                    "clear hook of node {id} ran before the callback of weak method {mid}"
                ));
            }
        }
        // Garbage: nothing the roots (or the driver) hold reaches it, but through nodes a `Drop`
        // or a clear hook stored (which may lead to garbage by design).
        let sources = roots
            .iter()
            .filter_map(|a| m.addr.get(a).copied())
            .chain(driver.iter().copied());
        if clean_closure(m, sources).contains(&id) {
            v.push(format!(
                "clear hook of node {id} ran, but the roots reach it (it is not garbage)"
            ));
        }
        m.violations.append(&mut v);
    });
    stat(|| format!("clear hook (mode {})", n.clear_mode));
    log(|| format!("clear {id} (mode {})", n.clear_mode));
    if let Some(me) = &n.me {
        if me.is_alive() {
            violation(format!(
                "a weak reference to node {id} reads alive in its clear hook"
            ));
        }
    }
    if !intact || n.clear_mode == 0 {
        return;
    }
    // Every member of the garbage is whole while clear hooks run, and so is what it reaches.
    for e in n.edges.borrow().iter() {
        if !is_dead(e) && !Gc::try_deref(e).is_ok_and(|x| x.magic == MAGIC) {
            violation(format!(
                "clear hook of node {id}: a handle it holds to node {:?} reads reclaimed",
                id_of(e)
            ));
        }
    }
    // What it lets go of goes in a frame, also when the hook panics (the frame is dropped last).
    let _frame = ReleaseFrame::enter();
    let taken = if n.clear_mode == 1 {
        let edges = std::mem::take(&mut *n.edges.borrow_mut());
        let cell = n.cell.replace(Slot(None));
        let slots = std::mem::take(&mut *n.slots.borrow_mut());
        let weaks = std::mem::take(&mut *n.weaks.borrow_mut());
        model(|m| {
            *m.edges.at(id) = Vec::new();
            *m.slots.at(id) = vec![None];
            m.node_weak_states
                .retain(|_, &mut (holder, _)| holder != id);
            m.node_weak_payloads
                .retain(|_, &mut (holder, _)| holder != id);
        });
        Some((edges, cell, slots, weaks))
    } else {
        None
    };
    let mut ctx = Vec::new();
    if hooks_active() {
        // Handles to garbage: kept anywhere, they lead to a dropped value after this phase. A
        // handle to the node itself (a self-loop) is among them, for the hook to stash.
        let this: *const Node = n;
        let edges: Vec<Gc<Node>> = match &taken {
            Some((e, c, _, _)) => {
                let own = e.iter().find(|e| std::ptr::eq(Gc::as_ptr(e), this));
                own.into_iter()
                    .chain(e.iter().take(2))
                    .chain(c.0.iter())
                    .cloned()
                    .collect()
            }
            None => {
                let e = n.edges.borrow();
                let own = e.iter().find(|e| std::ptr::eq(Gc::as_ptr(e), this));
                own.into_iter().chain(e.iter().take(2)).cloned().collect()
            }
        };
        ctx.extend(edges.into_iter().map(|g| (g, true)));
    }
    run_hook(Kind::Clear, ctx);
    drop_handles("dropping what a clear hook let go of", taken);
}

/// Ids of the nodes reachable in the model from `from` through intact nodes no `Drop` or clear
/// hook stored.
fn clean_closure(m: &Model, from: impl IntoIterator<Item = u32>) -> BTreeSet<u32> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<u32> = from.into_iter().collect();
    while let Some(id) = stack.pop() {
        if m.dropped.contains(&id) || m.maybe_zombie.contains(&id) || !seen.insert(id) {
            continue;
        }
        stack.extend(successors(m, id));
    }
    seen
}

/// With `track_all`: makes sure the table has a live weak reference to node `id`.
fn track(g: &Gc<Node>, id: u32) {
    let known = world(|w| w.all.borrow().get(&id).is_some_and(Weak::is_alive));
    if !known {
        if let Some(weak) = api("Weak::new", || Weak::new(g)) {
            let old = world(|w| w.all.borrow_mut().insert(id, weak));
            drop_handles("dropping a dead weak reference", old);
        }
    }
}

/// `track` for every intact node reachable from `g` (whose own weak reference was cleared).
/// Stops at nodes tracked already: those are not garbage, or are garbage an earlier finalizer of
/// the same collection tracked with everything it reached.
fn track_reachable(g: &Gc<Node>, seen: &mut BTreeSet<u32>) {
    let Some(id) = id_of(g) else { return };
    if !seen.insert(id) || is_dead(g) {
        return;
    }
    if world(|w| w.all.borrow().get(&id).is_some_and(Weak::is_alive)) {
        return;
    }
    track(g, id);
    let mut next: Vec<Gc<Node>> = g.edges.borrow().iter().cloned().collect();
    let s = g.cell.replace(Slot(None));
    next.extend(s.0.clone());
    g.cell.set(s);
    for c in g.slots.borrow().iter() {
        let s = c.replace(Slot(None));
        next.extend(s.0.clone());
        c.set(s);
    }
    for n in &next {
        track_reachable(n, seen);
    }
    drop_handles("dropping handles", next);
}

fn on_weak_callback(wid: u32, w: &Weak<Node>, state: Option<Gc<Node>>) {
    model(|m| match m.weaks.get_mut(&wid) {
        None => m.violations.push(format!("callback of unknown weak {wid}")),
        Some(meta) => {
            meta.fired += 1;
            if meta.fired > 1 {
                m.violations
                    .push(format!("callback of weak {wid} ran twice"));
            } else if meta.dropped_alive {
                m.violations.push(format!(
                    "callback of weak {wid} ran, though it was dropped before its referent died"
                ));
            }
        }
    });
    log(|| format!("weak callback {wid}"));
    let payload = model(|m| {
        m.node_weak_states.remove(&wid);
        m.weaks
            .get(&wid)
            .is_some_and(|w| w.kind == 3 || w.kind == 4)
    });
    if let Some(Some(g)) = api("Weak::upgrade in a callback", || w.upgrade()) {
        violation(format!(
            "weak {wid}'s callback can upgrade its weak reference"
        ));
        drop_handles("dropping an upgraded handle", g);
    }
    check_running_callback(wid, w, payload);
    let ctx: Vec<Handle> = state
        .map(|g| {
            let t = taint_of(&g, false);
            (g, t)
        })
        .into_iter()
        .collect();
    run_hook(Kind::WeakCallback, ctx);
}

/// A running callback's weak reference: its callback is taken (`__callback__` is `None`), and
/// its payload, if it has one, is still there.
fn check_running_callback(wid: u32, w: &Weak<Node>, payload: bool) {
    if w.has_callback() {
        violation(format!("weak {wid} still has its callback while it runs"));
    }
    if let Some(Some(st)) = api("Weak::callback_state", || w.callback_state::<CbState>()) {
        violation(format!(
            "weak {wid} still hands out its callback state while its callback runs"
        ));
        drop_handles("dropping a callback state", st);
    }
    if payload && w.payload::<Pay>().is_none_or(|p| p.wid != wid) {
        violation(format!(
            "weak {wid}'s payload is gone when its callback runs"
        ));
    }
}

/// The callback of a `WeakMethod`.
fn on_method_callback(mid: u32, state: Option<Gc<Node>>) {
    model(|m| match m.methods.get_mut(&mid) {
        None => m
            .violations
            .push(format!("callback of unknown weak method {mid}")),
        Some(meta) => {
            meta.fired += 1;
            if meta.fired > 1 {
                m.violations
                    .push(format!("callback of weak method {mid} ran twice"));
            }
        }
    });
    log(|| format!("weak method callback {mid}"));
    let ctx: Vec<Handle> = state
        .map(|g| {
            let t = taint_of(&g, false);
            (g, t)
        })
        .into_iter()
        .collect();
    run_hook(Kind::MethodCallback, ctx);
}

/// The callback of a proxy.
fn on_proxy_callback(pid: u32, w: &Weak<Node>, state: Option<Gc<Node>>) {
    model(|m| match m.proxies.get_mut(&pid) {
        None => m
            .violations
            .push(format!("callback of unknown proxy {pid}")),
        Some(meta) => {
            meta.fired += 1;
            if meta.fired > 1 {
                m.violations
                    .push(format!("callback of proxy {pid} ran twice"));
            }
        }
    });
    log(|| format!("proxy callback {pid}"));
    if w.is_alive() || !WeakProxy::is_proxy(w) {
        violation(format!(
            "proxy {pid}'s callback gets a live weak reference, or not a proxy's"
        ));
    }
    let ctx: Vec<Handle> = state
        .map(|g| {
            let t = taint_of(&g, false);
            (g, t)
        })
        .into_iter()
        .collect();
    run_hook(Kind::WeakCallback, ctx);
}

/// The callback of a weak reference to a weak-reference object.
fn on_wweak_callback(wwid: u32, ww: &Weak<WeakRefObj>) {
    model(|m| match m.wweaks.get_mut(&wwid) {
        None => m
            .violations
            .push(format!("callback of unknown weak-to-weak {wwid}")),
        Some(meta) => {
            meta.fired += 1;
            if meta.fired > 1 {
                m.violations
                    .push(format!("callback of weak-to-weak {wwid} ran twice"));
            }
        }
    });
    log(|| format!("weak-to-weak callback {wwid}"));
    if ww.is_alive() {
        violation(format!(
            "weak-to-weak {wwid}'s callback sees its weak reference alive"
        ));
    }
    run_hook(Kind::WeakObjCallback, Vec::new());
}

fn on_finalize_fn(fid: u32) {
    model(|m| {
        if let Some(meta) = m.fins.get_mut(&fid) {
            meta.ran += 1;
            if meta.ran > 1 {
                m.violations
                    .push(format!("finalize callable {fid} ran twice"));
            } else if meta.detached {
                m.violations
                    .push(format!("finalize callable {fid} ran after detach"));
            } else if meta.released {
                m.violations.push(format!(
                    "finalize callable {fid} ran after a shutdown released it"
                ));
            }
        }
    });
    log(|| format!("finalize callable {fid}"));
    run_hook(Kind::FinalizeFn, Vec::new());
}

fn on_unraisable(hid: u32, variant: u32, u: &Unraisable) {
    let kind = u.kind;
    let message = u.message.clone();
    model(|m| {
        if kind != UnraisableKind::Shutdown {
            m.actual_reports += 1;
            let known =
                message.starts_with(MARK) || message.contains(ZOMBIE) || message == NON_STRING;
            if !known {
                m.violations.push(format!(
                    "heap {hid}'s unraisable hook got a panic no hook threw: {kind:?} in {}: {message}",
                    u.type_name
                ));
            }
        }
    });
    log(|| format!("unraisable hook {hid}/{variant}: {kind:?} {message}"));
    if kind == UnraisableKind::Shutdown && !model(|m| m.shutdown_held.contains_key(&hid)) {
        let held = held_from_outside(hid, &[]);
        model(|m| m.shutdown_held.insert(hid, held));
    }
    // The payload, while the hook runs: the very value the hook panicked with.
    let payload_ok = match u.payload() {
        None => kind == UnraisableKind::Shutdown,
        Some(p) if p.is::<Bomb>() => message == NON_STRING,
        Some(p) => {
            kind != UnraisableKind::Shutdown
                && (p.is::<&str>() || p.is::<String>())
                && payload_msg(p) == message
        }
    };
    if !payload_ok {
        violation(format!(
            "heap {hid}'s unraisable hook: a {kind:?} report's payload does not match its \
             message {message:?}"
        ));
    }
    // With `record_panic_locations`: where the panic happened, when it is known.
    match u.location() {
        Some(at) => {
            stat(|| "unraisable report with a location".to_string());
            let ours = message.starts_with(MARK) || message == NON_STRING;
            if at.line == 0 || ours != at.file.ends_with("adversarial.rs") {
                violation(format!(
                    "heap {hid}'s unraisable hook: a report of {message:?} is located at {at}"
                ));
            }
        }
        None if kind != UnraisableKind::Shutdown => {
            stat(|| format!("unraisable report without a location: {kind:?}"))
        }
        None => {}
    }
    // The object concerned: the node whose finalizer or clear hook panicked (the runtime holds
    // it), the weak reference whose callback did, or none.
    let object = u.object().cloned();
    let mut ctx = Vec::new();
    let (want_node, want_weak) = match kind {
        UnraisableKind::Finalizer | UnraisableKind::Clear => (true, false),
        UnraisableKind::WeakCallback => (false, true),
        _ => (false, false),
    };
    match object {
        None if want_node => violation(format!(
            "heap {hid}'s unraisable hook: a {kind:?} report without its object"
        )),
        None => {}
        Some(o) => match o.downcast::<Node>() {
            Ok(g) if want_node => {
                let id = id_of(&g);
                let (finalized, cleared, dead) = model(|m| {
                    id.map_or((false, false, true), |id| {
                        (
                            m.finalized.contains(&id),
                            m.cleared.contains(&id),
                            m.dropped.contains(&id),
                        )
                    })
                });
                let ok = !dead
                    && match kind {
                        UnraisableKind::Clear => cleared,
                        _ => finalized,
                    };
                if !ok {
                    violation(format!(
                        "heap {hid}'s unraisable hook: a {kind:?} report's object is node \
                         {id:?}, which is not in that state"
                    ));
                }
                // Kept, it is resurrected (a finalizer's) or a zombie (a clear hook's).
                let t = kind == UnraisableKind::Clear || taint_of(&g, false);
                ctx.push((g, t));
            }
            Ok(g) => {
                violation(format!(
                    "heap {hid}'s unraisable hook: a {kind:?} report's object is a node"
                ));
                drop_handles("dropping a report's object", g);
            }
            Err(o) => {
                if !want_weak || !Gc::is::<WeakRefObj>(&o) {
                    violation(format!(
                        "heap {hid}'s unraisable hook: a {kind:?} report carries an object of \
                         another type"
                    ));
                }
                drop_handles("dropping a report's object", o);
            }
        },
    }
    run_hook(Kind::Unraisable, ctx);
}

fn unraisable_hook(hid: u32, variant: u32) -> UnraisableHook {
    Box::new(move |u: &Unraisable| on_unraisable(hid, variant, u))
}

/// The collection callback every heap gets first: it only keeps the books.
fn on_collect_tracker(hid: u32, phase: CollectPhase, info: &CollectInfo) {
    let depth = world(|w| w.frames.borrow().len());
    model(|m| {
        let h = m.heaps.entry(hid).or_default();
        let problem = match phase {
            CollectPhase::Start => {
                h.starts += 1;
                h.base_depth = depth;
                h.clear_boundary = None;
                std::mem::replace(&mut h.collecting, true)
                    .then(|| format!("heap {hid}: a collection started inside another"))
            }
            CollectPhase::Stop => (!std::mem::replace(&mut h.collecting, false))
                .then(|| format!("heap {hid}: a collection stopped that had not started")),
        };
        if info.generation > 2 {
            m.violations.push(format!(
                "heap {hid}: collection of generation {}",
                info.generation
            ));
        }
        m.violations.extend(problem);
    });
}

// ---------------------------------------------------------------------------------------------
// Operations, for the driver and for hooks.

struct Cx {
    hook: bool,
    /// Handles this frame works from, each with its taint.
    pool: Vec<Handle>,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Alloc,
    RootPush,
    RootDrop,
    Link,
    Unlink,
    SetSlot,
    Collect,
    GetObjects,
    Referents,
    Referrers,
    WeakNew,
    WeakUpgrade,
    WeakDrop,
    Finalize,
    FinalizerUse,
    Freeze,
    ReplaceHook,
    CollectCallback,
    DropHeap,
    NewHeap,
    Map,
    Threshold,
    Panic,
    TouchZombie,
    Inspect,
    Chain,
    SaveAll,
    NoCollect,
    ValueMap,
    NodeWeak,
    NodeWeakDrop,
    Shutdown,
    PayloadUse,
    WeakInspect,
    WeakObj,
    Proxy,
    Method,
    MeCheck,
}

/// (operation, weight for the driver, weight for hooks)
const OPS: &[(Op, usize, usize)] = &[
    (Op::Alloc, 24, 10),
    (Op::RootPush, 3, 6),
    (Op::RootDrop, 6, 6),
    (Op::Link, 14, 8),
    (Op::Unlink, 6, 5),
    (Op::SetSlot, 6, 5),
    (Op::Collect, 9, 8),
    (Op::GetObjects, 2, 3),
    (Op::Referents, 2, 3),
    (Op::Referrers, 2, 2),
    (Op::WeakNew, 6, 5),
    (Op::WeakUpgrade, 3, 4),
    (Op::WeakDrop, 3, 3),
    (Op::Finalize, 3, 4),
    (Op::FinalizerUse, 2, 2),
    (Op::Freeze, 1, 2),
    (Op::ReplaceHook, 1, 2),
    (Op::CollectCallback, 1, 2),
    (Op::DropHeap, 1, 2),
    (Op::NewHeap, 0, 2),
    (Op::Map, 4, 4),
    (Op::Threshold, 1, 0),
    (Op::Panic, 0, 7),
    (Op::TouchZombie, 0, 3),
    (Op::Inspect, 0, 2),
    (Op::Chain, if cfg!(miri) { 0 } else { 1 }, 0),
    (Op::SaveAll, 1, 2),
    (Op::NoCollect, 1, 1),
    (Op::ValueMap, 2, 3),
    (Op::NodeWeak, 3, 3),
    (Op::NodeWeakDrop, 1, 2),
    (Op::Shutdown, 1, 1),
    (Op::PayloadUse, 2, 2),
    (Op::WeakInspect, 2, 2),
    (Op::WeakObj, 3, 3),
    (Op::Proxy, 3, 3),
    (Op::Method, 3, 3),
    (Op::MeCheck, 1, 2),
];

fn do_op(cx: &mut Cx) {
    let total: usize = OPS
        .iter()
        .map(|&(_, d, h)| if cx.hook { h } else { d })
        .sum();
    let mut r = rnd(total);
    let mut op = Op::Alloc;
    for &(o, d, h) in OPS {
        let w = if cx.hook { h } else { d };
        if r < w {
            op = o;
            break;
        }
        r -= w;
    }
    log(|| format!("{op:?}"));
    stat(|| format!("op {op:?} ({})", if cx.hook { "hook" } else { "driver" }));
    match op {
        Op::Alloc => op_alloc(cx),
        Op::RootPush => op_root_push(cx),
        Op::RootDrop => op_root_drop(),
        Op::Link => op_link(cx),
        Op::Unlink => op_unlink(cx),
        Op::SetSlot => op_set_slot(cx),
        Op::Collect => op_collect(cx),
        Op::GetObjects => op_get_objects(),
        Op::Referents => op_referents(cx),
        Op::Referrers => op_referrers(cx),
        Op::WeakNew => op_weak_new(cx, false),
        Op::NodeWeak => op_weak_new(cx, true),
        Op::NodeWeakDrop => op_node_weak_drop(cx),
        Op::WeakUpgrade => op_weak_upgrade(),
        Op::WeakDrop => op_weak_drop(),
        Op::Finalize => op_finalize(cx),
        Op::FinalizerUse => op_finalizer_use(),
        Op::Freeze => op_freeze(),
        Op::ReplaceHook => op_replace_hook(),
        Op::CollectCallback => op_collect_callback(),
        Op::DropHeap => op_drop_heap(),
        Op::NewHeap => op_new_heap(),
        Op::Map => op_map(cx),
        Op::Threshold => op_threshold(),
        Op::Panic => op_panic(),
        Op::TouchZombie => op_touch_zombie(cx),
        Op::Inspect => op_inspect(cx),
        Op::Chain => op_chain(),
        Op::SaveAll => op_saveall(),
        Op::NoCollect => op_no_collect(cx),
        Op::ValueMap => op_value_map(cx),
        Op::Shutdown => op_shutdown(cx),
        Op::PayloadUse => op_payload_use(cx),
        Op::WeakInspect => op_weak_inspect(),
        Op::WeakObj => op_weak_obj(),
        Op::Proxy => op_proxy(cx),
        Op::Method => op_method(cx),
        Op::MeCheck => op_me_check(cx),
    }
}

/// A handle to work on: from the frame's pool or the roots, in a hook perhaps a few edges further.
fn pick(cx: &Cx) -> Option<Handle> {
    let mut cur: Handle = if !cx.pool.is_empty() && (!cx.hook || chance(60)) {
        let (g, t) = &cx.pool[rnd(cx.pool.len())];
        (g.clone(), *t)
    } else {
        let g = world(|w| {
            let r = w.roots.borrow();
            (!r.is_empty()).then(|| r[rnd(r.len())].clone())
        })?;
        let t = taint_of(&g, false);
        (g, t)
    };
    if cx.hook {
        for _ in 0..rnd(3) {
            if is_dead(&cur.0) {
                break;
            }
            let next = {
                let e = cur.0.edges.borrow();
                (!e.is_empty()).then(|| e[rnd(e.len())].clone())
            };
            let Some(next) = next else { break };
            let t = taint_of(&next, cur.1);
            let old = std::mem::replace(&mut cur, (next, t));
            drop_handles("dropping a walked handle", old);
        }
    }
    Some(cur)
}

/// A handle to a node whose value is intact, to dereference.
fn pick_live(cx: &Cx) -> Option<Handle> {
    let h = pick(cx)?;
    if is_dead(&h.0) {
        drop_handles("dropping a handle", h);
        None
    } else {
        Some(h)
    }
}

fn heap_at(slot: usize) -> Option<(u32, Rc<Heap>)> {
    world(|w| w.heaps.borrow()[slot].clone())
}

fn any_heap() -> Option<(u32, Rc<Heap>)> {
    let s = rnd(SLOTS);
    heap_at(s).or_else(|| heap_at(1 - s))
}

/// Lets go of an `Rc<Heap>`; if it is the last, the heap shuts down here, and at the top level
/// the nodes it leaves alive must be reachable from outside it.
fn release_heap(hid: u32, h: Rc<Heap>, held: &[u32]) {
    if Rc::strong_count(&h) > 1 {
        drop(h);
        return;
    }
    log(|| format!("heap {hid} shuts down"));
    let top = world(|w| w.frames.borrow().is_empty());
    let fid_before = model(|m| {
        let meta = m.heaps.entry(hid).or_default();
        meta.closed = true;
        meta.shut = true;
        m.next_fid
    });
    drop_handles("Drop for Heap", h);
    check_fins_after_shutdown(hid, fid_before);
    if top {
        // What was held from outside when the shutdown report began may have been let go by
        // the report's hook, after the last collection: that may stay. Anything else still alive
        // must be held from outside now.
        let after = held_from_outside(hid, held);
        model(|m| {
            let at_report = m.shutdown_held.remove(&hid).unwrap_or_default();
            let left: Vec<u32> = m
                .nodes
                .iter()
                .filter(|(id, meta)| {
                    meta.hid == hid
                        && !m.dropped.contains(id)
                        && !at_report.contains(id)
                        && !after.contains(id)
                })
                .map(|(id, _)| id)
                .collect();
            if !left.is_empty() {
                m.violations.push(format!(
                    "heap {hid} shut down leaving alive nodes that nothing outside it held: {left:?}"
                ));
            }
        });
    }
}

/// The collection callback that keeps the books (the first a heap gets, and again after
/// `Heap::shutdown` removed it).
fn add_tracker(heap: &Heap, hid: u32) {
    heap.add_collect_callback(Box::new(move |p, i| on_collect_tracker(hid, p, i)));
}

/// After heap `hid` shut down: every `finalize` registration on its objects made before ran,
/// was detached, or (with `atexit` off) was released without running.
fn check_fins_after_shutdown(hid: u32, fid_before: u32) {
    let fins: Vec<(u32, FinRc)> = world(|w| w.fins.borrow().clone());
    for (fid, f) in &fins {
        let alive = f.alive();
        model(|m| {
            let Some(meta) = m.fins.get(fid) else { return };
            if *fid >= fid_before || m.nodes.get(&meta.target).map(|n| n.hid) != Some(hid) {
                return;
            }
            let pending = meta.ran == 0 && !meta.detached && !meta.released;
            let atexit_off = meta.atexit_off;
            if alive {
                m.violations.push(format!(
                    "finalize registration {fid} is still pending after its heap {hid} shut down"
                ));
            } else if pending {
                if atexit_off {
                    stat(|| "finalize registration released by a shutdown".to_string());
                    if let Some(meta) = m.fins.get_mut(fid) {
                        meta.released = true;
                    }
                } else {
                    m.violations.push(format!(
                        "finalize registration {fid} neither ran nor was detached, yet is dead \
                         after its heap {hid} shut down"
                    ));
                }
            }
        });
    }
    drop_handles("dropping Finalizers", fins);
}

fn new_heap(slot: usize) -> Option<(u32, Rc<Heap>)> {
    let hid = model(|m| {
        let hid = m.next_hid;
        m.next_hid += 1;
        m.heaps.insert(hid, HeapMeta::default());
        hid
    });
    let (t0, t1, t2) = if chance(10) {
        (0, 1, 1)
    } else {
        (1 + rnd(30), 1 + rnd(5), 1 + rnd(5))
    };
    let heap = api("Heap::new", || {
        let heap = Heap::new();
        heap.set_threshold(t0, t1, t2);
        heap.set_unraisable_hook(Some(unraisable_hook(hid, 0)));
        add_tracker(&heap, hid);
        heap
    })?;
    let rc = Rc::new(heap);
    let placed = world(|w| {
        let mut hs = w.heaps.borrow_mut();
        if hs[slot].is_none() {
            hs[slot] = Some((hid, rc.clone()));
            true
        } else {
            false
        }
    });
    log(|| format!("new heap {hid} in slot {slot} (placed: {placed})"));
    Some((hid, rc))
}

/// The heap in a random slot; the driver (or, half the time, a hook) makes one if it is empty.
fn heap_for_alloc(cx: &Cx) -> Option<(u32, Rc<Heap>)> {
    let slot = rnd(SLOTS);
    match heap_at(slot) {
        Some(h) => Some(h),
        None if !cx.hook || chance(50) => new_heap(slot),
        None => None,
    }
}

/// Allocates a node in `heap`, holding `init` (an edge) if given; with `cyclic`, by
/// `Heap::alloc_cyclic`, whose `make` runs a hook (and may panic: then there is no node).
fn new_node(hid: u32, heap: &Heap, init: Option<Handle>, cyclic: bool) -> Option<Gc<Node>> {
    let mut edges = Vec::new();
    let mut model_edges = Vec::new();
    if let Some((g, t)) = init {
        if let Some(gid) = id_of(&g) {
            stored(&g, t);
            model_edges.push(gid);
            edges.push(g);
        } else {
            drop_handles("dropping a handle", g);
        }
    }
    let key = rnd(4) as u32;
    let id = model(|m| {
        let id = m.next_id;
        m.next_id += 1;
        *m.nodes.at(id) = NodeMeta { hid, key };
        *m.edges.at(id) = model_edges;
        *m.slots.at(id) = vec![None];
        m.allocating.push(id);
        id
    });
    let clear_mode = rnd(3) as u8;
    log(|| format!("alloc {id} in heap {hid} (cyclic: {cyclic}, clear mode {clear_mode})"));
    let value = move |me: Option<Weak<Node>>| Node {
        magic: MAGIC,
        id,
        key,
        clear_mode,
        edges: RefCell::new(edges),
        cell: Cell::new(Slot(None)),
        slots: RefCell::new(Vec::new()),
        weaks: RefCell::new(Vec::new()),
        me,
    };
    let node = if cyclic {
        // Whether the panic coming out of `alloc_cyclic` is the `make`'s own.
        let make_panicked = Cell::new(false);
        let made = api("Heap::alloc_cyclic", || {
            let r = catch_unwind(AssertUnwindSafe(|| {
                heap.alloc_cyclic(|me: &Weak<Node>| {
                    match catch_unwind(AssertUnwindSafe(|| on_make(id, hid, me))) {
                        Ok(keep) => value(keep.then(|| me.clone())),
                        Err(p) => {
                            make_panicked.set(true);
                            resume_unwind(p)
                        }
                    }
                })
            }));
            match r {
                Ok(node) => Some(node),
                Err(p) if make_panicked.get() => {
                    drop_payload(p);
                    None
                }
                Err(p) => resume_unwind(p),
            }
        });
        match made {
            Some(Some(node)) => Some(node),
            Some(None) => {
                // The object never existed: nothing may ever show it.
                log(|| format!("node {id}'s make panicked"));
                stat(|| "alloc_cyclic whose make panicked".to_string());
                model(|m| {
                    m.allocating.retain(|&a| a != id);
                    m.stillborn.insert(id);
                    m.dropped.insert(id);
                    m.finalized.insert(id);
                });
                return None;
            }
            None => None,
        }
    } else {
        api("Heap::alloc", || heap.alloc(value(None)))
    };
    model(|m| m.allocating.retain(|&a| a != id));
    let node = node?;
    model(|m| m.addr.insert(addr(&node), id));
    if let Some(me) = &node.me {
        // Right after `alloc_cyclic`, the weak reference `make` kept upgrades to the node.
        let up = me.upgrade();
        if !up.as_ref().is_some_and(|up| Gc::ptr_eq(up, &node)) {
            violation(format!(
                "node {id}'s alloc_cyclic weak reference does not upgrade to it once made"
            ));
        }
        drop_handles("dropping an upgraded handle", up);
        check_me(&node, "once made");
    }
    if world(|w| w.track_all.get()) {
        track(&node, id);
    }
    Some(node)
}

/// The `make` of `Heap::alloc_cyclic` for node `id`: user code running while the object has
/// count 0. Returns whether the node keeps `me`.
fn on_make(id: u32, hid: u32, me: &Weak<Node>) -> bool {
    log(|| format!("make {id}"));
    if let Some(g) = me.upgrade() {
        violation(format!(
            "node {id}'s alloc_cyclic weak reference upgrades inside make"
        ));
        // A handle to a value not written yet: never touch it.
        std::mem::forget(g);
    }
    if me.is_alive() || me.has_callback() {
        violation(format!(
            "node {id}'s alloc_cyclic weak reference reads alive (or has a callback) inside make"
        ));
    }
    let stash = |me: &Weak<Node>| {
        if chance(50) {
            // The world keeps `me`: it must upgrade to the node once made, never if not.
            let wid = new_weak_meta(id, false, false, 0, false, None, None);
            log(|| format!("make {id} stashes its weak reference as weak {wid}"));
            world(|w| w.weaks.borrow_mut().push((wid, me.clone())));
            if chance(30) {
                new_wweak(Some(wid), me);
            }
        } else if chance(20) {
            new_wweak(None, me);
        }
    };
    if chance(50) {
        stash(me);
    }
    run_hook(Kind::Make, Vec::new());
    if chance(30) {
        stash(me);
    }
    if chance(8) && hooks_active() {
        log(|| format!("make {id} panics"));
        match rnd(3) {
            0 => panic!("adv: make panics"),
            1 => panic_any(format!("adv: make of node {id} in heap {hid} panics")),
            _ => panic_any(Bomb),
        }
    }
    chance(70)
}

fn op_alloc(cx: &mut Cx) {
    let Some((hid, heap)) = heap_for_alloc(cx) else {
        return;
    };
    let init = if chance(40) { pick(cx) } else { None };
    let node = new_node(hid, &heap, init, chance(35));
    let held: Vec<u32> = node.iter().filter_map(id_of).collect();
    release_heap(hid, heap, &held);
    let Some(node) = node else { return };
    match rnd(10) {
        0..=6 => world(|w| w.roots.borrow_mut().push(node)),
        7..=8 => {
            if let Some((a, ta)) = pick_live(cx) {
                link(&a, &node, false);
                drop_handles("dropping a handle", (a, ta));
            }
            drop_handles("dropping a new node's handle", node);
        }
        _ => drop_handles("dropping a new node's handle", node),
    }
}

/// A chain longer than the trashcan's depth, rooted at its head: dropping the root tears it down
/// through deferred deaths, with hooks on the way.
fn op_chain() {
    let Some((hid, heap)) = heap_for_alloc(&Cx {
        hook: false,
        pool: Vec::new(),
    }) else {
        return;
    };
    let n = 50 + rnd(20);
    log(|| format!("chain of {n} in heap {hid}"));
    let mut head: Option<Gc<Node>> = None;
    for _ in 0..n {
        let next = new_node(hid, &heap, head.take().map(|g| (g, false)), false);
        match next {
            Some(g) => head = Some(g),
            None => break,
        }
    }
    let held: Vec<u32> = head.iter().filter_map(id_of).collect();
    release_heap(hid, heap, &held);
    if let Some(head) = head {
        world(|w| w.roots.borrow_mut().push(head));
    }
}

/// `DEBUG_SAVEALL` and the `garbage` list.
fn op_saveall() {
    let Some((hid, heap)) = any_heap() else {
        return;
    };
    match rnd(4) {
        0 => {
            let on = chance(50);
            log(|| format!("heap {hid}: SAVEALL {on}"));
            model(|m| {
                let h = m.heaps.entry(hid).or_default();
                h.kept_in_shutdown |= on && h.in_shutdown > 0;
            });
            api("Heap::set_debug", || {
                heap.set_debug(if on {
                    reap::DebugFlags::SAVEALL
                } else {
                    reap::DebugFlags::empty()
                })
            });
        }
        1 | 2 => {
            let garbage = api("Heap::garbage", || heap.garbage()).unwrap_or_default();
            log(|| format!("heap {hid}: garbage() = {}", garbage.len()));
            let mut nodes = Vec::new();
            let mut others = Vec::new();
            for o in garbage {
                match o.downcast::<Node>() {
                    Ok(n) => {
                        vet("Heap::garbage", &n, false);
                        nodes.push(n);
                    }
                    Err(o) => others.push(o),
                }
            }
            if !nodes.is_empty() && chance(30) {
                let n = nodes.swap_remove(rnd(nodes.len()));
                let t = taint_of(&n, false);
                stored(&n, t);
                world(|w| w.roots.borrow_mut().push(n));
            }
            drop_handles("dropping garbage() results", (nodes, others));
        }
        _ => {
            log(|| format!("heap {hid}: clear_garbage()"));
            api("Heap::clear_garbage", || heap.clear_garbage());
        }
    }
    release_heap(hid, heap, &[]);
}

/// An operation with automatic collection held off.
fn op_no_collect(cx: &mut Cx) {
    let Some((hid, heap)) = any_heap() else {
        return;
    };
    log(|| format!("heap {hid}: without_collection"));
    // Not wrapped: the operation's own panics go through to whatever catches them (the scope
    // is ended by a guard).
    let held = heap.clone();
    held.without_collection(|| do_op(cx));
    drop(held);
    release_heap(hid, heap, &[]);
}

fn op_value_map(cx: &mut Cx) {
    let Some(map) = world(|w| w.vmaps.borrow().first().cloned()) else {
        return;
    };
    let k = rnd(6) as u32;
    match rnd(5) {
        0 | 1 => {
            if let Some((a, ta)) = pick(cx) {
                if !is_dead(&a) {
                    stored(&a, ta);
                    log(|| format!("value map insert {k} -> {:?}", id_of(&a)));
                    let old = api("WeakValueMap::insert", || map.insert(k, &a));
                    drop_handles("dropping a replaced value", old);
                }
                drop_handles("dropping a handle", a);
            }
        }
        2 => {
            if let Some(Some(g)) = api("WeakValueMap::get", || map.get(&k)) {
                vet("WeakValueMap::get", &g, false);
                drop_handles("dropping a value", g);
            }
        }
        3 => {
            let old = api("WeakValueMap::remove", || map.remove(&k));
            drop_handles("dropping a removed value", old);
        }
        _ => {
            let values = api("WeakValueMap::values", || map.values().collect::<Vec<_>>());
            for g in values.iter().flatten() {
                vet("WeakValueMap::values", g, false);
            }
            drop_handles("dropping values", values);
        }
    }
    drop_handles("dropping a map", map);
}

fn op_root_push(cx: &mut Cx) {
    if let Some((g, t)) = pick(cx) {
        stored(&g, t);
        log(|| format!("root push {:?}", id_of(&g)));
        world(|w| w.roots.borrow_mut().push(g));
    }
}

fn op_root_drop() {
    let g = world(|w| {
        let mut r = w.roots.borrow_mut();
        (!r.is_empty()).then(|| {
            let i = rnd(r.len());
            r.swap_remove(i)
        })
    });
    if let Some(g) = g {
        log(|| format!("root drop {:?}", id_of(&g)));
        drop_handles("dropping a root", g);
    }
}

/// `a.edges.push(b)`, in the real graph and the model. `a` must be intact.
fn link(a: &Gc<Node>, b: &Gc<Node>, b_tainted: bool) {
    let (Some(ia), Some(ib)) = (id_of(a), id_of(b)) else {
        return;
    };
    a.edges.borrow_mut().push(b.clone());
    stored(b, b_tainted);
    model(|m| m.edges.at(ia).push(ib));
    log(|| format!("link {ia} -> {ib}"));
}

fn op_link(cx: &mut Cx) {
    let Some((a, ta)) = pick(cx) else { return };
    let Some((b, tb)) = pick(cx) else {
        drop_handles("dropping a handle", a);
        return;
    };
    if is_dead(&a) {
        // Dereferencing a zombie panics (documented); a runtime-caught hook may try it.
        if cx.hook && own_frame_caught() && chance(30) {
            log(|| "link from a zombie".to_string());
            let _ = a.edges.borrow().len();
        }
    } else {
        link(&a, &b, tb);
    }
    drop_handles("dropping handles", ((a, ta), b));
}

fn op_unlink(cx: &mut Cx) {
    let Some((a, _)) = pick_live(cx) else { return };
    let Some(ia) = id_of(&a) else { return };
    let removed = {
        let mut e = a.edges.borrow_mut();
        (!e.is_empty()).then(|| {
            let i = rnd(e.len());
            (i, e.remove(i))
        })
    };
    if let Some((i, g)) = removed {
        model(|m| {
            let es = m.edges.at(ia);
            if i < es.len() {
                es.remove(i);
            }
        });
        log(|| format!("unlink {ia} -> {:?}", id_of(&g)));
        drop_handles("dropping an unlinked handle", g);
    }
    drop_handles("dropping a handle", a);
}

fn op_set_slot(cx: &mut Cx) {
    let Some((a, _)) = pick_live(cx) else { return };
    let Some(ia) = id_of(&a) else { return };
    let target = if chance(70) { pick(cx) } else { None };
    let (tgt, tid) = match target {
        Some((g, t)) => match id_of(&g) {
            Some(gid) => {
                stored(&g, t);
                (Some(g), Some(gid))
            }
            None => (None, None),
        },
        None => (None, None),
    };
    let n = a.slots.borrow().len();
    let i = rnd(n + 2);
    let old = if i == 0 {
        a.cell.replace(Slot(tgt))
    } else if i <= n {
        let s = a.slots.borrow();
        s[i - 1].replace(Slot(tgt))
    } else {
        a.slots.borrow_mut().push(Cell::new(Slot(tgt)));
        Slot(None)
    };
    model(|m| {
        let s = m.slots.at(ia);
        if i < s.len() {
            s[i] = tid;
        } else {
            s.push(tid);
        }
    });
    log(|| format!("slot {ia}[{i}] = {tid:?}"));
    drop_handles("dropping a slot's old value", (old, a));
}

fn op_collect(cx: &mut Cx) {
    let slot = rnd(SLOTS);
    let g = rnd(3);
    let Some((hid, heap)) = heap_at(slot) else {
        return;
    };
    let before = model(|m| m.heaps.get(&hid).map_or(0, |h| h.starts));
    log(|| format!("collect heap {hid} gen {g}"));
    let n = api("Heap::collect", || heap.collect(g));
    log(|| format!("collect heap {hid} gen {g} = {n:?}"));
    if n.is_some_and(|n| n > 0) {
        stat(|| "collections (explicit) that freed something".to_string());
    }
    let after = model(|m| m.heaps.get(&hid).map_or(0, |h| h.starts));
    if !cx.hook && n.is_some() && after != before + 1 {
        violation(format!(
            "heap {hid}: a top-level collect({g}) started {} collections, not 1",
            after - before
        ));
    }
    let held: Vec<u32> = cx.pool.iter().filter_map(|(g, _)| id_of(g)).collect();
    release_heap(hid, heap, &held);
}

/// Checks handles the runtime handed out: none may lead to a dropped value unless `tainted`.
fn vet(what: &str, g: &Gc<Node>, tainted: bool) {
    // `id_of` recognises a node being allocated right now (its address not recorded yet); any
    // other unknown address is an object the test never made, such as one whose `make` panicked.
    let Some(id) = id_of(g) else {
        violation(format!("{what} handed out a node the test never made"));
        return;
    };
    let dead = model(|m| m.dropped.contains(&id));
    if dead && !tainted && !model(|m| m.maybe_zombie.contains(&id)) {
        violation(format!(
            "{what} handed out node {id}, whose value was dropped"
        ));
    }
    if !dead && world(|w| w.track_all.get()) {
        // It may be one a collection found garbage (clearing its weak references) that then
        // survived (kept by `SAVEALL`, say): keep it trackable.
        track(g, id);
    }
}

fn op_get_objects() {
    let Some((hid, heap)) = any_heap() else {
        return;
    };
    let g = rnd(4);
    let objs = api("Heap::get_objects", || {
        heap.get_objects(if g == 3 { None } else { Some(g) })
    });
    release_heap(hid, heap, &[]);
    let Some(objs) = objs else { return };
    log(|| format!("get_objects heap {hid}: {}", objs.len()));
    let mut nodes = Vec::new();
    let mut others = Vec::new();
    for o in objs {
        match o.downcast::<Node>() {
            Ok(n) => {
                vet("get_objects", &n, false);
                nodes.push(n);
            }
            Err(o) => others.push(o),
        }
    }
    if !nodes.is_empty() && chance(30) {
        let n = nodes.swap_remove(rnd(nodes.len()));
        let t = taint_of(&n, false);
        stored(&n, t);
        world(|w| w.roots.borrow_mut().push(n));
    }
    drop_handles("dropping get_objects results", (nodes, others));
}

fn op_referents(cx: &mut Cx) {
    let Some((a, ta)) = pick(cx) else { return };
    if is_dead(&a) && !(cx.hook && own_frame_caught() && chance(30)) {
        drop_handles("dropping a handle", a);
        return;
    }
    let Some((hid, heap)) = any_heap() else {
        drop_handles("dropping a handle", a);
        return;
    };
    log(|| format!("get_referents {:?}", id_of(&a)));
    let r = {
        let _s = SyncGuard::new(SyncCall::Introspect);
        api("Heap::get_referents", || heap.get_referents(&a))
    };
    release_heap(hid, heap, &[]);
    let ta = taint_of(&a, ta);
    if let Some(r) = r {
        let mut nodes = Vec::new();
        let mut others = Vec::new();
        for o in r {
            match o.downcast::<Node>() {
                Ok(n) => {
                    vet("get_referents", &n, ta);
                    nodes.push(n);
                }
                Err(o) => others.push(o),
            }
        }
        if !nodes.is_empty() && chance(30) {
            let n = nodes.swap_remove(rnd(nodes.len()));
            let t = taint_of(&n, ta);
            cx.pool.push((n, t));
        }
        drop_handles("dropping get_referents results", (nodes, others));
    }
    drop_handles("dropping a handle", a);
}

fn op_referrers(cx: &mut Cx) {
    let Some((a, _)) = pick_live(cx) else { return };
    let Some((hid, heap)) = any_heap() else {
        drop_handles("dropping a handle", a);
        return;
    };
    log(|| format!("get_referrers {:?}", id_of(&a)));
    let r = {
        let _s = SyncGuard::new(SyncCall::Introspect);
        api("Heap::get_referrers", || heap.get_referrers(&a))
    };
    release_heap(hid, heap, &[]);
    if let Some(r) = r {
        let mut nodes = Vec::new();
        let mut others = Vec::new();
        for o in r {
            match o.downcast::<Node>() {
                Ok(n) => {
                    vet("get_referrers", &n, false);
                    nodes.push(n);
                }
                Err(o) => others.push(o),
            }
        }
        if !nodes.is_empty() && chance(30) {
            let n = nodes.swap_remove(rnd(nodes.len()));
            let t = taint_of(&n, false);
            cx.pool.push((n, t));
        }
        drop_handles("dropping get_referrers results", (nodes, others));
    }
    drop_handles("dropping a handle", a);
}

/// Records a new weak reference in the model; returns its id.
fn new_weak_meta(
    target: u32,
    exempt: bool,
    in_node: bool,
    kind: usize,
    callback: bool,
    state: Option<u32>,
    payload: Option<u32>,
) -> u32 {
    model(|m| {
        let wid = m.next_wid;
        m.next_wid += 1;
        m.weaks.insert(
            wid,
            WeakMeta {
                target,
                callback,
                exempt,
                held: true,
                dropped_alive: false,
                fired: 0,
                state,
                kind,
                in_node,
                payload,
                objs_held: 0,
            },
        );
        wid
    })
}

/// A new weak reference to a node, held by the world or (`holder`) by another node's value: a
/// weak reference that can be garbage itself, and a cycle through its callback's traced state
/// or its payload. Kinds: 0 `Weak::new`, 1 an untraced callback, 2 a traced `Cell` state the
/// callback takes, 3 a payload, 4 a payload and a traced state, 5 a traced state `callback_state`
/// can clone.
fn op_weak_new(cx: &mut Cx, in_node: bool) {
    let holder = if in_node {
        match pick_live(cx) {
            Some(h) => Some(h),
            None => return,
        }
    } else {
        None
    };
    let holder_id = holder.as_ref().and_then(|(h, _)| id_of(h));
    let Some((a, ta)) = pick(cx) else {
        drop_handles("dropping a handle", holder);
        return;
    };
    let dead = is_dead(&a);
    let target = id_of(&a);
    if target.is_none()
        || (in_node && holder_id.is_none())
        || (dead && !(cx.hook && own_frame_caught() && chance(30)))
    {
        drop_handles("dropping handles", (a, holder));
        return;
    }
    let target = target.unwrap_or_default();
    let kind = rnd(6);
    // Under Miri, where every leak fails the run, no node holds a traced state or payload with a
    // handle: a cycle through one is the one kind of garbage the test may be unable to break at
    // the end.
    let holds = |p: usize| matches!(kind, 2 | 4 | 5) && chance(p) && !(in_node && cfg!(miri));
    let state = if holds(70) { pick(cx) } else { None };
    let payload = if matches!(kind, 3 | 4) && chance(60) && !(in_node && cfg!(miri)) {
        pick(cx)
    } else {
        None
    };
    let state_id = state.as_ref().and_then(|(g, _)| id_of(g));
    let payload_id = payload.as_ref().and_then(|(g, _)| id_of(g));
    for (g, t) in state.iter().chain(payload.iter()) {
        stored(g, *t);
    }
    // Whether one held by a node is garbage with its referent is not modelled: only its
    // callback's at-most-once is checked.
    let exempt = in_node || dead || model(|m| taint_of_model(m, target, ta));
    let callback = matches!(kind, 1 | 2 | 4 | 5);
    let wid = new_weak_meta(
        target, exempt, in_node, kind, callback, state_id, payload_id,
    );
    model(|m| {
        if let Some(h) = holder_id {
            if let (Some(st), true) = (state_id, matches!(kind, 2 | 4 | 5)) {
                m.node_weak_states.insert(wid, (h, st));
            }
            if let Some(p) = payload_id {
                m.node_weak_payloads.insert(wid, (h, p));
            }
        }
    });
    log(|| {
        format!(
            "weak {wid} -> {target} (kind {kind}, state {state_id:?}, payload {payload_id:?}, \
             held by node {holder_id:?})"
        )
    });
    let state = state.map(|(g, _)| g);
    let pay = Pay {
        wid,
        slot: Cell::new(Slot(payload.map(|(g, _)| g))),
    };
    let w = api("making a weak reference", || match kind {
        0 => Weak::new(&a),
        1 => Weak::with_untraced_callback(&a, move |w: &Weak<Node>| on_weak_callback(wid, w, None)),
        2 => Weak::with_callback(
            &a,
            Cell::new(Slot(state)),
            move |s: &Cell<Slot>, w: &Weak<Node>| {
                let st = s.replace(Slot(None)).0.take();
                on_weak_callback(wid, w, st)
            },
        ),
        3 => Weak::with_payload(&a, pay),
        4 => Weak::with_payload_and_callback(
            &a,
            pay,
            CbState {
                id: wid,
                slot: Slot(state),
            },
            |s: &CbState, w: &Weak<Node>| on_weak_callback(s.id, w, s.slot.0.clone()),
        ),
        _ => Weak::with_callback(
            &a,
            CbState {
                id: wid,
                slot: Slot(state),
            },
            |s: &CbState, w: &Weak<Node>| on_weak_callback(s.id, w, s.slot.0.clone()),
        ),
    });
    if let Some(w) = &w {
        if matches!(kind, 3 | 4) && w.payload::<Pay>().is_none_or(|p| p.wid != wid) {
            violation(format!("weak {wid}'s payload does not read back"));
        }
        if kind > 0 && !dead && Weak::new(&a).ptr_eq(w) {
            violation(format!(
                "weak {wid} of kind {kind} is the shared weak reference"
            ));
        }
    }
    match (w, &holder) {
        (Some(w), Some((h, _))) => h.weaks.borrow_mut().push((wid, w)),
        (Some(w), None) => world(|wd| wd.weaks.borrow_mut().push((wid, w))),
        (None, _) => model(|m| {
            if let Some(meta) = m.weaks.get_mut(&wid) {
                meta.held = false;
            }
            m.node_weak_states.remove(&wid);
            m.node_weak_payloads.remove(&wid);
        }),
    }
    drop_handles("dropping handles", (a, holder));
}

/// A node lets go of a weak reference it holds.
fn op_node_weak_drop(cx: &mut Cx) {
    let Some((a, ta)) = pick_live(cx) else { return };
    let removed = {
        let mut ws = a.weaks.borrow_mut();
        (!ws.is_empty()).then(|| {
            let i = rnd(ws.len());
            ws.swap_remove(i)
        })
    };
    if let Some((wid, w)) = removed {
        model(|m| {
            m.node_weak_states.remove(&wid);
            m.node_weak_payloads.remove(&wid);
            if let Some(meta) = m.weaks.get_mut(&wid) {
                meta.held = false;
            }
        });
        log(|| format!("node {:?} drops weak {wid}", id_of(&a)));
        drop_handles("dropping a weak reference", w);
    }
    drop_handles("dropping a handle", (a, ta));
}

fn taint_of_model(m: &Model, id: u32, inherited: bool) -> bool {
    inherited || m.maybe_zombie.contains(&id) || m.dropped.contains(&id)
}

fn op_weak_upgrade() {
    let got = world(|w| {
        let ws = w.weaks.borrow();
        (!ws.is_empty()).then(|| {
            let (wid, weak) = &ws[rnd(ws.len())];
            // Upgrading runs no user code.
            (*wid, weak.upgrade())
        })
    });
    let Some((wid, g)) = got else { return };
    log(|| format!("upgrade weak {wid}: {}", g.is_some()));
    let Some(g) = g else { return };
    let (target, exempt) = model(|m| {
        let meta = &m.weaks[&wid];
        (meta.target, meta.exempt)
    });
    let id = id_of(&g);
    if id != Some(target) {
        violation(format!(
            "weak {wid} to node {target} upgraded to node {id:?}"
        ));
    }
    vet("Weak::upgrade", &g, exempt);
    if chance(40) {
        let t = taint_of(&g, exempt);
        stored(&g, t);
        world(|w| w.roots.borrow_mut().push(g));
    } else {
        drop_handles("dropping an upgraded handle", g);
    }
}

/// The program lets go of a weak reference it held.
fn drop_weak(wid: u32, weak: Weak<Node>) {
    let alive = weak.is_alive();
    // Whether this is the last handle to the weak-reference object: others (its object kept by
    // the world, a clone an operation lower on the stack works with, the runtime holding it for
    // its callback) keep it alive, and its callback may still run.
    let last = api("Weak::as_object", || {
        Gc::strong_count(&Weak::as_object(&weak)) == 2
    });
    model(|m| {
        if let Some(meta) = m.weaks.get_mut(&wid) {
            meta.held = false;
            meta.dropped_alive = alive && last == Some(true);
        }
    });
    log(|| format!("drop weak {wid} (alive: {alive})"));
    drop_handles("dropping a weak reference", weak);
}

fn op_weak_drop() {
    let got = world(|w| {
        let mut ws = w.weaks.borrow_mut();
        (!ws.is_empty()).then(|| {
            let i = rnd(ws.len());
            ws.swap_remove(i)
        })
    });
    if let Some((wid, weak)) = got {
        drop_weak(wid, weak);
    }
}

fn op_finalize(cx: &mut Cx) {
    let Some((a, ta)) = pick(cx) else { return };
    let dead = is_dead(&a);
    let Some(target) = id_of(&a) else {
        drop_handles("dropping a handle", a);
        return;
    };
    if dead && !(cx.hook && own_frame_caught() && chance(30)) {
        drop_handles("dropping a handle", a);
        return;
    }
    let fid = model(|m| {
        let fid = m.next_fid;
        m.next_fid += 1;
        let exempt = dead || taint_of_model(m, target, ta);
        m.fins.insert(
            fid,
            FinMeta {
                target,
                exempt,
                ran: 0,
                detached: false,
                atexit_off: false,
                released: false,
            },
        );
        fid
    });
    log(|| format!("finalize({target}) = registration {fid}"));
    let f = api("reap::finalize", || {
        finalize(&a, move || on_finalize_fn(fid))
    });
    if let Some(f) = f {
        if chance(60) {
            world(|w| w.fins.borrow_mut().push((fid, Rc::new(f))));
        } else {
            drop_handles("dropping a Finalizer", f);
        }
    }
    drop_handles("dropping a handle", a);
}

fn op_finalizer_use() {
    let got = world(|w| {
        let fs = w.fins.borrow();
        (!fs.is_empty()).then(|| {
            let i = rnd(fs.len());
            (i, fs[i].0, fs[i].1.clone())
        })
    });
    let Some((i, fid, f)) = got else { return };
    let pending = |m: &Model| {
        m.fins
            .get(&fid)
            .is_some_and(|f| f.ran == 0 && !f.detached && !f.released)
    };
    let was_pending = model(|m| pending(m));
    match rnd(6) {
        0 => {
            log(|| format!("Finalizer::call {fid}"));
            let r = {
                let _s = SyncGuard::new(SyncCall::Call);
                api("Finalizer::call", || f.call())
            };
            if r == Some(None) && was_pending && model(|m| pending(m)) && !released_at_shutdown(fid)
            {
                violation(format!(
                    "finalize registration {fid} never ran, but call() found it dead"
                ));
            }
        }
        1 => {
            log(|| format!("Finalizer::detach {fid}"));
            match api("Finalizer::detach", || f.detach()) {
                Some(Some((obj, func))) => {
                    model(|m| {
                        if let Some(meta) = m.fins.get_mut(&fid) {
                            if meta.ran > 0 {
                                m.violations.push(format!(
                                    "finalize registration {fid} detached after it ran"
                                ));
                            }
                            meta.detached = true;
                        }
                    });
                    drop_handles("dropping a detached registration", (obj, func));
                }
                Some(None)
                    if was_pending && model(|m| pending(m)) && !released_at_shutdown(fid) =>
                {
                    violation(format!(
                        "finalize registration {fid} never ran, but detach() found it dead"
                    ));
                }
                Some(None) | None => {}
            }
        }
        2 => {
            if let Some(Some(g)) = api("Finalizer::peek", || f.peek()) {
                let (target, exempt) = model(|m| (m.fins[&fid].target, m.fins[&fid].exempt));
                if id_of(&g) != Some(target) {
                    violation(format!("finalize registration {fid} peeks at another node"));
                }
                vet("Finalizer::peek", &g, exempt);
                drop_handles("dropping a peeked handle", g);
            }
        }
        3 => {
            let alive = f.alive();
            let expected = model(|m| pending(m));
            let ok = alive == expected || (!alive && released_at_shutdown(fid));
            if !ok {
                violation(format!(
                    "finalize registration {fid}: alive() is {alive}, the model says otherwise"
                ));
            }
        }
        4 => {
            log(|| format!("Finalizer::set_atexit(false) {fid}"));
            f.set_atexit(false);
            model(|m| {
                if let Some(meta) = m.fins.get_mut(&fid) {
                    meta.atexit_off = true;
                }
            });
            if f.atexit() {
                violation(format!("finalize registration {fid}: atexit() reads true"));
            }
        }
        _ => {
            let removed = world(|w| {
                let mut fs = w.fins.borrow_mut();
                (i < fs.len() && fs[i].0 == fid).then(|| fs.swap_remove(i))
            });
            drop_handles("dropping a Finalizer", removed);
        }
    }
    drop_handles("dropping a Finalizer", f);
}

/// A registration the model thinks pending is dead: fine (and then recorded) if it has `atexit`
/// off and its heap began a shutdown, which released it without running it.
fn released_at_shutdown(fid: u32) -> bool {
    model(|m| {
        let Some(meta) = m.fins.get(&fid) else {
            return false;
        };
        let hid = m.nodes.get(&meta.target).map(|n| n.hid);
        let shut = hid.and_then(|h| m.heaps.get(&h)).is_some_and(|h| h.shut);
        let released = shut && meta.atexit_off;
        if let Some(meta) = m.fins.get_mut(&fid) {
            meta.released |= released;
        }
        released
    })
}

fn op_freeze() {
    let Some((hid, heap)) = any_heap() else {
        return;
    };
    let freeze = chance(50);
    log(|| format!("heap {hid}: freeze {freeze}"));
    model(|m| {
        let h = m.heaps.entry(hid).or_default();
        h.kept_in_shutdown |= freeze && h.in_shutdown > 0;
    });
    api("Heap::freeze", || {
        if freeze {
            heap.freeze()
        } else {
            heap.unfreeze()
        }
    });
    release_heap(hid, heap, &[]);
}

fn op_replace_hook() {
    let Some((hid, heap)) = any_heap() else {
        return;
    };
    let variant = rnd(1000) as u32;
    log(|| format!("heap {hid}: new unraisable hook {variant}"));
    api("Heap::set_unraisable_hook", || {
        heap.set_unraisable_hook(Some(unraisable_hook(hid, variant)))
    });
    release_heap(hid, heap, &[]);
}

fn op_collect_callback() {
    let Some((hid, heap)) = any_heap() else {
        return;
    };
    let existing = model(|m| m.heaps.get(&hid).map_or(0, |h| h.hook_callbacks.len()));
    if existing < 2 && chance(70) {
        log(|| format!("heap {hid}: add a collection callback"));
        let id = api("Heap::add_collect_callback", || {
            heap.add_collect_callback(Box::new(|_, _| run_hook(Kind::CollectCallback, Vec::new())))
        });
        if let Some(id) = id {
            model(|m| m.heaps.entry(hid).or_default().hook_callbacks.push(id));
        }
    } else if existing > 0 {
        let id = model(|m| {
            let cbs = &mut m.heaps.entry(hid).or_default().hook_callbacks;
            cbs.swap_remove(rnd(cbs.len()))
        });
        log(|| format!("heap {hid}: remove collection callback {id}"));
        if api("Heap::remove_collect_callback", || {
            heap.remove_collect_callback(id)
        }) == Some(false)
        {
            violation(format!(
                "heap {hid}: collection callback {id} was not registered"
            ));
        }
    }
    release_heap(hid, heap, &[]);
}

fn op_drop_heap() {
    let slot = rnd(SLOTS);
    let got = world(|w| w.heaps.borrow_mut()[slot].take());
    if let Some((hid, heap)) = got {
        log(|| format!("drop heap {hid} from slot {slot}"));
        release_heap(hid, heap, &[]);
    }
}

fn op_new_heap() {
    let slot = rnd(SLOTS);
    if heap_at(slot).is_none() {
        if let Some((hid, heap)) = new_heap(slot) {
            release_heap(hid, heap, &[]);
        }
    }
}

fn op_threshold() {
    let Some((hid, heap)) = any_heap() else {
        return;
    };
    let t = if chance(15) { 0 } else { 1 + rnd(30) };
    api("Heap::set_threshold", || {
        heap.set_threshold(t, 1 + rnd(5), 1 + rnd(5))
    });
    release_heap(hid, heap, &[]);
}

fn op_map(cx: &mut Cx) {
    let use_map = chance(60);
    let Some((a, ta)) = pick_live(cx) else { return };
    let aid = id_of(&a);
    if use_map {
        let Some(map) = world(|w| w.maps.borrow().first().cloned()) else {
            drop_handles("dropping a handle", a);
            return;
        };
        let what = rnd(8);
        log(|| format!("map op {what} with key {aid:?}"));
        let keys = {
            let _s = SyncGuard::new(SyncCall::Map);
            api("WeakKeyMap", || match what {
                0 | 1 => {
                    let v = rnd(100) as u32;
                    map.insert(&a, v);
                    None
                }
                2 => {
                    map.get(&a);
                    None
                }
                3 => {
                    map.remove(&a);
                    None
                }
                4 => {
                    map.contains_key(&a);
                    None
                }
                5 => Some(map.keys().collect::<Vec<_>>()),
                6 => {
                    map.retain(|_, _| chance(70));
                    None
                }
                _ => {
                    map.len();
                    None
                }
            })
        };
        if let Some(Some(keys)) = keys {
            for k in &keys {
                vet("WeakKeyMap::keys", k, ta);
            }
            drop_handles("dropping map keys", keys);
        }
        drop_handles("dropping a map", map);
    } else {
        let Some(set) = world(|w| w.sets.borrow().first().cloned()) else {
            drop_handles("dropping a handle", a);
            return;
        };
        let what = rnd(5);
        log(|| format!("set op {what} with item {aid:?}"));
        let items = {
            let _s = SyncGuard::new(SyncCall::Map);
            api("WeakSet", || match what {
                0 | 1 => {
                    set.insert(&a);
                    None
                }
                2 => {
                    set.contains(&a);
                    None
                }
                3 => {
                    set.remove(&a);
                    None
                }
                _ => Some(set.iter().collect::<Vec<_>>()),
            })
        };
        if let Some(Some(items)) = items {
            for k in &items {
                vet("WeakSet::iter", k, ta);
            }
            drop_handles("dropping set items", items);
        }
        drop_handles("dropping a set", set);
    }
    drop_handles("dropping a handle", a);
}

/// A hook panics, if something will catch it before the driver.
fn op_panic() {
    let Some(c) = catcher() else { return };
    let own = own_frame_caught();
    if !own {
        // Propagates out of a synchronous call to the hook frame that catches it.
        world(|w| w.inflight.borrow_mut().push(c));
    }
    log(|| format!("panic (caught at frame {c})"));
    stat(|| {
        format!(
            "panic thrown by a {} hook",
            if own { "caught" } else { "propagating" }
        )
    });
    match rnd(3) {
        0 => panic!("adv: hook panic"),
        1 => panic_any(String::from("adv: hook panic (String payload)")),
        _ => panic_any(Bomb),
    }
}

/// A runtime-caught hook dereferences a zombie it holds, if it holds one: the documented panic.
fn op_touch_zombie(cx: &mut Cx) {
    if !own_frame_caught() {
        return;
    }
    let z = cx
        .pool
        .iter()
        .find(|(g, _)| is_dead(g))
        .map(|(g, _)| g.clone());
    let z = z.or_else(|| {
        let roots: Vec<Gc<Node>> = world(|w| w.roots.borrow().clone());
        let found = roots.iter().find(|g| is_dead(g)).cloned();
        drop_handles("dropping roots", roots);
        found
    });
    if let Some(z) = z {
        log(|| format!("touch zombie {:?}", id_of(&z)));
        stat(|| "zombie touched".to_string());
        let _ = z.id;
        drop_handles("dropping a handle", z);
    }
}

/// A hook reads a node it can reach, checking it is intact, and a heap's statistics.
fn op_inspect(cx: &mut Cx) {
    if let Some((g, t)) = pick_live(cx) {
        let id = id_of(&g);
        if g.magic != MAGIC || Some(g.id) != id {
            violation(format!("node {id:?} reads corrupt from a hook"));
        }
        let _ = Gc::strong_count(&g) + Gc::weak_count(&g);
        drop_handles("dropping a handle", (g, t));
    }
    if let Some((hid, heap)) = any_heap() {
        let r = api("heap statistics", || {
            let listed: usize = (0..4).map(|g| heap.generation_len(g)).sum();
            let _ = (heap.get_count(), heap.get_stats(), heap.get_threshold());
            (listed, heap.live_objects())
        });
        if let Some((listed, live)) = r {
            if listed > live {
                violation(format!(
                    "heap {hid}: {listed} objects listed in generations, {live} live"
                ));
            }
        }
        release_heap(hid, heap, &[]);
    }
}

/// `Heap::shutdown`: what shutdown owes, with the heap still usable afterwards (its collection
/// callbacks are gone: the book-keeping one is added back).
fn op_shutdown(cx: &mut Cx) {
    let Some((hid, heap)) = any_heap() else {
        return;
    };
    let ok = model(|m| {
        m.heaps
            .get(&hid)
            .is_some_and(|h| !h.collecting && h.in_shutdown == 0 && !h.closed)
    });
    if !ok {
        release_heap(hid, heap, &[]);
        return;
    }
    let top = world(|w| w.frames.borrow().is_empty());
    let fid_before = model(|m| {
        let h = m.heaps.entry(hid).or_default();
        h.in_shutdown += 1;
        h.shut = true;
        h.kept_in_shutdown = false;
        h.hook_callbacks.clear();
        m.next_fid
    });
    log(|| format!("heap {hid}: shutdown()"));
    stat(|| "Heap::shutdown".to_string());
    let live = api("Heap::shutdown", || heap.shutdown());
    model(|m| m.heaps.entry(hid).or_default().in_shutdown -= 1);
    api("Heap::add_collect_callback", || add_tracker(&heap, hid));
    log(|| format!("heap {hid}: shutdown() = {live:?}"));
    if live.is_some_and(|n| n != heap.live_objects()) {
        violation(format!(
            "heap {hid}: shutdown() returned {live:?}, but {} objects live",
            heap.live_objects()
        ));
    }
    check_fins_after_shutdown(hid, fid_before);
    let refrozen = model(|m| m.heaps.get(&hid).is_some_and(|h| h.kept_in_shutdown));
    if top && !refrozen {
        // Whatever is left alive is held from outside.
        let held: Vec<u32> = cx.pool.iter().filter_map(|(g, _)| id_of(g)).collect();
        let outside = held_from_outside(hid, &held);
        model(|m| {
            let left: Vec<u32> = m
                .nodes
                .iter()
                .filter(|(id, meta)| {
                    meta.hid == hid && !m.dropped.contains(id) && !outside.contains(id)
                })
                .map(|(id, _)| id)
                .collect();
            if !left.is_empty() {
                m.violations.push(format!(
                    "heap {hid}: shutdown() left alive nodes that nothing outside it held: \
                     {left:?}"
                ));
            }
        });
    }
    release_heap(hid, heap, &[]);
}

/// A random weak reference the world holds, cloned.
fn some_world_weak() -> Option<(u32, Weak<Node>)> {
    world(|w| {
        let ws = w.weaks.borrow();
        (!ws.is_empty()).then(|| ws[rnd(ws.len())].clone())
    })
}

/// Reads (and perhaps changes) the node a weak reference's payload holds: one the world holds,
/// or one a node holds.
fn op_payload_use(cx: &mut Cx) {
    let (wid, weak, holder) = if chance(50) {
        let Some((wid, weak)) = some_world_weak() else {
            return;
        };
        (wid, weak, None)
    } else {
        let Some((h, th)) = pick_live(cx) else { return };
        let got = {
            let ws = h.weaks.borrow();
            (!ws.is_empty()).then(|| ws[rnd(ws.len())].clone())
        };
        let Some((wid, weak)) = got else {
            drop_handles("dropping a handle", (h, th));
            return;
        };
        let hid = id_of(&h);
        drop_handles("dropping a handle", (h, th));
        (wid, weak, hid)
    };
    let expected = model(|m| m.weaks.get(&wid).map(|w| (w.kind, w.payload)));
    let Some((kind, payload_id)) = expected else {
        drop_handles("dropping a weak reference", weak);
        return;
    };
    let has_payload = matches!(kind, 3 | 4);
    stat(|| format!("payload read (referent alive: {})", weak.is_alive()));
    match weak.payload::<Pay>() {
        None if has_payload => violation(format!("weak {wid}'s payload is gone")),
        Some(_) if !has_payload => violation(format!("weak {wid} has a payload it was not given")),
        None => {}
        Some(p) => {
            if p.wid != wid {
                violation(format!("weak {wid}'s payload is weak {}'s", p.wid));
            }
            let s = p.slot.replace(Slot(None));
            let now = s.0.as_ref().and_then(id_of);
            if now != payload_id {
                violation(format!(
                    "weak {wid}'s payload holds node {now:?}, the model says {payload_id:?}"
                ));
            }
            p.slot.set(s);
            // Under Miri a node-held weak reference's payload holds no node (see `op_weak_new`).
            if chance(40) && !(holder.is_some() && cfg!(miri)) {
                let new = if chance(70) { pick(cx) } else { None };
                let new_id = new.as_ref().and_then(|(g, _)| id_of(g));
                if let Some((g, t)) = &new {
                    stored(g, *t);
                }
                log(|| format!("weak {wid}'s payload := {new_id:?}"));
                let old = p.slot.replace(Slot(new.map(|(g, _)| g)));
                model(|m| {
                    if let Some(meta) = m.weaks.get_mut(&wid) {
                        meta.payload = new_id;
                    }
                    if let Some(h) = holder {
                        match new_id {
                            Some(n) => m.node_weak_payloads.insert(wid, (h, n)),
                            None => m.node_weak_payloads.remove(&wid),
                        };
                    }
                });
                drop_handles("dropping a payload's old node", old);
            }
        }
    }
    if weak.payload::<CbState>().is_some() || weak.payload::<u32>().is_some() {
        violation(format!("weak {wid}'s payload reads as another type"));
    }
    drop_handles("dropping a weak reference", weak);
}

/// Reads a weak reference's callback state (`__callback__`) and flags.
fn op_weak_inspect() {
    let Some((wid, weak)) = some_world_weak() else {
        return;
    };
    let Some((kind, fired, state, exempt)) = model(|m| {
        m.weaks
            .get(&wid)
            .map(|w| (w.kind, w.fired, w.state, w.exempt))
    }) else {
        drop_handles("dropping a weak reference", weak);
        return;
    };
    let st = api("Weak::callback_state", || weak.callback_state::<CbState>());
    let has = weak.has_callback();
    stat(|| {
        format!(
            "callback_state read (kind {kind}, fired {}): {}",
            fired.min(1),
            st.as_ref().is_some_and(Option::is_some)
        )
    });
    match st.flatten() {
        Some(st) => {
            let now = st.slot.0.as_ref().and_then(id_of);
            if !matches!(kind, 4 | 5) || fired > 0 || st.id != wid || now != state {
                violation(format!(
                    "weak {wid} (kind {kind}, fired {fired}) hands out callback state of {} \
                     holding {now:?}",
                    st.id
                ));
            }
            if let Some(g) = &st.slot.0 {
                vet("Weak::callback_state", g, exempt || taint_of(g, false));
            }
            drop_handles("dropping a callback state", st);
        }
        None => {
            // Pending (it has its callback): the state is there.
            if matches!(kind, 4 | 5) && has {
                violation(format!(
                    "weak {wid} has its callback, but callback_state is None"
                ));
            }
        }
    }
    if has && fired > 0 {
        violation(format!("weak {wid}'s callback ran, but it still has one"));
    }
    if matches!(kind, 0 | 3) && has {
        violation(format!("weak {wid} without a callback has one"));
    }
    let _ = Weak::as_ptr(&weak);
    drop_handles("dropping a weak reference", weak);
}

/// A weak reference to the weak-reference object of `inner` (weak `wid`, if the world knows it),
/// held by the world: plain, or with an untraced callback.
fn new_wweak(wid: Option<u32>, inner: &Weak<Node>) {
    let Some(obj) = api("Weak::as_object", || Weak::as_object(inner)) else {
        return;
    };
    if Gc::as_ptr(&obj) != Weak::as_ptr(inner) {
        violation("Weak::as_object is not the weak reference's object".to_string());
    }
    let wwid = model(|m| {
        let wwid = m.next_wwid;
        m.next_wwid += 1;
        m.wweaks.insert(
            wwid,
            WwMeta {
                inner: wid,
                addr: Gc::as_ptr(&obj).addr(),
                fired: 0,
            },
        );
        wwid
    });
    log(|| format!("weak-to-weak {wwid} -> weak {wid:?}"));
    let ww = api("making a weak reference to a weak reference", || {
        if chance(50) {
            Weak::new(&obj)
        } else {
            Weak::with_untraced_callback(&obj, move |ww: &Weak<WeakRefObj>| {
                on_wweak_callback(wwid, ww)
            })
        }
    });
    if let Some(ww) = ww {
        if !ww.is_alive() {
            violation(format!("weak-to-weak {wwid} is dead at once"));
        }
        world(|w| w.wweaks.borrow_mut().push((wwid, ww)));
    }
    drop_handles("dropping a weak-reference object", obj);
}

/// Weak-reference objects as values (`Weak::as_object`) and weak references to them.
fn op_weak_obj() {
    match rnd(5) {
        0 => {
            let Some((wid, weak)) = some_world_weak() else {
                return;
            };
            if let Some(obj) = api("Weak::as_object", || Weak::as_object(&weak)) {
                log(|| format!("keep the object of weak {wid}"));
                model(|m| {
                    if let Some(meta) = m.weaks.get_mut(&wid) {
                        meta.objs_held += 1;
                    }
                });
                world(|w| w.wobjs.borrow_mut().push((wid, obj)));
            }
            drop_handles("dropping a weak reference", weak);
        }
        1 => {
            let Some((wid, weak)) = some_world_weak() else {
                return;
            };
            new_wweak(Some(wid), &weak);
            drop_handles("dropping a weak reference", weak);
        }
        2 => {
            let got = world(|w| {
                let ws = w.wweaks.borrow();
                (!ws.is_empty()).then(|| ws[rnd(ws.len())].clone())
            });
            let Some((wwid, ww)) = got else { return };
            if let Some(Some(obj)) = api("Weak::upgrade", || ww.upgrade()) {
                let (expected, inner) =
                    model(|m| m.wweaks.get(&wwid).map_or((0, None), |x| (x.addr, x.inner)));
                if Gc::as_ptr(&obj).addr() != expected {
                    violation(format!(
                        "weak-to-weak {wwid} upgrades to another weak-reference object"
                    ));
                }
                match inner {
                    Some(wid) if chance(30) => {
                        model(|m| {
                            if let Some(meta) = m.weaks.get_mut(&wid) {
                                meta.objs_held += 1;
                            }
                        });
                        world(|w| w.wobjs.borrow_mut().push((wid, obj)));
                    }
                    _ => drop_handles("dropping a weak-reference object", obj),
                }
            }
            drop_handles("dropping a weak reference", ww);
        }
        3 => {
            let got = world(|w| {
                let mut os = w.wobjs.borrow_mut();
                (!os.is_empty()).then(|| {
                    let i = rnd(os.len());
                    os.swap_remove(i)
                })
            });
            if let Some((wid, obj)) = got {
                model(|m| {
                    if let Some(meta) = m.weaks.get_mut(&wid) {
                        meta.objs_held -= 1;
                    }
                });
                log(|| format!("drop the object of weak {wid}"));
                drop_handles("dropping a weak-reference object", obj);
            }
        }
        _ => {
            let got = world(|w| {
                let mut ws = w.wweaks.borrow_mut();
                (!ws.is_empty()).then(|| {
                    let i = rnd(ws.len());
                    ws.swap_remove(i)
                })
            });
            if let Some((wwid, ww)) = got {
                log(|| format!("drop weak-to-weak {wwid}"));
                drop_handles("dropping a weak reference", ww);
            }
        }
    }
}

/// Weak proxies: callback-less ones are shared while one lives.
fn op_proxy(cx: &mut Cx) {
    match rnd(5) {
        0 | 1 => {
            let Some((a, ta)) = pick_live(cx) else { return };
            let Some(target) = id_of(&a) else {
                drop_handles("dropping a handle", (a, ta));
                return;
            };
            let with_cb = chance(30);
            let state = if with_cb && chance(60) {
                pick(cx)
            } else {
                None
            };
            let state_id = state.as_ref().and_then(|(g, _)| id_of(g));
            if let Some((g, t)) = &state {
                stored(g, *t);
            }
            // The callback-less proxies to the target that are alive now: a new one is one of
            // them.
            let shared: Vec<Rc<WeakProxy<Node>>> = world(|w| {
                w.proxies
                    .borrow()
                    .iter()
                    .filter(|(pid, p)| {
                        p.is_alive()
                            && model(|m| {
                                m.proxies
                                    .get(pid)
                                    .is_some_and(|x| x.target == target && !x.callback)
                            })
                    })
                    .map(|(_, p)| p.clone())
                    .collect()
            });
            let pid = model(|m| {
                let pid = m.next_pid;
                m.next_pid += 1;
                m.proxies.insert(
                    pid,
                    ProxyMeta {
                        target,
                        exempt: taint_of_model(m, target, ta),
                        callback: with_cb,
                        held: true,
                        fired: 0,
                        state: state_id,
                    },
                );
                pid
            });
            log(|| format!("proxy {pid} -> {target} (callback: {with_cb}, state {state_id:?})"));
            let p = api("making a proxy", || {
                if with_cb {
                    WeakProxy::with_callback(
                        &a,
                        CbState {
                            id: pid,
                            slot: Slot(state.map(|(g, _)| g)),
                        },
                        |s: &CbState, w: &Weak<Node>| on_proxy_callback(s.id, w, s.slot.0.clone()),
                    )
                } else {
                    WeakProxy::new(&a)
                }
            });
            if let Some(p) = p {
                if !WeakProxy::is_proxy(p.weak()) {
                    violation(format!("proxy {pid} is not a proxy"));
                }
                let same = shared.iter().any(|q| q.weak().ptr_eq(p.weak()));
                if same {
                    stat(|| "proxy shared".to_string());
                }
                if with_cb == same && (with_cb || !shared.is_empty()) {
                    violation(format!(
                        "proxy {pid} (callback: {with_cb}) is shared: {same}, though {} \
                         callback-less proxies to node {target} are alive",
                        shared.len()
                    ));
                }
                world(|w| w.proxies.borrow_mut().push((pid, Rc::new(p))));
            } else {
                model(|m| {
                    if let Some(x) = m.proxies.get_mut(&pid) {
                        x.held = false;
                    }
                });
            }
            drop_handles("dropping proxies", shared);
            drop_handles("dropping a handle", (a, ta));
        }
        2 | 3 => {
            let got = world(|w| {
                let ps = w.proxies.borrow();
                (!ps.is_empty()).then(|| {
                    let (pid, p) = &ps[rnd(ps.len())];
                    (*pid, p.clone())
                })
            });
            let Some((pid, p)) = got else { return };
            let (target, exempt) = model(|m| {
                m.proxies
                    .get(&pid)
                    .map_or((u32::MAX, true), |x| (x.target, x.exempt))
            });
            if chance(50) {
                let read = api("WeakProxy::with", || p.with(|n| (n.magic, n.id)));
                if let Some(Ok((magic, id))) = read {
                    let dead = model(|m| m.dropped.contains(&target));
                    if magic != MAGIC || id != target || (dead && !exempt) {
                        violation(format!(
                            "proxy {pid} to node {target} reads node {id} (magic {magic:#x})"
                        ));
                    }
                }
            } else if let Some(Ok(g)) = api("WeakProxy::get", || p.get()) {
                if id_of(&g) != Some(target) {
                    violation(format!("proxy {pid} to node {target} gets another node"));
                }
                vet("WeakProxy::get", &g, exempt);
                if chance(30) {
                    let t = taint_of(&g, exempt);
                    stored(&g, t);
                    world(|w| w.roots.borrow_mut().push(g));
                } else {
                    drop_handles("dropping a handle", g);
                }
            }
            drop_handles("dropping a proxy", p);
        }
        _ => {
            let got = world(|w| {
                let mut ps = w.proxies.borrow_mut();
                (!ps.is_empty()).then(|| {
                    let i = rnd(ps.len());
                    ps.swap_remove(i)
                })
            });
            if let Some((pid, p)) = got {
                model(|m| {
                    if let Some(x) = m.proxies.get_mut(&pid) {
                        x.held = false;
                    }
                });
                log(|| format!("drop proxy {pid}"));
                drop_handles("dropping a proxy", p);
            }
        }
    }
}

/// Weak methods over a receiver and a function value (both nodes).
fn op_method(cx: &mut Cx) {
    match rnd(4) {
        0 | 1 => {
            let Some((r, tr)) = pick_live(cx) else { return };
            let Some((f, tf)) = pick_live(cx) else {
                drop_handles("dropping a handle", (r, tr));
                return;
            };
            let (Some(rid), Some(fid)) = (id_of(&r), id_of(&f)) else {
                drop_handles("dropping handles", ((r, tr), (f, tf)));
                return;
            };
            let with_cb = chance(60);
            let state = if with_cb && chance(60) {
                pick(cx)
            } else {
                None
            };
            let state_id = state.as_ref().and_then(|(g, _)| id_of(g));
            if let Some((g, t)) = &state {
                stored(g, *t);
            }
            let mid = model(|m| {
                let mid = m.next_mid;
                m.next_mid += 1;
                m.methods.insert(
                    mid,
                    MethodMeta {
                        receiver: rid,
                        func: fid,
                        exempt: taint_of_model(m, rid, tr) || taint_of_model(m, fid, tf),
                        callback: with_cb,
                        held: true,
                        fired: 0,
                        state: state_id,
                    },
                );
                mid
            });
            log(|| format!("weak method {mid}: {rid}.{fid} (callback: {with_cb})"));
            let made = api("making a weak method", || {
                if with_cb {
                    WeakMethod::with_callback(
                        &r,
                        &f,
                        MState {
                            mid,
                            slot: Slot(state.map(|(g, _)| g)),
                        },
                        |s: &MState| on_method_callback(s.mid, s.slot.0.clone()),
                    )
                } else {
                    WeakMethod::new(&r, &f)
                }
            });
            match made {
                Some(wm) => world(|w| w.methods.borrow_mut().push((mid, wm))),
                None => model(|m| {
                    if let Some(x) = m.methods.get_mut(&mid) {
                        x.held = false;
                    }
                }),
            }
            drop_handles("dropping handles", ((r, tr), (f, tf)));
        }
        2 => {
            let got = world(|w| {
                let ms = w.methods.borrow();
                (!ms.is_empty()).then(|| {
                    let (mid, wm) = &ms[rnd(ms.len())];
                    (*mid, wm.receiver().clone(), wm.func().clone())
                })
            });
            let Some((mid, rw, fw)) = got else { return };
            let (rid, fid, exempt) = model(|m| {
                m.methods.get(&mid).map_or((u32::MAX, u32::MAX, true), |x| {
                    (x.receiver, x.func, x.exempt)
                })
            });
            let up = api("WeakMethod::upgrade", || {
                Some((rw.upgrade()?, fw.upgrade()?))
            });
            if let Some(Some((r, f))) = up {
                if id_of(&r) != Some(rid) || id_of(&f) != Some(fid) {
                    violation(format!("weak method {mid} upgrades to other nodes"));
                }
                vet("WeakMethod::upgrade", &r, exempt);
                vet("WeakMethod::upgrade", &f, exempt);
                drop_handles("dropping handles", (r, f));
            }
            drop_handles("dropping weak references", (rw, fw));
        }
        _ => {
            let got = world(|w| {
                let mut ms = w.methods.borrow_mut();
                (!ms.is_empty()).then(|| {
                    let i = rnd(ms.len());
                    ms.swap_remove(i)
                })
            });
            if let Some((mid, wm)) = got {
                model(|m| {
                    if let Some(x) = m.methods.get_mut(&mid) {
                        x.held = false;
                    }
                });
                log(|| format!("drop weak method {mid}"));
                drop_handles("dropping a weak method", wm);
            }
        }
    }
}

/// A node's `me` (from `alloc_cyclic`), used later: it leads back to the node.
fn op_me_check(cx: &mut Cx) {
    if let Some((g, t)) = pick_live(cx) {
        check_me(&g, "later");
        drop_handles("dropping a handle", (g, t));
    }
}

// ---------------------------------------------------------------------------------------------
// Checks.

#[derive(Default)]
struct Reach {
    /// By id: the strong count of each node reached.
    strong: Vec<Option<usize>>,
    per_heap: BTreeMap<u32, usize>,
}

/// Walks what the program can reach from `g`, without cloning a handle (so without touching
/// counts or running user code), comparing every intact node with the model.
fn visit(g: &Gc<Node>, m: &Model, st: &mut Reach, v: &mut Vec<String>) {
    let Some(&id) = m.addr.get(&addr(g)) else {
        v.push("a reachable handle leads to no node the test made".to_string());
        return;
    };
    let i = id as usize;
    if st.strong.len() <= i {
        st.strong.resize(i + 1, None);
    }
    if st.strong[i].is_some() {
        return;
    }
    st.strong[i] = Some(Gc::strong_count(g));
    *st.per_heap.entry(m.nodes[&id].hid).or_default() += 1;
    if m.dropped.contains(&id) {
        if !m.maybe_zombie.contains(&id) {
            v.push(format!(
                "node {id} is reachable, but its value was dropped (no Drop stored it)"
            ));
        }
        return;
    }
    let n: &Node = g;
    if n.magic != MAGIC || n.id != id || n.key != m.nodes[&id].key {
        v.push(format!(
            "node {id} reads corrupt (magic {:#x}, id {}, key {})",
            n.magic, n.id, n.key
        ));
        return;
    }
    let id_at = |e: &Gc<Node>| m.addr.get(&addr(e)).copied().unwrap_or(u32::MAX);
    let edges = n.edges.borrow();
    let expected = m.edges.get(&id).map_or(&[][..], |e| &e[..]);
    if edges.len() != expected.len() || edges.iter().zip(expected).any(|(e, &x)| id_at(e) != x) {
        let real: Vec<u32> = edges.iter().map(id_at).collect();
        v.push(format!(
            "node {id}'s edges are {real:?}, the model says {expected:?}"
        ));
    }
    for e in edges.iter() {
        visit(e, m, st, v);
    }
    drop(edges);
    let expected = m.slots.get(&id).map_or(&[][..], |e| &e[..]);
    let slots = n.slots.borrow();
    let mut same = expected.len() == slots.len() + 1;
    for (k, c) in std::iter::once(&n.cell).chain(slots.iter()).enumerate() {
        let s = c.replace(Slot(None));
        same &= expected.get(k) == Some(&s.0.as_ref().map(id_at));
        if let Some(e) = &s.0 {
            visit(e, m, st, v);
        }
        c.set(s);
    }
    if !same {
        let real: Vec<Option<u32>> = std::iter::once(&n.cell)
            .chain(slots.iter())
            .map(|c| {
                let s = c.replace(Slot(None));
                let r = s.0.as_ref().map(id_at);
                c.set(s);
                r
            })
            .collect();
        v.push(format!(
            "node {id}'s slots are {real:?}, the model says {expected:?}"
        ));
    }
}

/// Model in-degree of every node, by id: roots, and edges and slots of nodes whose value is
/// intact.
fn in_degrees(m: &Model, roots: &[Gc<Node>]) -> Vec<usize> {
    let mut deg = vec![0; m.next_id as usize];
    let mut add = |id: u32| {
        if let Some(d) = deg.get_mut(id as usize) {
            *d += 1;
        }
    };
    for r in roots {
        if let Some(&id) = m.addr.get(&addr(r)) {
            add(id);
        }
    }
    for (id, es) in m.edges.iter() {
        if !m.dropped.contains(&id) {
            es.iter().for_each(|&e| add(e));
        }
    }
    for (id, ss) in m.slots.iter() {
        if !m.dropped.contains(&id) {
            ss.iter().flatten().for_each(|&e| add(e));
        }
    }
    deg
}

/// The checks after a driver step. No user code runs here.
fn check() -> Vec<String> {
    let mut v = Vec::new();
    W.with(|w| {
        let m = w.model.borrow();
        if !w.frames.borrow().is_empty() || !w.inflight.borrow().is_empty() {
            v.push("hook frames left on the stack at the top level".to_string());
        }
        let roots = w.roots.borrow();
        let mut st = Reach::default();
        for r in roots.iter() {
            visit(r, &m, &mut st, &mut v);
        }
        let seen: Vec<u32> = (0..st.strong.len() as u32)
            .filter(|&i| st.strong[i as usize].is_some())
            .collect();
        let zombies = seen.iter().filter(|id| m.dropped.contains(id)).count();
        stat(|| format!("reachable nodes after a step: {:>3}+", seen.len() / 10 * 10));
        if zombies > 0 {
            stat(|| "steps with a reachable zombie".to_string());
        }
        let deg = in_degrees(&m, &roots);
        for &id in &seen {
            let strong = st.strong[id as usize].unwrap_or(0);
            let d = deg.get(id as usize).copied().unwrap_or(0);
            if strong < d {
                v.push(format!(
                    "node {id} has strong count {strong}, but {d} handles to it exist"
                ));
            }
        }
        for (hid, heap) in w.heaps.borrow().iter().flatten() {
            let live = heap.live_objects();
            let reachable = st.per_heap.get(hid).copied().unwrap_or(0);
            if live < reachable {
                v.push(format!(
                    "heap {hid}: {live} live objects, but {reachable} of its nodes are reachable"
                ));
            }
            let (a, f) = (heap.allocated_objects(), heap.freed_objects());
            if a.checked_sub(f) != Some(live as u64) {
                v.push(format!(
                    "heap {hid}: {a} allocated - {f} freed != {live} live objects"
                ));
            }
            if m.heaps.get(hid).is_some_and(|h| h.collecting) {
                v.push(format!(
                    "heap {hid}: a collection is still marked running at the top level"
                ));
            }
        }
        for (wid, weak) in w.weaks.borrow().iter() {
            let meta = &m.weaks[wid];
            if meta.exempt || !m.dropped.contains(&meta.target) {
                continue;
            }
            if weak.is_alive() {
                v.push(format!(
                    "weak {wid} reads alive, but node {}'s value was dropped",
                    meta.target
                ));
            }
            if meta.callback && meta.fired == 0 {
                v.push(format!(
                    "node {} died while weak {wid} was held, but its callback never ran",
                    meta.target
                ));
            }
        }
        for (wid, weak) in w.weaks.borrow().iter() {
            let meta = &m.weaks[wid];
            // A payload outlives the referent; a callback that ran is gone.
            if matches!(meta.kind, 3 | 4) && weak.payload::<Pay>().is_none_or(|p| p.wid != *wid) {
                v.push(format!("weak {wid}'s payload is gone"));
            }
            if meta.fired > 0 && weak.has_callback() {
                v.push(format!("weak {wid}'s callback ran, but it still has one"));
            }
        }
        for id in (0..m.cleared.0.len() as u32).filter(|id| m.cleared.contains(id)) {
            if !m.dropped.contains(&id) {
                v.push(format!(
                    "node {id}'s clear hook ran, but its value was not dropped"
                ));
            }
        }
        for (wwid, ww) in w.wweaks.borrow().iter() {
            let meta = &m.wweaks[wwid];
            // The world holding the weak reference (or its object) keeps the object alive.
            let held = meta
                .inner
                .and_then(|i| m.weaks.get(&i))
                .is_some_and(|i| (i.held && !i.in_node) || i.objs_held > 0);
            if held && !ww.is_alive() {
                v.push(format!(
                    "weak-to-weak {wwid} reads dead, but the world holds its weak reference"
                ));
            }
        }
        for (pid, p) in w.proxies.borrow().iter() {
            let meta = &m.proxies[pid];
            if !WeakProxy::is_proxy(p.weak()) {
                v.push(format!("proxy {pid} is not a proxy"));
            }
            if meta.exempt || !m.dropped.contains(&meta.target) {
                continue;
            }
            if p.is_alive() {
                v.push(format!(
                    "proxy {pid} reads alive, but node {}'s value was dropped",
                    meta.target
                ));
            }
            if meta.callback && meta.fired == 0 {
                v.push(format!(
                    "node {} died while proxy {pid} was held, but its callback never ran",
                    meta.target
                ));
            }
        }
        for (mid, wm) in w.methods.borrow().iter() {
            let meta = &m.methods[mid];
            let dead = m.dropped.contains(&meta.receiver) || m.dropped.contains(&meta.func);
            if meta.exempt || !dead {
                continue;
            }
            if wm.is_alive() {
                v.push(format!(
                    "weak method {mid} reads alive, but its receiver or function was dropped"
                ));
            }
            if meta.callback && meta.fired == 0 {
                v.push(format!(
                    "weak method {mid}'s receiver or function died while it was held, but its \
                     callback never ran"
                ));
            }
        }
        if m.expected_reports != m.actual_reports {
            v.push(format!(
                "{} panics were caught by the runtime, {} reports reached the unraisable hooks",
                m.expected_reports, m.actual_reports
            ));
        }
    });
    log_violations();
    model(|m| {
        v.append(&mut m.violations);
        m.logged_violations = 0;
    });
    v
}

/// Ids of the nodes reachable, in the model, from `from` (following edges and slots of nodes
/// whose value is intact).
fn model_closure(m: &Model, from: impl IntoIterator<Item = u32>) -> BTreeSet<u32> {
    let mut seen = BTreeSet::new();
    let mut stack: Vec<u32> = from.into_iter().collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) || m.dropped.contains(&id) {
            continue;
        }
        stack.extend(successors(m, id));
    }
    seen
}

/// What node `id` holds, in the model: edges, slots, and the states of the pending weak
/// callbacks of the weak references it holds.
fn successors(m: &Model, id: u32) -> Vec<u32> {
    let mut out: Vec<u32> = m.edges.get(&id).into_iter().flatten().copied().collect();
    out.extend(m.slots.get(&id).into_iter().flatten().flatten().copied());
    out.extend(
        m.node_weak_states
            .values()
            .chain(m.node_weak_payloads.values())
            .filter(|&&(holder, _)| holder == id)
            .map(|&(_, held)| held),
    );
    out
}

/// The nodes held from outside heap `hid`: reachable from the roots, the handles the driver
/// holds, other heaps' live nodes, or the states of pending weak callbacks.
fn held_from_outside(hid: u32, held: &[u32]) -> BTreeSet<u32> {
    let roots: Vec<usize> = world(|w| w.roots.borrow().iter().map(addr).collect());
    let driver: Vec<u32> = world(|w| w.driver_held.borrow().clone());
    model(|m| {
        let mut from: Vec<u32> = roots
            .iter()
            .filter_map(|a| m.addr.get(a).copied())
            .collect();
        from.extend_from_slice(held);
        from.extend(driver);
        for (id, meta) in m.nodes.iter() {
            if meta.hid != hid && !m.dropped.contains(&id) {
                from.push(id);
            }
        }
        for meta in m.weaks.values() {
            // The weak-reference object holds its payload, and its state while its callback
            // is pending.
            let alive = meta.held || meta.objs_held > 0;
            if alive && meta.fired == 0 {
                from.extend(meta.state);
            }
            if alive {
                from.extend(meta.payload);
            }
        }
        for meta in m.proxies.values() {
            if meta.held && meta.fired == 0 {
                from.extend(meta.state);
            }
        }
        for meta in m.methods.values() {
            if meta.held {
                from.extend(meta.state);
            }
        }
        model_closure(m, from)
    })
}

// ---------------------------------------------------------------------------------------------
// A case.

/// Handles of every reachable node whose value is intact, each with its taint.
fn driver_pool() -> Vec<Handle> {
    let mut out: Vec<Handle> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stack: Vec<Gc<Node>> = world(|w| w.roots.borrow().clone());
    while let Some(g) = stack.pop() {
        let Some(id) = id_of(&g) else { continue };
        let (dead, tainted) = model(|m| (m.dropped.contains(&id), m.maybe_zombie.contains(&id)));
        if !seen.insert(id) || dead {
            continue;
        }
        stack.extend(g.edges.borrow().iter().cloned());
        let s = g.cell.replace(Slot(None));
        stack.extend(s.0.clone());
        g.cell.set(s);
        for c in g.slots.borrow().iter() {
            let s = c.replace(Slot(None));
            stack.extend(s.0.clone());
            c.set(s);
        }
        if world(|w| w.track_all.get()) {
            track(&g, id);
        }
        out.push((g, tainted));
    }
    out
}

/// Runs `f` as one driver step: a panic reaching here escaped the runtime.
fn guarded(what: &str, f: impl FnOnce()) {
    if let Err(p) = catch_unwind(AssertUnwindSafe(f)) {
        let msg = payload_msg(&*p);
        if !msg.contains(ZOMBIE) {
            violation(format!("a panic reached the driver in {what}: {msg}"));
        }
        drop_payload(p);
    }
}

fn step() {
    world(|w| w.budget.set(w.hook_budget.get()));
    guarded("a step", || {
        let pool = driver_pool();
        let ids: Vec<u32> = pool.iter().filter_map(|(g, _)| id_of(g)).collect();
        world(|w| *w.driver_held.borrow_mut() = ids);
        let mut cx = Cx { hook: false, pool };
        do_op(&mut cx);
        // Out of the books first: from here on the driver's handles go, one by one.
        world(|w| w.driver_held.borrow_mut().clear());
        drop_handles(
            "dropping the driver's handles",
            std::mem::take(&mut cx.pool),
        );
    });
    world(|w| w.driver_held.borrow_mut().clear());
}

/// Takes everything out of the world and drops it (roots first, then weak references,
/// registrations, maps, then the heaps).
fn drain_world() {
    guarded("teardown", || {
        loop {
            let r = world(|w| w.roots.borrow_mut().pop());
            match r {
                Some(r) => drop_handles("dropping a root", r),
                None => break,
            }
        }
        // One by one: dropping one may kill the referent of another, still held.
        loop {
            let weak = world(|w| w.weaks.borrow_mut().pop());
            let Some((wid, weak)) = weak else { break };
            drop_weak(wid, weak);
        }
        loop {
            let p = world(|w| w.proxies.borrow_mut().pop());
            let Some((pid, p)) = p else { break };
            model(|m| {
                if let Some(x) = m.proxies.get_mut(&pid) {
                    x.held = false;
                }
            });
            drop_handles("dropping a proxy", p);
        }
        loop {
            let wm = world(|w| w.methods.borrow_mut().pop());
            let Some((mid, wm)) = wm else { break };
            model(|m| {
                if let Some(x) = m.methods.get_mut(&mid) {
                    x.held = false;
                }
            });
            drop_handles("dropping a weak method", wm);
        }
        loop {
            let o = world(|w| w.wobjs.borrow_mut().pop());
            let Some((wid, o)) = o else { break };
            model(|m| {
                if let Some(meta) = m.weaks.get_mut(&wid) {
                    meta.objs_held -= 1;
                }
            });
            drop_handles("dropping a weak-reference object", o);
        }
        let wweaks = world(|w| std::mem::take(&mut *w.wweaks.borrow_mut()));
        drop_handles("dropping weak references to weak references", wweaks);
        let fins = world(|w| std::mem::take(&mut *w.fins.borrow_mut()));
        drop_handles("dropping Finalizers", fins);
        let maps = world(|w| std::mem::take(&mut *w.maps.borrow_mut()));
        drop_handles("dropping a map", maps);
        let sets = world(|w| std::mem::take(&mut *w.sets.borrow_mut()));
        drop_handles("dropping a set", sets);
        let vmaps = world(|w| std::mem::take(&mut *w.vmaps.borrow_mut()));
        drop_handles("dropping a value map", vmaps);
        for slot in 0..SLOTS {
            let h = world(|w| w.heaps.borrow_mut()[slot].take());
            if let Some((hid, h)) = h {
                release_heap(hid, h, &[]);
            }
        }
    });
}

fn world_is_empty() -> bool {
    world(|w| {
        w.roots.borrow().is_empty()
            && w.weaks.borrow().is_empty()
            && w.fins.borrow().is_empty()
            && w.maps.borrow().is_empty()
            && w.sets.borrow().is_empty()
            && w.vmaps.borrow().is_empty()
            && w.wobjs.borrow().is_empty()
            && w.wweaks.borrow().is_empty()
            && w.proxies.borrow().is_empty()
            && w.methods.borrow().is_empty()
            && w.heaps.borrow().iter().all(Option::is_none)
    })
}

/// Nodes left alive that may legitimately stay: those on, or reachable from, a cycle of the
/// model's graph (no live heap is left to collect it: it spans heaps, or its heap shut down
/// before it became garbage; shutdowns at the top level were checked when they happened).
fn excused_leftovers(m: &Model) -> BTreeSet<u32> {
    let alive: Vec<u32> = m
        .nodes
        .keys()
        .filter(|id| !m.dropped.contains(id))
        .collect();
    let mut cyclic = Vec::new();
    for &id in &alive {
        if model_closure(m, successors(m, id)).contains(&id) {
            cyclic.push(id);
        }
    }
    model_closure(m, cyclic)
}

struct Outcome {
    violations: Vec<String>,
    step: String,
    log: Vec<String>,
}

fn failed(step: String) -> Result<(), Outcome> {
    let violations = model(|m| std::mem::take(&mut m.violations));
    abandon_world();
    Err(Outcome {
        violations,
        step,
        log: model(|m| std::mem::take(&mut m.log)),
    })
}

/// A case's setup and steps, each checked; the world is left full.
fn run_steps(seed: u64, steps: usize, logging: bool) -> Result<(), Outcome> {
    let seed_state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    world(|w| {
        w.rng.set(seed_state);
        *w.model.borrow_mut() = Model {
            logging,
            ..Model::default()
        };
        let track_all = match w.force_track_all.get() {
            Some(t) => t,
            None => cfg!(miri) || seed_state & 2 == 0,
        };
        w.track_all.set(track_all);
        w.maps.borrow_mut().push(Rc::new(WeakKeyMap::new()));
        w.sets.borrow_mut().push(Rc::new(WeakSet::new()));
        w.vmaps.borrow_mut().push(Rc::new(WeakValueMap::new()));
    });
    for slot in 0..SLOTS {
        if let Some((hid, h)) = new_heap(slot) {
            release_heap(hid, h, &[]);
        }
    }
    for s in 0..steps {
        log(|| format!("-- step {s}"));
        step();
        let v = check();
        if !v.is_empty() {
            model(|m| m.violations = v);
            return failed(format!("step {s}"));
        }
    }
    Ok(())
}

/// The case's steps on a thread of its own, which then exits with everything still in its
/// thread-local world: that world is destroyed after reap's own thread-local registry (it was
/// made first), so the runtime sees handles and heaps dropped at thread exit, hooks that can no
/// longer reach the world, and must neither abort nor let a panic out (issue 8, point 8).
fn run_case_on_exiting_thread(seed: u64, steps: usize, logging: bool) -> Result<(), Outcome> {
    let (budget, force) = world(|w| (w.hook_budget.get(), w.force_track_all.get()));
    let thread = std::thread::spawn(move || {
        QUIET.with(|q| q.set(Some(seed)));
        world(|w| {
            w.hook_budget.set(budget);
            w.force_track_all.set(force);
        });
        run_steps(seed, steps, logging)
    });
    match thread.join() {
        Ok(r) => r,
        Err(p) => {
            let msg = payload_msg(&*p);
            drop_payload(p);
            Err(Outcome {
                violations: vec![format!("the case's thread panicked: {msg}")],
                step: "thread exit".to_string(),
                log: Vec::new(),
            })
        }
    }
}

fn run_case(seed: u64, steps: usize, logging: bool) -> Result<(), Outcome> {
    if !cfg!(miri) && seed % 64 == 7 {
        return run_case_on_exiting_thread(seed, steps, logging);
    }
    run_steps(seed, steps, logging)?;

    // Teardown, hooks still active: roots, weak references, registrations, maps, heaps.
    log(|| "-- teardown".to_string());
    world(|w| w.budget.set(w.hook_budget.get()));
    drain_world();
    let mut v = check();
    // Whatever the hooks made meanwhile, with hooks now inert.
    for _ in 0..8 {
        if world_is_empty() {
            break;
        }
        world(|w| w.budget.set(0));
        drain_world();
    }
    if !world_is_empty() {
        v.push("the world does not empty at teardown".to_string());
    }
    v.extend(check());
    model(|m| {
        let excused = excused_leftovers(m);
        for id in m.nodes.keys() {
            if !m.dropped.contains(&id) && !excused.contains(&id) {
                v.push(format!("node {id} was never dropped"));
            }
        }
    });
    if world(|w| w.track_all.get()) {
        // Break every edge still there; then everything must go.
        world(|w| w.budget.set(0));
        guarded("breaking every edge", break_all_edges);
        model(|m| {
            // The only nodes the test cannot reach are those a collection found garbage (clearing
            // their weak references) that were then resurrected through a node's weak-callback
            // state, which the test cannot walk: they may stay if still on a cycle.
            let excused = excused_leftovers(m);
            for id in m.nodes.keys() {
                if !m.dropped.contains(&id) && !excused.contains(&id) {
                    v.push(format!(
                        "node {id} is still alive after every edge and handle was dropped"
                    ));
                }
            }
        });
        v.extend(check());
    }
    model(|m| {
        // A registration runs at its heap's shutdown at the latest, or when its object dies if
        // made after that: only one on an object left on an unfreeable cycle may not have run.
        let excused = excused_leftovers(m);
        for (fid, f) in &m.fins {
            // With `atexit` off, a shutdown releases it without running it.
            let released = f.released || f.atexit_off;
            if f.ran == 0 && !f.detached && !f.exempt && !released && !excused.contains(&f.target) {
                v.push(format!(
                    "finalize registration {fid} (node {}) never ran",
                    f.target
                ));
            }
        }
    });
    if !v.is_empty() {
        model(|m| m.violations = v);
        return failed("teardown".to_string());
    }
    model(|m| *m = Model::default());
    Ok(())
}

/// Upgrades the weak reference kept to every node and takes every edge and slot out.
fn break_all_edges() {
    let all = world(|w| std::mem::take(&mut *w.all.borrow_mut()));
    for (&id, weak) in &all {
        let Some(Some(n)) = api("Weak::upgrade", || weak.upgrade()) else {
            if !model(|m| m.dropped.contains(&id)) {
                log(|| format!("node {id} cannot be reached to break its edges"));
            }
            continue;
        };
        if !is_dead(&n) {
            let id = id_of(&n);
            let edges = std::mem::take(&mut *n.edges.borrow_mut());
            let cell = n.cell.replace(Slot(None));
            let slots = std::mem::take(&mut *n.slots.borrow_mut());
            let weaks = std::mem::take(&mut *n.weaks.borrow_mut());
            model(|m| {
                if let Some(id) = id {
                    *m.edges.at(id) = Vec::new();
                    *m.slots.at(id) = vec![None];
                    m.node_weak_states
                        .retain(|_, &mut (holder, _)| holder != id);
                    m.node_weak_payloads
                        .retain(|_, &mut (holder, _)| holder != id);
                }
            });
            drop_handles("dropping broken edges", (edges, cell, slots, weaks));
        }
        drop_handles("dropping a handle", n);
    }
    drop_handles("dropping the weak references to every node", all);
    drain_world();
}

/// After a failure: forget whatever the world still holds (it may be inconsistent), so nothing
/// runs at thread exit.
fn abandon_world() {
    world(|w| {
        std::mem::forget(std::mem::take(&mut *w.roots.borrow_mut()));
        std::mem::forget(std::mem::take(&mut *w.weaks.borrow_mut()));
        std::mem::forget(std::mem::take(&mut *w.fins.borrow_mut()));
        std::mem::forget(std::mem::take(&mut *w.maps.borrow_mut()));
        std::mem::forget(std::mem::take(&mut *w.sets.borrow_mut()));
        std::mem::forget(std::mem::take(&mut *w.vmaps.borrow_mut()));
        std::mem::forget(std::mem::take(&mut *w.wobjs.borrow_mut()));
        std::mem::forget(std::mem::take(&mut *w.wweaks.borrow_mut()));
        std::mem::forget(std::mem::take(&mut *w.proxies.borrow_mut()));
        std::mem::forget(std::mem::take(&mut *w.methods.borrow_mut()));
        std::mem::forget(std::mem::take(&mut *w.all.borrow_mut()));
        std::mem::forget(std::mem::take(&mut *w.heaps.borrow_mut()));
        w.frames.borrow_mut().clear();
        w.inflight.borrow_mut().clear();
    });
}

fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            match QUIET.try_with(Cell::get).ok().flatten() {
                None => default(info),
                Some(_) if std::env::var_os("REAP_ADV_PANICS").is_some() => default(info),
                Some(seed) => {
                    // Expected panics are many; only a panic that is about to abort is shown.
                    let msg = payload_msg(info.payload());
                    if msg.contains("cannot unwind") || msg.contains("during cleanup") {
                        eprintln!("adversarial: case REAP_ADV_SEED={seed:#x} aborts: {msg}");
                        default(info);
                    }
                }
            }
        }));
    });
}

fn env_num(name: &str) -> Option<u64> {
    let s = std::env::var(name).ok()?;
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn report(seed: u64, steps: usize, o: &Outcome) -> String {
    let mut s = format!(
        "case REAP_ADV_SEED={seed:#x} REAP_ADV_STEPS={steps} failed at {}:\n",
        o.step
    );
    for v in o.violations.iter().take(12) {
        s.push_str(&format!("  - {v}\n"));
    }
    if o.violations.len() > 12 {
        s.push_str(&format!("  ... and {} more\n", o.violations.len() - 12));
    }
    if !o.log.is_empty() {
        // The operations up to the first violation noticed when it happened, else the last ones.
        let end = o
            .log
            .iter()
            .position(|l| l.trim_start().starts_with("!!"))
            .map_or(o.log.len(), |i| i + 1);
        s.push_str("operations (hooks indented under what ran them):\n");
        let window = if std::env::var_os("REAP_ADV_FULL_LOG").is_some() {
            end
        } else {
            80
        };
        for l in &o.log[end.saturating_sub(window)..end] {
            s.push_str(&format!("  {l}\n"));
        }
    }
    s
}

/// How a run goes (from the environment).
#[derive(Clone)]
struct Settings {
    steps: usize,
    single: bool,
    trace: bool,
    keep_going: bool,
    budget: u32,
    force_track_all: Option<bool>,
}

/// Runs cases on this thread; returns the reports of those that failed (stopping at the first
/// unless `keep_going`).
fn run_seeds(seeds: &[u64], st: &Settings) -> Vec<String> {
    world(|w| {
        w.hook_budget.set(st.budget);
        w.force_track_all.set(st.force_track_all);
    });
    let mut failures = Vec::new();
    for &seed in seeds {
        if st.trace {
            eprintln!("adversarial: REAP_ADV_SEED={seed:#x}");
        }
        QUIET.with(|q| q.set(Some(seed)));
        let r = run_case(seed, st.steps, st.single);
        QUIET.with(|q| q.set(None));
        if let Err(o) = r {
            // Run it again with the operation log on, for the report.
            let o = if st.single {
                o
            } else {
                QUIET.with(|q| q.set(Some(seed)));
                let again = run_case(seed, st.steps, true);
                QUIET.with(|q| q.set(None));
                again.err().unwrap_or(o)
            };
            let text = report(seed, st.steps, &o);
            eprintln!("{text}");
            failures.push(text);
            if !st.keep_going {
                break;
            }
        }
    }
    failures
}

/// Cases per thread (natively). Leftovers a case may leave for good (a cycle across heaps, in a
/// heap already shut down) stay in the thread's heap registry, and every heap shutdown that
/// finds objects alive scans all of them: a fresh thread now and then keeps the run linear.
const BATCH: usize = 100;

#[test]
fn random_hooks_across_two_heaps_keep_the_runtime_sound() {
    let (cases, default_steps) = if cfg!(miri) { (200, 6) } else { (3000, 60) };
    let steps = env_num("REAP_ADV_STEPS").map_or(default_steps, |n| n as usize);
    let seeds: Vec<u64> = match env_num("REAP_ADV_SEED") {
        Some(seed) => vec![seed],
        None => {
            let first = env_num("REAP_ADV_FIRST").unwrap_or(0);
            let n = env_num("REAP_ADV_CASES").unwrap_or(cases);
            (first..first + n)
                .map(|i| 0xADC0_FFEE_u64.wrapping_add(i.wrapping_mul(0x1_0000_0001)))
                .collect()
        }
    };
    let st = Settings {
        steps,
        single: seeds.len() == 1,
        trace: std::env::var_os("REAP_ADV_TRACE").is_some(),
        keep_going: std::env::var_os("REAP_ADV_KEEP_GOING").is_some(),
        budget: env_num("REAP_ADV_BUDGET").map_or(HOOK_BUDGET, |b| b as u32),
        force_track_all: env_num("REAP_ADV_TRACK_ALL").map(|t| t != 0),
    };
    install_panic_hook();
    // After the test's own hook, which it then wraps: reports carry the panic's location.
    reap::record_panic_locations();
    STATS_ON.store(
        std::env::var_os("REAP_ADV_STATS").is_some(),
        Ordering::Relaxed,
    );
    let mut failures = Vec::new();
    if cfg!(miri) || st.single {
        failures = run_seeds(&seeds, &st);
    } else {
        for batch in seeds.chunks(BATCH) {
            let (first, batch, st2) = (batch[0], batch.to_vec(), st.clone());
            let thread = std::thread::spawn(move || run_seeds(&batch, &st2));
            match thread.join() {
                Ok(f) => failures.extend(f),
                Err(p) => {
                    failures.push(format!(
                        "the thread of the batch from REAP_ADV_SEED={first:#x} panicked: {}",
                        payload_msg(&*p)
                    ));
                    drop_payload(p);
                }
            }
            if !failures.is_empty() && !st.keep_going {
                break;
            }
        }
    }
    if let Ok(s) = STATS.lock() {
        for (k, v) in s.iter() {
            eprintln!("{v:>10}  {k}");
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} adversarial cases failed; the first:\n{}",
        failures.len(),
        seeds.len(),
        failures[0]
    );
}
