//! The download log: records of served downloads wait in one bounded queue
//! and one blocking writer stores them in batches. A flood of downloads
//! costs at most the queue, never a thread or a task per record; past the
//! queue, records are dropped and counted (`download_records_dropped_total`).
//!
//! Downloads of entries with a limit do not come through here: their record
//! is the permission and is written before the body is sent.

use std::sync::Arc;

use tokio::sync::mpsc::{self, error::TrySendError};

use crate::counters::Counters;
use crate::storage::Store;
use crate::storage::downloads::{self, KEPT_PER_ENTRY, NewDownload};

/// Records waiting for the writer. A record is at most ~660 bytes (80 inline,
/// the id, an IP of ≤ 45 bytes, a user agent cut to 512), so a full queue is
/// ~0.65 MiB; 1,024 covers ~0.5 s of the 1,800 downloads/s of the flood in
/// issue 16 should the writer stall (a checkpoint, a busy disk).
pub const QUEUE_RECORDS: usize = 1_024;

/// Records per transaction: one commit per batch instead of per row, and a
/// batch in the writer's hands (~170 KiB) on top of the queue.
pub const BATCH_RECORDS: usize = 256;

enum Message {
    Record(NewDownload),
    /// Write what is queued, then stop.
    Stop,
}

/// The request side: cheap to clone, never waits.
#[derive(Clone)]
pub struct DownloadRecorder {
    tx: mpsc::Sender<Message>,
    counters: Arc<Counters>,
}

/// The writer side, run on one blocking thread by [`DownloadLogWriter::run`].
pub struct DownloadLogWriter {
    rx: mpsc::Receiver<Message>,
    counters: Arc<Counters>,
}

/// What a writer did, for its caller and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterReport {
    pub batches: u64,
    pub recorded: u64,
}

/// A recorder and its writer, with room for `capacity` queued records.
pub fn channel(capacity: usize, counters: Arc<Counters>) -> (DownloadRecorder, DownloadLogWriter) {
    let (tx, rx) = mpsc::channel(capacity);
    (
        DownloadRecorder {
            tx,
            counters: Arc::clone(&counters),
        },
        DownloadLogWriter { rx, counters },
    )
}

impl DownloadRecorder {
    /// Queues a record without waiting. When the queue is full (or the
    /// writer has stopped) the record is dropped and counted; returns
    /// whether it was queued.
    pub fn record(&self, d: NewDownload) -> bool {
        match self.tx.try_send(Message::Record(d)) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                Counters::add(&self.counters.download_records_dropped, 1);
                false
            }
        }
    }

    /// Asks the writer to store what is queued and stop (waits for room in
    /// the queue, not for the writer: await its task for that).
    pub async fn stop(&self) {
        // An error means the writer is gone already.
        let _ = self.tx.send(Message::Stop).await;
    }
}

