//! The set of uploads in progress in this process.
//!
//! An upload's entry row exists (state `uploading`) from its first byte, so
//! its chunks are never orphans. Garbage collection deletes `uploading` rows
//! only when their id is *not* in this set, i.e. left behind by a crash or a
//! failed clean-up; it holds the set's lock while doing so, and uploads
//! register before they insert their row, so the two cannot interleave.
//! (The reference server's GC raced with uploads and deleted their chunks.)

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::entry::EntryId;

#[derive(Default)]
pub struct LiveUploads {
    ids: Mutex<HashSet<EntryId>>,
}

impl LiveUploads {
    /// Marks `id` in progress until the returned guard drops.
    pub fn register(self: &Arc<Self>, id: EntryId) -> LiveUpload {
        self.lock().insert(id.clone());
        LiveUpload {
            set: Arc::clone(self),
            id,
        }
    }

    /// The set, locked: no upload can register while it is held.
    pub fn lock(&self) -> MutexGuard<'_, HashSet<EntryId>> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Registration of one upload; unregisters on drop.
pub struct LiveUpload {
    set: Arc<LiveUploads>,
    id: EntryId,
}

impl LiveUpload {
    pub fn id(&self) -> &EntryId {
        &self.id
    }
}

impl Drop for LiveUpload {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
    }
}
