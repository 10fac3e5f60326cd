//! The server's heap profiles as the rig saves them (`heap/<t_ms>.pb.gz`):
//! a gzipped pprof protobuf from `/debug/pprof/heap` (jemalloc_pprof). Only
//! the part of pprof's `profile.proto` (github.com/google/pprof,
//! proto/profile.proto) that the reports and the server's tests read is
//! declared; prost skips the other fields. One decoder for both.

use std::io::Read;

use prost::Message;

/// One frame: a function's name and its source file ("" when unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub name: String,
    pub file: String,
}

/// One sampled stack, leaf first, with the bytes it holds (`inuse_space`).
#[derive(Debug, Clone, PartialEq)]
pub struct Stack {
    pub frames: Vec<Frame>,
    pub bytes: u64,
}

/// Un-gzips and decodes a profile.
pub fn decode_raw(gz: &[u8]) -> Result<proto::Profile, String> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut raw)
        .map_err(|e| format!("not gzip: {e}"))?;
    proto::Profile::decode(&raw[..]).map_err(|e| format!("not a pprof profile: {e}"))
}

/// Decodes a gzipped profile into stacks; the first sample type is the one counted.
pub fn decode(gz: &[u8]) -> Result<Vec<Stack>, String> {
    decode_raw(gz).map(|p| stacks(&p))
}

/// A profile's samples as stacks of names.
pub fn stacks(p: &proto::Profile) -> Vec<Stack> {
    let text = |i: i64| {
        usize::try_from(i)
            .ok()
            .and_then(|i| p.string_table.get(i))
            .cloned()
            .unwrap_or_default()
    };
    let functions: std::collections::HashMap<u64, Frame> = p
        .function
        .iter()
        .map(|f| {
            let name = match text(f.name) {
                n if n.is_empty() => text(f.system_name),
                n => n,
            };
            let file = text(f.filename);
            (f.id, Frame { name, file })
        })
        .collect();
    let locations: std::collections::HashMap<u64, &proto::Location> =
        p.location.iter().map(|l| (l.id, l)).collect();
    let frames_of = |id: &u64| -> Vec<Frame> {
        let Some(location) = locations.get(id) else {
            return Vec::new();
        };
        if location.line.is_empty() {
            // Not symbolized: the address is all there is.
            return vec![Frame {
                name: format!("{:#x}", location.address),
                file: String::new(),
            }];
        }
        // Inlined frames, innermost first, as the stack is leaf first.
        location
            .line
            .iter()
            .filter_map(|l| functions.get(&l.function_id).cloned())
            .collect()
    };
    p.sample
        .iter()
        .map(|s| Stack {
            frames: s.location_id.iter().flat_map(frames_of).collect(),
            bytes: s.value.first().copied().unwrap_or(0).max(0) as u64,
        })
        .collect()
}

/// The declared subset of `profile.proto`.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Profile {
        #[prost(message, repeated, tag = "1")]
        pub sample_type: Vec<ValueType>,
        #[prost(message, repeated, tag = "2")]
        pub sample: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub mapping: Vec<Mapping>,
        #[prost(message, repeated, tag = "4")]
        pub location: Vec<Location>,
        #[prost(message, repeated, tag = "5")]
        pub function: Vec<Function>,
        #[prost(string, repeated, tag = "6")]
        pub string_table: Vec<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ValueType {
        /// String table indices.
        #[prost(int64, tag = "1")]
        pub r#type: i64,
        #[prost(int64, tag = "2")]
        pub unit: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        /// Leaf first.
        #[prost(uint64, repeated, tag = "1")]
        pub location_id: Vec<u64>,
        /// One per sample type.
        #[prost(int64, repeated, tag = "2")]
        pub value: Vec<i64>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Mapping {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// String table index.
        #[prost(int64, tag = "5")]
        pub filename: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Location {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        #[prost(uint64, tag = "2")]
        pub mapping_id: u64,
        #[prost(uint64, tag = "3")]
        pub address: u64,
        /// Innermost (inlined) first.
        #[prost(message, repeated, tag = "4")]
        pub line: Vec<Line>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Line {
        #[prost(uint64, tag = "1")]
        pub function_id: u64,
        #[prost(int64, tag = "2")]
        pub line: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Function {
        #[prost(uint64, tag = "1")]
        pub id: u64,
        /// String table indices.
        #[prost(int64, tag = "2")]
        pub name: i64,
        #[prost(int64, tag = "3")]
        pub system_name: i64,
        #[prost(int64, tag = "4")]
        pub filename: i64,
    }
}

/// Gzips an encoded profile, as the server sends it (for tests and tools
/// that write profiles).
pub fn encode(p: &proto::Profile) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = gz.write_all(&p.encode_to_vec());
    gz.finish().unwrap_or_default()
}

/// A gzipped profile of `stacks` (function names, leaf first, and bytes): a
/// profile as small as a test needs.
pub fn profile_of(stacks: &[(&[&str], i64)]) -> Vec<u8> {
    use proto::*;
    let mut p = Profile {
        string_table: vec![String::new()],
        ..Profile::default()
    };
    for (names, bytes) in stacks {
        let mut ids = Vec::new();
        for name in names.iter() {
            let id = p.function.len() as u64 + 1;
            p.string_table.push((*name).to_owned());
            p.function.push(Function {
                id,
                name: p.string_table.len() as i64 - 1,
                ..Function::default()
            });
            p.location.push(Location {
                id,
                address: 0x1000 + id,
                line: vec![Line {
                    function_id: id,
                    line: 0,
                }],
                ..Location::default()
            });
            ids.push(id);
        }
        p.sample.push(Sample {
            location_id: ids,
            value: vec![*bytes],
        });
    }
    encode(&p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_profile_decodes_into_named_stacks() {
        let gz = profile_of(&[(&["malloc", "share_server::upload::send"], 1 << 20)]);
        let stacks = decode(&gz).unwrap_or_default();
        assert_eq!(stacks.len(), 1);
        assert_eq!(stacks[0].bytes, 1 << 20);
        let names: Vec<&str> = stacks[0].frames.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["malloc", "share_server::upload::send"]);
        assert!(decode(b"not gzip").is_err());
    }
}
