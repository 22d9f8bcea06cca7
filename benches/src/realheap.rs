//! Benchmark shapes that look like real heaps, run on reap and on its peers (`std::rc::Rc`,
//! rust-cc, dumpster, bacon_rajan_cc, gcmodule); CPython runs `benches/python/realheap.py`.
//!
//! The figures of [`crate::workloads`] and `benches/benches/collect.rs` are best cases: small
//! objects allocated in order on a new heap. Here, before every shape:
//!
//! * **Aging** (never timed): the runtime's allocator is churned by a mixed population of about
//!   2M objects ([`AGING_OBJECTS`] at size 1.0) of three payload sizes (16, 40 and 100 bytes), as
//!   single objects, 2-rings and chains of 4, freed in a shuffled order (a deterministic
//!   xorshift), except a quarter of the groups, which stay alive for the whole shape as a
//!   long-lived background (about 500K objects). Rings among the freed groups are collected
//!   before the shape starts. reap ages the very `Heap` the shape then uses (its slab allocator
//!   is per heap); the peers age the process allocator through their own allocation. The shape's
//!   objects therefore come from scattered free slots.
//! * The background is live and old: a full collection in reap or CPython traverses it (about
//!   500K objects) as well as the shape's objects, as in a long-running interpreter. The peers
//!   that only scan candidate roots (rust-cc, bacon_rajan_cc, dumpster) never look at it.
//!
//! Nodes have two links (`RefCell<Option<P<Node>>>`), a flag and an inline payload of 16, 40 or
//! 100 bytes (`[u8; P]`, written at construction). Automatic collection is off except in
//! `auto-rings-p40`. Sizes scale with `size` (1.0: 1M objects per shape), so a test can run
//! them tiny.
//!
//! Every shape checks its outcome after the timed part and returns `Err` if it does not hold:
//! garbage shapes add a few "probe" 2-rings whose payload counts its drops (all must be dropped
//! by the timed collection), reap's and gcmodule's `collect` must report exactly the garbage
//! made, finalizers must have run once per object, weak references must be dead or alive as
//! expected.

use std::cell::Cell;
use std::hint::black_box;
use std::time::Duration;

/// The shapes, by name. `-p16`, `-p40`, `-p100`: the payload size in bytes.
///
/// * `cold-rings-{2,10,21}-pP`: 1M objects in doubly linked garbage rings of 2, 10 or 21;
///   times one full collection.
/// * `cold-ring-1m-pP`: one garbage ring of 1M objects; times one full collection.
/// * `cold-live-pP`: 1,000 live chains of 1,000 (made old by a collection), then 1,000 garbage
///   2-rings; times one full collection (per object: per live chain object).
/// * `cold-live-touched-pP`: the same, with every chain head cloned and dropped before the
///   timed collection (which puts every chain in a candidate-root buffer of the peers that
///   have one).
/// * `cold-fin-cycles`: 1M objects (payload 40) in garbage 2-rings, each with a finalizer
///   that counts (for dumpster, bacon_rajan_cc and gcmodule: a counting `Drop`); times one
///   full collection.
/// * `cold-weak-cleared`: 1M objects (payload 40) in garbage 2-rings, each with one weak
///   reference held alive in a `Vec`; times the full collection that clears them.
/// * `weak-first`: times making the first weak reference to each of 1M live objects.
/// * `weak-upgrade`: times upgrading 1M distinct weak references (to live objects), each result
///   dropped at once.
/// * `weak-death`: 1M objects with one weak reference each; times dropping the objects (freed
///   by refcount, the weak references cleared).
/// * `auto-rings-p40`: automatic collection on; times building 1M objects in garbage rings of
///   2, 10 and 21 (a third each) and a final full collection. Peers without automatic
///   collection (bacon_rajan_cc, gcmodule) collect only at the end.
pub const SHAPES: &[&str] = &[
    "cold-rings-2-p16",
    "cold-rings-2-p40",
    "cold-rings-2-p100",
    "cold-rings-10-p16",
    "cold-rings-10-p40",
    "cold-rings-10-p100",
    "cold-rings-21-p16",
    "cold-rings-21-p40",
    "cold-rings-21-p100",
    "cold-ring-1m-p16",
    "cold-ring-1m-p40",
    "cold-ring-1m-p100",
    "cold-live-p16",
    "cold-live-p40",
    "cold-live-p100",
    "cold-live-touched-p16",
    "cold-live-touched-p40",
    "cold-live-touched-p100",
    "cold-fin-cycles",
    "cold-weak-cleared",
    "weak-first",
    "weak-upgrade",
    "weak-death",
    "auto-rings-p40",
];

