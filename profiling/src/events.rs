//! `events.jsonl`: timestamped events appended as they happen (phase starts and ends, the
//! server's start and death). Cheap to clone: background phases record their own end.

use std::fs::File;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use run_format::events::Detail;

#[derive(Clone)]
pub(crate) struct Events {
    file: Arc<Mutex<File>>,
    /// The run's clock: `t_ms` of samples, events and probes counts from here.
    pub started: Instant,
}

impl Events {
    pub(crate) fn new(file: File) -> Self {
        Events {
            file: Arc::new(Mutex::new(file)),
            started: Instant::now(),
        }
    }

    /// Milliseconds since the run started.
    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    pub(crate) fn record(&self, detail: &impl Detail) {
        self.record_at(self.now_ms(), detail);
    }

    pub(crate) fn record_at(&self, t_ms: u64, detail: &impl Detail) {
        let event = run_format::Event::of(t_ms, detail);
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Ok(line) = serde_json::to_string(&event) {
            let _ = writeln!(file, "{line}");
            let _ = file.flush();
        }
    }
}
