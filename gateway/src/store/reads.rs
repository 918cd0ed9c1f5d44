//! The reads every answer makes on SQLite: links, shields, overrides and flags, on connections of their own, run on
//! the calling thread.
//!
//! Through the sqlx pool, each query is a round trip to its connection's worker thread, and two thread wake-ups cost
//! more than the query: 70 µs or more for a lookup SQLite answers in 5 µs. These reads are lookups by key or index
//! in a file that WAL lets readers share with the writer, so they run where the request runs, on a connection taken
//! from an idle list (or opened, when every one is in use).
//!
//! PostgreSQL runs the same statements through its pool: its queries cross a network whatever the thread.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OpenFlags};

use super::{StoreError, StoreRow, StoreValue};

/// Statements each connection keeps prepared: every read, at each list length the answers use.
const STATEMENTS_KEPT: usize = 128;

/// Read-only connections to the store's SQLite file, each used by one read at a time.
#[derive(Clone)]
pub(crate) struct Readers {
    /// Shared: every request clones the store, and with it this path.
    file: Arc<Path>,
    idle: Arc<Mutex<Vec<Connection>>>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl Readers {
    pub fn new(file: &Path) -> Self {
        Self {
            file: file.into(),
            idle: Arc::default(),
        }
    }

    /// Runs `read` on an idle connection, opening one if none is idle. A connection whose read failed is closed
    /// rather than kept: whatever state the failure left stays with it.
    pub fn read<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let idle = self.idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open(&self.file)?,
        };
        let answer = read(&conn);
        if answer.is_ok() {
            self.idle().push(conn);
        }
        answer
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A read that panicked left the list itself whole: it holds the lock only to push or pop.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens the file to read it: never to write (`query_only`), waiting as the pool does when it is busy. In WAL mode
/// that wait is rare: a reader does not wait for the writer, only for the WAL's index while it is rebuilt.
fn open(file: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "query_only", true)?;
    conn.set_prepared_statement_cache_capacity(STATEMENTS_KEPT);
    Ok(conn)
}

impl StoreRow for rusqlite::Row<'_> {
    fn try_get<T: StoreValue>(&self, column: &str) -> Result<T, StoreError> {
        Ok(self.get(column)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reader_cannot_write() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("store.db");
        Connection::open(&file)
            .and_then(|c| c.execute_batch("CREATE TABLE t (x INTEGER)"))
            .expect("table");
        let readers = Readers::new(&file);
        let refused = readers.read(|conn| Ok(conn.execute("INSERT INTO t (x) VALUES (1)", [])?));
        assert!(matches!(refused, Err(StoreError::Sqlite(_))), "{refused:?}");
        let count: i64 = readers
            .read(|conn| Ok(conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))?))
            .expect("count");
        assert_eq!(count, 0);
    }
}
