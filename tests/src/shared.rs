//! Shared-mode (`reap::sync`) helpers of the adversarial tests: counters and logs that a test's
//! objects and threads share, an object type whose finalizer and `Drop` run closures the test
//! gives them (user code calling back into the runtime), chains, an unraisable hook that
//! records, repetition counts scaled down under Miri, and a watchdog for scenarios that could
//! hang.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;

use reap::sync::{Finalize, Gc, Heap, Weak};
use reap::{Trace, UnraisableKind};

/// `native`, or `miri` under Miri (which is slow).
pub const fn reps(native: usize, miri: usize) -> usize {
    if cfg!(miri) {
        miri
    } else {
        native
    }
}

/// Counters, an ordered event log (finalizers and drops of [`Fin`] write to it) and a separate
/// record of what the test's user code saw, shared by a test's objects and threads.
#[derive(Default)]
pub struct Log {
    /// Finalizers run.
    pub fin: AtomicUsize,
    /// Values dropped.
    pub drops: AtomicUsize,
    /// Callbacks run.
    pub cbs: AtomicUsize,
    events: Mutex<Vec<String>>,
    seen: Mutex<Vec<String>>,
}

impl Log {
    /// A new log, shareable.
    pub fn new() -> Arc<Log> {
        Arc::default()
    }
    /// Records an event (`"fin 3"`, `"drop 3"`, or the test's own).
    pub fn push(&self, e: impl Into<String>) {
        self.events.lock().unwrap().push(e.into());
    }
    /// The events so far, in order.
    pub fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
    /// Records an observation, apart from the events (for code that must not panic, such as
    /// thread-local destructors: the test asserts on it after `join`).
    pub fn see(&self, s: impl Into<String>) {
        self.seen.lock().unwrap().push(s.into());
    }
    /// The observations so far, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
    /// Finalizers run so far.
    pub fn fin(&self) -> usize {
        self.fin.load(SeqCst)
    }
    /// Values dropped so far.
    pub fn drops(&self) -> usize {
        self.drops.load(SeqCst)
    }
    /// Callbacks run so far.
    pub fn cbs(&self) -> usize {
        self.cbs.load(SeqCst)
    }
}

/// A one-shot closure a [`Fin`]'s finalizer runs.
pub type FinHook = Box<dyn FnOnce(&Gc<Fin>) + Send>;
/// A one-shot closure a [`Fin`]'s `Drop` runs.
pub type DropHook = Box<dyn FnOnce() + Send>;

/// An object with a Shared finalizer and a `Drop`, each of which counts, logs and then runs a
/// one-shot closure the test gave it.
#[derive(Trace)]
#[reap(sync_finalize)]
pub struct Fin {
    /// The test's name for it.
    pub id: u32,
    /// Where it counts and logs.
    #[reap(skip)]
    pub log: Arc<Log>,
    /// Run by the finalizer.
    #[reap(skip)]
    pub on_fin: Mutex<Option<FinHook>>,
    /// Run by `Drop`.
    #[reap(skip)]
    pub on_drop: Mutex<Option<DropHook>>,
    /// A handle it holds (traced).
    pub next: Mutex<Option<Gc<Fin>>>,
    /// What `wants_finalizer` answers.
    #[reap(skip)]
    pub wants: bool,
}

impl Finalize for Fin {
    fn finalize(this: &Gc<Self>) {
        this.log.fin.fetch_add(1, SeqCst);
        this.log.push(format!("fin {}", this.id));
        let f = this.on_fin.lock().unwrap().take();
        if let Some(f) = f {
            f(this);
        }
    }
    fn wants_finalizer(&self) -> bool {
        self.wants
    }
}

impl Drop for Fin {
    fn drop(&mut self) {
        self.log.drops.fetch_add(1, SeqCst);
        self.log.push(format!("drop {}", self.id));
        let f = self.on_drop.get_mut().unwrap().take();
        if let Some(f) = f {
            f();
        }
    }
}

/// A [`Fin`] with no closures.
pub fn fin(heap: &Heap, id: u32, log: &Arc<Log>) -> Gc<Fin> {
    fin_with(heap, id, log, None, None)
}

