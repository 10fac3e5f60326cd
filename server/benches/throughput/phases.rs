//! Phases 2 and 3: the real server, one upload and its downloads, then
//! parallel uploads for peak memory; and the loopback ceiling of a download.

use std::time::Instant;

use anyhow::{Context, Result, ensure};
use sha2::{Digest, Sha256};

use crate::process::{ServerProcess, Session};
use crate::raw::Rate;
use testkit::content::PIECE_BYTES;
use testkit::content::content_sha256;

use crate::{CHUNK_SIZE, PARALLEL_UPLOADS};

/// The most any download can reach on this machine: `size` bytes over
/// loopback TCP in the server's chunk-sized writes, with no HTTP and no
/// storage, read by a client that only counts. The raw read runs at memory
/// speed (the database is in the page cache), above this ceiling, so the
/// download ratio is bounded by `ceiling / raw read` whatever the server does.
pub(crate) async fn loopback_ceiling(size: u64) -> Result<Rate> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the loopback probe")?;
    let addr = listener.local_addr().context("loopback probe address")?;
    let sender = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let piece = vec![0x5a_u8; CHUNK_SIZE as usize];
        let mut left = size;
        while left > 0 {
            let n = left.min(CHUNK_SIZE) as usize;
            socket.write_all(&piece[..n]).await?;
            left -= n as u64;
        }
        std::io::Result::Ok(())
    });
    let started = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(addr)
        .await
        .context("connecting to the loopback probe")?;
    let mut buf = vec![0u8; PIECE_BYTES];
    let mut received = 0u64;
    while received < size {
        let n = socket
            .read(&mut buf)
            .await
            .context("reading the loopback probe")?;
        ensure!(n > 0, "loopback probe closed after {received} bytes");
        received += n as u64;
    }
    let elapsed = started.elapsed();
    sender
        .await
        .context("loopback sender panicked")?
        .context("loopback sender")?;
    Ok(Rate {
        bytes: size,
        elapsed,
    })
}

#[derive(Clone)]
pub(crate) struct SingleFigures {
    pub(crate) upload: Rate,
    /// The timed download: bytes counted, not hashed (the figure compared
    /// with the raw read).
    pub(crate) download: Rate,
    /// The second, verifying download, hashed as it arrives (for reference:
    /// SHA-256 on the 2-core client is a large share of its time).
    pub(crate) verified_download: Rate,
    /// The verified SHA-256 of both the uploaded and the downloaded bytes.
    pub(crate) sha256: String,
    /// The server's VmHWM after the upload and downloads, for reference.
    pub(crate) hwm_mib: f64,
}

/// One upload then two downloads of `size` bytes on a fresh server: the
/// first timed with the client doing as little as possible, the second
/// hashing every byte to verify the stored file against the upload.
///
/// Hashing inside the timed download would measure the client: SHA-256
/// runs at ~2 GB/s here, about the speed of the raw read being compared.
pub(crate) async fn server_single(size: u64) -> Result<SingleFigures> {
    // Outside the timed request: the stream regenerates the same bytes.
    let expected = tokio::task::spawn_blocking(move || content_sha256(size))
        .await
        .context("hashing thread panicked")?;
    let server = ServerProcess::start(false).await?;
    let session = Session::login(&server.base_url).await?;
    let (id, upload) = session.upload(size).await?;
    let download = session.download(&id, size, None).await?;
    let mut hasher = Sha256::new();
    let verified_download = session.download(&id, size, Some(&mut hasher)).await?;
    let got = hex::encode(hasher.finalize());
    ensure!(
        got == expected,
        "download SHA-256 {got} differs from upload SHA-256 {expected}"
    );
    let hwm_mib = server.vm_hwm_mib()?;
    server.stop().await?;
    let rate = |elapsed| Rate {
        bytes: size,
        elapsed,
    };
    Ok(SingleFigures {
        upload: rate(upload),
        download: rate(download),
        verified_download: rate(verified_download),
        sha256: got,
        hwm_mib,
    })
}

pub(crate) struct MemoryFigures {
    /// VmHWM right after the server printed its address.
    pub(crate) startup_hwm_mib: f64,
    /// VmHWM after the parallel uploads completed.
    pub(crate) peak_hwm_mib: f64,
    /// All parallel uploads together, wall clock (for reference).
    pub(crate) total: Rate,
}

/// [`PARALLEL_UPLOADS`] uploads of `size` bytes at once on a fresh server.
pub(crate) async fn server_parallel(size: u64) -> Result<MemoryFigures> {
    let server = ServerProcess::start(false).await?;
    let startup_hwm_mib = server.vm_hwm_mib()?;
    let session = Session::login(&server.base_url).await?;
    let started = Instant::now();
    let uploads: Vec<_> = (0..PARALLEL_UPLOADS)
        .map(|_| {
            let session = session.clone();
            tokio::spawn(async move { session.upload(size).await })
        })
        .collect();
    for upload in uploads {
        upload.await.context("an upload task panicked")??;
    }
    let elapsed = started.elapsed();
    let peak_hwm_mib = server.vm_hwm_mib()?;
    server.stop().await?;
    Ok(MemoryFigures {
        startup_hwm_mib,
        peak_hwm_mib,
        total: Rate {
            bytes: size * PARALLEL_UPLOADS as u64,
            elapsed,
        },
    })
}
