//! The story's bugs as the server brings them back (`share-server --features
//! regressions --regression NAME`, `server/src/regressions.rs`, same names),
//! and a scenario turned into one that runs such a build: what `rig prove`
//! puts through the gate and `rig run --regression NAME` runs once.

use std::fmt;
use std::str::FromStr;

use loadgen::ByteSize;

/// A bug of the story, or a sized fixture, by its `--regression` value
/// (`read-all-chunks`, `retain-per-upload=1MiB`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    BufferedMultipart,
    LeakedTempFiles,
    ReadAllChunks,
    UploadTransaction,
    PeriodicVacuum,
    /// This much memory filled and held by each upload while it runs.
    RetainPerUpload(ByteSize),
    /// This much memory filled and leaked by every HTTP request.
    LeakPerRequest(ByteSize),
    /// SQLite's page cache per connection (whole KiB).
    SqliteCache(ByteSize),
}

impl Fixture {
    /// The story's five: what `rig prove` runs by default.
    pub const ALL: [Fixture; 5] = [
        Fixture::BufferedMultipart,
        Fixture::LeakedTempFiles,
        Fixture::ReadAllChunks,
        Fixture::UploadTransaction,
        Fixture::PeriodicVacuum,
    ];

    /// The names that take a size, `NAME=SIZE`.
    pub const SIZED: [&str; 3] = ["retain-per-upload", "leak-per-request", "sqlite-cache"];

    /// Its name without a size.
    pub fn base_name(self) -> &'static str {
        match self {
            Fixture::BufferedMultipart => "buffered-multipart",
            Fixture::LeakedTempFiles => "leaked-temp-files",
            Fixture::ReadAllChunks => "read-all-chunks",
            Fixture::UploadTransaction => "upload-transaction",
            Fixture::PeriodicVacuum => "periodic-vacuum",
            Fixture::RetainPerUpload(_) => "retain-per-upload",
            Fixture::LeakPerRequest(_) => "leak-per-request",
            Fixture::SqliteCache(_) => "sqlite-cache",
        }
    }

    /// Its `--regression` value: `read-all-chunks`, `retain-per-upload=1MiB`.
    pub fn name(self) -> String {
        self.to_string()
    }

    /// The size of a sized fixture.
    pub fn size(self) -> Option<ByteSize> {
        match self {
            Fixture::RetainPerUpload(s) | Fixture::LeakPerRequest(s) | Fixture::SqliteCache(s) => {
                Some(s)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Fixture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.base_name())?;
        match self.size() {
            Some(size) => write!(f, "={size}"),
            None => Ok(()),
        }
    }
}

/// What `--regression` and `--fixtures` say about a value they refuse.
impl FromStr for Fixture {
    type Err = String;