/// Two [`Fin`]s, `a` and `b`, each holding the other: a 2-cycle, garbage once the caller drops
/// the two handles returned.
pub fn fin_pair(heap: &Heap, a: u32, b: u32, log: &Arc<Log>) -> (Gc<Fin>, Gc<Fin>) {
    let (a, b) = (fin(heap, a, log), fin(heap, b, log));
    *a.next.lock().unwrap() = Some(b.clone());
    *b.next.lock().unwrap() = Some(a.clone());
    (a, b)
}

/// A [`Fin`] with the given closures.
pub fn fin_with(
    heap: &Heap,
    id: u32,
    log: &Arc<Log>,
    on_fin: Option<FinHook>,
    on_drop: Option<DropHook>,
) -> Gc<Fin> {
    heap.alloc(Fin {
        id,
        log: log.clone(),
        on_fin: Mutex::new(on_fin),
        on_drop: Mutex::new(on_drop),
        next: Mutex::new(None),
        wants: true,
    })
}

/// Sets its flag when dropped (a capture whose drop a test watches).
pub struct DropFlag(pub Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// How many of the heap's tracked objects are weak-reference objects (`WeakRefObj`).
pub fn weak_objects(heap: &Heap) -> usize {
    heap.get_objects()
        .iter()
        .filter(|o| Gc::type_name(o).contains("WeakRefObj"))
        .count()
}

/// What a [`HookNode`]'s `Drop` runs, given the handle the node holds.
pub type OnDrop = Box<dyn FnOnce(Option<&Gc<HookNode>>) + Send>;

/// A tracked node (it holds a handle) whose `Drop` runs a closure given the handle it holds:
/// user code reaching another object from a death, or from a collection's reclaim.
#[derive(Trace)]
pub struct HookNode {
    /// The handle it holds, if any.
    pub other: Mutex<Option<Gc<HookNode>>>,
    /// What its `Drop` runs.
    #[reap(skip)]
    pub on_drop: Mutex<Option<OnDrop>>,
}

impl Drop for HookNode {
    fn drop(&mut self) {
        let f = self.on_drop.get_mut().unwrap().take();
        if let Some(f) = f {
            f(self.other.get_mut().unwrap().as_ref());
        }
    }
}

/// A [`HookNode`] holding `other`, with nothing to run yet.
pub fn hook_node(heap: &Heap, other: Option<Gc<HookNode>>) -> Gc<HookNode> {
    heap.alloc(HookNode {
        other: Mutex::new(other),
        on_drop: Mutex::new(None),
    })
}

/// Gives `g`'s finalizer a closure to run.
pub fn set_fin(g: &Gc<Fin>, f: impl FnOnce(&Gc<Fin>) + Send + 'static) {
    *g.on_fin.lock().unwrap() = Some(Box::new(f));
}

/// A link of a chain, counting its drops.
#[derive(Trace)]
pub struct Link {
    /// The next link.
    pub next: Option<Gc<Link>>,
    /// Where it counts its drop.
    #[reap(skip)]
    pub log: Arc<Log>,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.log.drops.fetch_add(1, SeqCst);
    }
}

/// A chain of `n` links built on the calling thread (which owns them all); returns its head.
pub fn chain(heap: &Heap, n: usize, log: &Arc<Log>) -> Gc<Link> {
    let mut head: Option<Gc<Link>> = None;
    for _ in 0..n {
        head = Some(heap.alloc(Link {
            next: head.take(),
            log: log.clone(),
        }));
    }
    head.expect("n > 0")
}

/// What a [`hooked`] heap's unraisable hook received: kind and message of each report.
pub type Reports = Arc<Mutex<Vec<(UnraisableKind, String)>>>;

/// Installs a hook recording (kind, message) of each report.
pub fn hooked(heap: &Heap) -> Reports {
    let reports: Reports = Arc::default();
    let r = reports.clone();
    heap.set_unraisable_hook(Some(Arc::new(move |u: &reap::Unraisable| {
        r.lock().unwrap().push((u.kind, u.message.clone()));
    })));
    reports
}

/// How long a scenario may take before the watchdog calls it a deadlock.
pub const WATCHDOG: std::time::Duration =
    std::time::Duration::from_secs(if cfg!(miri) { 3600 } else { 30 });

