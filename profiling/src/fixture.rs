//! The story's bugs as the server brings them back (`share-server --features
//! regressions --regression NAME`, `server/src/regressions.rs`, same names),
//! and a scenario turned into one that runs such a build: what `rig prove`
//! puts through the gate and `rig run --regression NAME` runs once.

/// A bug of the story, by its `--regression` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fixture {
    BufferedMultipart,
    LeakedTempFiles,
    ReadAllChunks,
    UploadTransaction,
    PeriodicVacuum,
}

impl Fixture {
    pub const ALL: [Fixture; 5] = [
        Fixture::BufferedMultipart,
        Fixture::LeakedTempFiles,
        Fixture::ReadAllChunks,
        Fixture::UploadTransaction,
        Fixture::PeriodicVacuum,
    ];

    /// Its `--regression` value.
    pub fn name(self) -> &'static str {
        match self {
            Fixture::BufferedMultipart => "buffered-multipart",
            Fixture::LeakedTempFiles => "leaked-temp-files",
            Fixture::ReadAllChunks => "read-all-chunks",
            Fixture::UploadTransaction => "upload-transaction",
            Fixture::PeriodicVacuum => "periodic-vacuum",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("making the fixture scenario: {0}")]
pub struct FixtureError(String);

/// The scenario text with the `regressions` feature and `--regression NAME`
/// added, and the fixture's name appended to the scenario's.
pub fn with_fixture(text: &str, fixture: Fixture) -> Result<String, FixtureError> {
    let name = fixture.name();
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
        *n = format!("{n}-{name}");
    }
    toml::to_string(&doc).map_err(|e| bad(&e.to_string()))
}
