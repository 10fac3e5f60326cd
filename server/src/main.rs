//! The `share-server` binary: flags, logging, bind, run until SIGTERM/SIGINT.

use anyhow::Context;
use clap::Parser;
use share_server::Server;
use share_server::config::Cli;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let config = cli.server_config()?;
    let server = Server::open(config).with_context(|| format!("opening {}", cli.db.display()))?;
    let listener = TcpListener::bind((cli.listen, cli.port))
        .await
        .with_context(|| format!("binding {}:{}", cli.listen, cli.port))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    // One parseable line on stdout: tests and the rig read the port from it.
    println!("share-server listening on http://{addr}");
    tracing::info!(%addr, db = %cli.db.display(), chunk_size = cli.chunk_size, "serving");
    server
        .run(listener, shutdown_signal())
        .await
        .context("serving")?;
    Ok(())
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
