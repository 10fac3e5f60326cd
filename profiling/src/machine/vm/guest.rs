//! A booted guest: qemu with the server inside (booted by [`super::boot`]).
//! Three streams come out of it: the kernel console (qemu's stdout, kept as
//! `console.log`), the agent's samples (a Unix socket the rig listens on)
//! and the server's log (a file qemu writes). The guest's end is whichever
//! comes first: the agent reports the server's exit, the console shows the
//! server OOM-killed, qemu exits, or the agent falls silent
//! ([`HANG_TIMEOUT`]: the guest is killed and the run still reports).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::shared::{HANG_TIMEOUT, Shared, end, wait_until};
use crate::machine::server::{BoxFuture, ServerProcess, StartError};
use crate::target::Exit;

/// After `stop`: the server drains for up to 10 s, slower under TCG.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// After the server ended: sync, unmount and power off.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the console copy may take to reach qemu's last output once it has exited.
const CONSOLE_DRAIN: Duration = Duration::from_secs(5);

/// A running guest, owned by the server it runs.
pub struct Guest {
    shared: Arc<Shared>,
    changes: watch::Receiver<()>,
    /// Commands to the agent (`stop`).
    commands: OwnedWriteHalf,
    /// Copies the console until qemu's stdout closes.
    console: Option<JoinHandle<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Guest {
    /// The guest once its agent has connected.
    pub(super) fn new(
        shared: Arc<Shared>,
        commands: OwnedWriteHalf,
        console: Option<JoinHandle<()>>,
        tasks: Vec<JoinHandle<()>>,
    ) -> Guest {
        Guest {
            changes: shared.subscribe(),
            shared,
            commands,
            console,
            tasks,
        }
    }

    /// Kills the guest after a failed boot and passes the error on.
    pub(super) fn fail(self, error: StartError) -> StartError {
        self.shared.kill_qemu();
        error
    }

    /// Waits until `check` on the shared state returns something.
    pub(super) async fn until<T>(
        &mut self,
        check: impl FnMut(&super::shared::State) -> Option<T>,
    ) -> T {
        let shared = Arc::clone(&self.shared);
        wait_until(&mut self.changes, &shared, check).await
    }

    /// Waits for the server (or the guest) to end.
    pub async fn wait(&mut self) -> Exit {
        loop {
            if let Some(exit) = end(&self.shared) {
                return exit;
            }
            // A change, or a second passes (the hang check).
            let _ = tokio::time::timeout(Duration::from_secs(1), self.changes.changed()).await;
        }
    }

    /// Asks the agent to stop the server (SIGTERM inside the guest), waits
    /// for it, then for the guest to power off; qemu is killed by its pid
    /// if either takes too long. A server that already ended reports how.
    pub async fn stop(mut self) -> Exit {
        let exit = match end(&self.shared) {
            Some(exit) => exit,
            None => {
                let _ = self
                    .commands
                    .write_all(format!("{}\n", vm_wire::STOP).as_bytes())
                    .await;
                match tokio::time::timeout(STOP_TIMEOUT, self.wait()).await {
                    Ok(exit) => Exit {
                        stopped_by_rig: true,
                        ..exit
                    },
                    Err(_) => Exit {
                        code: None,
                        signal: Some(9),
                        stopped_by_rig: true,
                    },
                }
            }
        };
        self.power_off().await;
        exit
    }

    /// Waits for qemu to exit after the guest's `poweroff`, or kills it.
    async fn power_off(&mut self) {
        let done =
            tokio::time::timeout(POWEROFF_TIMEOUT, self.until(|s| s.qemu_exit.clone())).await;
        let shutdown = {
            let s = self.shared.lock();
            match (&done, s.hung, &s.panic) {
                (_, true, _) => {
                    format!("qemu killed: the guest agent was silent for {HANG_TIMEOUT:?}")
                }
                (Ok(_), _, Some(panic)) => format!("the guest kernel panicked: {panic}"),
                (Ok(_), _, None) if s.server_exit.is_some() => "the guest powered off".into(),
                (Ok(status), _, None) => format!("qemu ended ({status})"),
                (Err(_), _, _) => format!(
                    "qemu killed by its pid: the guest did not power off within {POWEROFF_TIMEOUT:?}"
                ),
            }
        };
        if done.is_err() {
            self.shared.kill_qemu();
        }
        // The console's last lines (the power-off) are read after qemu exits.
        if let Some(console) = self.console.take() {
            let _ = tokio::time::timeout(CONSOLE_DRAIN, console).await;
        }
        self.shared.update(|s| s.info.shutdown = Some(shutdown));
    }
}

impl ServerProcess for Guest {
    fn try_exit(&mut self) -> Option<Exit> {
        end(&self.shared)
    }

    fn wait(&mut self) -> BoxFuture<'_, Exit> {
        Box::pin(Guest::wait(self))
    }

    fn stop(self: Box<Self>) -> BoxFuture<'static, Exit> {
        Box::pin(Guest::stop(*self))
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.shared.kill_qemu();
        for task in self.tasks.iter().chain(&self.console) {
            task.abort();
        }
    }
}
