//! `sharerig-agent`: the rig's agent inside a `vm` guest (started by the
//! guest's `/init`). It starts share-server, then every interval writes one
//! sample of the guest's memory and the server's to a virtio-serial port the
//! rig reads on the host; `stop` from the host sends the server SIGTERM; when
//! the server ends it reports how and returns, and `/init` powers off.
//!
//! std only, a few file reads and one loopback request a sample, no fork:
//! under TCG every guest cycle is emulated and the agent must not compete
//! with the server it measures. The stream's format is in the `vm_wire`
//! crate, shared with the rig's parser (`profiling/src/machine/vm/agent.rs`).

mod args;
mod frame;
mod stats;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use vm_wire::Tag;

/// Longest command line read from the host, bytes.
const MAX_COMMAND: u64 = 256;

fn main() -> ExitCode {
    let args = match args::Args::parse(std::env::args_os().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("sharerig-agent: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sharerig-agent: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &args::Args) -> std::io::Result<()> {
    // A virtio-serial port opens once: reads and writes share this handle.
    let port = OpenOptions::new().read(true).write(true).open(&args.port)?;
    let mut out = port.try_clone()?;
    let log = OpenOptions::new().write(true).open(&args.log)?;
    let mut server = match Command::new(&args.server[0])
        .args(&args.server[1..])
        .current_dir(&args.data)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            writeln!(out, "{} starting {:?}: {e}", Tag::Failed, args.server[0])?;
            return Err(e);
        }
    };
    let pid = server.id();
    writeln!(out, "{} {}", Tag::Hello, frame::kernel_release())?;
    writeln!(out, "{} {pid}", Tag::Started)?;
    spawn_command_reader(port, pid);

    let stats = stats::Client::new(args.debug_port, args.interval);
    let mut next = Instant::now();
    let mut buf = Vec::new();
    loop {
        if let Some(status) = server.try_wait()? {
            let words = vm_wire::exit_words(status.code(), status.signal());
            writeln!(out, "{} {words}", Tag::Exit)?;
            return Ok(());
        }
        buf.clear();
        frame::write(&mut buf, pid, &args.data, &stats);
        out.write_all(&buf)?;
        // Deadline ticks: a slow sample shortens the next sleep; ticks
        // missed entirely are skipped, not bunched.
        next += args.interval;
        let now = Instant::now();
        if next <= now {
            next = now;
        } else {
            std::thread::sleep(next - now);
        }
    }
}

/// Reads the host's commands, one a line: `stop` sends the server SIGTERM
/// (through busybox `kill`: std has no signal call and the workspace allows
/// no unsafe code; it runs once a run).
fn spawn_command_reader(port: File, pid: u32) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(port);
        let mut line = String::new();
        loop {
            line.clear();
            // Commands are a word; a longer line is cut at the bound.
            match (&mut reader).take(MAX_COMMAND).read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if line.trim() == vm_wire::STOP {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status();
            }
        }
    });
}
