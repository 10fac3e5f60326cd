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
use loadgen::{ByteSize, Config, MixedWeights, Scenario, Sources, Summary};

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
    /// Server base URL.
    #[arg(long, default_value_t = Config::default().host)]
    host: String,
    /// The server's shared secret.
    #[arg(long, env = "PS_SHARED_SECRET", hide_env_values = true)]
    secret: String,
    /// A polite scenario or an attack, see below.
    #[arg(long, default_value_t = Config::default().scenario)]
    scenario: Scenario,
    /// Concurrent users.
    #[arg(short, long, default_value_t = Config::default().users)]
    users: usize,
    /// Iterations per user [default: 1, or none with --run-time].
    #[arg(long)]
    iterations: Option<usize>,
    /// Keep users running this long once all have started (with --iterations: a deadline).
    #[arg(short = 't', long)]
    run_time: Option<humantime::Duration>,
    /// Users started per second.
    #[arg(short = 'r', long, default_value_t = Config::default().increase_rate)]
    increase_rate: f64,
    /// Bytes per upload.
    #[arg(long, default_value_t = Config::default().size)]
    size: ByteSize,
    /// Upload this file (streamed from disk) instead of generated content.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Base seed of the generated content and of the Range positions.
    #[arg(long, default_value_t = Config::default().seed)]
    seed: u64,
    /// Per-request timeout, whole body included (the default fits 618 MB at 2 MB/s).
    #[arg(long, default_value_t = Config::default().timeout.into())]
    timeout: humantime::Duration,
    /// Bytes per second of slow-upload.
    #[arg(long, default_value_t = Config::default().slow_rate)]
    slow_rate: ByteSize,
    /// Fraction of the body after which abort-upload disconnects.
    #[arg(long, default_value_t = Config::default().abort_fraction)]
    abort_fraction: f64,
    /// Random Range requests after each whole download.
    #[arg(long, default_value_t = Config::default().ranges_per_download)]
    ranges: usize,
    /// Longest Range request.
    #[arg(long, default_value_t = Config::default().range_size)]
    range_size: ByteSize,
    /// Uploads expire this long after they start (the server must allow it: --min-expiration).
    #[arg(long)]
    expire_after: Option<humantime::Duration>,
    /// Share of churn entries deleted after their downloads (the rest expire).
    #[arg(long, default_value_t = Config::default().delete_fraction)]
    delete_fraction: f64,
    /// Pause after each iteration of a user (e.g. 500ms).
    #[arg(long)]
    think_time: Option<humantime::Duration>,
    /// Weights of mixed, e.g. upload=3,download=3,slow-upload=1,abort-upload=1.
    #[arg(long)]
    mix: Option<MixedWeights>,
    /// A loadgen-summary.json whose uploads download may fetch and delete deletes (repeatable;
    /// entries a given summary deleted are left out).
    #[arg(long)]
    known_uploads: Vec<PathBuf>,
    /// Where goose's reports and loadgen-summary.json go.
    #[arg(long, default_value_os_t = Config::default().report_dir)]
    report_dir: PathBuf,
    /// Warnings only, and no goose tables at the end.
    #[arg(short, long)]
    quiet: bool,
    /// Attacks: connections held at once [default: the class's, see below].
    #[arg(long)]
    connections: Option<usize>,
    /// Attacks: source addresses, a count (16: spread over 127/8) or a list (127.0.0.2,127.0.0.3).
    #[arg(long)]
    sources: Option<Sources>,
    /// history-flood: requests pipelined.
    #[arg(long, default_value_t = Config::default().history_requests)]
    history_requests: usize,
    /// slow-body: time between body bytes.
    #[arg(long, default_value_t = Config::default().trickle_interval.into())]
    trickle_interval: humantime::Duration,
    /// stalled-guest-upload: body bytes sent before stalling.
    #[arg(long, default_value_t = Config::default().stall_after)]
    stall_after: ByteSize,
}

impl Args {
    fn into_config(self) -> anyhow::Result<Config> {
        let defaults = Config::default();
        let earlier = self
            .known_uploads
            .iter()
            .map(|path| {
                Summary::read(path)
                    .with_context(|| format!("reading --known-uploads {}", path.display()))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let known_uploads = Summary::remaining_uploads(&earlier);
        Ok(Config {
            host: self.host,
            secret: self.secret,
            scenario: self.scenario,
            users: self.users,
            iterations: self.iterations,
            run_time: self.run_time.map(Into::into),
            increase_rate: self.increase_rate,
            size: self.size,
            file: self.file,
            seed: self.seed,
            timeout: self.timeout.into(),
            slow_rate: self.slow_rate,
            abort_fraction: self.abort_fraction,
            ranges_per_download: self.ranges,
            known_uploads,
            report_dir: self.report_dir,
            quiet: self.quiet,
            range_size: self.range_size,
            mixed: self.mix.unwrap_or(defaults.mixed),
            expire_after: self.expire_after.map(Into::into),
            delete_fraction: self.delete_fraction,
            think_time: self.think_time.map(Into::into),
            connections: self.connections,
            sources: self.sources.unwrap_or_default(),
            history_requests: self.history_requests,
            trickle_interval: self.trickle_interval.into(),
            stall_after: self.stall_after,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let quiet = args.quiet;
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