    fn from_str(s: &str) -> Result<Fixture, String> {
        let (name, size) = match s.split_once('=') {
            Some((name, size)) => (name, Some(size)),
            None => (s, None),
        };
        if let Some(&f) = Fixture::ALL.iter().find(|f| f.base_name() == name) {
            return match size {
                None => Ok(f),
                Some(_) => Err(format!("{name} takes no size")),
            };
        }
        let sized: fn(ByteSize) -> Fixture = match name {
            "retain-per-upload" => Fixture::RetainPerUpload,
            "leak-per-request" => Fixture::LeakPerRequest,
            "sqlite-cache" => Fixture::SqliteCache,
            _ => {
                let valid: Vec<String> = (Fixture::ALL.iter().map(|f| f.name()))
                    .chain(Fixture::SIZED.iter().map(|n| format!("{n}=SIZE")))
                    .collect();
                return Err(format!(
                    "unknown fixture {s:?}; valid: {}",
                    valid.join(", ")
                ));
            }
        };
        let size: ByteSize = size
            .ok_or_else(|| format!("{name} needs a size: {name}=SIZE (e.g. {name}=1MiB)"))?
            .parse()
            .map_err(|e| format!("{name}: {e}"))?;
        if size.bytes() == 0 {
            return Err(format!("{name}: the size must be more than 0"));
        }
        if name == "sqlite-cache" && !size.bytes().is_multiple_of(1024) {
            return Err(format!("{name}: the size must be whole KiB, not {size}"));
        }
        Ok(sized(size))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("making the fixture scenario: {0}")]
pub struct FixtureError(String);

/// The scenario text with the `regressions` feature and `--regression NAME`
/// added, and the fixture's name appended to the scenario's.
pub fn with_fixture(text: &str, fixture: Fixture) -> Result<String, FixtureError> {
    let name = fixture.name();
    let name = name.as_str();
    let bad = |what: &str| FixtureError(what.to_owned());
    let mut doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| bad(e.message()))?;
    let server = doc
        .entry("server")
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .ok_or_else(|| bad("[server] is not a table"))?;
    let mut push = |key: &str, values: &[&str]| -> Result<(), FixtureError> {
        let list = server
            .entry(key)
            .or_insert_with(|| toml::Value::Array(Vec::new()))
            .as_array_mut()
            .ok_or_else(|| bad("server.features and server.args must be lists"))?;
        list.extend(values.iter().map(|v| toml::Value::String((*v).to_owned())));
        Ok(())
    };
    push("features", &["regressions"])?;
    push("args", &["--regression", name])?;
    if let Some(toml::Value::String(n)) = doc.get_mut("name") {
        // A scenario name is letters, digits, '-' and '_': `retain-per-upload-1MiB`.
        *n = format!("{n}-{}", name.replace('=', "-"));
    }
    toml::to_string(&doc).map_err(|e| bad(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_sizes_parse_and_print_back() {
        for (text, fixture) in [
            ("read-all-chunks", Fixture::ReadAllChunks),
            (
                "retain-per-upload=1MiB",
                Fixture::RetainPerUpload(ByteSize(1 << 20)),
            ),
            (
                "leak-per-request=64KiB",
                Fixture::LeakPerRequest(ByteSize(64 << 10)),
            ),
            (
                "sqlite-cache=32MiB",
                Fixture::SqliteCache(ByteSize(32 << 20)),
            ),
        ] {
            assert_eq!(text.parse::<Fixture>(), Ok(fixture));
            assert_eq!(fixture.name(), text);
        }
        // Any size the loadgen reads, printed in its exact form.
        let half = "retain-per-upload=1.5MiB".parse::<Fixture>().unwrap();
        assert_eq!(half.name(), "retain-per-upload=1536KiB");
    }

    #[test]
    fn a_sized_fixture_is_one_server_argument() {
        let fixture = Fixture::LeakPerRequest(ByteSize(64 << 10));
        let out = with_fixture("name = \"g\"\n", fixture).unwrap();
        let doc: toml::Table = out.parse().unwrap();
        assert_eq!(doc["name"].as_str(), Some("g-leak-per-request-64KiB"));
        let args = doc["server"]["args"].as_array().unwrap();
        assert_eq!(args[1].as_str(), Some("leak-per-request=64KiB"));
        // A name the scenario loader takes (no '=').
        crate::scenario::Scenario::parse(&out, std::path::Path::new("g.toml")).unwrap();
    }

    #[test]
    fn bad_values_say_why() {
        for (text, why) in [
            ("read-all-chunks=1MiB", "takes no size"),
            ("retain-per-upload", "needs a size"),
            ("retain-per-upload=lots", "invalid size"),
            ("leak-per-request=0", "more than 0"),
            ("sqlite-cache=1000", "whole KiB"),
            ("retain=1MiB", "valid: buffered-multipart"),
        ] {
            let err = text.parse::<Fixture>().unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
        let err = "nope".parse::<Fixture>().unwrap_err();
        assert!(err.contains("sqlite-cache=SIZE"), "{err}");
    }
}
