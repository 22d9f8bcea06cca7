//! Adversarial tests of the weak-reference layer: user code (Hash, Drop, finalizers, weak
//! callbacks, callback-state Clone) that calls back into the runtime while weak references and
//! their referents die. Safe Rust only. Expectations marked "python3" were checked with 3.11.

use std::cell::{Cell, RefCell};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use reap::{Gc, Heap, Trace, Weak};

type Reports = Rc<RefCell<Vec<String>>>;

fn hooked(heap: &Heap) -> Reports {
    let reports: Reports = Rc::default();
    let r = reports.clone();
    heap.set_unraisable_hook(Some(Box::new(move |u: &reap::Unraisable| {
        r.borrow_mut().push(format!("{:?}: {}", u.kind, u.message))
    })));
    reports
}

/// What a payload's `Drop` saw: weak count, `weak_refs` length, payload ids.
type Seen = Rc<RefCell<Vec<(usize, usize, Vec<u32>)>>>;

#[derive(Trace)]
struct Node {
    id: u32,
    next: RefCell<Option<Gc<Node>>>,
    w: RefCell<Option<Weak<Node>>>,
}

impl Hash for Node {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state)
    }
}

impl Hash for Fin {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state)
    }
}

fn node(heap: &Heap, id: u32) -> Gc<Node> {
    heap.alloc(Node {
        id,
        next: RefCell::new(None),
        w: RefCell::new(None),
    })
}

// ---------------------------------------------------------------------------------------------
// Hash impls called by try_hash.

thread_local! {
    static HK_GC: RefCell<Option<Gc<HashKey>>> = const { RefCell::new(None) };
    static HK_WEAK: RefCell<Option<Weak<HashKey>>> = const { RefCell::new(None) };
    static HK_KEEP: RefCell<Vec<Weak<HashKey>>> = const { RefCell::new(Vec::new()) };
    static HK_DEPTH: Cell<u32> = const { Cell::new(0) };
    static HK_LOG: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

#[derive(Trace)]
struct HashKey {
    id: u32,
}

impl PartialEq for HashKey {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id
    }
}

impl Hash for HashKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let d = HK_DEPTH.with(|d| d.get());
        if d == 0 {
            HK_DEPTH.with(|c| c.set(1));
            // Recursively hash the same weak reference (the one being hashed).
            let w = HK_WEAK.with(|w| w.borrow().clone()).unwrap();
            let inner = w.try_hash();
            HK_LOG.with(|l| l.borrow_mut().push(format!("inner {}", inner.is_ok())));
            // Drop the last user handle to the referent, after making more weak refs to it.
            let g = HK_GC.with(|g| g.borrow_mut().take()).unwrap();
            let shared = Weak::new(&g);
            assert!(shared.ptr_eq(&w), "the shared weak reference");
            let cb = Weak::with_untraced_callback(&g, |w: &Weak<HashKey>| {
                assert!(w.upgrade().is_none());
                HK_LOG.with(|l| l.borrow_mut().push("callback".into()));
            });
            // Hash the new listed one too (it gets the referent's hash).
            let _ = cb.try_hash();
            HK_KEEP.with(|k| k.borrow_mut().extend([shared, cb]));
            drop(g);
            HK_DEPTH.with(|c| c.set(0));
        }
        self.id.hash(state);
    }
}

/// python3: a `__hash__` that hashes the same ref recursively and drops the last reference
/// while `hash(w)` runs: `hash(w)` succeeds, the referent dies after, the callback runs once,
/// and `hash(w)` keeps returning the cached value.
#[test]
fn hash_impl_rehashes_same_weak_and_drops_referent() {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let g = heap.alloc(HashKey { id: 7 });
    let w = Weak::new(&g);
    HK_WEAK.with(|x| *x.borrow_mut() = Some(w.clone()));
    HK_GC.with(|x| *x.borrow_mut() = Some(g));
    let h = w.try_hash().expect("referent alive during hash");
    assert!(
        w.upgrade().is_none(),
        "the referent died when try_hash released it"
    );
    assert_eq!(w.try_hash(), Ok(h), "cached");
    let keep = HK_KEEP.with(|k| std::mem::take(&mut *k.borrow_mut()));
    assert_eq!(keep[1].try_hash(), Ok(h), "listed one hashed while alive");
    assert!(keep.iter().all(|k| k.upgrade().is_none()));
    assert_eq!(
        HK_LOG.with(|l| l.borrow().clone()),
        ["inner true", "callback"]
    );
    HK_WEAK.with(|x| x.borrow_mut().take());
    drop((w, keep));
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
    assert_eq!(heap.live_objects(), 0);
}

