//! Fresh stores for the store's tests, so that one suite runs on both backends: on SQLite always, and on PostgreSQL
//! when `CHILDGRAPH_TEST_POSTGRES_URL` names a server the tests may create schemas in
//! (`scripts/postgres-for-tests.sh start` runs one; CI always does).
//!
//! Each store on PostgreSQL is a schema of its own, made for the test and dropped after it, so tests run in
//! parallel on one server, and a failed test leaves nothing behind.

use std::str::FromStr;
use std::sync::Mutex;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::{Store, on_pool};

/// The variable that names the PostgreSQL server, as a URL whose user may create schemas in its database.
pub(crate) const POSTGRES_URL: &str = "CHILDGRAPH_TEST_POSTGRES_URL";

/// The connections each test store keeps.
const TEST_CONNECTIONS: u32 = 4;
/// How long a test store waits for a connection: tests share one server, busy while the whole suite runs.
const TEST_ACQUIRE: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The stores of one test on one backend. [`run`] removes what they hold when the test ends, whether it passed or
/// not.
#[derive(Debug)]
pub(crate) struct Stores {
    dir: tempfile::TempDir,
    /// The PostgreSQL server, when the stores are there.
    server: Option<PgConnectOptions>,
    /// Every store opened, to be closed before its schema is dropped.
    opened: Mutex<Vec<Store>>,
    /// The schemas made on the server.
    schemas: Mutex<Vec<String>>,
}

impl Stores {
    /// Stores on this backend, or `None` (with a note) when the tests are not given a PostgreSQL server.
    async fn new(backend: Backend) -> Option<Self> {
        let server = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let Ok(url) = std::env::var(POSTGRES_URL) else {
                    eprintln!(
                        "note: {POSTGRES_URL} is not set, so this test did not run on PostgreSQL \
                         (scripts/postgres-for-tests.sh start gives a server)"
                    );
                    return None;
                };
                Some(
                    PgConnectOptions::from_str(&url)
                        .unwrap_or_else(|e| panic!("{POSTGRES_URL} is not a PostgreSQL URL: {e}")),
                )
            }
        };
        Some(Self {
            dir: tempfile::tempdir().expect("temp dir"),
            server,
            opened: Mutex::new(Vec::new()),
            schemas: Mutex::new(Vec::new()),
        })
    }

    /// A fresh, empty store, its schema up to date.
    pub(crate) async fn fresh(&self) -> Store {
        self.gateways(1).await.remove(0)
    }

    /// `n` stores over one fresh database, each with its own pool: what `n` gateways sharing it would hold. On
    /// PostgreSQL they are opened at once, as replicas starting together would, each migrating the empty schema.
    pub(crate) async fn gateways(&self, n: usize) -> Vec<Store> {
        let mut stores = Vec::with_capacity(n);
        match &self.server {
            None => {
                let path = self
                    .dir
                    .path()
                    .join(format!("{}.db", uuid::Uuid::new_v4().simple()));
                for _ in 0..n {
                    stores.push(Store::open_sqlite(&path).await.expect("open store"));
                }
            }
            Some(server) => {
                let schema = format!("test_{}", uuid::Uuid::new_v4().simple());
                self.admin(server, &format!("CREATE SCHEMA {schema}")).await;
                lock(&self.schemas).push(schema.clone());
                let options = server.clone().options([("search_path", schema.as_str())]);
                // Opened at once, as replicas start together: each brings the empty schema up to date, and the
                // migrations must run once between them.
                let opening = (0..n)
                    .map(|_| Store::open_postgres(options.clone(), TEST_CONNECTIONS, TEST_ACQUIRE));
                for store in futures::future::join_all(opening).await {
                    stores.push(store.expect("open store"));
                }
            }
        }
        lock(&self.opened).extend(stores.iter().cloned());
        stores
    }

    /// Runs one statement on the server, outside every store.
    async fn admin(&self, server: &PgConnectOptions, statement: &str) {
        let mut admin = PgConnection::connect_with(server)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to the server {POSTGRES_URL} names: {e}"));
        sqlx::query(statement)
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
        let _ = admin.close().await;
    }

    /// Closes every store, so that no connection holds a lock (a transaction a failed test left open, say), then
    /// drops the schemas.
    async fn remove(self) {
        let opened = std::mem::take(&mut *lock(&self.opened));
        for store in opened {
            on_pool!(store, |pool| pool.close().await);
        }
        if let Some(server) = &self.server {
            let schemas = std::mem::take(&mut *lock(&self.schemas));
            for schema in schemas {
                self.admin(server, &format!("DROP SCHEMA {schema} CASCADE"))
                    .await;
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs one test with its stores on one backend, then removes them, even when the test failed; on PostgreSQL, only
/// when the tests are given a server.
pub(crate) async fn run(backend: Backend, test: impl AsyncFnOnce(&Stores)) {
    use futures::FutureExt;
    let Some(stores) = Stores::new(backend).await else {
        return;
    };
    let outcome = std::panic::AssertUnwindSafe(test(&stores))
        .catch_unwind()
        .await;
    stores.remove().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Runs each test named, an `async fn NAME(stores: &Stores)` beside the call, on both backends, as the tests
/// `NAME::sqlite` and `NAME::postgres`.
macro_rules! on_each_backend {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn sqlite() {
                $crate::store::testing::run($crate::store::testing::Backend::Sqlite, super::$test).await;
            }

            #[tokio::test]
            async fn postgres() {
                $crate::store::testing::run($crate::store::testing::Backend::Postgres, super::$test).await;
            }
        }
    )+};
}
pub(crate) use on_each_backend;

/// Runs each test named on PostgreSQL alone, as `NAME::postgres`: for what only a shared server does, such as two
/// gateways appending to one audit log.
macro_rules! on_postgres {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn postgres() {
                $crate::store::testing::run($crate::store::testing::Backend::Postgres, super::$test).await;
            }
        }
    )+};
}
pub(crate) use on_postgres;