/// The runtimes [`run`] knows: reap, then the names of [`crate::peers::PEERS`].
pub const RUNTIMES: &[&str] = &[
    "reap",
    "Rc",
    "rust-cc",
    "dumpster",
    "bacon_rajan_cc",
    "gcmodule",
];

/// Objects in the aging population at size 1.0 (a quarter of them stay alive).
pub const AGING_OBJECTS: usize = 2_000_000;

/// Objects per shape at size 1.0.
pub const OBJECTS: usize = 1_000_000;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Rings(usize),
    BigRing,
    Live { touched: bool },
    FinCycles,
    WeakCleared,
    WeakFirst,
    WeakUpgrade,
    WeakDeath,
    AutoRings,
}

impl Kind {
    fn collects(self) -> bool {
        !matches!(self, Kind::WeakFirst | Kind::WeakUpgrade | Kind::WeakDeath)
    }

    fn weak(self) -> bool {
        matches!(
            self,
            Kind::WeakCleared | Kind::WeakFirst | Kind::WeakUpgrade | Kind::WeakDeath
        )
    }
}

fn parse(shape: &str) -> Option<(Kind, usize)> {
    if !SHAPES.contains(&shape) {
        return None;
    }
    let (body, payload) = match shape.rsplit_once("-p") {
        Some((b, p)) if p.chars().all(|c| c.is_ascii_digit()) => (b, p.parse().ok()?),
        _ => (shape, 40),
    };
    let kind = match body {
        "cold-rings-2" => Kind::Rings(2),
        "cold-rings-10" => Kind::Rings(10),
        "cold-rings-21" => Kind::Rings(21),
        "cold-ring-1m" => Kind::BigRing,
        "cold-live" => Kind::Live { touched: false },
        "cold-live-touched" => Kind::Live { touched: true },
        "cold-fin-cycles" => Kind::FinCycles,
        "cold-weak-cleared" => Kind::WeakCleared,
        "weak-first" => Kind::WeakFirst,
        "weak-upgrade" => Kind::WeakUpgrade,
        "weak-death" => Kind::WeakDeath,
        "auto-rings" => Kind::AutoRings,
        _ => return None,
    };
    Some((kind, payload))
}

fn scaled(n: usize, size: f64) -> usize {
    ((n as f64 * size) as usize).max(1)
}

/// Side of the live heap's square (chains x length), 1,000 at size 1.0.
fn live_side(size: f64) -> usize {
    scaled(1000, size.sqrt()).max(2)
}

/// The number of objects a shape's time is divided by for a per-object figure: the objects it
/// made (for `cold-live*`, the live chain objects; the garbage rings and probes are not
/// counted).
pub fn objects(shape: &str, size: f64) -> Option<usize> {
    let (kind, _) = parse(shape)?;
    let n = scaled(OBJECTS, size);
    Some(match kind {
        Kind::Rings(len) => (n / len).max(1) * len,
        Kind::Live { .. } => live_side(size) * live_side(size),
        Kind::FinCycles | Kind::WeakCleared => n.div_ceil(2) * 2,
        Kind::AutoRings => [2, 10, 21].iter().map(|l| ((n / 3) / l).max(1) * l).sum(),
        _ => n,
    })
}

/// Runs `shape` on `runtime` at scale `size` (1.0: 1M objects) in this thread, after aging, and
/// returns the time of its timed part only. `Err("cannot: ...")` where the runtime cannot run
/// the shape; any other `Err` is a failed check or an unknown name.
pub fn run(runtime: &str, shape: &str, size: f64) -> Result<Duration, String> {
    let (kind, payload) = parse(shape).ok_or_else(|| format!("no such shape {shape}"))?;
    if !(size > 0.0 && size <= 100.0) {
        return Err(format!("size {size} out of range (0, 100]"));
    }
    match runtime {
        "reap" => reap_rt::run(kind, payload, size),
        "Rc" => rc_rt::run(kind, payload, size),
        "rust-cc" => rustcc_rt::run(kind, payload, size),
        "dumpster" => dumpster_rt::run(kind, payload, size),
        "bacon_rajan_cc" => bacon_rt::run(kind, payload, size),
        "gcmodule" => gcmod_rt::run(kind, payload, size),
        other => Err(format!("no such runtime {other}")),
    }
}

/// A small deterministic generator (xorshift64), for the aging order.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

