//! The `share-server` binary: the global allocator, flags, logging, bind,
//! run until SIGTERM/SIGINT.

use anyhow::Context;
use clap::Parser;
use share_server::Server;
use share_server::config::Cli;
use tokio::net::TcpListener;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

#[cfg(feature = "jemalloc")]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation. jemalloc is built
/// unprefixed, so this is the plain `malloc_conf` symbol and SQLite's
/// `malloc` goes through jemalloc too (and shows in its statistics).
/// - `background_thread:true`: purging runs on jemalloc's own thread, so an
///   idle server still hands freed memory back instead of waiting for the
///   next allocation.
/// - `dirty_decay_ms:1000`: freed pages go back to the OS after ~1 s, not
///   the default 10 s: on a 256 MB machine a burst of uploads must not keep
///   its buffers resident.
/// - `muzzy_decay_ms:0`: skip the MADV_FREE stage, whose pages still count
///   as RSS until the kernel needs them (they made RSS graphs lie).
/// - `narenas:1`: one arena, so a chunk buffer freed by one thread is reused
///   by the next allocation on any thread. Measured with 3 parallel 200 MB
///   uploads: peak RSS 24 MiB with 1 arena, 28 MiB with 2, 30 MiB with 4
///   (each arena keeps its own dirty pages); the lock is cheap on 1-2 cores.
/// - `tcache:false`: no per-thread caches of freed objects. Each thread's
///   cache keeps memory the others cannot reuse; with a writer thread per
///   upload that was 0.5-0.8 MiB of peak anon under 3 parallel uploads
///   (`cargo bench --bench vs_dufs`), at no measurable cost in speed.
#[cfg(all(feature = "jemalloc", not(feature = "jemalloc-prof")))]
#[allow(unsafe_code)]
#[unsafe(export_name = "malloc_conf")]
pub static MALLOC_CONF: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1,tcache:false\0";

/// As above, plus heap profiling: one sample per 512 KiB allocated on
/// average (`lg_prof_sample:19`), cheap enough to leave on in a dev VM.
#[cfg(feature = "jemalloc-prof")]
#[allow(unsafe_code)]
#[unsafe(export_name = "malloc_conf")]
pub static MALLOC_CONF: &[u8] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:1,tcache:false,prof:true,prof_active:true,lg_prof_sample:19\0";

#[cfg(feature = "dhat-heap")]
#[global_allocator]
static GLOBAL: dhat::Alloc = dhat::Alloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (filter, bad_filter) = log_filter();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .finish()
        .with(filter)
        .init();
    if let Some(e) = bad_filter {
        tracing::warn!(error = %e, "RUST_LOG is not a list of target=level directives; logging at info");
    }
    // Dropped when main returns, after the graceful shutdown: dhat then writes its file.
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::builder().file_name(&cli.dhat_file).build();

    let config = cli.server_config()?;
    #[cfg(feature = "regressions")]
    if let Some(regression) = cli.regression {
        share_server::regressions::install(regression);
    }
    let server = Server::open(config).with_context(|| format!("opening {}", cli.db.display()))?;
    let listener = TcpListener::bind((cli.listen, cli.port))
        .await
        .with_context(|| format!("binding {}:{}", cli.listen, cli.port))?;
    let debug = match cli.debug_listen.0 {
        Some(addr) => Some(TcpListener::bind(addr).await.with_context(|| {
            format!("binding the debug listener {addr} (--debug-listen, or `off`)")
        })?),
        None => None,
    };
    // Parseable lines on stdout: tests and the rig read the ports from them.
    let addr = listener.local_addr().context("reading the bound address")?;
    println!(
        "{}",
        run_format::startup::listening(&format!("http://{addr}"))
    );
    if let Some(debug) = &debug {
        let debug = debug.local_addr().context("reading the debug address")?;
        println!(
            "{}",
            run_format::startup::debug_listening(&format!("http://{debug}"))
        );
    }
    tracing::info!(%addr, db = %cli.db.display(), chunk_size = cli.chunk_size,
        allocator = share_server::allocator::NAME, "serving");
    server
        .run(listener, debug, shutdown_signal())
        .await
        .context("serving")?;
    Ok(())
}

/// `RUST_LOG` as `target=level` directives (`info`, `warn,share_server=debug`),
/// `info` if unset or unreadable (with the reason). `Targets` rather than
/// `EnvFilter`: it needs no regex engine, which keeps ~0.4 MB of code (and
/// so of mapped file pages) out of the binary; span-field filters are the
/// feature given up.
fn log_filter() -> (Targets, Option<String>) {
    let info = || Targets::new().with_default(tracing::Level::INFO);
    match std::env::var("RUST_LOG") {
        Ok(text) if !text.trim().is_empty() => match text.parse::<Targets>() {
            Ok(filter) => (filter, None),
            Err(e) => (info(), Some(format!("{text:?}: {e}"))),
        },
        _ => (info(), None),
    }
}

/// Completes on SIGTERM (what `fly`, systemd and the rig send) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only ctrl-c stops the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
