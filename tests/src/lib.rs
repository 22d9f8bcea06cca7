//! Helpers shared by the scenario tests in `tests/`: an event log that objects can hold, a
//! seeded random generator, and (in [`shared`]) the Shared-mode objects and counters of the
//! adversarial tests.

pub mod shared;

use std::cell::RefCell;
use std::rc::Rc;

use reap::{Trace, Tracer};

/// An ordered record of what ran (finalizers, callbacks, drops), shared by the objects of a
/// test. It holds no handles, so it is a leaf for tracing.
#[derive(Clone, Default)]
pub struct Log(Rc<RefCell<Vec<String>>>);

impl Log {
    /// An empty log.
    pub fn new() -> Log {
        Log::default()
    }

    /// Records one event.
    pub fn push(&self, s: impl Into<String>) {
        self.0.borrow_mut().push(s.into());
    }

    /// Everything recorded so far, in order.
    pub fn events(&self) -> Vec<String> {
        self.0.borrow().clone()
    }

    /// How many times `s` was recorded.
    pub fn count(&self, s: &str) -> usize {
        self.0.borrow().iter().filter(|e| *e == s).count()
    }

    /// Forgets everything recorded.
    pub fn clear(&self) {
        self.0.borrow_mut().clear();
    }
}

// SAFETY: a log holds no handles.
unsafe impl Trace for Log {
    fn trace(&self, _: &mut Tracer<'_>) {}
    fn needs_trace() -> bool {
        false
    }
}

/// A xorshift64 generator: deterministic random programs and graphs, replayable by seed.
/// The seed must not be 0 (xorshift would stay at 0).
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` above 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}