/// A node's inline payload.
trait Payload: 'static {
    fn make(seed: u8) -> Self;
}

impl<const N: usize> Payload for [u8; N] {
    #[inline]
    fn make(seed: u8) -> Self {
        let mut a = [0_u8; N];
        a[0] = seed;
        a[N - 1] = seed ^ 0x5a;
        a
    }
}

type P16 = [u8; 16];
type P40 = [u8; 40];
type P100 = [u8; 100];

thread_local! {
    static PROBES_DROPPED: Cell<u64> = const { Cell::new(0) };
    static FINALIZED: Cell<u64> = const { Cell::new(0) };
}

fn probes_dropped() -> u64 {
    PROBES_DROPPED.with(Cell::get)
}

fn finalized() -> u64 {
    FINALIZED.with(Cell::get)
}

fn count_finalizer() {
    FINALIZED.with(|f| f.set(f.get() + 1));
}

/// A 40-byte payload that counts its drops: a few garbage 2-rings of probes join every garbage
/// shape, and the timed collection must drop them all.
struct Probe([u8; 40]);

impl Payload for Probe {
    fn make(seed: u8) -> Self {
        Probe([seed; 40])
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        black_box(&self.0);
        PROBES_DROPPED.with(|p| p.set(p.get() + 1));
    }
}

/// Probe 2-rings for `n` shape objects: one per 10,000, at least one.
fn probe_rings(n: usize) -> usize {
    (n / 10_000).max(1)
}

