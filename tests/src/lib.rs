//! Cross-crate scenario tests for reap; the tests live in `tests/`.
