//! `--regression` values: the five bugs by name (`read-all-chunks`) and the
//! sized fixtures as `NAME=SIZE` (`retain-per-upload=1MiB`). Sizes use the
//! rig's `ByteSize` grammar (whole numbers, `KiB`/`MiB`/`kB`/`MB`/.. or
//! plain bytes), so whatever the rig writes the server reads.

use std::ffi::OsStr;
use std::fmt;
use std::str::FromStr;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::error::ErrorKind;

use super::Regression;

/// Every value, as `--help` lists it.
pub const VALUES: [(&str, &str); 8] = [
    (
        "buffered-multipart",
        "bug 1: the file part buffered in memory (64 MiB)",
    ),
    (
        "leaked-temp-files",
        "bug 2: each upload spooled to a TMPDIR file never removed",
    ),
    (
        "read-all-chunks",
        "bug 3: a chunk read loads every later chunk too",
    ),
    (
        "upload-transaction",
        "bug 4: one write transaction per whole upload",
    ),
    ("periodic-vacuum", "bug 5: VACUUM after every GC run"),
    (
        "retain-per-upload=SIZE",
        "SIZE bytes filled and held while each upload runs",
    ),
    (
        "leak-per-request=SIZE",
        "SIZE bytes filled and never freed on every HTTP request",
    ),
    (
        "sqlite-cache=SIZE",
        "SQLite page cache of SIZE (whole KiB) per connection",
    ),
];

/// Units from largest to smallest, as `loadgen::ByteSize` has them.
const UNITS: [(&str, u64); 9] = [
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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseRegressionError {
    #[error("unknown regression {0:?}; valid: {valid}", valid = valid_names())]
    Unknown(String),
    #[error("{0} takes no size")]
    TakesNoSize(&'static str),
    #[error("{0} needs a size: {0}=SIZE (e.g. {0}=1MiB)")]
    NeedsSize(&'static str),
    #[error("{name}: invalid size {size:?}: {reason} (e.g. 1MiB, 512KiB, 4096)")]
    BadSize {
        name: &'static str,
        size: String,
        reason: &'static str,
    },
}

fn valid_names() -> String {
    VALUES.map(|(name, _)| name).join(", ")
}

impl FromStr for Regression {
    type Err = ParseRegressionError;

    fn from_str(s: &str) -> Result<Regression, ParseRegressionError> {
        let (name, size) = match s.split_once('=') {
            Some((name, size)) => (name, Some(size)),
            None => (s, None),
        };
        let unit = match name {
            "buffered-multipart" => Some(Regression::BufferedMultipart),
            "leaked-temp-files" => Some(Regression::LeakedTempFiles),
            "read-all-chunks" => Some(Regression::ReadAllChunks),
            "upload-transaction" => Some(Regression::UploadTransaction),
            "periodic-vacuum" => Some(Regression::PeriodicVacuum),
            _ => None,
        };
        if let Some(regression) = unit {
            return match size {
                None => Ok(regression),
                Some(_) => Err(ParseRegressionError::TakesNoSize(regression.name())),
            };
        }
        let sized: fn(u64) -> Regression = match name {
            "retain-per-upload" => Regression::RetainPerUpload,
            "leak-per-request" => Regression::LeakPerRequest,
            "sqlite-cache" => Regression::SqliteCache,
            _ => return Err(ParseRegressionError::Unknown(s.to_owned())),
        };
        let name = sized(0).name();
        let size = size.ok_or(ParseRegressionError::NeedsSize(name))?;
        let bad = |reason| ParseRegressionError::BadSize {
            name,
            size: size.to_owned(),
            reason,
        };
        let bytes = parse_size(size).map_err(bad)?;
        if bytes == 0 {
            return Err(bad("must be more than 0"));
        }
        if name == "sqlite-cache" && !bytes.is_multiple_of(1024) {
            return Err(bad("must be whole KiB"));
        }
        Ok(sized(bytes))
    }
}

/// A whole number with an optional unit.
fn parse_size(text: &str) -> Result<u64, &'static str> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() || unit.starts_with('.') {
        return Err("not a whole number");
    }
    let multiplier = if unit.is_empty() {
        1
    } else {
        UNITS
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(unit))
            .map(|&(_, m)| m)
            .ok_or("unknown unit (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)")?
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or("too large")
}

/// The largest unit that is exact (`1MiB`, `1000001B`), as `ByteSize` shows it.
fn format_size(bytes: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let (unit, m) = UNITS
        .into_iter()
        .find(|&(_, m)| bytes != 0 && bytes.is_multiple_of(m))
        .unwrap_or(("B", 1));
    write!(f, "{}{unit}", bytes / m)
}

impl Regression {
    /// The name without a size: `retain-per-upload`.
    pub fn name(self) -> &'static str {
        match self {
            Regression::BufferedMultipart => "buffered-multipart",
            Regression::LeakedTempFiles => "leaked-temp-files",
            Regression::ReadAllChunks => "read-all-chunks",
            Regression::UploadTransaction => "upload-transaction",
            Regression::PeriodicVacuum => "periodic-vacuum",
            Regression::RetainPerUpload(_) => "retain-per-upload",
            Regression::LeakPerRequest(_) => "leak-per-request",
            Regression::SqliteCache(_) => "sqlite-cache",
        }
    }

    pub(crate) fn size(self) -> Option<u64> {
        match self {
            Regression::RetainPerUpload(b)
            | Regression::LeakPerRequest(b)
            | Regression::SqliteCache(b) => Some(b),
            _ => None,
        }
    }
}