/// The shapes over a runtime module's context `H` (the heap for reap, `()` for the peers), its
/// pointer `P`, `alloc`, `Node<T>`, `FinNode`, the payload bound `Pl`, `collect` (with the
/// count of objects found if the runtime reports it), `set_auto`, `CYCLES` (whether the runtime
/// collects cycles), `cannot` (why not, per shape kind), and the weak-reference operations
/// `downgrade` / `upgrade` on `P<Node<P40>>` (unused where `cannot` refuses the weak shapes).
macro_rules! shapes {
    () => {
        fn node<T: Pl>(h: &H, seed: u64) -> P<Node<T>> {
            alloc(
                h,
                Node {
                    prev: RefCell::new(None),
                    next: RefCell::new(None),
                    flag: seed & 1 == 1,
                    payload: T::make(seed as u8),
                },
            )
        }

        fn link<T: Pl>(a: &P<Node<T>>, b: &P<Node<T>>) {
            *a.next.borrow_mut() = Some(b.clone());
            *b.prev.borrow_mut() = Some(a.clone());
        }

        /// A doubly linked ring of `len` nodes; returns its first node.
        fn ring<T: Pl>(h: &H, len: usize, seed: u64) -> P<Node<T>> {
            let first = node::<T>(h, seed);
            let mut prev = first.clone();
            for i in 1..len {
                let n = node::<T>(h, seed.wrapping_add(i as u64));
                link(&prev, &n);
                prev = n;
            }
            link(&prev, &first);
            first
        }

        /// A chain of `len` nodes linked by `next`; returns its head.
        fn chain<T: Pl>(h: &H, len: usize, seed: u64) -> P<Node<T>> {
            let head = node::<T>(h, seed);
            let mut cur = head.clone();
            for i in 1..len {
                let n = node::<T>(h, seed.wrapping_add(i as u64));
                *cur.next.borrow_mut() = Some(n.clone());
                cur = n;
            }
            head
        }

        /// Breaks a group (for runtimes that do not collect cycles: none is a ring there).
        fn group<T: Pl>(h: &H, kind: u64, seed: u64) -> (P<Node<T>>, usize) {
            match kind {
                0 | 1 => (node::<T>(h, seed), 1),
                2 if CYCLES => (ring::<T>(h, 2, seed), 2),
                2 => (chain::<T>(h, 2, seed), 2),
                _ => (chain::<T>(h, 4, seed), 4),
            }
        }

        #[allow(dead_code)]
        enum Item {
            S(P<Node<P16>>),
            M(P<Node<P40>>),
            L(P<Node<P100>>),
        }

        /// The aging step: a mixed population made, freed in a shuffled order but for a quarter
        /// kept as the background (returned), garbage cycles collected.
        fn age(h: &H, size: f64) -> Vec<Item> {
            let target = super::scaled(super::AGING_OBJECTS, size);
            let mut rng = super::XorShift(0x9e37_79b9_7f4a_7c15);
            let mut items = Vec::new();
            let mut made = 0;
            while made < target {
                let r = rng.next();
                let (item, len) = match (r >> 8) % 3 {
                    0 => {
                        let (p, l) = group::<P16>(h, r % 4, r);
                        (Item::S(p), l)
                    }
                    1 => {
                        let (p, l) = group::<P40>(h, r % 4, r);
                        (Item::M(p), l)
                    }
                    _ => {
                        let (p, l) = group::<P100>(h, r % 4, r);
                        (Item::L(p), l)
                    }
                };
                items.push(item);
                made += len;
            }
            rng.shuffle(&mut items);
            let keep = items.split_off(items.len() * 3 / 4);
            drop(items);
            if CYCLES {
                collect(h);
                collect(h);
            }
            keep
        }

        /// Adds the probe rings for `n` shape objects; returns the probe objects made.
        fn add_probes(h: &H, n: usize) -> usize {
            let k = super::probe_rings(n);
            for i in 0..k {
                drop(ring::<super::Probe>(h, 2, i as u64));
            }
            2 * k
        }

        /// Checks the probes made since `before` were all dropped, and the count `collect`
        /// reported (if any) against the garbage made.
        fn check_garbage(
            found: Option<usize>,
            garbage: usize,
            before: u64,
            probes: usize,
        ) -> Result<(), String> {
            let dropped = super::probes_dropped() - before;
            if dropped != probes as u64 {
                return Err(format!(
                    "{probes} probe objects made garbage, {dropped} dropped by the collection"
                ));
            }
            if let Some(found) = found {
                if found != garbage {
                    return Err(format!(
                        "{garbage} garbage objects made, collect reported {found}"
                    ));
                }
            }
            Ok(())
        }

        fn timed_collect(h: &H, garbage: usize, n: usize) -> Result<Duration, String> {
            let before = super::probes_dropped();
            let probes = add_probes(h, n);
            let t = Instant::now();
            let found = collect(h);
            let elapsed = t.elapsed();
            check_garbage(found, garbage + probes, before, probes)?;
            Ok(elapsed)
        }

        fn cold_rings<T: Pl>(h: &H, len: usize, n: usize) -> Result<Duration, String> {
            let rings = (n / len).max(1);
            for i in 0..rings {
                drop(ring::<T>(h, len, (i * len) as u64));
            }
            timed_collect(h, rings * len, n)
        }

        fn cold_live<T: Pl>(h: &H, size: f64, touched: bool) -> Result<Duration, String> {
            let side = super::live_side(size);
            let heads: Vec<P<Node<T>>> = (0..side)
                .map(|i| chain::<T>(h, side, (i * side) as u64))
                .collect();
            collect(h);
            collect(h);
            for i in 0..side {
                drop(ring::<T>(h, 2, i as u64));
            }
            if touched {
                for head in &heads {
                    drop(black_box(head.clone()));
                }
            }
            let r = timed_collect(h, 2 * side, side * side);
            if heads.iter().any(|h| h.next.borrow().is_none()) {
                return Err("a live chain lost its links".into());
            }
            // Chains of `side` drop recursively: fine for 1,000.
            drop(heads);
            r
        }

        fn fin_cycles(h: &H, n: usize) -> Result<Duration, String> {
            let pairs = n.div_ceil(2);
            let before = super::finalized();
            for i in 0..pairs {
                let a = new_fin(h, 2 * i as u64);
                let b = new_fin(h, 2 * i as u64 + 1);
                *a.next.borrow_mut() = Some(b.clone());
                *b.next.borrow_mut() = Some(a);
            }
            if super::finalized() != before {
                return Err("a finalizer ran before the collection".into());
            }
            let r = timed_collect(h, 2 * pairs, n)?;
            // Drop-counting peers may run the "finalizer" in the collection or when the
            // collection frees the values: both inside the timed call.
            let ran = super::finalized() - before;
            if ran != 2 * pairs as u64 {
                return Err(format!(
                    "{} objects with finalizers, {ran} finalizer runs",
                    2 * pairs
                ));
            }
            Ok(r)
        }

        fn weak_cleared(h: &H, n: usize) -> Result<Duration, String> {
            let pairs = n.div_ceil(2);
            let mut weaks = Vec::with_capacity(2 * pairs);
            for i in 0..pairs {
                let a = node::<P40>(h, 2 * i as u64);
                let b = node::<P40>(h, 2 * i as u64 + 1);
                link(&a, &b);
                link(&b, &a);
                weaks.push(downgrade(&a));
                weaks.push(downgrade(&b));
            }
            let r = timed_collect(h, 2 * pairs, n)?;
            if weaks.iter().any(|w| upgrade(w).is_some()) {
                return Err("a weak reference to collected garbage still upgrades".into());
            }
            Ok(r)
        }

        fn live_objects(h: &H, n: usize) -> Vec<P<Node<P40>>> {
            (0..n).map(|i| node::<P40>(h, i as u64)).collect()
        }

        fn weak_first(h: &H, n: usize) -> Result<Duration, String> {
            let objs = live_objects(h, n);
            let mut weaks = Vec::with_capacity(n);
            let t = Instant::now();
            for o in &objs {
                weaks.push(downgrade(o));
            }
            let elapsed = t.elapsed();
            if weaks.len() != n || !weaks.iter().all(|w| upgrade(w).is_some()) {
                return Err("the weak references made do not all upgrade".into());
            }
            drop(weaks);
            drop(objs);
            Ok(elapsed)
        }

        fn weak_upgrade(h: &H, n: usize) -> Result<Duration, String> {
            let objs = live_objects(h, n);
            let weaks: Vec<_> = objs.iter().map(downgrade).collect();
            let mut alive = 0_usize;
            let t = Instant::now();
            for w in &weaks {
                if let Some(s) = upgrade(w) {
                    alive += 1;
                    drop(black_box(s));
                }
            }
            let elapsed = t.elapsed();
            if alive != n {
                return Err(format!(
                    "{n} weak references to live objects, {alive} upgraded"
                ));
            }
            drop(weaks);
            drop(objs);
            Ok(elapsed)
        }

        fn weak_death(h: &H, n: usize) -> Result<Duration, String> {
            let objs = live_objects(h, n);
            let weaks: Vec<_> = objs.iter().map(downgrade).collect();
            let t = Instant::now();
            drop(objs);
            let elapsed = t.elapsed();
            if weaks.iter().any(|w| upgrade(w).is_some()) {
                return Err("a weak reference to a freed object still upgrades".into());
            }
            Ok(elapsed)
        }

        fn auto_rings(h: &H, n: usize) -> Result<Duration, String> {
            let before = super::probes_dropped();
            set_auto(h, true);
            let t = Instant::now();
            let mut probes = 0;
            for len in [2, 10, 21] {
                let rings = ((n / 3) / len).max(1);
                for i in 0..rings {
                    drop(ring::<P40>(h, len, (i * len) as u64));
                }
                probes += add_probes(h, rings * len);
            }
            collect(h);
            let elapsed = t.elapsed();
            set_auto(h, false);
            check_garbage(None, 0, before, probes)?;
            Ok(elapsed)
        }

        /// Runs one shape after aging (untimed), returning the timed part.
        pub fn run(kind: super::Kind, payload: usize, size: f64) -> Result<Duration, String> {
            if let Some(why) = cannot(kind) {
                return Err(format!("cannot: {why}"));
            }
            let h = fresh();
            set_auto(&h, false);
            let background = age(&h, size);
            let n = super::scaled(super::OBJECTS, size);
            use super::Kind::*;
            // `parse` admits payloads of 16, 40 and 100 only.
            let r = match (kind, payload) {
                (Rings(len), 16) => cold_rings::<P16>(&h, len, n),
                (Rings(len), 40) => cold_rings::<P40>(&h, len, n),
                (Rings(len), _) => cold_rings::<P100>(&h, len, n),
                (BigRing, 16) => cold_rings::<P16>(&h, n, n),
                (BigRing, 40) => cold_rings::<P40>(&h, n, n),
                (BigRing, _) => cold_rings::<P100>(&h, n, n),
                (Live { touched }, 16) => cold_live::<P16>(&h, size, touched),
                (Live { touched }, 40) => cold_live::<P40>(&h, size, touched),
                (Live { touched }, _) => cold_live::<P100>(&h, size, touched),
                (FinCycles, _) => fin_cycles(&h, n),
                (WeakCleared, _) => weak_cleared(&h, n),
                (WeakFirst, _) => weak_first(&h, n),
                (WeakUpgrade, _) => weak_upgrade(&h, n),
                (WeakDeath, _) => weak_death(&h, n),
                (AutoRings, _) => auto_rings(&h, n),
            };
            drop(background);
            set_auto(&h, false);
            collect(&h);
            r
        }
    };
}

