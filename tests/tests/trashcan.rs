//! Iterative teardown, SEMANTICS 3.3: long chains and deep nesting on a 2 MiB stack, and the
//! head-to-tail order of a chain's finalizers (CPython's trashcan tests).

use std::cell::RefCell;

use reap::{Finalize, Gc, Heap, Trace, Weak};

const STACK: usize = 2 << 20;

fn on_small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

#[derive(Trace)]
struct Node {
    next: Option<Gc<Node>>,
}

#[test]
fn trashcan_ten_million_node_list() {
    let n: usize = if cfg!(miri) { 2_000 } else { 10_000_000 };
    let freed = on_small_stack(move || {
        let heap = Heap::new();
        heap.disable();
        let mut head: Option<Gc<Node>> = None;
        for _ in 0..n {
            head = Some(heap.alloc(Node { next: head.take() }));
        }
        assert_eq!(heap.live_objects(), n);
        drop(head);
        assert_eq!(heap.live_objects(), 0);
        heap.freed_objects()
    });
    assert_eq!(freed, n as u64);
}

#[derive(Trace)]
struct Nested(Vec<Gc<Nested>>);

#[test]
fn trashcan_million_deep_nested_containers() {
    let n: usize = if cfg!(miri) { 1_000 } else { 1_000_000 };
    let live_after = on_small_stack(move || {
        let heap = Heap::new();
        heap.disable();
        let mut cur = heap.alloc(Nested(Vec::new()));
        for _ in 1..n {
            cur = heap.alloc(Nested(vec![cur]));
        }
        drop(cur);
        heap.live_objects()
    });
    assert_eq!(live_after, 0);
}

thread_local!(static ORDER: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) });

#[derive(Trace)]
#[reap(finalize)]
struct Link {
    index: u32,
    next: Option<Gc<Link>>,
}

impl Finalize for Link {
    fn finalize(this: &Gc<Self>) {
        ORDER.with(|o| o.borrow_mut().push(this.index));
    }
}

/// A chain's finalizers run head to tail, past the trashcan's deferral depth too (CPython:
/// a 200,000-node `__del__` chain finalized strictly head to tail).
#[test]
fn trashcan_chain_finalizers_run_head_to_tail() {
    let n: u32 = if cfg!(miri) { 500 } else { 200_000 };
    let order = on_small_stack(move || {
        let heap = Heap::new();
        let mut head: Option<Gc<Link>> = None;
        for i in (0..n).rev() {
            head = Some(heap.alloc(Link {
                index: i,
                next: head.take(),
            }));
        }
        drop(head);
        assert_eq!(heap.live_objects(), 0);
        ORDER.with(|o| std::mem::take(&mut *o.borrow_mut()))
    });
    assert_eq!(order.len(), n as usize);
    assert!(order.iter().copied().eq(0..n), "finalizers out of order");
}

/// Weak references to objects whose death is deferred are not readable, and their callbacks
/// all fire (test_trashcan_16602; "10 callbacks along a 100,000 chain all fired"). When node
/// `i`'s callback runs, every newer node (dead or deferred) reads as dead and every older one
/// (still held by the chain) as alive.
#[test]
fn trashcan_deferred_deaths_clear_weak_references_and_fire_callbacks() {
    let n: usize = if cfg!(miri) { 300 } else { 100_000 };
    let fired = on_small_stack(move || {
        let heap = Heap::new();
        let count = std::rc::Rc::new(std::cell::Cell::new(0_usize));
        let plain: std::rc::Rc<RefCell<Vec<Weak<Node>>>> = Default::default();
        let mut head: Option<Gc<Node>> = None;
        let mut weaks = Vec::new();
        for i in 0..n {
            let node = heap.alloc(Node { next: head.take() });
            plain.borrow_mut().push(Weak::new(&node));
            if i % (n / 10) == 0 {
                let c = count.clone();
                let plain = plain.clone();
                weaks.push(Weak::with_untraced_callback(
                    &node,
                    move |w: &Weak<Node>| {
                        assert!(w.upgrade().is_none());
                        let plain = plain.borrow();
                        assert!(plain[i..].iter().all(|p| p.upgrade().is_none()));
                        assert!(plain[..i].iter().all(|p| p.is_alive()));
                        c.set(c.get() + 1);
                    },
                ));
            }
            head = Some(node);
        }
        drop(head);
        assert!(weaks.iter().all(|w| !w.is_alive()));
        count.get()
    });
    assert_eq!(fired, 10);
}