/// `heap.live_objects()` once the threads that used the heap have finished leaving it (their
/// exits may merge and free objects): waits up to five seconds for 0, and returns the last read.
pub fn settled_live(heap: &Heap) -> usize {
    let start = std::time::Instant::now();
    loop {
        heap.safepoint();
        let live = heap.live_objects();
        if live == 0 || start.elapsed() > std::time::Duration::from_secs(5) {
            return live;
        }
        std::thread::yield_now();
    }
}

/// Runs `body` in a child process: this test binary run again on test `name` alone. For
/// scenarios that would abort the whole test process, or hang it (a stopped world that never
/// restarts would hold up every other test). Fails with the tail of the child's stderr if the
/// child fails, and with "deadlock" if `timeout` is given and the child has not exited by then
/// (it is killed). In the child itself, and under Miri (which cannot spawn processes), runs
/// `body` in place.
pub fn in_child_process(name: &str, timeout: Option<std::time::Duration>, body: impl FnOnce()) {
    const VAR: &str = "REAP_TEST_CHILD";
    if cfg!(miri) || std::env::var(VAR).as_deref() == Ok(name) {
        body();
        return;
    }
    let err_path = std::env::temp_dir().join(format!(
        "reap-test-child-{name}-{}.stderr",
        std::process::id()
    ));
    let err_file = std::fs::File::create(&err_path).expect("create the child's stderr file");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--include-ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(VAR, name)
        .stdout(std::process::Stdio::null())
        .stderr(err_file)
        .spawn()
        .expect("spawn the child test process");
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for the child") {
            break Some(s);
        }
        if timeout.is_some_and(|t| start.elapsed() > t) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    let lines: Vec<&str> = stderr.lines().collect();
    let tail = lines[lines.len().saturating_sub(12)..].join("\n");
    match status {
        None => panic!(
            "deadlock: {name} did not finish within {timeout:?}\n--- stderr tail ---\n{tail}"
        ),
        Some(s) => assert!(
            s.success(),
            "child process for {name} failed: {s:?}\n--- stderr tail ---\n{tail}"
        ),
    }
}

/// Runs `f` on a fresh thread and returns its result; fails the test if it has not finished
/// within [`WATCHDOG`] (the thread is then left behind, blocked).
pub fn within<R: Send + 'static>(what: &str, f: impl FnOnce() -> R + Send + 'static) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let r = f();
        let _ = tx.send(());
        r
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(()) => t.join().unwrap(),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match t.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("deadlock: `{what}` did not finish within {WATCHDOG:?}")
        }
    }
}

/// A tracked object with no handles that counts its drops in a counter of its test (the
/// snapshot-walk attacks' payloads: which were freed, and how often).
pub struct Payload {
    /// Its number in its test.
    pub id: usize,
    /// Its test's drop counter.
    pub drops: Arc<AtomicUsize>,
}