mod reap_rt {
    use super::{Payload, Probe, P100, P16, P40};
    use reap::{Finalize, Gc as P, Heap as H, Trace, Tracer, Weak};
    use std::cell::RefCell;
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    const CYCLES: bool = true;

    trait Pl: Payload + Trace {}
    impl<T: Payload + Trace> Pl for T {}

    // SAFETY: holds no handles.
    unsafe impl Trace for Probe {
        fn trace(&self, _: &mut Tracer<'_>) {}
        fn needs_trace() -> bool {
            false
        }
    }

    #[allow(dead_code)] // flag and payload: only written, as the objects' data
    #[derive(Trace)]
    struct Node<T: Pl> {
        prev: RefCell<Option<P<Node<T>>>>,
        next: RefCell<Option<P<Node<T>>>>,
        #[reap(skip)]
        flag: bool,
        #[reap(skip)]
        payload: T,
    }

    #[allow(dead_code)]
    #[derive(Trace)]
    #[reap(finalize)]
    struct FinNode {
        prev: RefCell<Option<P<FinNode>>>,
        next: RefCell<Option<P<FinNode>>>,
        #[reap(skip)]
        flag: bool,
        #[reap(skip)]
        payload: P40,
    }

    impl Finalize for FinNode {
        fn finalize(_: &P<Self>) {
            super::count_finalizer();
        }
    }