#[derive(Trace)]
struct RingNode {
    next: RefCell<Option<Gc<RingNode>>>,
}

/// The collector recurses nowhere: a 10,000,000-node ring and a 10,000,000-node chain hanging
/// off a self-cycle are collected on a 2 MiB stack.
#[test]
fn collector_handles_ten_million_node_ring_and_chain_on_a_small_stack() {
    let n: usize = if cfg!(miri) { 1_000 } else { 10_000_000 };
    let collected = on_small_stack(move || {
        let heap = Heap::new();
        heap.disable();
        let first = heap.alloc(RingNode {
            next: RefCell::new(None),
        });
        let mut prev = first.clone();
        for _ in 1..n {
            let node = heap.alloc(RingNode {
                next: RefCell::new(None),
            });
            *prev.next.borrow_mut() = Some(node.clone());
            prev = node;
        }
        *prev.next.borrow_mut() = Some(first.clone());
        drop((first, prev));
        let ring = heap.collect(2);
        // A chain whose head is in a self-cycle: garbage only through the cycle.
        let head = heap.alloc(RingNode {
            next: RefCell::new(None),
        });
        let mut tail: Option<Gc<RingNode>> = None;
        for _ in 1..n {
            tail = Some(heap.alloc(RingNode {
                next: RefCell::new(tail.take()),
            }));
        }
        let chain_first = heap.alloc(RingNode {
            next: RefCell::new(tail),
        });
        *head.next.borrow_mut() = Some(chain_first);
        #[derive(Trace)]
        struct Anchor {
            chain: Gc<RingNode>,
            me: RefCell<Option<Gc<Anchor>>>,
        }
        let anchor = heap.alloc(Anchor {
            chain: head,
            me: RefCell::new(None),
        });
        *anchor.me.borrow_mut() = Some(anchor.clone());
        drop(anchor);
        let chain = heap.collect(2);
        (ring, chain, heap.live_objects())
    });
    assert_eq!(collected.0, n);
    assert_eq!(
        collected.1,
        n + 2,
        "the chain, its head and the self-cycle holding it"
    );
    assert_eq!(collected.2, 0);
}

/// W::test_trashcan_16602: a 100-deep chain of objects held as values of a weak-keyed map (each
/// key the previous object); each object's weak reference to its parent has a callback reading
/// a weak reference to the object itself. Dropping the root cascades through the map's removal
/// callbacks: no crash, and a weak self read during the cascade never yields a dying object.
#[test]
fn w_test_trashcan_16602() {
    use std::collections::HashMap;
    use std::rc::Rc;
    #[derive(Trace)]
    struct C {
        wparent: RefCell<Option<Weak<C>>>,
    }
    type Map = Rc<RefCell<HashMap<usize, (Weak<C>, Gc<C>)>>>;
    let heap = Heap::new();
    let d: Map = Rc::default();
    let reads: Rc<RefCell<Vec<bool>>> = Rc::default();
    let new_c = |parent: Option<&Gc<C>>| {
        let c = heap.alloc(C {
            wparent: RefCell::new(None),
        });
        if let Some(p) = parent {
            let wself = Weak::new(&c);
            let r = reads.clone();
            *c.wparent.borrow_mut() = Some(Weak::with_untraced_callback(p, move |_: &Weak<C>| {
                let o = wself.upgrade();
                if let Some(o) = &o {
                    assert!(Gc::strong_count(o) >= 2, "a dying object came back");
                }
                r.borrow_mut().push(o.is_some());
            }));
        }
        c
    };
    let root = new_c(None);
    let mut c = root.clone();
    for _ in 0..100 {
        let next = new_c(Some(&c));
        let key = Gc::as_ptr(&c) as *const u8 as usize;
        let dd = d.clone();
        let wkey = Weak::with_untraced_callback(&c, move |_: &Weak<C>| {
            // Removing the entry drops its value: the cascade.
            let entry = dd.borrow_mut().remove(&key);
            drop(entry);
        });
        d.borrow_mut().insert(key, (wkey, next.clone()));
        c = next;
    }
    drop(c);
    drop(root);
    heap.collect(2);
    assert!(d.borrow().is_empty(), "every entry went with its key");
    assert_eq!(reads.borrow().len(), 100, "every parent callback ran");
    assert_eq!(heap.live_objects(), 0);
}