impl DownloadLogWriter {
    /// Stores queued records in batches of up to [`BATCH_RECORDS`] until
    /// [`DownloadRecorder::stop`] (or every recorder is dropped); what was
    /// queued before the stop is stored too. Blocking: run it on its own
    /// thread. A batch that fails to store is logged and counted as dropped.
    pub fn run(mut self, store: &Store) -> WriterReport {
        let mut report = WriterReport::default();
        let mut batch = Vec::with_capacity(BATCH_RECORDS);
        let mut stopping = false;
        while let Some(first) = self.rx.blocking_recv() {
            self.take(first, &mut batch, &mut stopping);
            while batch.len() < BATCH_RECORDS {
                match self.rx.try_recv() {
                    Ok(m) => self.take(m, &mut batch, &mut stopping),
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.write(store, &mut batch, &mut report);
            }
        }
        if stopping {
            tracing::debug!(?report, "download log flushed");
        }
        report
    }

    fn take(&mut self, m: Message, batch: &mut Vec<NewDownload>, stopping: &mut bool) {
        match m {
            Message::Record(d) => batch.push(d),
            Message::Stop => {
                // Refuse new records; `blocking_recv` still yields the queued
                // ones, then `None`.
                self.rx.close();
                *stopping = true;
            }
        }
    }

    fn write(&self, store: &Store, batch: &mut Vec<NewDownload>, report: &mut WriterReport) {
        match downloads::record_batch(store, batch, KEPT_PER_ENTRY) {
            Ok(n) => {
                Counters::add(&self.counters.download_records_written, n);
                report.recorded += n;
            }
            Err(e) => {
                tracing::warn!(records = batch.len(), error = %e, "could not record downloads");
                Counters::add(&self.counters.download_records_dropped, batch.len() as u64);
            }
        }
        report.batches += 1;
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::entry::EntryId;
    use crate::storage::downloads::fixture::store_with_entry;
    use crate::storage::entries;

    fn record(id: &EntryId, i: i64) -> NewDownload {
        NewDownload::new(id.clone(), i, "192.0.2.1".into(), "test")
    }

    /// Runs a writer on a blocking thread.
    fn spawn(
        writer: DownloadLogWriter,
        store: Arc<Store>,
    ) -> tokio::task::JoinHandle<WriterReport> {
        tokio::task::spawn_blocking(move || writer.run(&store))
    }

    #[tokio::test]
    async fn queued_records_are_written_in_batches_at_stop() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = store_with_entry(&dir);
        let store = Arc::new(store);
        let counters = Arc::new(Counters::default());
        let (recorder, writer) = channel(QUEUE_RECORDS, Arc::clone(&counters));
        for i in 0..600 {
            assert!(recorder.record(record(&id, i)));
        }
        recorder.stop().await;
        let report = spawn(writer, Arc::clone(&store)).await.unwrap();
        assert_eq!(
            report,
            WriterReport {
                batches: 3,
                recorded: 600
            },
            "256 + 256 + 88"
        );
        assert_eq!(entries::get(&store, &id, 1).unwrap().downloads, 600);
        assert_eq!(counters.download_records_written.load(Relaxed), 600);
        assert!(!recorder.record(record(&id, 0)), "stopped: dropped");
        assert_eq!(counters.download_records_dropped.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_shutdown_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = store_with_entry(&dir);
        let store = Arc::new(store);
        let counters = Arc::new(Counters::default());
        let (recorder, writer) = channel(4, Arc::clone(&counters));
        let queued = (0..10).filter(|&i| recorder.record(record(&id, i))).count();
        assert_eq!(queued, 4);
        assert_eq!(counters.download_records_dropped.load(Relaxed), 6);

        let writer = spawn(writer, Arc::clone(&store));
        recorder.stop().await;
        let report = writer.await.unwrap();
        assert_eq!(report.recorded, 4, "everything queued before the stop");
        assert_eq!(entries::get(&store, &id, 1).unwrap().downloads, 4);
    }

    #[tokio::test]
    async fn a_running_writer_stores_records_as_they_come() {
        let dir = tempfile::tempdir().unwrap();
        let (store, id) = store_with_entry(&dir);
        let store = Arc::new(store);
        let counters = Arc::new(Counters::default());
        let (recorder, writer) = channel(QUEUE_RECORDS, Arc::clone(&counters));
        let writer = spawn(writer, Arc::clone(&store));
        for i in 0..2_000 {
            // Waits for room, as a test may; requests never do.
            while !recorder.record(record(&id, i)) {
                tokio::task::yield_now().await;
            }
        }
        recorder.stop().await;
        let report = writer.await.unwrap();
        assert_eq!(report.recorded, 2_000);
        assert!(report.batches >= 2_000 / BATCH_RECORDS as u64);
        let e = entries::get(&store, &id, 1).unwrap();
        assert_eq!(e.downloads, 2_000, "the total survives pruning");
        let rows: i64 = store
            .reader()
            .unwrap()
            .query_row("SELECT COUNT(*) FROM downloads", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows as u64, KEPT_PER_ENTRY);
    }
}