    fn new_fin(h: &H, seed: u64) -> P<FinNode> {
        h.alloc(FinNode {
            prev: RefCell::new(None),
            next: RefCell::new(None),
            flag: seed & 1 == 1,
            payload: P40::make(seed as u8),
        })
    }

    #[inline]
    fn alloc<T: Trace>(h: &H, v: T) -> P<T> {
        h.alloc(v)
    }

    fn fresh() -> H {
        H::new()
    }

    fn set_auto(h: &H, on: bool) {
        if on {
            h.enable()
        } else {
            h.disable()
        }
    }

    fn collect(h: &H) -> Option<usize> {
        Some(h.collect(2))
    }

    fn downgrade(p: &P<Node<P40>>) -> Weak<Node<P40>> {
        Weak::new(p)
    }

    fn upgrade(w: &Weak<Node<P40>>) -> Option<P<Node<P40>>> {
        w.upgrade()
    }

    fn cannot(_: super::Kind) -> Option<&'static str> {
        None
    }

    shapes!();
}

mod rc_rt {
    use super::{Payload, P100, P16, P40};
    use std::cell::RefCell;
    use std::hint::black_box;
    use std::rc::{Rc as P, Weak};
    use std::time::{Duration, Instant};

    type H = ();
    const CYCLES: bool = false;

    trait Pl: Payload {}
    impl<T: Payload> Pl for T {}

    #[allow(dead_code)]
    struct Node<T: 'static> {
        prev: RefCell<Option<P<Node<T>>>>,
        next: RefCell<Option<P<Node<T>>>>,
        flag: bool,
        payload: T,
    }

    #[allow(dead_code)]
    struct FinNode {
        prev: RefCell<Option<P<FinNode>>>,
        next: RefCell<Option<P<FinNode>>>,
    }

    fn new_fin(_: &H, _: u64) -> P<FinNode> {
        unreachable!("Rc cannot collect cycles")
    }

    #[inline]
    fn alloc<T>(_: &H, v: T) -> P<T> {
        P::new(v)
    }

    fn fresh() -> H {}

    fn set_auto(_: &H, _: bool) {}

    fn collect(_: &H) -> Option<usize> {
        None
    }

    fn downgrade(p: &P<Node<P40>>) -> Weak<Node<P40>> {
        P::downgrade(p)
    }

    fn upgrade(w: &Weak<Node<P40>>) -> Option<P<Node<P40>>> {
        w.upgrade()
    }

    fn cannot(kind: super::Kind) -> Option<&'static str> {
        kind.collects()
            .then_some("Rc leaks reference cycles (no collector)")
    }

    shapes!();
}

mod rustcc_rt {
    use super::{Payload, P100, P16, P40};
    use rust_cc::weak::Weak;
    use rust_cc::{Cc as P, Context, Finalize, Trace};
    use std::cell::RefCell;
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    type H = ();
    const CYCLES: bool = true;

    trait Pl: Payload {}
    impl<T: Payload> Pl for T {}

