//! What the loom models share: an object type that counts its finalizer runs and drops, and
//! the model runner. Built only with `--cfg reap_loom`.
//!
//! The models check `heap.live_objects()` only where every death runs on the model's main
//! thread: loom lets `join` return before the joined thread's thread-local destructors (where a
//! thread gives its heap references back) have run, unlike std, so a count read after a join
//! may not include them.
#![allow(dead_code)]

use loom::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use loom::sync::{Arc, Mutex};
use reap::sync::{Finalize, Gc, Heap};
use reap::Trace;

/// Counters an object reports to.
#[derive(Default)]
pub struct Counters {
    pub finalized: AtomicUsize,
    pub dropped: AtomicUsize,
}

impl Counters {
    pub fn finalized(&self) -> usize {
        self.finalized.load(SeqCst)
    }
    pub fn dropped(&self) -> usize {
        self.dropped.load(SeqCst)
    }
}

/// An object without a finalizer that counts its drop, and checks it is dropped once.
#[derive(Trace)]
pub struct Obj {
    #[reap(skip)]
    pub counters: Arc<Counters>,
    pub value: u32,
}

impl Drop for Obj {
    fn drop(&mut self) {
        assert_eq!(self.value, 7, "value read after it was dropped");
        self.value = 0;
        let before = self.counters.dropped.fetch_add(1, SeqCst);
        assert_eq!(before, 0, "dropped twice");
    }
}

/// An object with a finalizer that publishes its handle into `slot` (resurrecting it).
#[derive(Trace)]
#[reap(sync_finalize)]
pub struct Publisher {
    #[reap(skip)]
    pub counters: Arc<Counters>,
    #[reap(skip)]
    pub slot: Arc<Mutex<Option<Gc<Publisher>>>>,
}

impl Finalize for Publisher {
    fn finalize(this: &Gc<Self>) {
        let before = this.counters.finalized.fetch_add(1, SeqCst);
        assert_eq!(before, 0, "finalized twice");
        *this.slot.lock().unwrap() = Some(this.clone());
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        assert_eq!(
            self.counters.finalized(),
            1,
            "dropped before its finalizer ran"
        );
        let before = self.counters.dropped.fetch_add(1, SeqCst);
        assert_eq!(before, 0, "dropped twice");
    }
}

pub fn obj(heap: &Heap, counters: &Arc<Counters>) -> Gc<Obj> {
    heap.alloc(Obj {
        counters: counters.clone(),
        value: 7,
    })
}

/// What a model starts from: a new heap and new counters.
pub fn setup() -> (Heap, Arc<Counters>) {
    (Heap::new(), Arc::new(Counters::default()))
}

/// [`setup`], and an [`Obj`] on the heap reporting to the counters, allocated (so owned) by the
/// calling thread.
pub fn setup_obj() -> (Heap, Arc<Counters>, Gc<Obj>) {
    let (heap, counters) = setup();
    let obj = obj(&heap, &counters);
    (heap, counters, obj)
}

/// Runs `f` under loom (whose leak tracking fails the model if an object's memory is not
/// freed by the end of an execution), exhaustively unless `LOOM_MAX_PREEMPTIONS` bounds it, and prints how
/// many executions it explored.
pub fn model(name: &str, f: impl Fn() + Sync + Send + 'static) {
    model_bounded(name, None, f)
}

/// [`model`] with a preemption bound (`LOOM_MAX_PREEMPTIONS` overrides it): for the
/// three-thread models, which the issue lets run at a bound of 2.
pub fn model_bounded(name: &str, bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r = runs.clone();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = bound;
    if let Ok(n) = std::env::var("LOOM_MAX_PREEMPTIONS") {
        builder.preemption_bound = Some(n.parse().expect("LOOM_MAX_PREEMPTIONS"));
    }
    builder.check(move || {
        r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f();
    });
    let n = runs.load(std::sync::atomic::Ordering::Relaxed);
    assert!(n > 0, "{name}: no execution explored");
    println!("loom model {name}: {n} executions");
}

/// An object whose finalizer only counts (it does not resurrect the object).
#[derive(Trace)]
#[reap(sync_finalize)]
pub struct Quiet {
    #[reap(skip)]
    pub counters: Arc<Counters>,
}

impl Finalize for Quiet {
    fn finalize(this: &Gc<Self>) {
        let before = this.counters.finalized.fetch_add(1, SeqCst);
        assert_eq!(before, 0, "finalized twice");
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        let before = self.counters.dropped.fetch_add(1, SeqCst);
        assert_eq!(before, 0, "dropped twice");
    }
}

/// Two upgrades of `w` on the calling thread, while the object's last reference goes on
/// another (models 24 to 26): once one returned `None`, the next must too (SEMANTICS 8.3);
/// and, given the object's `counters`, one that returns the object does so before its
/// finalizer began (the handle then holds it, so the finalizer cannot start while it lives).
pub fn upgrade_twice(w: &reap::sync::Weak<Quiet>, counters: Option<&Counters>) {
    let first = w.upgrade();
    if let (Some(c), Some(_)) = (counters, &first) {
        assert_eq!(c.finalized(), 0, "upgraded an object in its finalizer");
    }
    let failed = first.is_none();
    drop(first);
    let second = w.upgrade();
    assert!(
        !(failed && second.is_some()),
        "an upgrade returned the object after one returned None"
    );
    drop(second);
}

/// An object with a finalizer that lends its handle: it stores a clone into `slot`, then
/// takes back whatever `slot` holds and drops it (model 27). Whether the object is
/// resurrected depends on whether another thread took the handle meanwhile and kept it.
#[derive(Trace)]
#[reap(sync_finalize)]
pub struct Lender {
    #[reap(skip)]
    pub counters: Arc<Counters>,
    #[reap(skip)]
    pub slot: Arc<Mutex<Option<Gc<Lender>>>>,
}

impl Finalize for Lender {
    fn finalize(this: &Gc<Self>) {
        let before = this.counters.finalized.fetch_add(1, SeqCst);
        assert_eq!(before, 0, "finalized twice");
        *this.slot.lock().unwrap() = Some(this.clone());
        let back = this.slot.lock().unwrap().take();
        drop(back);
    }
}

impl Drop for Lender {
    fn drop(&mut self) {
        let before = self.counters.dropped.fetch_add(1, SeqCst);
        assert_eq!(before, 0, "dropped twice");
    }
}
