//! What this process holds, for `/admin/api/stats`: counted where it happens (the server
//! counts connections), read by the admin API, so neither depends on the other.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Client connections open now, in every server of this process.
static OPEN_CONNECTIONS: AtomicUsize = AtomicUsize::new(0);

/// Client connections open now (both ports, every running server in this process).
pub fn open_connections() -> usize {
    OPEN_CONNECTIONS.load(Ordering::Relaxed)
}

/// Counts one open connection while it lives.
pub struct OpenConnection(());

impl OpenConnection {
    pub fn count() -> Self {
        OPEN_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
        OpenConnection(())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        OPEN_CONNECTIONS.fetch_sub(1, Ordering::Relaxed);
    }
}
