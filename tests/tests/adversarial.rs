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
//! registrations, a `WeakKeyMap`, a `WeakSet` and a `WeakValueMap`. No `RefCell` of the world is
//! borrowed while reap is called (reap re-enters hooks), and every handle leaves the world before
//! it is dropped.
//!
//! A `Node` has edges (`RefCell<Vec<Gc<Node>>>`), a `Cell<Slot>`, and more `Cell<Slot>`s inside a
//! `RefCell`; edges and slots may point into the other heap. User code that performs 0–2 random
//! operations (a hook) runs in: the node's `Drop` and finalizer; weak-reference callbacks (plain,
//! and traced with a `Cell<Slot>` state); the unraisable hook; collection callbacks; the node's
//! `Eq` / `Hash` as a weak-map key; `Default` of `Slot` (`Trace for Cell` used to call it); the
//! callables given to `reap::finalize`; and the `Drop` of the `Bomb` panic payload. The operations,
//! for the driver (one per step) and for hooks: allocate a node (or a chain longer than the
//! trashcan depth) in either heap, clone or drop roots, link or unlink edges, set slots, collect
//! either heap at generation 0..=2, `get_objects` / `get_referents` / `get_referrers`, create /
//! upgrade / drop weak references (held by the world, or by a node, so that a weak reference can be
//! garbage itself and a cycle can run through a callback's traced state), `finalize` and its `call`
//! / `detach` / `peek`, freeze / unfreeze, replace the unraisable hook, add / remove collection
//! callbacks, `SAVEALL` and `garbage()`, `without_collection`, weak-map operations, drop a heap or
//! make a new one, and, in hooks, dereference a zombie (below) or panic with a `&str`, a `String`
//! or a `Bomb` whose own `Drop` panics. Hooks nested more than two deep do nothing, and each driver
//! step has a budget of hook operations; every hook still records its event, whatever its depth.
//!
//! ## The model
//!
//! Every edge and slot change goes through helpers that update the model; the model knows which
//! node each handle address belongs to, so a handle is recognised without dereferencing it. A
//! `Drop` run by the collector may store a handle to another member of its garbage cycle, whose
//! value the collector then drops anyway (a zombie: `Deref` panics, as documented): every node a
//! `Drop`, or code working from what a `Drop` handed it, stores anywhere is recorded as a possible
//! zombie. Panics are followed: a hook's frame knows whether the runtime catches its panics
//! (`Drop`, finalizers, callbacks, hooks) or whether they reach its caller by design (`Eq` / `Hash`
//! in a map operation, `Default` in `get_referents`, the callable in `Finalizer::call`); every call
//! into reap is wrapped, so a panic coming out of one is known to be either a hook's own on its way
//! to the frame that catches it, or one that escaped the runtime.
//!
//! ## What is checked
//!
//! When it happens:
//! - a node's finalizer runs at most once and never after its `Drop`; its `Drop` runs at most once
//!   and only after its finalizer;
//! - a weak callback runs at most once and sees its weak reference dead; for one the world holds,
//!   only if it was alive when its referent died; a `finalize` callable runs at most once and never
//!   after `detach`;
//! - no panic escapes the runtime (a call into reap at the top level, or one that lets out a panic
//!   no hook threw its way); every report the unraisable hook gets carries a panic some hook threw
//!   (or the zombie message), never an internal one;
//! - `get_objects`, `get_referents`, `get_referrers`, `garbage()`, `upgrade`, map keys and values,
//!   and `peek` never hand out a node whose value was dropped;
//! - collection start / stop callbacks of a heap alternate, and a top-level `collect` runs;
//! - a heap dropped at the top level leaves alive only nodes held from outside it (after its last
//!   collection).
//!
//! After every driver step (each runs under `catch_unwind`: a panic reaching the driver fails):
//! - every node reachable from the roots is intact (magic, id, key; its edges and slots are the
//!   model's), unless its value was dropped and it is a recorded possible zombie;
//! - every reachable node's strong count is at least its model in-degree;
//! - each heap's `live_objects()` is at least its reachable nodes and equals allocated − freed;
//! - a held weak reference whose referent's value was dropped reads dead and had its callback run;
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
//! unless its object is left on such a cycle. One case in 64 (not under Miri) runs on a thread of
//! its own that exits with its world full, which is destroyed after reap's own thread-locals: the
//! runtime must neither abort nor panic.
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

