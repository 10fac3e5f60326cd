//! Serving a stored file: which bytes a request asks for (Range, If-Range)
//! and a body that streams them one chunk at a time.

pub mod body;
pub mod ranges;

pub use body::{Segment, Source, body_stream, buffer_bytes};
pub use ranges::{RangeRequest, plan_ranges};
