//! What the machine, its probe and the running guest share: the guest's
//! facts ([`VmInfo`], for `meta.json`) and what its streams last said,
//! behind one lock, with a signal on every change.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::VmInfo;
use super::agent::AgentSample;
use crate::machine::OomKill;
use crate::machine::server::tail;
use crate::target::Exit;

/// No line from the agent for this long: the guest is hung (under TCG an
/// OOM-thrashing guest can stall for seconds, not a minute).
pub const HANG_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Shared {
    state: Mutex<State>,
    changed: watch::Sender<()>,
}

/// The guest's facts and its streams' latest news.
pub(super) struct State {
    pub(super) info: VmInfo,
    pub(super) latest: Option<(Instant, AgentSample)>,
    pub(super) last_agent_line: Option<Instant>,
    /// The server's exit code and signal, as the agent reported them.
    pub(super) server_exit: Option<(Option<i32>, Option<i32>)>,
    /// Why the agent could not start the server.
    pub(super) failed: Option<String>,
    /// The kills on the guest's console.
    pub(super) oom_kills: Vec<OomKill>,
    /// `oom_kill` of the guest's /proc/vmstat.
    pub(super) vmstat_oom_kills: u64,
    pub(super) panic: Option<String>,
    pub(super) qemu_exit: Option<String>,
    pub(super) hung: bool,
}

impl Shared {
    /// Before the guest boots: what the machine knows of it.
    pub fn new(info: VmInfo) -> Shared {
        Shared {
            state: Mutex::new(State {
                info,
                latest: None,
                last_agent_line: None,
                server_exit: None,
                failed: None,
                oom_kills: Vec::new(),
                vmstat_oom_kills: 0,
                panic: None,
                qemu_exit: None,
                hung: false,
            }),
            changed: watch::channel(()).0,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes the state and wakes whoever waits for a change.
    pub(super) fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.lock());
        self.changed.send_replace(());
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<()> {
        self.changed.subscribe()
    }

    /// The guest's facts so far.
    pub fn info(&self) -> VmInfo {
        self.lock().info.clone()
    }

    pub fn latest(&self) -> Option<(Instant, AgentSample)> {
        self.lock().latest.clone()
    }

    /// Kills in the guest: its console's lines or its /proc/vmstat, whichever saw more.
    pub fn oom_kills(&self) -> u64 {
        let s = self.lock();
        (s.oom_kills.len() as u64).max(s.vmstat_oom_kills)
    }

    pub fn oom_kill_log(&self) -> Vec<OomKill> {
        self.lock().oom_kills.clone()
    }

    /// SIGKILL to qemu by its pid, unless it has exited.
    pub fn kill_qemu(&self) {
        let s = self.lock();
        if let (Some(pid), None) = (s.info.qemu_pid, &s.qemu_exit) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl State {
    /// Why the guest is gone, once qemu has exited (with qemu's last message).
    pub(super) fn qemu_gone(&self, qemu_log: &Path) -> Option<String> {
        self.qemu_exit.as_ref().map(|e| {
            format!(
                "qemu ended ({e}); {}",
                tail(qemu_log, 5).trim().lines().last().unwrap_or("")
            )
        })
    }
}

/// How the server ended, if it has: the agent's report, an OOM kill of its
/// pid on the console, qemu's exit, or a hung guest (killed here).
pub(super) fn end(shared: &Shared) -> Option<Exit> {
    let mut s = shared.lock();
    let exit = |code, signal| Exit {
        code,
        signal,
        stopped_by_rig: false,
    };
    if let Some((code, signal)) = s.server_exit {
        return Some(exit(code, signal));
    }
    if s.oom_kills.iter().any(|k| Some(k.pid) == s.info.server_pid) {
        return Some(exit(None, Some(9)));
    }
    if s.qemu_exit.is_some() || s.failed.is_some() {
        return Some(exit(None, None));
    }
    let silent = s
        .last_agent_line
        .is_some_and(|t| t.elapsed() > HANG_TIMEOUT);
    if silent && !s.hung {
        s.hung = true;
        drop(s);
        tracing::warn!("the guest agent was silent for {HANG_TIMEOUT:?}: killing qemu");
        shared.kill_qemu();
        return Some(exit(None, None));
    }
    s.hung.then(|| exit(None, None))
}

/// Waits until `check` returns something (checked on every change).
pub(super) async fn wait_until<T>(
    changes: &mut watch::Receiver<()>,
    shared: &Shared,
    mut check: impl FnMut(&State) -> Option<T>,
) -> T {
    loop {
        if let Some(t) = check(&shared.lock()) {
            return t;
        }
        if changes.changed().await.is_err() {
            // The sender lives in `shared`, which outlives this wait.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::vm::assets::Assets;
    use crate::machine::vm::qemu::Accel;
    use crate::scenario::MachineSpec;

    #[test]
    fn an_oom_kill_of_the_server_ends_it_and_other_kills_do_not() {
        let assets = Assets {
            kernel: "/k".into(),
            initramfs: "/i".into(),
            kernel_version: "6".into(),
        };
        let info = VmInfo::new(&MachineSpec::default(), Accel::Tcg, String::new(), &assets);
        let shared = Shared::new(info);
        shared.update(|s| s.info.server_pid = Some(112));
        let kill = |pid| OomKill {
            at: Instant::now(),
            pid,
            process: "x".into(),
            line: String::new(),
        };
        shared.update(|s| s.oom_kills.push(kill(7)));
        assert!(end(&shared).is_none());
        assert_eq!(shared.oom_kills(), 1);
        shared.update(|s| s.oom_kills.push(kill(112)));
        let exit = end(&shared).unwrap();
        assert_eq!(exit.signal, Some(9));
        assert!(!exit.stopped_by_rig);
    }
}
