//! Attacks on the Shared header's separate `owner` field (twelfth session's review): a
//! foreign decrement that reads `owner` 0 is one `fetch_sub`, so every merge must leave that
//! right: the end of a finalizer that handed handles to other threads, an exited owner's
//! objects dropped on three threads at once, the owner's last drop against a foreign one. Run
//! natively, under Miri and under ThreadSanitizer (`.ci/run`).

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;

use reap::sync::{Finalize, Gc, Heap, Weak};
use reap::Trace;

const ROUNDS: usize = if cfg!(miri) { 4 } else { 300 };

#[derive(Default)]
struct Counts {
    fin: AtomicUsize,
    dropped: AtomicUsize,
}

#[derive(Trace)]
#[reap(sync_finalize)]
struct Pub {
    #[reap(skip)]
    c: Arc<Counts>,
    #[reap(skip)]
    out: Mutex<Option<mpsc::Sender<Gc<Pub>>>>,
    #[reap(skip)]
    make_weak: bool,
    #[reap(skip)]
    weak_keep: Arc<Mutex<Vec<Weak<Pub>>>>,
}

impl Finalize for Pub {
    fn finalize(this: &Gc<Self>) {
        assert_eq!(this.c.fin.fetch_add(1, SeqCst), 0, "finalized twice");
        if this.make_weak {
            // A weak reference made by the finalizer (until the sixteenth session it also
            // marked the resurrected object's shared word `MAYBE_WEAK`).
            this.weak_keep.lock().unwrap().push(Weak::new(this));
        }
        if let Some(tx) = this.out.lock().unwrap().take() {
            // Several handles, all counted in the finalizer thread's `local`.
            let _ = tx.send(this.clone());
            let _ = tx.send(this.clone());
        }
    }
}

impl Drop for Pub {
    fn drop(&mut self) {
        assert_eq!(self.c.fin.load(SeqCst), 1);
        assert_eq!(self.c.dropped.fetch_add(1, SeqCst), 0, "dropped twice");
    }
}

/// A finalizer on the owner hands two local-counted handles to two threads, which clone and
/// drop them while the owner's `resurrect_end` marks and merges; a third thread upgrades a weak
/// reference made before the death.
#[test]
fn finalizer_handoff_to_two_threads_with_upgrades() {
    for round in 0..ROUNDS {
        let heap = Heap::new();
        let c = Arc::new(Counts::default());
        let (tx, rx) = mpsc::channel();
        let keep = Arc::new(Mutex::new(Vec::new()));
        let o = heap.alloc(Pub {
            c: c.clone(),
            out: Mutex::new(Some(tx)),
            make_weak: round % 2 == 1,
            weak_keep: keep.clone(),
        });
        let w = Weak::new(&o);
        let rx = Arc::new(Mutex::new(rx));
        let bar = Arc::new(Barrier::new(4));
        let mut ts = Vec::new();
        for _ in 0..2 {
            let (rx, bar, h) = (rx.clone(), bar.clone(), heap.clone());
            ts.push(thread::spawn(move || {
                h.safepoint();
                bar.wait();
                let g = rx.lock().unwrap().recv().unwrap();
                let g2 = g.clone();
                drop(g);
                assert!(Gc::strong_count(&g2) >= 1);
                drop(g2);
                h.safepoint();
            }));
        }
        {
            let (w, bar, h, c) = (w.clone(), bar.clone(), heap.clone(), c.clone());
            ts.push(thread::spawn(move || {
                h.safepoint();
                bar.wait();
                for _ in 0..8 {
                    if let Some(u) = w.upgrade() {
                        assert_eq!(c.dropped.load(SeqCst), 0, "upgraded a dropped object");
                        drop(u);
                    }
                }
                h.safepoint();
            }));
        }
        bar.wait();
        drop(o);
        for t in ts {
            t.join().unwrap();
        }
        heap.safepoint();
        keep.lock().unwrap().clear();
        heap.safepoint();
        assert_eq!(c.fin.load(SeqCst), 1);
        assert_eq!(c.dropped.load(SeqCst), 1, "round {round}");
        assert!(w.upgrade().is_none());
        drop(w);
        assert_eq!(heap.live_objects(), 0, "round {round}");
    }
}