use reap::{
    finalize, CollectInfo, CollectPhase, Finalize, Finalizer, Gc, Heap, Trace, Unraisable,
    UnraisableHook, UnraisableKind, Weak, WeakKeyMap, WeakSet, WeakValueMap,
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
#[reap(finalize)]
struct Node {
    magic: u64,
    id: u32,
    key: u32,
    edges: RefCell<Vec<Gc<Node>>>,
    cell: Cell<Slot>,
    slots: RefCell<Vec<Cell<Slot>>>,
    /// Weak references this node holds, by id.
    weaks: RefCell<Vec<(u32, Weak<Node>)>>,
}

/// A handle in a `Cell`; its `Default` is a hook.
#[derive(Trace)]
struct Slot(Option<Gc<Node>>);

impl Default for Slot {
    fn default() -> Slot {
        run_hook(Kind::Default, Vec::new());
        Slot(None)
    }
}

impl Finalize for Node {
    fn finalize(this: &Gc<Self>) {
        on_finalize(this);
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
}

struct FinMeta {
    target: u32,
    exempt: bool,
    ran: u32,
    detached: bool,
}

#[derive(Default)]
struct HeapMeta {
    collecting: bool,
    starts: u64,
    hook_callbacks: Vec<u64>,
}

/// A handle and whether it may lead to a zombie (its taint).
type Handle = (Gc<Node>, bool);
/// A heap in a slot, with its id.
type HeapSlot = (u32, Rc<Heap>);
type FinRc = Rc<Finalizer<Node>>;

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
        all: RefCell::new(BTreeMap::new()),
        track_all: Cell::new(false),
        force_track_all: Cell::new(None),
        hook_budget: Cell::new(HOOK_BUDGET),
        driver_held: RefCell::new(Vec::new()),
        model: RefCell::new(Model::default()),
    };
    /// Silences the panic hook for the expected panics of a case; the case's seed.
    static QUIET: Cell<Option<u64>> = const { Cell::new(None) };
    /// With `REAP_ADV_STATS`: how often each thing happened, over the whole run.
    static STATS: RefCell<Option<BTreeMap<String, u64>>> = const { RefCell::new(None) };
}

fn stat(what: impl FnOnce() -> String) {
    STATS.with(|s| {
        if let Some(s) = &mut *s.borrow_mut() {
            *s.entry(what()).or_default() += 1;
        }
    });
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
        let reused = id.is_some_and(|id| m.dropped.contains(&id));
        (id, reused && !m.allocating.is_empty())
    });
    if ambiguous {
        // A node being allocated right now (its address not recorded yet) may sit where a freed
        // one was: read it (a zombie's `Deref` panics instead, and then it is the old one).
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

/// Drops a caught payload, whose `Drop` may panic (a `Bomb`).
fn drop_payload(p: Box<dyn Any + Send>) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(p)));
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
            reportable: !propagating && !matches!(kind, Kind::Unraisable | Kind::PayloadDrop),
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
    world(|w| w.budget.get() > 0 && w.frames.borrow().len() <= MAX_DEPTH + 2)
}

