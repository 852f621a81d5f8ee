//! JSON access logs: one line per request, written off the request path.
//!
//! The request path fills an [`Entry`] when a response body ends (or the client goes away) and
//! formats it with [`LineFormat`] straight into a buffer of [`LogWriter`]'s, whose thread writes the
//! buffers whole: no allocation and no hand-over per line.
//! [`Sampler`] chooses the share of requests logged.

mod fields;
mod json;
mod line;
mod sampler;
mod writer;

pub use fields::{Field, FieldSet};
pub use json::push_time;
pub use line::{Entry, LineFormat, TlsEntry};
pub use sampler::Sampler;
pub use writer::{Destination, LogWriter};

/// Formats `entry` straight into the writer's buffer.
pub fn log(format: &LineFormat, entry: &Entry, writer: &LogWriter) {
    writer.submit_with(|out| format.write(entry, out));
}
