//! The stages that keep upstreams and the gateway alive when things go wrong: deadlines that travel
//! with a request, retries bounded by a budget and spaced by jittered backoff, circuit breakers, and
//! concurrency limits with shedding. Each is a small state machine with its own settings, independent
//! of HTTP, so it can be tested under paused time; weir-proxy wires them into a route.

pub mod backoff;
pub mod breaker;
pub mod budget;
pub mod concurrency;
pub mod deadline;
pub mod retry;
