//! The set of uploads in progress in this process.
//!
//! An upload's entry row exists (state `uploading`) from its first byte, so
//! its chunks are never orphans. Garbage collection deletes `uploading` rows
//! only when their id is *not* in this set, i.e. left behind by a crash or a
//! failed clean-up; it holds the set's lock while doing so, and uploads
//! register before they insert their row, so the two cannot interleave.
//! (The reference server's GC raced with uploads and deleted their chunks.)
//!
//! Guest uploads also hold their link's cancellation token: disabling or
//! deleting the link cancels it, and the uploads stop and remove their data.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

use crate::entry::EntryId;
use crate::guest_links::GuestLinkId;

#[derive(Default)]
pub struct LiveUploads {
    ids: Mutex<HashSet<EntryId>>,
    /// Per link with uploads in progress: its token and how many hold it.
    /// Entries leave with their last upload, so this is bounded by uploads.
    links: Mutex<HashMap<GuestLinkId, (CancellationToken, usize)>>,
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

    /// A guest upload through `link`: its token fires when the link is
    /// stopped. Take it before the upload's row is inserted (the insert
    /// checks the link), so a link stopped in between is seen one way or
    /// the other.
    pub fn guest_upload(self: &Arc<Self>, link: &GuestLinkId) -> GuestUpload {
        let mut links = self.lock_links();
        let (token, holders) = links
            .entry(link.clone())
            .or_insert_with(|| (CancellationToken::new(), 0));
        *holders += 1;
        GuestUpload {
            set: Arc::clone(self),
            link: link.clone(),
            cancelled: token.clone(),
        }
    }

    /// Stops the uploads in progress through `link` (call after the link is
    /// disabled or deleted in the database); returns how many there were.
    pub fn stop_link(&self, link: &GuestLinkId) -> usize {
        match self.lock_links().remove(link) {
            Some((token, holders)) => {
                token.cancel();
                holders
            }
            None => 0,
        }
    }

    fn lock_links(&self) -> MutexGuard<'_, HashMap<GuestLinkId, (CancellationToken, usize)>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A guest upload's hold on its link's token; lets go on drop.
pub struct GuestUpload {
    set: Arc<LiveUploads>,
    link: GuestLinkId,
    /// Fires when the link is disabled or deleted.
    pub cancelled: CancellationToken,
}

impl Drop for GuestUpload {
    fn drop(&mut self) {
        let mut links = self.set.lock_links();
        if let Some((token, holders)) = links.get_mut(&self.link)
            // A stopped link's entry is gone; a new one is not ours.
            && *token == self.cancelled
        {
            *holders -= 1;
            if *holders == 0 {
                links.remove(&self.link);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stopping_a_link_cancels_its_uploads_only() {
        let live = Arc::new(LiveUploads::default());
        let (a, b) = (GuestLinkId::generate(), GuestLinkId::generate());
        let a1 = live.guest_upload(&a);
        let a2 = live.guest_upload(&a);
        let b1 = live.guest_upload(&b);
        assert_eq!(live.stop_link(&a), 2);
        assert!(a1.cancelled.is_cancelled() && a2.cancelled.is_cancelled());
        assert!(!b1.cancelled.is_cancelled());
        let a3 = live.guest_upload(&a);
        assert!(
            !a3.cancelled.is_cancelled(),
            "a re-enabled link takes uploads again"
        );
        drop((a1, a2));
        assert_eq!(
            live.stop_link(&a),
            1,
            "old holders did not count down the new token"
        );
        drop((a3, b1));
        assert!(
            live.lock_links().is_empty(),
            "entries leave with their uploads"
        );
    }
}