/// A hashed shared weak reference (which then has an extra block) dying in various orders
/// relative to its referent, with a weak reference to it whose callback replaces it.
#[test]
fn hashed_shared_weak_dies_while_replaced_then_referent_dies() {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let holder: Rc<RefCell<Option<Gc<u32>>>> = Rc::new(RefCell::new(Some(heap.alloc(5))));
    let keep: Rc<RefCell<Vec<Weak<u32>>>> = Rc::default();
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let w1 = Weak::new(holder.borrow().as_ref().unwrap());
    let h = w1.try_hash().unwrap();
    let (h2, k2, l2) = (holder.clone(), keep.clone(), log.clone());
    let _ww = Weak::with_untraced_callback(&Weak::as_object(&w1), move |_| {
        let o = h2.borrow().clone().unwrap();
        // w1 is dying (count 0) but still in the slot.
        assert_eq!(Gc::weak_count(&o), 0);
        assert!(Gc::weak_refs(&o).is_empty());
        let w2 = Weak::new(&o);
        assert_eq!(w2.try_hash(), Ok(h));
        let l3 = l2.clone();
        let w3 = Weak::with_untraced_callback(&o, move |w: &Weak<u32>| {
            assert!(w.upgrade().is_none());
            l3.borrow_mut().push("w3".into());
        });
        assert_eq!(Gc::weak_count(&o), 2);
        assert_eq!(Gc::weak_refs(&o).len(), 2);
        k2.borrow_mut().extend([w2, w3]);
        drop(o);
        // The referent dies now, before w1's Drop.
        h2.borrow_mut().take();
        l2.borrow_mut().push("ww".into());
    });
    drop(w1);
    assert_eq!(*log.borrow(), ["w3", "ww"]);
    assert!(keep.borrow().iter().all(|w| w.upgrade().is_none()));
    assert_eq!(keep.borrow()[0].try_hash(), Ok(h));
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
}

// ---------------------------------------------------------------------------------------------
// Callbacks.

/// python3: callbacks run newest first and all run, even when an earlier one drops the handle
/// of a later one (`[3, 2, 1]`).
#[test]
fn callbacks_newest_first_even_if_an_earlier_one_drops_a_later_weak() {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let o = heap.alloc(0_u8);
    let log: Rc<RefCell<Vec<u32>>> = Rc::default();
    let ws: Rc<RefCell<Vec<Option<Weak<u8>>>>> = Rc::default();
    for n in 1..=3_u32 {
        let (l, w2) = (log.clone(), ws.clone());
        let w = Weak::with_untraced_callback(&o, move |w: &Weak<u8>| {
            assert!(w.upgrade().is_none());
            l.borrow_mut().push(n);
            if n > 1 {
                let dropped = w2.borrow_mut()[(n - 2) as usize].take();
                drop(dropped);
            }
        });
        ws.borrow_mut().push(Some(w));
    }
    assert_eq!(Gc::weak_count(&o), 3);
    drop(o);
    assert_eq!(*log.borrow(), [3, 2, 1]);
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
    ws.borrow_mut().clear();
    assert_eq!(heap.live_objects(), 0);
}

/// A callback of a dying object makes shared and listed weak references to other objects that
/// it then kills, recursively, and collects.
#[test]
fn callbacks_create_weak_refs_to_other_dying_objects_and_collect() {
    let heap = Rc::new(Heap::new());
    let reports = hooked(&heap);
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let holder: Rc<RefCell<Vec<Gc<Node>>>> = Rc::default();
    let keep: Rc<RefCell<Vec<Weak<Node>>>> = Rc::default();
    let objs: Vec<Gc<Node>> = (0..5).map(|i| node(&heap, i)).collect();
    fn arm(
        o: &Gc<Node>,
        heap: &Rc<Heap>,
        log: &Rc<RefCell<Vec<String>>>,
        holder: &Rc<RefCell<Vec<Gc<Node>>>>,
        keep: &Rc<RefCell<Vec<Weak<Node>>>>,
    ) -> Weak<Node> {
        let (h, l, ho, k) = (heap.clone(), log.clone(), holder.clone(), keep.clone());
        let id = o.id;
        Weak::with_untraced_callback(o, move |w: &Weak<Node>| {
            assert!(w.upgrade().is_none());
            l.borrow_mut().push(format!("cb{id}"));
            let next = ho.borrow_mut().pop();
            if let Some(n) = next {
                *n.next.borrow_mut() = None;
                k.borrow_mut().push(Weak::new(&n));
                let again = arm(&n, &h, &l, &ho, &k);
                k.borrow_mut().push(again);
                assert_eq!(Gc::weak_count(&n), 2);
                drop(n); // dies right here, inside this callback
            }
            let c = node(&h, 99);
            *c.next.borrow_mut() = Some(c.clone());
            drop(c);
            assert_eq!(h.collect(2), 1, "the self-cycle");
        })
    }
    let w0 = arm(&objs[0], &heap, &log, &holder, &keep);
    let mut objs = objs.into_iter();
    let o0 = objs.next().unwrap();
    holder.borrow_mut().extend(objs);
    drop(o0);
    assert_eq!(*log.borrow(), ["cb0", "cb4", "cb3", "cb2", "cb1"]);
    assert!(w0.upgrade().is_none());
    assert!(keep.borrow().iter().all(|w| w.upgrade().is_none()));
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
    keep.borrow_mut().clear();
    drop(w0);
    heap.collect(2);
    assert_eq!(heap.live_objects(), 0);
}

