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
        // http-range-header lets one overlap through (RFC 9110 only asks to
        // refuse more); `bytes=0-,0-` would then send the file twice.
        Ok(ranges) if overlap(&ranges) => RangeRequest::Full,
        Ok(ranges) => RangeRequest::Partial(ranges),
        Err(RangeUnsatisfiableError::Unsatisfiable) => RangeRequest::Unsatisfiable,
        // Overlapping ranges would send bytes twice: send the file once.
        Err(_) => RangeRequest::Full,
    }
}

/// Whether any two ranges share a byte.
fn overlap(ranges: &[RangeInclusive<u64>]) -> bool {
    let mut by_start: Vec<_> = ranges.iter().map(|r| (*r.start(), *r.end())).collect();
    by_start.sort_unstable();
    by_start.windows(2).any(|w| w[1].0 <= w[0].1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Range headers as clients and attackers write them: valid specs,
    /// suffixes, open ends, huge numbers, junk, many of them.
    fn range_header() -> impl Strategy<Value = String> {
        let num = prop_oneof![0u64..2000, any::<u64>(), Just(u64::MAX)];
        let spec = prop_oneof![
            (num.clone(), num.clone()).prop_map(|(a, b)| format!("{a}-{b}")),
            num.clone().prop_map(|a| format!("{a}-")),
            num.prop_map(|a| format!("-{a}")),
            "[ -~]{0,12}",
        ];
        (
            prop_oneof![Just("bytes="), Just("bytes = "), Just("items="), Just("")],
            prop::collection::vec(spec, 0..40),
        )
            .prop_map(|(unit, specs)| format!("{unit}{}", specs.join(",")))
    }

    proptest! {
        /// Whatever the header, a response never carries more file bytes
        /// than the file has, never more than MAX_RANGES parts, and every
        /// range lies inside the file.
        #[test]
        fn no_header_amplifies_or_escapes_the_file(header in range_header(), size in 0u64..5000) {
            match plan_ranges(Some(&header), size) {
                RangeRequest::Full | RangeRequest::Unsatisfiable => {}
                RangeRequest::Partial(ranges) => {
                    prop_assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
                    let total: u64 = ranges.iter().map(|r| r.end() - r.start() + 1).sum();
                    prop_assert!(total <= size, "{total} bytes of {size} for {header}");
                    prop_assert!(ranges.iter().all(|r| r.start() <= r.end() && *r.end() < size));
                    prop_assert!(!overlap(&ranges));
                }
            }
        }
    }

    #[test]
    fn one_overlap_is_already_too_many() {
        assert_eq!(plan_ranges(Some("bytes=0-,0-"), 1000), RangeRequest::Full);
        assert_eq!(
            plan_ranges(Some("bytes=0-500,250-999"), 1000),
            RangeRequest::Full
        );
        assert_eq!(
            plan_ranges(Some("bytes=0-9,10-19"), 1000),
            RangeRequest::Partial(vec![0..=9, 10..=19]),
            "adjacent is not overlapping"
        );
    }

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
