//! Checking downloaded bytes against what was uploaded, as they arrive: a whole file by length
//! and SHA-256, a range byte for byte against the regenerated slice (or the slice read back
//! from `--file`). Nothing is buffered beyond one `SCRATCH`-sized piece of expected bytes.

use std::io::{self, SeekFrom};
use std::path::PathBuf;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::content::Pattern;
use crate::summary::UploadRecord;

/// Expected bytes are produced in pieces of at most this size (64 KiB) per range check.
const SCRATCH: usize = 64 * 1024;

/// Where the expected bytes of a record come from.
#[derive(Debug, Clone)]
pub(crate) enum Expected {
    Pattern(Pattern),
    File(PathBuf),
}

impl Expected {
    pub(crate) fn of(record: &UploadRecord) -> Self {
        match &record.file {
            Some(path) => Expected::File(path.clone()),
            None => Expected::Pattern(Pattern::new(record.seed)),
        }
    }
}

/// Length and SHA-256 of a whole download.
#[derive(Default)]
pub(crate) struct WholeCheck {
    hasher: Sha256,
    len: u64,
}

impl WholeCheck {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// `Err` describes the difference.
    pub(crate) fn finish(self, record: &UploadRecord) -> Result<(), String> {
        if self.len != record.size {
            return Err(format!(
                "{} bytes downloaded, {} uploaded",
                self.len, record.size
            ));
        }
        let sha256 = hex::encode(self.hasher.finalize());
        if !sha256.eq_ignore_ascii_case(&record.sha256) {
            return Err(format!(
                "SHA-256 {sha256} downloaded, {} uploaded",
                record.sha256
            ));
        }
        Ok(())
    }
}

/// Compares the bytes of a range as they arrive with the expected bytes at the same offsets.
pub(crate) struct RangeCheck {
    expected: Expected,
    file: Option<tokio::fs::File>,
    /// File offset of the next byte to arrive.
    offset: u64,
    scratch: Vec<u8>,
}

/// The first byte that differed, as a file offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Differs(pub u64);

impl RangeCheck {
    pub(crate) async fn new(expected: Expected, start: u64) -> io::Result<Self> {
        let file = match &expected {
            Expected::Pattern(_) => None,
            Expected::File(path) => {
                let mut file = tokio::fs::File::open(path).await?;
                file.seek(SeekFrom::Start(start)).await?;
                Some(file)
            }
        };
        Ok(RangeCheck {
            expected,
            file,
            offset: start,
            scratch: Vec::with_capacity(SCRATCH),
        })
    }

    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// Checks the next received bytes. `Ok(Err(_))` is a mismatch; `Err` an I/O error reading
    /// the expected bytes from the file.
    pub(crate) async fn update(&mut self, mut received: &[u8]) -> io::Result<Result<(), Differs>> {
        while !received.is_empty() {
            let len = received.len().min(SCRATCH);
            self.scratch.resize(len, 0);
            match (&self.expected, self.file.as_mut()) {
                (Expected::Pattern(p), _) => p.fill(self.offset, &mut self.scratch),
                (Expected::File(_), Some(file)) => {
                    if let Err(e) = file.read_exact(&mut self.scratch).await {
                        if e.kind() == io::ErrorKind::UnexpectedEof {
                            // More bytes arrived than the file has: a mismatch, not an I/O error.
                            return Ok(Err(Differs(self.offset)));
                        }
                        return Err(e);
                    }
                }
                (Expected::File(_), None) => return Err(io::Error::other("file not open")),
            }
            let (now, rest) = received.split_at(len);
            if let Some(i) = now.iter().zip(&self.scratch).position(|(a, b)| a != b) {
                return Ok(Err(Differs(self.offset + i as u64)));
            }
            self.offset += len as u64;
            received = rest;
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seed: u64, size: u64) -> UploadRecord {
        UploadRecord {
            id: "x".into(),
            size,
            sha256: crate::body::pattern_sha256(Pattern::new(seed), size),
            seed,
            file: None,
            filename: String::new(),
            scenario: None,
            user: 0,
            iteration: 0,
            seconds: 0.0,
        }
    }

    #[test]
    fn whole_check_catches_length_and_content() {
        let mut bytes = vec![0; 1000];
        Pattern::new(3).fill(0, &mut bytes);
        let rec = record(3, 1000);
        let mut ok = WholeCheck::default();
        ok.update(&bytes[..400]);
        ok.update(&bytes[400..]);
        assert_eq!(ok.finish(&rec), Ok(()));
        let mut short = WholeCheck::default();
        short.update(&bytes[..999]);
        assert!(short.finish(&rec).unwrap_err().contains("999 bytes"));
        bytes[500] ^= 1;
        let mut flipped = WholeCheck::default();
        flipped.update(&bytes);
        assert!(flipped.finish(&rec).unwrap_err().contains("SHA-256"));
    }

    #[tokio::test]
    async fn range_check_finds_the_first_differing_offset() {
        let p = Pattern::new(5);
        let mut bytes = vec![0; 200_000];
        p.fill(1000, &mut bytes);
        let mut check = RangeCheck::new(Expected::Pattern(p), 1000).await.unwrap();
        assert_eq!(check.update(&bytes[..70_000]).await.unwrap(), Ok(()));
        bytes[150_000] ^= 0x80;
        assert_eq!(
            check.update(&bytes[70_000..]).await.unwrap(),
            Err(Differs(1000 + 150_000))
        );
    }

    #[tokio::test]
    async fn range_check_reads_expected_bytes_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let mut check = RangeCheck::new(Expected::File(path.clone()), 10)
            .await
            .unwrap();
        assert_eq!(check.update(&data[10..90_000]).await.unwrap(), Ok(()));
        let mut past_end = RangeCheck::new(Expected::File(path), 99_990).await.unwrap();
        assert_eq!(
            past_end.update(&[0; 20]).await.unwrap(),
            Err(Differs(99_990))
        );
    }
}
