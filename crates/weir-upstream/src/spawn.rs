//! The executor hyper's HTTP/2 connections spawn their per-stream futures with.

use std::future::Future;

/// Spawns each future on the current tokio runtime, boxed first. A stream's future is large (on
/// weir's server it holds the whole request's handling), and tokio moves the future it is given
/// several times on its way into the task and once more when the task finishes; boxed, each of
/// those moves is a pointer's, and the one copy left is into the box.
#[derive(Clone, Copy, Debug, Default)]
pub struct BoxedSpawn;

impl<F> hyper::rt::Executor<F> for BoxedSpawn
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(Box::pin(future));
    }
}