#[derive(Trace)]
#[reap(finalize)]
struct Fin {
    id: u32,
    #[reap(skip)]
    log: Rc<RefCell<Vec<String>>>,
    #[reap(skip)]
    keep: Rc<RefCell<Vec<Weak<Fin>>>>,
}

impl reap::Finalize for Fin {
    fn finalize(this: &Gc<Self>) {
        // New weak references to the dying object from its finalizer: shared and listed.
        let s = Weak::new(this);
        assert!(s.is_alive());
        let _ = s.try_hash();
        let l = this.log.clone();
        let id = this.id;
        let c = Weak::with_untraced_callback(this, move |w: &Weak<Fin>| {
            assert!(w.upgrade().is_none());
            l.borrow_mut().push(format!("cb{id}"));
        });
        this.keep.borrow_mut().extend([s, c]);
        this.log.borrow_mut().push(format!("fin{id}"));
    }
}

/// A finalizer makes weak references to its own object (not resurrecting it): they are cleared
/// and the callback runs once, on the refcount path and in a collection.
#[test]
fn finalizer_makes_weak_refs_to_its_dying_object() {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let keep: Rc<RefCell<Vec<Weak<Fin>>>> = Rc::default();
    let a = heap.alloc(Fin {
        id: 1,
        log: log.clone(),
        keep: keep.clone(),
    });
    drop(a);
    assert_eq!(*log.borrow(), ["fin1", "cb1"]);
    assert!(keep.borrow().iter().all(|w| w.upgrade().is_none()));
    assert!(keep.borrow()[0].try_hash().is_ok(), "hashed while alive");
    keep.borrow_mut().clear();
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Weak references to weak-reference objects.

/// o <- w (listed) <- ww (listed) <- www: dying in every order of the three user handles.
#[test]
fn weak_to_weak_chains_die_in_every_order() {
    let orders: [[usize; 4]; 6] = [
        [0, 1, 2, 3],
        [3, 2, 1, 0],
        [1, 0, 3, 2],
        [2, 0, 3, 1],
        [0, 3, 1, 2],
        [1, 3, 0, 2],
    ];
    for order in orders {
        for shared in [false, true] {
            let heap = Heap::new();
            let reports = hooked(&heap);
            let log: Gc<RefCell<Vec<u32>>> = heap.alloc(RefCell::new(Vec::new()));
            let o = heap.alloc(0_u8);
            let w = if shared {
                Weak::new(&o)
            } else {
                let l1 = log.clone();
                Weak::with_untraced_callback(&o, move |_: &Weak<u8>| l1.borrow_mut().push(1))
            };
            let wo = Weak::as_object(&w);
            let l2 = log.clone();
            let ww = Weak::with_untraced_callback(&wo, move |_| l2.borrow_mut().push(2));
            let wwo = Weak::as_object(&ww);
            let www = Weak::with_payload_and_callback(&wwo, 9_u32, log.clone(), |l3, w| {
                assert_eq!(w.payload::<u32>(), Some(&9));
                l3.borrow_mut().push(3);
            });
            drop((wo, wwo));
            let mut slots: Vec<Option<Box<dyn std::any::Any>>> = vec![
                Some(Box::new(o)),
                Some(Box::new(w)),
                Some(Box::new(ww)),
                Some(Box::new(www.clone())),
            ];
            for &i in &order {
                slots[i].take();
            }
            assert!(www.upgrade().is_none());
            assert_eq!(www.payload::<u32>(), Some(&9));
            let l = log.borrow().clone();
            for n in 1..=3 {
                assert!(
                    l.iter().filter(|&&x| x == n).count() <= 1,
                    "{order:?} {l:?}"
                );
            }
            assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
            drop((www, log));
            assert_eq!(heap.live_objects(), 0, "{order:?} shared={shared}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Payloads whose Drop runs as the weak-reference object dies.

#[derive(Trace)]
struct Probe {
    #[reap(skip)]
    target: Rc<RefCell<Option<Gc<u8>>>>,
    #[reap(skip)]
    seen: Seen,
    #[reap(skip)]
    heap: Rc<Heap>,
    tag: u32,
}

impl Drop for Probe {
    fn drop(&mut self) {
        let t = self.target.borrow().clone();
        if let Some(t) = t {
            let refs = Gc::weak_refs(&t);
            let tags = refs
                .iter()
                .filter_map(|w| w.payload::<Probe>())
                .map(|p| p.tag)
                .collect();
            self.seen
                .borrow_mut()
                .push((Gc::weak_count(&t), refs.len(), tags));
            drop(refs);
            // A new keyed weak ref, made and dropped while this one dies.
            let again = Weak::with_payload(&t, 77_u32);
            assert_eq!(again.payload::<u32>(), Some(&77));
            self.heap.collect(2);
        }
    }
}

#[test]
fn payload_drop_reads_siblings_while_its_weak_object_dies() {
    let heap = Rc::new(Heap::new());
    let reports = hooked(&heap);
    let target: Rc<RefCell<Option<Gc<u8>>>> = Rc::default();
    let seen: Seen = Rc::default();
    let o = heap.alloc(1_u8);
    *target.borrow_mut() = Some(o.clone());
    let mk = |tag| Probe {
        target: target.clone(),
        seen: seen.clone(),
        heap: heap.clone(),
        tag,
    };
    let _s = Weak::new(&o);
    let k1 = Weak::with_payload(&o, mk(1));
    let k2 = Weak::with_payload(&o, mk(2));
    let k3 = Weak::with_payload(&o, mk(3));
    drop(k2);
    assert_eq!(*seen.borrow(), [(3, 3, vec![3, 1])]);
    drop(k3);
    drop(o);
    target.borrow_mut().take();
    // k1 outlives its referent: payload readable, Drop finds no target.
    assert_eq!(k1.payload::<Probe>().map(|p| p.tag), Some(1));
    drop(k1);
    assert_eq!(seen.borrow().len(), 2);
    assert_eq!(seen.borrow()[1], (2, 2, vec![1]), "k3 already detached");
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
}

// ---------------------------------------------------------------------------------------------
// Trashcan depth.

/// A 300-long chain: each node is also weakly referenced (shared, hashed, and with a callback)
/// and holds the shared weak ref of its successor, whose death is deferred past depth 50.
#[test]
fn trashcan_chain_with_shared_weak_refs() {
    let heap = Rc::new(Heap::new());
    let reports = hooked(&heap);
    let log: Rc<RefCell<Vec<u32>>> = Rc::default();
    const N: u32 = 300;
    let nodes: Vec<Gc<Node>> = (0..N).map(|i| node(&heap, i)).collect();
    let mut outside = Vec::new();
    let mut cbs = Vec::new();
    for i in 0..N as usize {
        if i + 1 < N as usize {
            *nodes[i].next.borrow_mut() = Some(nodes[i + 1].clone());
            *nodes[i].w.borrow_mut() = Some(Weak::new(&nodes[i + 1]));
        }
        let s = Weak::new(&nodes[i]);
        s.try_hash().ok();
        // A weak ref to the shared weak ref object, whose callback makes a shared weak ref
        // to the live head-of-list sentinel and collects.
        let (l, h) = (log.clone(), heap.clone());
        let id = i as u32;
        cbs.push(Weak::with_untraced_callback(
            &Weak::as_object(&s),
            move |_| {
                l.borrow_mut().push(10_000 + id);
                if id % 97 == 0 {
                    h.collect(2);
                }
            },
        ));
        let l = log.clone();
        cbs.push(Weak::with_untraced_callback(
            &Weak::as_object(&s),
            move |_| l.borrow_mut().push(20_000 + id),
        ));
        let l = log.clone();
        outside.push((
            s,
            Weak::with_untraced_callback(&nodes[i], move |w: &Weak<Node>| {
                assert!(w.upgrade().is_none());
                l.borrow_mut().push(id)
            }),
        ));
    }
    let head = nodes[0].clone();
    drop(nodes);
    drop(head);
    let l = log.borrow().clone();
    for i in 0..N {
        assert_eq!(l.iter().filter(|&&x| x == i).count(), 1, "node {i}");
    }
    assert!(outside
        .iter()
        .all(|(s, c)| s.upgrade().is_none() && c.upgrade().is_none()));
    // Shared weak refs held outside are alive; those inside nodes 1.. died (callbacks once,
    // newest first for each object).
    let inner: Vec<u32> = l.iter().copied().filter(|&x| x >= 10_000).collect();
    assert!(
        inner.is_empty(),
        "the shared weak refs are still held outside: {inner:?}"
    );
    drop(outside);
    let l = log.borrow().clone();
    for i in 0..N {
        let a = l.iter().position(|&x| x == 10_000 + i);
        let b = l.iter().position(|&x| x == 20_000 + i);
        assert!(b.is_some() && a.is_some() && b < a, "{i}: newest first");
    }
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
    drop(cbs);
    heap.collect(2);
    assert_eq!(heap.live_objects(), 0);
}

/// A chain whose only references to the nodes' shared weak refs are in the nodes: the shared
/// weak refs die (deferred too) together with, or after, their referents; callbacks on weak
/// refs to them make new shared weak refs to live objects.
#[test]
fn trashcan_chain_shared_weak_refs_held_only_by_chain() {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let live = heap.alloc(0_u8);
    let keep: Rc<RefCell<Vec<Weak<u8>>>> = Rc::default();
    let count = Rc::new(Cell::new(0));
    const N: u32 = 200;
    let nodes: Vec<Gc<Node>> = (0..N).map(|i| node(&heap, i)).collect();
    let mut cbs = Vec::new();
    let mut outside = Vec::new();
    for i in 0..N as usize {
        if i + 1 < N as usize {
            *nodes[i].next.borrow_mut() = Some(nodes[i + 1].clone());
        }
        // Node i holds the shared weak ref to node i (itself).
        let s = Weak::new(&nodes[i]);
        outside.push(s.clone());
        *nodes[i].w.borrow_mut() = Some(s.clone());
        let (k, c, lv) = (keep.clone(), count.clone(), live.clone());
        cbs.push(Weak::with_untraced_callback(
            &Weak::as_object(&s),
            move |_| {
                c.set(c.get() + 1);
                k.borrow_mut().push(Weak::new(&lv));
            },
        ));
    }
    drop(outside.split_off(0)); // only the nodes hold them now
    let head = nodes[0].clone();
    drop(nodes);
    drop(head);
    assert_eq!(count.get(), N);
    assert_eq!(Gc::weak_count(&live), 1);
    assert!(keep.borrow().iter().all(|w| w.is_alive()));
    drop(live);
    assert!(keep.borrow().iter().all(|w| !w.is_alive()));
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
    keep.borrow_mut().clear();
    drop(cbs);
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Collections from callbacks, on both paths.

#[test]
fn collect_inside_callbacks_in_a_collection() {
    let heap = Rc::new(Heap::new());
    let reports = hooked(&heap);
    let log: Rc<RefCell<Vec<String>>> = Rc::default();
    let (a, b) = (node(&heap, 1), node(&heap, 2));
    *a.next.borrow_mut() = Some(b.clone());
    *b.next.borrow_mut() = Some(a.clone());
    let mut ws = Vec::new();
    for n in 0..3 {
        let (h, l) = (heap.clone(), log.clone());
        ws.push(Weak::with_untraced_callback(&a, move |w: &Weak<Node>| {
            assert!(w.upgrade().is_none());
            l.borrow_mut().push(format!("a{n}"));
            // Another cycle to collect, with weak refs whose callbacks log.
            let c = node(&h, 9);
            *c.next.borrow_mut() = Some(c.clone());
            let l2 = l.clone();
            let wc = Weak::with_untraced_callback(&c, move |_: &Weak<Node>| {
                l2.borrow_mut().push("c".into())
            });
            drop(c);
            // python3: gc.collect() in a callback run by a collection returns 0.
            assert_eq!(h.collect(2), 0, "no nested collection");
            assert!(wc.is_alive());
            drop(wc);
        }));
    }
    let s = Weak::new(&b);
    drop((a, b));
    heap.collect(2);
    assert!(s.upgrade().is_none());
    let l = log.borrow().clone();
    assert_eq!(l, ["a2", "a1", "a0"]);
    assert_eq!(
        heap.collect(2),
        3,
        "the three self-cycles made by the callbacks"
    );
    assert!(
        log.borrow().iter().filter(|x| *x == "c").count() == 0,
        "their weak refs died first"
    );
    assert!(reports.borrow().is_empty(), "{:?}", reports.borrow());
    drop((ws, s));
    heap.collect(2);
    assert_eq!(heap.live_objects(), 0);
}

// ---------------------------------------------------------------------------------------------
// Callback-state Clone impls.

thread_local! {
    static BOMB_ACTION: RefCell<Option<Box<dyn Fn()>>> = const { RefCell::new(None) };
}

#[derive(Trace)]
struct Bomb {
    n: u32,
}

impl Clone for Bomb {
    fn clone(&self) -> Bomb {
        let act = BOMB_ACTION.with(|a| a.borrow_mut().take());
        if let Some(act) = act {
            act();
        }
        Bomb { n: self.n }
    }
}

/// `callback_state`'s Clone collects while the referent is garbage in a cycle. Reading
/// `w.__callback__` runs no code in CPython, so there is no Python original: the runtime must
/// neither panic out of the collection nor leave it half done. The callback whose state is
/// being cloned cannot be taken: it is reported and not run; the other callbacks run; the
/// garbage is freed. (It panicked with "already borrowed" out of `collect` before the fix.)
#[test]
fn callback_state_clone_collects_the_referent() {
    let heap = Rc::new(Heap::new());
    let reports = hooked(&heap);
    let count = Rc::new(Cell::new(0));
    let (a, b) = (node(&heap, 1), node(&heap, 2));
    *a.next.borrow_mut() = Some(b.clone());
    *b.next.borrow_mut() = Some(a.clone());
    let w = Weak::with_callback(&a, Bomb { n: 3 }, |s: &Bomb, w: &Weak<Node>| {
        assert_eq!(s.n, 3);
        assert!(w.upgrade().is_none());
    });
    let c = count.clone();
    let _probe = Weak::with_untraced_callback(&a, move |_: &Weak<Node>| c.set(c.get() + 1));
    drop((a, b));
    let h = heap.clone();
    BOMB_ACTION.with(|x| {
        *x.borrow_mut() = Some(Box::new(move || {
            h.collect(2);
        }))
    });
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.callback_state::<Bomb>()));
    assert!(r.is_ok(), "callback_state panicked");
    assert_eq!(r.unwrap().map(|b| b.n), Some(3));
    assert_eq!(count.get(), 1);
    assert!(w.upgrade().is_none());
    assert_eq!(reports.borrow().len(), 1, "{:?}", reports.borrow());
    assert!(
        reports.borrow()[0].contains("callback not run"),
        "{:?}",
        reports.borrow()
    );
    BOMB_ACTION.with(|x| x.borrow_mut().take());
    drop((w, _probe));
    assert_eq!(heap.live_objects(), 0, "the garbage pair was freed");
}

/// Same on the refcount path: the Clone drops the last handle to the referent, whose death
/// then completes (it was abandoned after clearing, never freed, before the fix).
#[test]
fn callback_state_clone_drops_the_referent() {
    let heap = Heap::new();
    let reports = hooked(&heap);
    let ran = Rc::new(Cell::new(0));
    let holder: Rc<RefCell<Option<Gc<u8>>>> = Rc::new(RefCell::new(Some(heap.alloc(1))));
    let w = Weak::with_callback(holder.borrow().as_ref().unwrap(), Bomb { n: 1 }, |_, _| {});
    let r2 = ran.clone();
    let _w2 = Weak::with_untraced_callback(holder.borrow().as_ref().unwrap(), move |_| {
        r2.set(r2.get() + 1)
    });
    let h = holder.clone();
    BOMB_ACTION.with(|x| {
        *x.borrow_mut() = Some(Box::new(move || {
            h.borrow_mut().take();
        }))
    });
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| w.callback_state::<Bomb>()));
    BOMB_ACTION.with(|x| x.borrow_mut().take());
    assert!(r.is_ok(), "callback_state panicked");
    assert_eq!(ran.get(), 1);
    assert!(w.upgrade().is_none());
    assert_eq!(reports.borrow().len(), 1, "{:?}", reports.borrow());
    assert!(
        reports.borrow()[0].contains("callback not run"),
        "{:?}",
        reports.borrow()
    );
    drop((w, _w2));
    assert_eq!(heap.live_objects(), 0);
}