    #[allow(dead_code)]
    struct Node<T: 'static> {
        prev: RefCell<Option<P<Node<T>>>>,
        next: RefCell<Option<P<Node<T>>>>,
        flag: bool,
        payload: T,
    }

    // Written by hand: the derive bounds the field types, which recurses on a generic
    // self-referential type.
    // SAFETY: traces every handle the node holds.
    unsafe impl<T: 'static> Trace for Node<T> {
        fn trace(&self, ctx: &mut Context<'_>) {
            self.prev.trace(ctx);
            self.next.trace(ctx);
        }
    }

    impl<T> Finalize for Node<T> {}

    #[allow(dead_code)]
    #[derive(Trace)]
    struct FinNode {
        prev: RefCell<Option<P<FinNode>>>,
        next: RefCell<Option<P<FinNode>>>,
        #[rust_cc(ignore)]
        flag: bool,
        #[rust_cc(ignore)]
        payload: P40,
    }

    impl Finalize for FinNode {
        fn finalize(&self) {
            super::count_finalizer();
        }
    }

    fn new_fin(_: &H, seed: u64) -> P<FinNode> {
        P::new(FinNode {
            prev: RefCell::new(None),
            next: RefCell::new(None),
            flag: seed & 1 == 1,
            payload: P40::make(seed as u8),
        })
    }

    #[inline]
    fn alloc<T: Trace>(_: &H, v: T) -> P<T> {
        P::new(v)
    }

    fn fresh() -> H {}

    fn set_auto(_: &H, on: bool) {
        // Automatic collection is a default feature of rust-cc; "cold" shapes need it off.
        rust_cc::config::config(|c| c.set_auto_collect(on)).expect("rust-cc config");
    }

    fn collect(_: &H) -> Option<usize> {
        rust_cc::collect_cycles();
        None
    }

    fn downgrade(p: &P<Node<P40>>) -> Weak<Node<P40>> {
        p.downgrade()
    }

    fn upgrade(w: &Weak<Node<P40>>) -> Option<P<Node<P40>>> {
        w.upgrade()
    }

    fn cannot(_: super::Kind) -> Option<&'static str> {
        None
    }

    shapes!();
}

mod dumpster_rt {
    use super::{Payload, Probe, P100, P16, P40};
    use dumpster::unsync::Gc as P;
    use dumpster::{Trace, TraceWith, Visitor};
    use std::cell::RefCell;
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    type H = ();
    const CYCLES: bool = true;

    trait Pl: Payload + Trace {}
    impl<T: Payload + Trace> Pl for T {}

    // SAFETY: holds no handles.
    unsafe impl<V: Visitor> TraceWith<V> for Probe {
        #[inline]
        fn accept(&self, _: &mut V) -> Result<(), ()> {
            Ok(())
        }
    }

    #[derive(Trace)]
    struct Node<T: Pl> {
        prev: RefCell<Option<P<Node<T>>>>,
        next: RefCell<Option<P<Node<T>>>>,
        flag: bool,
        payload: T,
    }

    #[derive(Trace)]
    struct FinNode {
        prev: RefCell<Option<P<FinNode>>>,
        next: RefCell<Option<P<FinNode>>>,
        flag: bool,
        payload: P40,
    }

    impl Drop for FinNode {
        fn drop(&mut self) {
            super::count_finalizer();
        }
    }

    fn new_fin(_: &H, seed: u64) -> P<FinNode> {
        P::new(FinNode {
            prev: RefCell::new(None),
            next: RefCell::new(None),
            flag: seed & 1 == 1,
            payload: P40::make(seed as u8),
        })
    }

    #[inline]
    fn alloc<T: Trace>(_: &H, v: T) -> P<T> {
        P::new(v)
    }

    fn fresh() -> H {}

    fn set_auto(_: &H, on: bool) {
        dumpster::unsync::set_collect_condition(if on {
            dumpster::unsync::default_collect_condition
        } else {
            |_| false
        });
    }

    fn collect(_: &H) -> Option<usize> {
        dumpster::unsync::collect();
        None
    }

    type Weak<T> = std::marker::PhantomData<T>;

    fn downgrade(_: &P<Node<P40>>) -> Weak<Node<P40>> {
        unreachable!("dumpster has no weak references")
    }

    fn upgrade(_: &Weak<Node<P40>>) -> Option<P<Node<P40>>> {
        unreachable!("dumpster has no weak references")
    }

    fn cannot(kind: super::Kind) -> Option<&'static str> {
        kind.weak().then_some("dumpster has no weak references")
    }

    shapes!();
}

mod bacon_rt {
    use super::{Payload, P100, P16, P40};
    use bacon_rajan_cc::{Cc as P, Trace, Tracer, Weak};
    use std::cell::RefCell;
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    type H = ();
    const CYCLES: bool = true;

    trait Pl: Payload {}
    impl<T: Payload> Pl for T {}

