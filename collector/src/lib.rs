//! The cycle collector behind `reap`: generation bookkeeping, the trigger rule and (as the
//! algorithm lands) generational trial deletion, generic over the heap it collects.
//!
//! This crate knows nothing of memory layout, allocation or handle types. A heap describes
//! itself through the [`CollectorHeap`] trait; the bookkeeping of SEMANTICS §1 (counts,
//! thresholds, the 25% long-lived rule, statistics) lives in [`Generations`], a plain value the
//! heap owns; the order of one collection's phases is [`collect`], over a heap that implements
//! [`CollectionPhases`].
//!
//! ```
//! use reap_collector::Generations;
//!
//! let gens = Generations::new();
//! gens.set_thresholds(3, 10, 10);
//! for _ in 0..3 {
//!     assert!(!gens.note_allocation());
//!     assert_eq!(gens.generation_to_collect(), None);
//! }
//! assert!(gens.note_allocation());
//! assert_eq!(gens.generation_to_collect(), Some(0));
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod generations;
mod phases;
mod trial;

pub use generations::{exhaustive_due, GenerationStats, Generations, EXHAUSTIVE_SLACK};
pub use phases::{
    collect, CallbackPhase, CollectionInfo, CollectionPhases, Partition, DISCOVERY_RATIO,
};
pub use trial::{
    find_unreachable, mark_reachable, mark_reachable_from, mark_reachable_prepared, CollectorHeap,
    Mark,
};

/// Number of collectable generations (0 young, 1, 2 old). The permanent (frozen) set is apart.
pub const GENERATIONS: usize = 3;

/// Default thresholds, as CPython 3.13: `(2000, 10, 10)`.
pub const DEFAULT_THRESHOLDS: [usize; GENERATIONS] = [2000, 10, 10];
