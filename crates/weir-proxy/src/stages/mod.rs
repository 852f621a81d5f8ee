//! Route stages that run before a route's action, in the order DESIGN.md fixes. Each stage is
//! compiled with the snapshot and holds only its own parameters and state.

pub mod concurrency;
pub mod fault;
pub mod rate_limit;
