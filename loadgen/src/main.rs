//! The `loadgen` command: flags onto `loadgen::Config`, then `loadgen::run`.
//!
//! Exit status: 0 when every request succeeded and every download verified; 1 when something
//! failed (requests, mismatches, unreachable server, wrong secret, server gone mid-run: the
//! summary is written in every case); 2 for invalid flags.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use loadgen::{Config, Summary};

const AFTER_HELP: &str = "\
Scenarios:
  upload        log in, then stream a browser-shaped multipart upload of --size
  download      download entries whole and by random Range requests, verifying every byte
                (entries from --known-uploads, or uploaded by the user first)
  slow-upload   an upload throttled to --slow-rate
  abort-upload  an upload that disconnects after --abort-fraction of its body
  mixed         users spread over the four above by --mix weights
  delete        delete entries (DELETE /api/entry/{id}), each by one user, and check each is
                gone (GET answers 404); entries as for download
  guest-upload  each user's login creates an unlimited guest link (POST /api/guest-links);
                each iteration uploads --size bytes through it (POST /api/guest/{id}, one
                `file` part); stored files are downloadable as for upload

Attacks (raw sockets, loopback only, bounded by --connections and --run-time, default 30s;
the server refusing or resetting them is counted, not a failure; the server gone is):
  login-body-flood      POST /api/auth with a 2 MB JSON body per connection, answer unread (200)
  stalled-guest-upload  uploads to a new unlimited guest link: --stall-after bytes, then stall (200)
  slow-body             POST bodies trickled one byte per --trickle-interval (260)
  idle-flood            connections that send nothing, reopened when closed (300)
  history-flood         --history-requests pipelined 1-byte Range GETs of one small upload with a
                        600-byte User-Agent (4 connections), then its download history as owner

The story's repro (three parallel 618 MB uploads):
  loadgen --host http://127.0.0.1:4001 --secret ... --users 3 --scenario upload --size 618MB --iterations 1

Sizes: 618MB = 618 x 10^6 bytes, 2GiB = 2 x 2^30 bytes. Durations: 30s, 5m, 1h30m.
Output: goose-report.{html,md,json} and loadgen-summary.json in --report-dir.";

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for share-server (goose): parallel streamed uploads, verified \
             downloads, slow and aborting clients",
    after_help = AFTER_HELP
)]
struct Args {
    #[command(flatten)]
    config: Config,
    /// A loadgen-summary.json whose uploads download may fetch and delete deletes (repeatable;
    /// entries a given summary deleted are left out).
    #[arg(long)]
    known_uploads: Vec<PathBuf>,
}

impl Args {
    fn into_config(self) -> anyhow::Result<Config> {
        let earlier = self
            .known_uploads
            .iter()
            .map(|path| {
                Summary::read(path)
                    .with_context(|| format!("reading --known-uploads {}", path.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Config {
            known_uploads: Summary::remaining_uploads(&earlier),
            ..self.config
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let quiet = args.config.quiet;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                let level = if quiet { "warn" } else { "info" };
                tracing_subscriber::EnvFilter::new(format!("{level},goose=warn"))
            }),
        )
        .init();
    match run(args) {
        Ok(summary) => {
            println!("{}", summary.to_text());
            if summary.ok {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "loadgen: {} failed requests, {} mismatches (details in {})",
                    summary.failures,
                    summary.mismatches,
                    summary.reports.summary.display()
                );
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            if let Some(summary) = e
                .downcast_ref::<loadgen::Error>()
                .and_then(|e| e.partial_summary())
            {
                println!("{}", summary.to_text());
            }
            eprintln!("loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<Summary> {
    let config = args.into_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    Ok(runtime.block_on(loadgen::run(config))?)
}
