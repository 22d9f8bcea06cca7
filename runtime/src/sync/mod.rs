//! Shared mode: a heap whose objects may be used, sent and dropped on any thread, as std has
//! `sync::Arc` beside `rc::Rc`.
//!
//! - [`Heap`] is `Send + Sync` and cheap to clone; [`Gc<T>`] and [`Weak<T>`] are `Send + Sync`
//!   when `T` is.
//! - Counting is *biased* (PEP 703, after Choi et al.): each object has an owner thread (the one
//!   that allocated it) whose clones and drops are a plain load and store; other threads use one
//!   atomic operation on a shared count. A drop by another thread that would take that count
//!   below zero queues the object to its owner, which merges the two counts at its next safe
//!   point (allocation, [`Heap::safepoint`], [`Heap::detached`], thread exit); if the owner has
//!   exited, the dropping thread merges.
//! - An object dies, in CPython's order (finalizer, weak references cleared, callbacks newest
//!   first, value dropped), on the thread that drops its last reference, whichever it is. No
//!   user code runs while a runtime lock is held.
//! - A thread attaches to a heap when it allocates there, makes a weak reference, or calls
//!   [`Heap::safepoint`] or [`Heap::collect`]; it stays attached until it exits. A thread that
//!   only clones, upgrades and drops handles stays unattached: its operations (and the deaths
//!   they run) go through the heap's *gate*, which a collection closes while it holds the world
//!   stopped. A collection also waits for the operations inside the gate to leave it: user code
//!   run there (a `Drop` or finalizer of an object whose last reference such a thread dropped)
//!   that blocks does it inside [`Heap::detached`], as an attached thread's must (below), or
//!   collections time out meanwhile.
//! - [`Heap::collect`] collects cycles by stopping the world (CPython 3.13t's free-threaded
//!   collector): every attached thread parks at its next safe point (allocation,
//!   [`Heap::safepoint`], entering or leaving [`Heap::detached`]). An attached thread that
//!   blocks (a join, a channel, a `std` lock another thread holds) does it inside
//!   [`Heap::detached`], or collections cannot stop it ([`Heap::try_collect`] reports it).
//! - An object's mutable fields go behind [`Mutex`], reap's lock: a collection reads its state
//!   instead of taking it, and a thread waiting for it is detached meanwhile on its own.
//!   (`std::sync::Mutex` and `RwLock` are traced too, through `try_lock`.)
//!
//! ```
//! use reap::sync::{Finalize, Gc, Heap, Mutex, Weak};
//! use reap::Trace;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//!
//! static DELS: AtomicUsize = AtomicUsize::new(0);
//!
//! #[derive(Trace)]
//! #[reap(sync_finalize)]
//! struct Node {
//!     name: String,
//!     children: Mutex<Vec<Gc<Node>>>,
//! }
//!
//! impl Finalize for Node {
//!     fn finalize(this: &Gc<Self>) {
//!         assert!(!this.name.is_empty());
//!         DELS.fetch_add(1, Ordering::Relaxed);
//!     }
//! }
//!
//! let heap = Heap::new();
//! let root = heap.alloc(Node { name: "root".into(), children: Mutex::new(vec![]) });
//! let weak = Weak::new(&root);
//! let workers: Vec<_> = (0..4)
//!     .map(|i| {
//!         let (heap, root) = (heap.clone(), root.clone());
//!         std::thread::spawn(move || {
//!             let child = heap.alloc(Node { name: format!("child {i}"), children: Mutex::new(vec![]) });
//!             root.children.lock().push(child);
//!         })
//!     })
//!     .collect();
//! workers.into_iter().for_each(|t| t.join().unwrap());
//! assert_eq!(root.children.lock().len(), 4);
//! drop(root);
//! // The workers dropped their clones of `root`, which this thread owns: those drops wait in
//! // this thread's merge queue until its next safe point (an allocation, or this call).
//! heap.safepoint();
//! assert!(weak.upgrade().is_none());
//! assert_eq!(DELS.load(Ordering::Relaxed), 5);
//! ```

pub(crate) mod collect;
pub(crate) mod count;
pub(crate) mod gcstate;
mod handle;
pub(crate) mod heap;
mod introspect;
pub(crate) mod mutex;
pub(crate) mod spin;
pub(crate) mod state;
pub(crate) mod thread;
pub(crate) mod weak;

pub use crate::object::shared::Gc;
pub use crate::trace::SharedFinalize as Finalize;
pub use collect::{NotStoppedError, DEFAULT_STOP_TIMEOUT};
pub use gcstate::{CollectCallback, CollectInfo, CollectPhase};
pub use heap::Heap;
pub use introspect::{AnyGc, ThreadsAttachedError};
pub use mutex::{Mutex, MutexGuard};
pub use state::SharedUnraisableHook;
pub use weak::{Weak, WeakRefObj};