    #[allow(dead_code)]
    struct Node<T: 'static> {
        prev: RefCell<Option<P<Node<T>>>>,
        next: RefCell<Option<P<Node<T>>>>,
        flag: bool,
        payload: T,
    }

    impl<T: 'static> Trace for Node<T> {
        fn trace(&self, tracer: &mut Tracer) {
            self.prev.trace(tracer);
            self.next.trace(tracer);
        }
    }

    struct FinNode {
        prev: RefCell<Option<P<FinNode>>>,
        next: RefCell<Option<P<FinNode>>>,
        flag: bool,
        payload: P40,
    }

    impl Trace for FinNode {
        fn trace(&self, tracer: &mut Tracer) {
            self.prev.trace(tracer);
            self.next.trace(tracer);
        }
    }

    impl Drop for FinNode {
        fn drop(&mut self) {
            black_box((self.flag, &self.payload));
            super::count_finalizer();
        }
    }

    fn new_fin(_: &H, seed: u64) -> P<FinNode> {
        P::new(FinNode {
            prev: RefCell::new(None),
            next: RefCell::new(None),
            flag: seed & 1 == 1,
            payload: P40::make(seed as u8),
        })
    }

    #[inline]
    fn alloc<T: Trace>(_: &H, v: T) -> P<T> {
        P::new(v)
    }

    fn fresh() -> H {}

    fn set_auto(_: &H, _: bool) {}

    fn collect(_: &H) -> Option<usize> {
        bacon_rajan_cc::collect_cycles();
        None
    }

    fn downgrade(p: &P<Node<P40>>) -> Weak<Node<P40>> {
        p.downgrade()
    }

    fn upgrade(w: &Weak<Node<P40>>) -> Option<P<Node<P40>>> {
        w.upgrade()
    }

    fn cannot(_: super::Kind) -> Option<&'static str> {
        None
    }

    shapes!();
}

mod gcmod_rt {
    use super::{Payload, P100, P16, P40};
    use gcmodule::{Cc as P, Trace, Tracer};
    use std::cell::RefCell;
    use std::hint::black_box;
    use std::time::{Duration, Instant};

    type H = ();
    const CYCLES: bool = true;

    trait Pl: Payload {}
    impl<T: Payload> Pl for T {}

    #[allow(dead_code)]
    struct Node<T: 'static> {
        prev: RefCell<Option<P<Node<T>>>>,
        next: RefCell<Option<P<Node<T>>>>,
        flag: bool,
        payload: T,
    }

    // Written by hand: gcmodule's derive recurses on self-referential types (see peers.rs).
    impl<T: 'static> Trace for Node<T> {
        fn trace(&self, tracer: &mut Tracer) {
            self.prev.trace(tracer);
            self.next.trace(tracer);
        }
        fn is_type_tracked() -> bool {
            true
        }
    }

    struct FinNode {
        prev: RefCell<Option<P<FinNode>>>,
        next: RefCell<Option<P<FinNode>>>,
        flag: bool,
        payload: P40,
    }

    impl Trace for FinNode {
        fn trace(&self, tracer: &mut Tracer) {
            self.prev.trace(tracer);
            self.next.trace(tracer);
        }
        fn is_type_tracked() -> bool {
            true
        }
    }

    impl Drop for FinNode {
        fn drop(&mut self) {
            black_box((self.flag, &self.payload));
            super::count_finalizer();
        }
    }

    fn new_fin(_: &H, seed: u64) -> P<FinNode> {
        P::new(FinNode {
            prev: RefCell::new(None),
            next: RefCell::new(None),
            flag: seed & 1 == 1,
            payload: P40::make(seed as u8),
        })
    }

    #[inline]
    fn alloc<T: Trace>(_: &H, v: T) -> P<T> {
        P::new(v)
    }

    fn fresh() -> H {}

    fn set_auto(_: &H, _: bool) {}

    fn collect(_: &H) -> Option<usize> {
        Some(gcmodule::collect_thread_cycles())
    }

    type Weak<T> = std::marker::PhantomData<T>;

    fn downgrade(_: &P<Node<P40>>) -> Weak<Node<P40>> {
        unreachable!("gcmodule has no weak references")
    }

    fn upgrade(_: &Weak<Node<P40>>) -> Option<P<Node<P40>>> {
        unreachable!("gcmodule has no weak references")
    }

    fn cannot(kind: super::Kind) -> Option<&'static str> {
        kind.weak().then_some("gcmodule has no weak references")
    }

    shapes!();
}
