//! `ByteSize`: a byte count written the way people write file sizes.
//!
//! The story talks in "618 MB videos" and the rig's scenario files are written by hand, so sizes
//! and rates are accepted as `618MB`, `2GiB`, `1.5GB` or plain bytes. MB is 10^6 bytes and MiB
//! 2^20, as everywhere in this repository's docs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes. Parses `618MB`, `2GiB`, `100 MB`, `1.5GB`, `4096`; displays the largest
/// unit that represents it exactly (`618MB`, `2GiB`, `1000001B`), so display and parse round-trip.
/// In serde it is a string in that form, and reads either a string or an integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

/// Units from largest to smallest, decimal and binary interleaved so `Display` picks the
/// largest exact one.
const UNITS: &[(&str, u64)] = &[
    ("TiB", 1 << 40),
    ("TB", 1_000_000_000_000),
    ("GiB", 1 << 30),
    ("GB", 1_000_000_000),
    ("MiB", 1 << 20),
    ("MB", 1_000_000),
    ("KiB", 1 << 10),
    ("kB", 1_000),
    ("B", 1),
];

impl ByteSize {
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// The value in MB (10^6 bytes), for messages and rates.
    pub fn megabytes(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl From<u64> for ByteSize {
    fn from(bytes: u64) -> Self {
        ByteSize(bytes)
    }
}

/// Why a size did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {reason} (examples: 618MB, 2GiB, 1.5GB, 4096)")]
pub struct ParseSizeError {
    input: String,
    reason: &'static str,
}

impl FromStr for ByteSize {
    type Err = ParseSizeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason| ParseSizeError {
            input: input.to_owned(),
            reason,
        };
        let text = input.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim();
        let multiplier = if unit.is_empty() {
            1
        } else {
            UNITS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(unit))
                .map(|&(_, m)| m)
                .ok_or_else(|| error("unknown unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"))?
        };
        if number.is_empty() {
            return Err(error("no number"));
        }
        if let Ok(whole) = number.parse::<u64>() {
            return whole
                .checked_mul(multiplier)
                .map(ByteSize)
                .ok_or_else(|| error("too large"));
        }
        let value: f64 = number.parse().map_err(|_| error("not a number"))?;
        let bytes = (value * multiplier as f64).round();
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(error("too large"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, multiplier) = UNITS
            .iter()
            .find(|&&(_, m)| self.0 != 0 && self.0.is_multiple_of(m))
            .copied()
            .unwrap_or(("B", 1));
        write!(f, "{}{name}", self.0 / multiplier)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Bytes(bytes) => Ok(ByteSize(bytes)),
            Raw::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_binary_and_plain() {
        let cases = [
            ("618MB", 618_000_000),
            ("2GiB", 2 << 30),
            ("100 MB", 100_000_000),
            ("1.5GB", 1_500_000_000),
            ("4096", 4096),
            ("64kib", 65_536),
            ("1B", 1),
            ("0", 0),
        ];
        for (text, bytes) in cases {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
    }

    #[test]
    fn rejects_nonsense() {
        for text in ["", "MB", "12XB", "1.2.3MB", "-5", "99999999999999TB"] {
            assert!(text.parse::<ByteSize>().is_err(), "{text}");
        }
    }

    #[test]
    fn display_round_trips() {
        for bytes in [0, 1, 1000, 1024, 618_000_000, 2 << 30, 1_000_001, 327_680] {
            let size = ByteSize(bytes);
            assert_eq!(size.to_string().parse::<ByteSize>(), Ok(size), "{size}");
        }
        assert_eq!(ByteSize(618_000_000).to_string(), "618MB");
        assert_eq!(ByteSize(2 << 30).to_string(), "2GiB");
    }

    #[test]
    fn serde_reads_strings_and_integers() {
        let from_text: ByteSize = serde_json::from_str("\"2GiB\"").unwrap();
        let from_int: ByteSize = serde_json::from_str("4096").unwrap();
        assert_eq!(from_text, ByteSize(2 << 30));
        assert_eq!(from_int, ByteSize(4096));
        assert_eq!(
            serde_json::to_string(&ByteSize(618_000_000)).unwrap(),
            "\"618MB\""
        );
    }
}