/// `read-all-chunks`, `retain-per-upload=1MiB`: parses back to itself.
impl fmt::Display for Regression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match self.size() {
            Some(bytes) => {
                f.write_str("=")?;
                format_size(bytes, f)
            }
            None => Ok(()),
        }
    }
}

/// clap's parser for `--regression`: [`FromStr`], with [`VALUES`] in `--help`.
#[derive(Debug, Clone, Copy)]
pub struct RegressionParser;

impl TypedValueParser for RegressionParser {
    type Value = Regression;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<Regression, clap::Error> {
        let text = value
            .to_str()
            .ok_or_else(|| clap::Error::new(ErrorKind::InvalidUtf8).with_cmd(cmd))?;
        text.parse().map_err(|e: ParseRegressionError| {
            clap::Error::raw(ErrorKind::InvalidValue, format!("--regression: {e}\n")).with_cmd(cmd)
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            VALUES
                .into_iter()
                .map(|(name, help)| PossibleValue::new(name).help(help)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Regression, ParseRegressionError> {
        s.parse()
    }

    #[test]
    fn the_five_names_parse_alone() {
        assert_eq!(parse("read-all-chunks"), Ok(Regression::ReadAllChunks));
        assert_eq!(parse("periodic-vacuum"), Ok(Regression::PeriodicVacuum));
        assert_eq!(
            parse("read-all-chunks=1MiB"),
            Err(ParseRegressionError::TakesNoSize("read-all-chunks"))
        );
    }

    #[test]
    fn sized_names_parse_units_and_plain_bytes() {
        assert_eq!(
            parse("retain-per-upload=8MiB"),
            Ok(Regression::RetainPerUpload(8 << 20))
        );
        assert_eq!(
            parse("leak-per-request=64kib"),
            Ok(Regression::LeakPerRequest(64 << 10))
        );
        assert_eq!(
            parse("leak-per-request=1000"),
            Ok(Regression::LeakPerRequest(1000))
        );
        assert_eq!(
            parse("sqlite-cache=2MB"),
            Err(ParseRegressionError::BadSize {
                name: "sqlite-cache",
                size: "2MB".into(),
                reason: "must be whole KiB"
            })
        );
        assert_eq!(
            parse("sqlite-cache=32MiB"),
            Ok(Regression::SqliteCache(32 << 20))
        );
    }

    #[test]
    fn bad_sizes_and_names_say_what_is_wrong() {
        for bad in [
            "1.5MiB",
            "MiB",
            "",
            "-1",
            "1 MiB",
            "3PB",
            "0",
            "99999999999TiB",
        ] {
            let err = parse(&format!("retain-per-upload={bad}")).unwrap_err();
            assert!(
                matches!(err, ParseRegressionError::BadSize { .. }),
                "{bad:?}: {err}"
            );
        }
        assert_eq!(
            parse("retain-per-upload"),
            Err(ParseRegressionError::NeedsSize("retain-per-upload"))
        );
        let unknown = parse("retain=1MiB").unwrap_err().to_string();
        assert!(unknown.contains("retain-per-upload=SIZE"), "{unknown}");
        assert!(unknown.contains("read-all-chunks"), "{unknown}");
    }

    #[test]
    fn display_round_trips() {
        for r in [
            Regression::UploadTransaction,
            Regression::RetainPerUpload(1 << 20),
            Regression::LeakPerRequest(1_000_001),
            Regression::LeakPerRequest(2_000_000),
            Regression::SqliteCache(3 << 10),
        ] {
            assert_eq!(parse(&r.to_string()), Ok(r), "{r}");
        }
        assert_eq!(
            Regression::RetainPerUpload(1 << 20).to_string(),
            "retain-per-upload=1MiB"
        );
    }
}