#[derive(Trace)]
struct Plain {
    #[reap(skip)]
    c: Arc<Counts>,
    v: u32,
}

impl Drop for Plain {
    fn drop(&mut self) {
        assert_eq!(self.v, 7);
        assert_eq!(self.c.dropped.fetch_add(1, SeqCst), 0, "dropped twice");
    }
}

/// The owner exits leaving three local-counted handles; three threads drop them at once (one
/// queues, finds the owner gone and merges, the others read its id or the merge's 0) while a
/// fourth upgrades.
#[test]
fn owner_exit_then_three_foreign_drops_and_upgrade() {
    for round in 0..ROUNDS {
        let heap = Heap::new();
        let c = Arc::new(Counts::default());
        let (h, c2) = (heap.clone(), c.clone());
        let (hs, w) = thread::spawn(move || {
            let o = h.alloc(Plain { c: c2, v: 7 });
            let w = Weak::new(&o);
            let hs = vec![o.clone(), o.clone(), o];
            (hs, w)
        })
        .join()
        .unwrap();
        let bar = Arc::new(Barrier::new(4));
        let mut ts = Vec::new();
        for g in hs {
            let (bar, h) = (bar.clone(), heap.clone());
            ts.push(thread::spawn(move || {
                h.safepoint();
                bar.wait();
                drop(g);
            }));
        }
        {
            let (bar, h, w, c) = (bar.clone(), heap.clone(), w.clone(), c.clone());
            ts.push(thread::spawn(move || {
                h.safepoint();
                bar.wait();
                if let Some(u) = w.upgrade() {
                    assert_eq!(c.dropped.load(SeqCst), 0);
                    assert_eq!(u.v, 7);
                }
            }));
        }
        for t in ts {
            t.join().unwrap();
        }
        assert_eq!(c.dropped.load(SeqCst), 1, "round {round}");
        assert!(w.upgrade().is_none());
        drop(w);
        assert_eq!(heap.live_objects(), 0);
    }
}

/// The owner's last local drop (owner 0 stored before the merge's CAS) while another thread
/// drops the last shared-counted clone, and the owner then reuses the block: the owner's weak
/// upgrade of a stale weak reference must return None.
#[test]
fn owner_zero_race_then_block_reuse() {
    for round in 0..ROUNDS {
        let heap = Heap::new();
        let c = Arc::new(Counts::default());
        let o = heap.alloc(Plain { c: c.clone(), v: 7 });
        let w = Weak::new(&o);
        let bar = Arc::new(Barrier::new(2));
        let (tx, rx) = mpsc::channel();
        let (h, b2, w2) = (heap.clone(), bar.clone(), w.clone());
        let t = thread::spawn(move || {
            h.safepoint();
            let shared: Gc<Plain> = rx.recv().unwrap();
            b2.wait();
            drop(shared);
            let _ = w2.upgrade();
            h.safepoint();
        });
        // A clone the owner counted, dropped on the other thread against the owner's last drop.
        tx.send(o.clone()).unwrap();
        bar.wait();
        drop(o);
        t.join().unwrap();
        heap.safepoint();
        assert_eq!(c.dropped.load(SeqCst), 1, "round {round}");
        // Reuse blocks on this thread and upgrade the dead weak reference.
        let again: Vec<_> = (0..8)
            .map(|_| {
                heap.alloc(Plain {
                    c: Arc::new(Counts::default()),
                    v: 7,
                })
            })
            .collect();
        assert!(w.upgrade().is_none());
        drop(again);
        drop(w);
        assert_eq!(heap.live_objects(), 0);
    }
}
