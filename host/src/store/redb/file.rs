//! The open redb file, and reopening it after an I/O error. redb fails every later
//! operation on a database whose write once failed (`PreviousIo`: "close and re-open
//! the database"), so without this one ENOSPC would stop the store until the host
//! restarts. Only the writer reopens, between two batches.

use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard};

use redb::{
    Database, ReadTransaction, ReadableDatabase, StorageError, TransactionError, WriteTransaction,
};

use super::StoreError;

/// The database file every read and write goes through (see the module doc).
pub(super) struct DbFile {
    path: PathBuf,
    cache_bytes: usize,
    /// None between closing a failed database and opening it again.
    current: RwLock<Option<Database>>,
}

impl DbFile {
    /// Open (or create) the database at `path` with a page cache of `cache_bytes`.
    pub(super) fn open(path: PathBuf, cache_bytes: usize) -> Result<DbFile, redb::DatabaseError> {
        let database = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)?;
        Ok(DbFile {
            path,
            cache_bytes,
            current: RwLock::new(Some(database)),
        })
    }

    fn current(&self) -> RwLockReadGuard<'_, Option<Database>> {
        self.current.read().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn begin_read(&self) -> Result<ReadTransaction, TransactionError> {
        match self.current().as_ref() {
            Some(database) => database.begin_read(),
            None => Err(TransactionError::Storage(StorageError::DatabaseClosed)),
        }
    }

    pub(super) fn begin_write(&self) -> Result<WriteTransaction, TransactionError> {
        match self.current().as_ref() {
            Some(database) => database.begin_write(),
            None => Err(TransactionError::Storage(StorageError::DatabaseClosed)),
        }
    }

    /// Whether the database is open (it is closed only while being reopened, or when
    /// reopening failed and waits for the next try).
    pub(super) fn is_open(&self) -> bool {
        self.current().is_some()
    }

    /// Close the database and open it again, which clears redb's failed state (it
    /// recovers from the last commit, as after a crash). Read transactions still open
    /// fail from then on; the caller must hold no write transaction.
    pub(super) fn reopen(&self) -> Result<(), StoreError> {
        // Closed first (redb allows one open per file), and opened without holding the
        // lock: a recovery may take a while, and readers meanwhile fail fast.
        let old = self
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(old) = old
            && let Err(e) = old.close()
        {
            // Expected: closing a failed database reports the error it failed on.
            tracing::debug!(error = %e, "closing the failed database");
        }
        let database = Database::builder()
            .set_cache_size(self.cache_bytes)
            .open(&self.path)
            .map_err(|source| StoreError::Open {
                what: self.path.display().to_string(),
                source: Box::new(source),
            })?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(database);
        Ok(())
    }
}

/// Whether a failed commit left the database needing a reopen: an I/O error, which redb
/// remembers, or a database already closed by a reopen that failed.
pub(super) fn needs_reopen(e: &StoreError) -> bool {
    let StoreError::Engine(e) = e else {
        return false;
    };
    matches!(
        e.downcast_ref::<redb::Error>(),
        Some(redb::Error::Io(_) | redb::Error::PreviousIo | redb::Error::DatabaseClosed)
    )
}
