//! Range requests (RFC 9110 §14): parsing is http-range-header's; what we do
//! with the result is ours.

use std::num::NonZeroUsize;
use std::ops::RangeInclusive;

use http_range_header::{RangeUnsatisfiableError, parse_range_header_with_max_ranges};

/// Most ranges served in one response. More are not an error (a server may
/// ignore Range): the whole file is sent once instead, so a request cannot
/// make us send more bytes than the file has.
pub const MAX_RANGES: usize = 16;

/// What to send for a request's Range header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeRequest {
    /// 200 with the whole file.
    Full,
    /// 206 with these ranges (sorted as requested, non-overlapping).
    Partial(Vec<RangeInclusive<u64>>),
    /// 416.
    Unsatisfiable,
}

/// Decides how to answer `range` (the header value, if any) for a file of `size` bytes.
pub fn plan_ranges(range: Option<&str>, size: u64) -> RangeRequest {
    let Some(range) = range else {
        return RangeRequest::Full;
    };
    let max = NonZeroUsize::new(MAX_RANGES).unwrap_or(NonZeroUsize::MIN);
    let parsed = match parse_range_header_with_max_ranges(range, max) {
        Ok(parsed) => parsed,
        // Syntax we do not understand, or too many ranges: ignore the header.
        Err(_) => return RangeRequest::Full,
    };
    match parsed.validate(size) {
        Ok(ranges) if ranges.is_empty() => RangeRequest::Full,
        Ok(ranges) => RangeRequest::Partial(ranges),
        Err(RangeUnsatisfiableError::Unsatisfiable) => RangeRequest::Unsatisfiable,
        // Overlapping ranges would send bytes twice: send the file once.
        Err(_) => RangeRequest::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_in_every_form() {
        let size = 1000;
        assert_eq!(plan_ranges(None, size), RangeRequest::Full);
        assert_eq!(
            plan_ranges(Some("bytes=0-0"), size),
            RangeRequest::Partial(vec![0..=0])
        );
        assert_eq!(
            plan_ranges(Some("bytes=999-"), size),
            RangeRequest::Partial(vec![999..=999])
        );
        assert_eq!(
            plan_ranges(Some("bytes=-10"), size),
            RangeRequest::Partial(vec![990..=999])
        );
        assert_eq!(
            plan_ranges(Some("bytes=-5000"), size),
            RangeRequest::Partial(vec![0..=999])
        );
        assert_eq!(
            plan_ranges(Some("bytes=10-5000"), size),
            RangeRequest::Partial(vec![10..=999])
        );
        assert_eq!(
            plan_ranges(Some("bytes=0-9, 20-29"), size),
            RangeRequest::Partial(vec![0..=9, 20..=29])
        );
        assert_eq!(
            plan_ranges(Some("bytes=1000-1001"), size),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            plan_ranges(Some("bytes=0-0"), 0),
            RangeRequest::Unsatisfiable
        );
    }

    #[test]
    fn nonsense_and_abuse_fall_back_to_the_whole_file() {
        assert_eq!(plan_ranges(Some("items=0-1"), 100), RangeRequest::Full);
        assert_eq!(plan_ranges(Some("bytes=5-1"), 100), RangeRequest::Full);
        let many = format!(
            "bytes={}",
            (0..MAX_RANGES + 1)
                .map(|i| format!("{}-{}", i * 2, i * 2))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(plan_ranges(Some(&many), 1000), RangeRequest::Full);
        assert_eq!(
            plan_ranges(Some("bytes=0-50,10-60,20-70"), 1000),
            RangeRequest::Full
        );
    }
}