impl Drop for Payload {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

// SAFETY: no handles inside.
unsafe impl Trace for Payload {
    fn trace(&self, _: &mut reap::Tracer<'_>) {}
}

/// A node that counts its traversals in a counter of its test (the possible-roots tests: which
/// objects a collection traced).
pub struct Counted {
    /// The one handle it holds.
    pub next: Mutex<Option<Gc<Counted>>>,
    /// Its test's traversal counter.
    pub traced: Arc<AtomicUsize>,
}

// SAFETY: visits the one handle it holds (through its lock); counting touches no runtime state.
unsafe impl Trace for Counted {
    fn trace(&self, tracer: &mut reap::Tracer<'_>) {
        self.traced.fetch_add(1, SeqCst);
        self.next.trace(tracer);
    }
}

/// A new [`Counted`] holding `next`.
pub fn counted(heap: &Heap, traced: &Arc<AtomicUsize>, next: Option<Gc<Counted>>) -> Gc<Counted> {
    heap.alloc(Counted {
        next: Mutex::new(next),
        traced: traced.clone(),
    })
}

/// A value that counts its drops in a counter of its test (the foreign-drop and first-weak-
/// reference tests: which object died, and how many times).
#[derive(reap::Trace)]
pub struct Dropped {
    /// Its test's drop counter.
    #[reap(skip)]
    pub drops: Arc<AtomicUsize>,
}

impl Drop for Dropped {
    fn drop(&mut self) {
        self.drops.fetch_add(1, SeqCst);
    }
}

/// A new [`Dropped`] counting in `drops`.
pub fn dropped(heap: &Heap, drops: &Arc<AtomicUsize>) -> Gc<Dropped> {
    heap.alloc(Dropped {
        drops: drops.clone(),
    })
}

/// A 2-cycle `a <-> b` of [`Counted`] built without dropping a reference (nothing in it is a
/// possible root); returns `a`, the only handle from outside.
pub fn quiet_cycle(heap: &Heap, traced: &Arc<AtomicUsize>) -> Gc<Counted> {
    let b = counted(heap, traced, None);
    let a = counted(heap, traced, Some(b));
    let a2 = a.clone();
    *a.next
        .lock()
        .unwrap()
        .as_ref()
        .unwrap()
        .next
        .lock()
        .unwrap() = Some(a2);
    a
}

/// Gives up the calling thread's (the owner's) only local reference to `g` after another
/// thread took one: the object's count is then merged (owner 0), its whole count, 1, in the
/// shared word, and whichever thread drops the returned handle runs the death there, at once.
/// `g` must be the object's only handle.
pub fn merged<T: ?Sized + Send + Sync + 'static>(g: Gc<T>) -> Gc<T> {
    let (g, c) = std::thread::spawn(move || {
        let c = g.clone();
        (g, c)
    })
    .join()
    .unwrap();
    drop(g);
    assert_eq!(Gc::strong_count(&c), 1, "merged with the one handle left");
    c
}

/// A thread (never attached to any heap) that upgrades a weak reference when asked and
/// answers whether it got the object; what it gets is dropped at once (on that thread), or
/// kept until `finish` with `keep`.
pub struct Upgrader {
    req: Mutex<Option<mpsc::Sender<bool>>>,
    ans: Mutex<mpsc::Receiver<bool>>,
    t: Mutex<Option<thread::JoinHandle<()>>>,
}

impl Upgrader {
    pub fn new(w: Weak<Fin>, keep: bool) -> Arc<Upgrader> {
        let (req_tx, req_rx) = mpsc::channel::<bool>();
        let (ans_tx, ans_rx) = mpsc::channel::<bool>();
        let t = thread::spawn(move || {
            let mut kept = Vec::new();
            while let Ok(true) = req_rx.recv() {
                let g = w.upgrade();
                let got = g.is_some();
                // Dropped before the answer, so that the asking thread's next step (a
                // collection, say) never races this thread's handle.
                if keep {
                    kept.extend(g);
                } else {
                    drop(g);
                }
                ans_tx.send(got).unwrap();
            }
            drop(kept);
        });
        Arc::new(Upgrader {
            req: Mutex::new(Some(req_tx)),
            ans: Mutex::new(ans_rx),
            t: Mutex::new(Some(t)),
        })
    }
    /// One upgrade on the other thread: whether it returned the object. Blocks the caller
    /// (attached or not) for a moment; no collection runs meanwhile in these tests.
    pub fn ask(&self) -> bool {
        self.req
            .lock()
            .unwrap()
            .as_ref()
            .unwrap()
            .send(true)
            .unwrap();
        self.ans.lock().unwrap().recv().unwrap()
    }
    /// Ends the thread (dropping what it kept there), joined inside `heap.detached`.
    pub fn finish(&self, heap: &Heap) {
        drop(self.req.lock().unwrap().take());
        let t = self.t.lock().unwrap().take().unwrap();
        heap.detached(|| t.join().unwrap());
    }
}

/// What a test saw, in order: a label and a yes or no (an upgrade's success, say).
pub type Seen = Arc<Mutex<Vec<(&'static str, bool)>>>;

/// Records one thing seen.
pub fn see(s: &Seen, what: &'static str, v: bool) {
    s.lock().unwrap().push((what, v));
}

/// Asserts that the unraisable hook `hooked` installed got no report.
pub fn no_reports(r: &Reports) {
    let r = r.lock().unwrap();
    assert!(r.is_empty(), "{r:?}");
}

/// The end of a test: no report, and nothing left alive on the heap once it settles.
pub fn ends_clean(heap: &Heap, reports: &Reports) {
    no_reports(reports);
    assert_eq!(settled_live(heap), 0);
}