fn on_drop(n: &mut Node) {
    let id = n.id;
    let magic = n.magic;
    model(|m| {
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
    let mut ctx = Vec::new();
    if hooks_active() {
        // What a Drop holds may be garbage of its own cycle: tainted.
        for e in n.edges.get_mut().iter().take(2) {
            ctx.push((e.clone(), true));
        }
        if let Some(s) = &n.cell.get_mut().0 {
            ctx.push((s.clone(), true));
        }
    }
    run_hook(Kind::Drop, ctx);
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
    model(|m| m.node_weak_states.remove(&wid));
    if let Some(Some(g)) = api("Weak::upgrade in a callback", || w.upgrade()) {
        violation(format!(
            "weak {wid}'s callback can upgrade its weak reference"
        ));
        drop_handles("dropping an upgraded handle", g);
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
    run_hook(Kind::Unraisable, Vec::new());
}

fn unraisable_hook(hid: u32, variant: u32) -> UnraisableHook {
    Box::new(move |u: &Unraisable| on_unraisable(hid, variant, u))
}

/// The collection callback every heap gets first: it only keeps the books.
fn on_collect_tracker(hid: u32, phase: CollectPhase, info: &CollectInfo) {
    model(|m| {
        let h = m.heaps.entry(hid).or_default();
        let problem = match phase {
            CollectPhase::Start => {
                h.starts += 1;
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
    drop_handles("Drop for Heap", h);
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
        heap.add_collect_callback(Box::new(move |p, i| on_collect_tracker(hid, p, i)));
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

/// Allocates a node in `heap`, holding `init` (an edge) if given.
fn new_node(hid: u32, heap: &Heap, init: Option<Handle>) -> Option<Gc<Node>> {
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
    log(|| format!("alloc {id} in heap {hid}"));
    let node = api("Heap::alloc", || {
        heap.alloc(Node {
            magic: MAGIC,
            id,
            key,
            edges: RefCell::new(edges),
            cell: Cell::new(Slot(None)),
            slots: RefCell::new(Vec::new()),
            weaks: RefCell::new(Vec::new()),
        })
    });
    model(|m| m.allocating.retain(|&a| a != id));
    let node = node?;
    model(|m| m.addr.insert(addr(&node), id));
    if world(|w| w.track_all.get()) {
        track(&node, id);
    }
    Some(node)
}

fn op_alloc(cx: &mut Cx) {
    let Some((hid, heap)) = heap_for_alloc(cx) else {
        return;
    };
    let init = if chance(40) { pick(cx) } else { None };
    let node = new_node(hid, &heap, init);
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
        let next = new_node(hid, &heap, head.take().map(|g| (g, false)));
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
            api("Heap::set_debug", || {
                heap.set_debug(if on { reap::debug::SAVEALL } else { 0 })
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
    // An unknown address is a node being allocated right now: nothing to say.
    let Some(id) = id_of(g) else { return };
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

/// A new weak reference to a node, held by the world or (`holder`) by another node's value: a
/// weak reference that can be garbage itself, and a cycle through its callback's traced state.
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
    let kind = rnd(3);
    // Under Miri, where every leak fails the run, no node holds a traced state: a cycle through
    // one is the one kind of garbage the test may be unable to break at the end.
    let state = if kind == 2 && chance(70) && !(in_node && cfg!(miri)) {
        pick(cx)
    } else {
        None
    };
    let state_id = state.as_ref().and_then(|(g, _)| id_of(g));
    if let Some((g, t)) = &state {
        stored(g, *t);
    }
    let wid = model(|m| {
        let wid = m.next_wid;
        m.next_wid += 1;
        m.weaks.insert(
            wid,
            WeakMeta {
                target,
                callback: kind > 0,
                // Whether one held by a node is garbage with its referent is not modelled: only
                // its callback's at-most-once is checked.
                exempt: in_node || dead || taint_of_model(m, target, ta),
                held: true,
                dropped_alive: false,
                fired: 0,
                state: state_id,
            },
        );
        if let (Some(h), Some(st), true) = (holder_id, state_id, kind == 2) {
            m.node_weak_states.insert(wid, (h, st));
        }
        wid
    });
    log(|| {
        format!(
            "weak {wid} -> {target} (kind {kind}, state {state_id:?}, held by node {holder_id:?})"
        )
    });
    let w = api("making a weak reference", || match kind {
        0 => Weak::new(&a),
        1 => Weak::with_untraced_callback(&a, move |w: &Weak<Node>| on_weak_callback(wid, w, None)),
        _ => Weak::with_callback(
            &a,
            Cell::new(Slot(state.map(|(g, _)| g))),
            move |s: &Cell<Slot>, w: &Weak<Node>| {
                let st = s.replace(Slot(None)).0;
                on_weak_callback(wid, w, st)
            },
        ),
    });
    match (w, &holder) {
        (Some(w), Some((h, _))) => h.weaks.borrow_mut().push((wid, w)),
        (Some(w), None) => world(|wd| wd.weaks.borrow_mut().push((wid, w))),
        (None, _) => model(|m| {
            if let Some(meta) = m.weaks.get_mut(&wid) {
                meta.held = false;
            }
            m.node_weak_states.remove(&wid);
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
        model(|m| m.node_weak_states.remove(&wid));
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
    model(|m| {
        if let Some(meta) = m.weaks.get_mut(&wid) {
            meta.held = false;
            meta.dropped_alive = alive;
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
    let pending = |m: &Model| m.fins.get(&fid).is_some_and(|f| f.ran == 0 && !f.detached);
    let was_pending = model(|m| pending(m));
    match rnd(5) {
        0 => {
            log(|| format!("Finalizer::call {fid}"));
            let r = {
                let _s = SyncGuard::new(SyncCall::Call);
                api("Finalizer::call", || f.call())
            };
            if r == Some(None) && was_pending && model(|m| pending(m)) {
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
                Some(None) if was_pending && model(|m| pending(m)) => {
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
            if alive != model(|m| pending(m)) {
                violation(format!(
                    "finalize registration {fid}: alive() is {alive}, the model says otherwise"
                ));
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

fn op_freeze() {
    let Some((hid, heap)) = any_heap() else {
        return;
    };
    let freeze = chance(50);
    log(|| format!("heap {hid}: freeze {freeze}"));
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
            .filter(|&&(holder, _)| holder == id)
            .map(|&(_, state)| state),
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
            if meta.held && meta.fired == 0 {
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
            if f.ran == 0 && !f.detached && !f.exempt && !excused.contains(&f.target) {
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
    let single = seeds.len() == 1;
    let trace = std::env::var_os("REAP_ADV_TRACE").is_some();
    let keep_going = std::env::var_os("REAP_ADV_KEEP_GOING").is_some();
    if let Some(b) = env_num("REAP_ADV_BUDGET") {
        world(|w| w.hook_budget.set(b as u32));
    }
    if let Some(t) = env_num("REAP_ADV_TRACK_ALL") {
        world(|w| w.force_track_all.set(Some(t != 0)));
    }
    install_panic_hook();
    if std::env::var_os("REAP_ADV_STATS").is_some() {
        STATS.with(|s| *s.borrow_mut() = Some(BTreeMap::new()));
    }
    let mut failures = Vec::new();
    for &seed in &seeds {
        if trace {
            eprintln!("adversarial: REAP_ADV_SEED={seed:#x}");
        }
        QUIET.with(|q| q.set(Some(seed)));
        let r = run_case(seed, steps, single);
        QUIET.with(|q| q.set(None));
        if let Err(o) = r {
            // Run it again with the operation log on, for the report.
            let o = if single {
                o
            } else {
                QUIET.with(|q| q.set(Some(seed)));
                let again = run_case(seed, steps, true);
                QUIET.with(|q| q.set(None));
                again.err().unwrap_or(o)
            };
            let text = report(seed, steps, &o);
            eprintln!("{text}");
            failures.push(text);
            if !keep_going {
                break;
            }
        }
    }
    STATS.with(|s| {
        for (k, v) in s.borrow().iter().flatten() {
            eprintln!("{v:>10}  {k}");
        }
    });
    assert!(
        failures.is_empty(),
        "{} of {} adversarial cases failed; the first:\n{}",
        failures.len(),
        seeds.len(),
        failures[0]
    );
}
