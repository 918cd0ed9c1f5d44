//! The gateway's store: links from child ids to source records, shields, flags and accounts, on SQLite (the
//! default) or PostgreSQL.
//!
//! Child data never lands here: only ids, and what the gateway itself owns.
//!
//! Each query is written once and compiled for both backends ([`on_pool`]): placeholders are numbered (`$1`), which
//! both take, and rows are read through [`StoreRow`]. The reads every answer makes go through [`select`], which on
//! SQLite runs them on the calling thread ([`reads`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;

use childgraph_schema::{RecordRef, SourceName};
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool};

mod accounts;
mod practice;
mod reads;
mod shields;
#[cfg(test)]
pub(crate) mod testing;
pub use accounts::{AccountChangeError, Recertification};
pub use practice::{Disclosure, FlagOwner};
pub use shields::{ApprovalError, ShieldEntry, ShieldOverride, ShieldRequest};

/// A store failure. The detail goes to the log; clients see `INTERNAL`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("store query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

/// An organisation that holds accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrganisationRecord {
    pub id: String,
    pub name: String,
    /// The organisation in a source system, if it is one (a school in OneRoster, a practice in FHIR).
    pub source: Option<RecordRef>,
}

/// A user's account: who they are and which roles their authoriser granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user_id: String,
    pub display_name: String,
    pub organisation: OrganisationRecord,
    pub roles: Vec<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// False once revoked.
    pub active: bool,
    pub authorisation: Authorisation,
    /// For a partner agency's API client: its scopes and quotas. `None` for a person.
    pub client: Option<ClientTerms>,
}

/// What a partner agency's API client may do, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTerms {
    pub scopes: Vec<ClientScope>,
    /// The client's own quotas; `None` takes the gateway's.
    pub searches_per_minute: Option<u32>,
    pub children_per_hour: Option<u32>,
}

/// An operation an API client may be allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ClientScope {
    /// `searchChildren`.
    Search,
    /// `child`.
    View,
    /// `raiseFlag` and `withdrawFlag`.
    Flag,
    /// `recordDisclosure`.
    Disclosure,
}

impl ClientScope {
    pub const ALL: [ClientScope; 4] = [
        ClientScope::Search,
        ClientScope::View,
        ClientScope::Flag,
        ClientScope::Disclosure,
    ];

    /// The scope's name, in the store and in a token's `scope` claim.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientScope::Search => "search",
            ClientScope::View => "view",
            ClientScope::Flag => "flag",
            ClientScope::Disclosure => "disclosure",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// What an authoriser granted with the account, and until when it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorisation {
    /// The reference of the user's clearance (a DBS check, say), as the authoriser saw it.
    pub clearance_reference: String,
    /// The last day the clearance is good for.
    pub clearance_expires: NaiveDate,
    pub training_completed: NaiveDate,
    pub authorised_by: String,
    pub authorised_at: DateTime<Utc>,
    /// Access lapses after this unless an authoriser recertifies the user.
    pub recertify_by: DateTime<Utc>,
}

impl Authorisation {
    /// The authorisation the demo's cast and the test fixtures hold: cleared for a year from now, trained, and due
    /// for recertification in four months.
    pub fn seeded(authorised_by: &str) -> Self {
        let now = Utc::now();
        Self {
            clearance_reference: "DBS-DEMO".to_owned(),
            clearance_expires: (now + chrono::Duration::days(365)).date_naive(),
            training_completed: (now - chrono::Duration::days(30)).date_naive(),
            authorised_by: authorised_by.to_owned(),
            authorised_at: now,
            recertify_by: now + chrono::Months::new(4),
        }
    }
}

/// Whether an account lets its user in now, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Active,
    Revoked,
    ClearanceExpired,
    RecertificationMissed,
}

impl Account {
    /// The account's standing at `now`: revoked, lapsed (its clearance expired, or its recertification is overdue),
    /// or active.
    pub fn standing(&self, now: DateTime<Utc>) -> Standing {
        if !self.active {
            Standing::Revoked
        } else if now.date_naive() > self.authorisation.clearance_expires {
            Standing::ClearanceExpired
        } else if now > self.authorisation.recertify_by {
            Standing::RecertificationMissed
        } else {
            Standing::Active
        }
    }
}

/// A flag raised on a child by a practitioner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagRecord {
    pub id: String,
    pub child_id: String,
    pub kind: String,
    pub note: String,
    pub raised_by: Account,
    pub raised_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A shield on a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shield {
    pub child_id: String,
    pub reason: String,
    pub requested_by: String,
    pub approved_by: String,
    pub review_due: DateTime<Utc>,
}

/// A merge or a split of children, proposed or done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkEvent {
    /// `merge-proposed` or `split-proposed`.
    pub kind: String,
    pub child_ids: Vec<String>,
    pub reason: String,
    /// The linkage rule that scored the records.
    pub rule: String,
    pub at: String,
}

/// Children's links and shield status, as one lookup answers them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Linked {
    /// Each child's source records.
    pub records: HashMap<String, Vec<RecordRef>>,
    /// The children the gateway's register shields.
    pub shielded: HashSet<String>,
}

/// The store, over a pool of SQLite or PostgreSQL connections.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// The pool a store runs on.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// One file, for one gateway process: the audit writer keeps the chain's tail between commits. The reads of
    /// every answer run on connections of their own ([`reads`]).
    Sqlite(SqlitePool, reads::Readers),
    /// A server that several gateway replicas may share.
    Postgres(PgPool),
}

/// Runs the same code on whichever pool the store holds, binding it to `$pool`: `&SqlitePool` or `&PgPool`.
///
/// The body is compiled once for each backend, so a query written once is checked against both.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store.backend() {
            $crate::store::Backend::Sqlite($pool, _) => $body,
            $crate::store::Backend::Postgres($pool) => $body,
        }
    };
}
pub(crate) use on_pool;

/// A read of the answer path: `$sql`, with its placeholders (`$1`, `$2`… in order) bound to the `&str`s of
/// `$params`, each row turned into one item of the answer by `$read`, over `$row: &impl StoreRow`. On SQLite it runs on
/// the calling thread ([`reads`]); on PostgreSQL, through the pool. Evaluates to `Result<Vec<_>, StoreError>`.
macro_rules! select {
    ($store:expr, $sql:expr, $params:expr, |$row:ident| $read:expr) => {
        match $store.backend() {
            $crate::store::Backend::Sqlite(_, readers) => readers.read(|conn| {
                let mut statement = conn.prepare_cached($sql)?;
                let mut rows = statement.query(rusqlite::params_from_iter($params.iter()))?;
                let mut out = Vec::new();
                while let Some($row) = rows.next()? {
                    out.push($read);
                }
                Ok(out)
            }),
            $crate::store::Backend::Postgres(pool) => {
                let mut query = sqlx::query($sql);
                for param in $params.iter() {
                    query = query.bind(*param);
                }
                let rows = query.fetch_all(pool).await?;
                rows.iter()
                    .map(|$row| Ok::<_, StoreError>($read))
                    .collect::<Result<Vec<_>, StoreError>>()
            }
        }
    };
}
pub(crate) use select;

/// How many ids one read of the answer path binds at most; longer lists are read in parts.
const IDS_PER_READ: usize = 200;

/// The statements of the reads every answer makes, for `count` ids (or records) from `$1`, each a lookup by key or
/// index (`every_read_of_an_answer_uses_an_index`).
mod statements {
    use super::{ACCOUNT_COLUMNS, placeholders};

    pub fn children_of(count: usize) -> String {
        format!(
            "SELECT source, record_id, child_id FROM links WHERE (source, record_id) IN ({})",
            placeholders(1, count, 2)
        )
    }

    pub fn shielded_records(count: usize) -> String {
        format!(
            "SELECT l.source, l.record_id FROM links l JOIN shields s ON s.child_id = l.child_id
             WHERE (l.source, l.record_id) IN ({})",
            placeholders(1, count, 2)
        )
    }

    pub const RECORDS_OF: &str =
        "SELECT source, record_id FROM links WHERE child_id = $1 ORDER BY source, record_id";

    pub fn linked(count: usize) -> String {
        format!(
            "SELECT l.child_id, l.source, l.record_id, s.child_id IS NOT NULL AS shielded
             FROM links l LEFT JOIN shields s ON s.child_id = l.child_id WHERE l.child_id IN ({})
             ORDER BY l.child_id, l.source, l.record_id",
            placeholders(1, count, 1)
        )
    }

    pub fn shielded(count: usize) -> String {
        format!(
            "SELECT child_id FROM shields WHERE child_id IN ({})",
            placeholders(1, count, 1)
        )
    }

    /// Live flags at `$1`.
    pub fn flags(count: usize) -> String {
        format!(
            "SELECT f.id, f.child_id, f.kind, f.note, f.raised_at, f.expires_at, {ACCOUNT_COLUMNS}
             FROM flags f JOIN accounts a ON a.user_id = f.raised_by
             JOIN organisations o ON o.id = a.organisation_id
             WHERE f.withdrawn_at IS NULL AND f.expires_at > $1 AND f.child_id IN ({})
             ORDER BY f.raised_at DESC",
            placeholders(2, count, 1)
        )
    }
}

/// Records the proposed merges and splits of a [`Store::link`] in its transaction `$tx`, of either backend.
macro_rules! link_events {
    ($tx:ident, $merges:expr, $splits:expr, $rule:expr, $now:expr) => {
        for (kind, ids, reason) in $merges
            .iter()
            .map(|ids| {
                (
                    "merge-proposed",
                    ids,
                    "records of these children score as one child",
                )
            })
            .chain($splits.iter().map(|child| {
                (
                    "split-proposed",
                    child,
                    "records of this child no longer score as one child",
                )
            }))
        {
            sqlx::query(
                "INSERT INTO link_events (kind, child_ids, reason, rule, at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (kind, child_ids) DO NOTHING",
            )
            .bind(kind)
            .bind(ids)
            .bind(reason)
            .bind($rule)
            .bind($now)
            .execute(&mut *$tx)
            .await?;
        }
    };
}

/// A value the store reads from a row of either backend, through sqlx or, for the reads of every answer on SQLite,
/// rusqlite.
pub(crate) trait StoreValue:
    for<'r> sqlx::Decode<'r, Sqlite>
    + sqlx::Type<Sqlite>
    + for<'r> sqlx::Decode<'r, Postgres>
    + sqlx::Type<Postgres>
    + rusqlite::types::FromSql
{
}

impl<T> StoreValue for T where
    T: for<'r> sqlx::Decode<'r, Sqlite>
        + sqlx::Type<Sqlite>
        + for<'r> sqlx::Decode<'r, Postgres>
        + sqlx::Type<Postgres>
        + rusqlite::types::FromSql
{
}

/// A row of either backend, read by column name, so that a row is turned into a record by one function.
pub(crate) trait StoreRow {
    fn try_get<T: StoreValue>(&self, column: &str) -> Result<T, StoreError>;
}

impl StoreRow for SqliteRow {
    fn try_get<T: StoreValue>(&self, column: &str) -> Result<T, StoreError> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
}

impl StoreRow for PgRow {
    fn try_get<T: StoreValue>(&self, column: &str) -> Result<T, StoreError> {
        Ok(sqlx::Row::try_get(self, column)?)
    }
}

/// The connections a PostgreSQL store keeps, unless the config says otherwise.
pub const DEFAULT_POSTGRES_CONNECTIONS: u32 = 10;
/// How long a request waits for a PostgreSQL connection unless the config says otherwise: the default request
/// deadline.
pub const DEFAULT_POSTGRES_ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

impl Store {
    /// Opens the store a config names, and brings its schema up to date.
    pub async fn open(config: &crate::config::StoreConfig) -> Result<Self, StoreError> {
        match config {
            crate::config::StoreConfig::Sqlite(path) => Self::open_sqlite(path).await,
            crate::config::StoreConfig::Postgres(pg) => {
                let options = PgConnectOptions::from_str(pg.url())?;
                Self::open_postgres(options, pg.max_connections, pg.acquire_timeout()).await
            }
        }
    }

    /// Opens (creating if needed) the SQLite file and brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // The audit log will rely on this; links and shields are as precious.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // An embedded file has no connection to lose: a ping on every checkout would only cost each query another
            // round trip to the connection's worker thread. A failing query still fails, and readiness still pings.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations").run(&pool).await?;
        // The file the pool's connections open.
        let readers = reads::Readers::new(pool.connect_options().get_filename());
        Ok(Self {
            backend: Backend::Sqlite(pool, readers),
        })
    }

    /// Connects to a PostgreSQL database and brings its schema up to date. Gateways that share the database may
    /// start at once: the migrations take a lock of their own.
    pub async fn open_postgres(
        options: PgConnectOptions,
        max_connections: u32,
        acquire_timeout: std::time::Duration,
    ) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations_postgres").run(&pool).await?;
        Ok(Self {
            backend: Backend::Postgres(pool),
        })
    }

    /// The statement that begins a transaction which reads before it writes. On SQLite it takes the write lock at
    /// once: a read transaction that another connection has written behind cannot become a write one, and would fail
    /// with "database is locked" whatever the busy timeout.
    pub(crate) fn begin_read_write(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(..) => "BEGIN IMMEDIATE",
            Backend::Postgres(_) => "BEGIN",
        }
    }

    /// The backend and its pool, for [`on_pool`] and the audit log's own statements.
    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Whether the store answers: used by readiness.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT 1").execute(pool).await?;
        });
        Ok(())
    }

    pub async fn upsert_organisation(&self, org: &OrganisationRecord) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO organisations (id, name, source, source_org_id) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, source = excluded.source,
                 source_org_id = excluded.source_org_id",
            )
            .bind(&org.id)
            .bind(&org.name)
            .bind(org.source.as_ref().map(|s| s.source.as_str()))
            .bind(org.source.as_ref().map(|s| s.id.as_str()))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn upsert_account(&self, account: &Account) -> Result<(), StoreError> {
        self.upsert_organisation(&account.organisation).await?;
        self.write_account(account, Replace::AnyOrganisation)
            .await?;
        Ok(())
    }

    pub async fn account(&self, user_id: &str) -> Result<Option<Account>, StoreError> {
        let query = format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts a JOIN organisations o ON o.id = a.organisation_id
             WHERE a.user_id = $1"
        );
        on_pool!(self, |pool| {
            sqlx::query(&query)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
                .map(|r| account_from_row(&r))
                .transpose()
        })
    }

    /// The child ids already linked to these records.
    pub async fn children_of(
        &self,
        records: &[RecordRef],
    ) -> Result<HashMap<RecordRef, String>, StoreError> {
        let mut found = HashMap::new();
        for chunk in records.chunks(IDS_PER_READ) {
            let sql = statements::children_of(chunk.len());
            let params = record_params(chunk);
            let rows = select!(self, &sql, params, |row| (
                record_ref(row)?,
                row.try_get::<String>("child_id")?
            ))?;
            found.extend(rows);
        }
        Ok(found)
    }

    /// Which of these records are linked to a child the register shields, in one query per 200 records.
    pub async fn shielded_records(
        &self,
        records: &[RecordRef],
    ) -> Result<HashSet<RecordRef>, StoreError> {
        let mut found = HashSet::new();
        for chunk in records.chunks(IDS_PER_READ) {
            let sql = statements::shielded_records(chunk.len());
            let params = record_params(chunk);
            found.extend(select!(self, &sql, params, |row| record_ref(row)?)?);
        }
        Ok(found)
    }

    /// Gives each group of records one child id: the id one of them already has, or a new one.
    ///
    /// A record already linked to a child stays with it: links are never reassigned silently.
    /// A group whose records already belong to different children keeps them apart, and the records with no child join the first.
    /// The answer gives, for each group, the child id and the records that belong to it, as the store holds them once
    /// the links are written: when another request linked some of the same records meanwhile, its links stand, the
    /// answer says so, and a group that so ends up across children is recorded as a proposed merge.
    pub async fn link(
        &self,
        groups: &[Vec<(RecordRef, f64)>],
        rule: &str,
    ) -> Result<Vec<Vec<(String, Vec<RecordRef>)>>, StoreError> {
        let all: Vec<RecordRef> = groups.iter().flatten().map(|(r, _)| r.clone()).collect();
        let existing = self.children_of(&all).await?;
        let now = Utc::now().to_rfc3339();
        let mut new_children = Vec::new();
        let mut new_links: Vec<(RecordRef, String, f64)> = Vec::new();
        for group in groups {
            let first = group.iter().find_map(|(r, _)| existing.get(r));
            let mut child = first.cloned();
            for (record, score) in group.iter().filter(|(r, _)| !existing.contains_key(r)) {
                let child = child.get_or_insert_with(|| {
                    let id = new_child_id();
                    new_children.push(id.clone());
                    id
                });
                new_links.push((record.clone(), child.clone(), *score));
            }
        }
        if new_links.is_empty() {
            let (answer, merges, splits) = link_answer(groups, &existing);
            if !merges.is_empty() || !splits.is_empty() {
                on_pool!(self, |pool| {
                    let mut tx = pool.begin().await?;
                    link_events!(tx, &merges, &splits, rule, &now);
                    tx.commit().await?;
                });
            }
            return Ok(answer);
        }
        // Rows that another request may be writing too are written in one order, whoever writes them: on PostgreSQL,
        // two transactions that each wait for a row the other wrote first would deadlock.
        new_links
            .sort_by(|a, b| (a.0.source.as_str(), &a.0.id).cmp(&(b.0.source.as_str(), &b.0.id)));
        let answer = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for id in &new_children {
                sqlx::query("INSERT INTO children (id, created_at) VALUES ($1, $2)")
                    .bind(id)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
            }
            for (record, child, score) in &new_links {
                // Another request may have linked the record meanwhile: the first link stands.
                sqlx::query(
                    "INSERT INTO links (source, record_id, child_id, score, rule, linked_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (source, record_id) DO NOTHING",
                )
                .bind(record.source.as_str())
                .bind(&record.id)
                .bind(child)
                .bind(score)
                .bind(rule)
                .bind(&now)
                .execute(&mut *tx)
                .await?;
            }
            // What the store now holds for the records, this transaction's links and any another wrote first.
            let mut linked = HashMap::new();
            for chunk in all.chunks(IDS_PER_READ) {
                let sql = statements::children_of(chunk.len());
                let mut q = sqlx::query(&sql);
                for param in record_params(chunk) {
                    q = q.bind(param);
                }
                for row in q.fetch_all(&mut *tx).await? {
                    linked.insert(record_ref(&row)?, row.try_get::<String>("child_id")?);
                }
            }
            // A child made here whose records all went to another request's child is not kept.
            for id in &new_children {
                if !linked.values().any(|c| c == id) {
                    sqlx::query("DELETE FROM children WHERE id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            let (answer, merges, splits) = link_answer(groups, &linked);
            link_events!(tx, &merges, &splits, rule, &now);
            tx.commit().await?;
            answer
        });
        Ok(answer)
    }

    /// The merges and splits recorded, oldest first.
    pub async fn link_events(&self) -> Result<Vec<LinkEvent>, StoreError> {
        on_pool!(self, |pool| {
            sqlx::query("SELECT kind, child_ids, reason, rule, at FROM link_events ORDER BY id")
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| {
                    let ids: String = r.try_get("child_ids")?;
                    Ok(LinkEvent {
                        kind: r.try_get("kind")?,
                        child_ids: ids.split(',').map(str::to_owned).collect(),
                        reason: r.try_get("reason")?,
                        rule: r.try_get("rule")?,
                        at: r.try_get("at")?,
                    })
                })
                .collect()
        })
    }

    /// The source records linked to a child.
    pub async fn records_of(&self, child_id: &str) -> Result<Vec<RecordRef>, StoreError> {
        select!(self, statements::RECORDS_OF, [child_id], |row| record_ref(
            row
        )?)
    }

    /// The source records linked to each of these children, and which of them the register shields, in one query.
    /// Children with no linked record are left out.
    pub async fn linked(&self, child_ids: &[String]) -> Result<Linked, StoreError> {
        let mut linked = Linked::default();
        for chunk in child_ids.chunks(IDS_PER_READ) {
            let sql = statements::linked(chunk.len());
            let params: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let rows = select!(self, &sql, params, |row| (
                row.try_get::<String>("child_id")?,
                record_ref(row)?,
                row.try_get::<bool>("shielded")?
            ))?;
            for (child, record, shielded) in rows {
                if shielded {
                    linked.shielded.insert(child.clone());
                }
                linked.records.entry(child).or_default().push(record);
            }
        }
        Ok(linked)
    }

    /// Which of these children the gateway's register shields.
    pub async fn shielded(&self, child_ids: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut shielded = HashSet::new();
        for chunk in child_ids.chunks(IDS_PER_READ) {
            let sql = statements::shielded(chunk.len());
            let params: Vec<&str> = chunk.iter().map(String::as_str).collect();
            shielded.extend(select!(self, &sql, params, |row| row
                .try_get::<String>("child_id")?)?);
        }
        Ok(shielded)
    }

    pub async fn put_shield(&self, shield: &Shield) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO shields (child_id, reason, requested_by, approved_by, created_at, review_due)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (child_id) DO NOTHING",
            )
            .bind(&shield.child_id)
            .bind(&shield.reason)
            .bind(&shield.requested_by)
            .bind(&shield.approved_by)
            .bind(Utc::now().to_rfc3339())
            .bind(shield.review_due.to_rfc3339())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn put_flag(&self, flag: &FlagRecord) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO flags (id, child_id, kind, note, raised_by, raised_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&flag.id)
            .bind(&flag.child_id)
            .bind(&flag.kind)
            .bind(&flag.note)
            .bind(&flag.raised_by.user_id)
            .bind(flag.raised_at.to_rfc3339())
            .bind(flag.expires_at.to_rfc3339())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Live flags on these children: not withdrawn and not expired.
    pub async fn flags(
        &self,
        child_ids: &[String],
        now: DateTime<Utc>,
    ) -> Result<HashMap<String, Vec<FlagRecord>>, StoreError> {
        let mut flags: HashMap<String, Vec<FlagRecord>> = HashMap::new();
        let now = now.to_rfc3339();
        for chunk in child_ids.chunks(IDS_PER_READ) {
            let sql = statements::flags(chunk.len());
            let params: Vec<&str> = std::iter::once(now.as_str())
                .chain(chunk.iter().map(String::as_str))
                .collect();
            let rows = select!(self, &sql, params, |row| FlagRecord {
                id: row.try_get("id")?,
                child_id: row.try_get("child_id")?,
                kind: row.try_get("kind")?,
                note: row.try_get("note")?,
                raised_by: account_from_row(row)?,
                raised_at: timestamp(row, "raised_at")?,
                expires_at: timestamp(row, "expires_at")?,
            })?;
            for flag in rows {
                flags.entry(flag.child_id.clone()).or_default().push(flag);
            }
        }
        Ok(flags)
    }

    /// Writes an account whole, inserting it or replacing the one with its user id; with
    /// [`Replace::SameOrganisation`], only one of the same organisation, in the same statement, so that two
    /// organisations writing one user id at once never hand the account from one to the other. An active account
    /// has no revocation on record. The answer is whether the account was written.
    async fn write_account(&self, account: &Account, replace: Replace) -> Result<bool, StoreError> {
        let roles = serde_json::to_string(&account.roles)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let a = &account.authorisation;
        let client = ClientColumns::of(account);
        let condition = match replace {
            Replace::AnyOrganisation => "",
            Replace::SameOrganisation => {
                " WHERE accounts.organisation_id = excluded.organisation_id"
            }
        };
        let query = format!(
            "INSERT INTO accounts (user_id, display_name, organisation_id, roles, phone, email, active,
                 clearance_reference, clearance_expires, training_completed, authorised_by, authorised_at, recertify_by,
                 kind, scopes, searches_per_minute, children_per_hour)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
             ON CONFLICT (user_id) DO UPDATE SET display_name = excluded.display_name,
             organisation_id = excluded.organisation_id, roles = excluded.roles, phone = excluded.phone,
             email = excluded.email, active = excluded.active, clearance_reference = excluded.clearance_reference,
             clearance_expires = excluded.clearance_expires, training_completed = excluded.training_completed,
             authorised_by = excluded.authorised_by, authorised_at = excluded.authorised_at,
             recertify_by = excluded.recertify_by, kind = excluded.kind, scopes = excluded.scopes,
             searches_per_minute = excluded.searches_per_minute, children_per_hour = excluded.children_per_hour,
             revoked_by = CASE WHEN excluded.active THEN NULL ELSE accounts.revoked_by END,
             revoked_at = CASE WHEN excluded.active THEN NULL ELSE accounts.revoked_at END,
             revoke_reason = CASE WHEN excluded.active THEN NULL ELSE accounts.revoke_reason END{condition}"
        );
        let done = on_pool!(self, |pool| {
            sqlx::query(&query)
                .bind(&account.user_id)
                .bind(&account.display_name)
                .bind(&account.organisation.id)
                .bind(&roles)
                .bind(&account.phone)
                .bind(&account.email)
                .bind(account.active)
                .bind(&a.clearance_reference)
                .bind(a.clearance_expires.to_string())
                .bind(a.training_completed.to_string())
                .bind(&a.authorised_by)
                .bind(a.authorised_at.to_rfc3339())
                .bind(a.recertify_by.to_rfc3339())
                .bind(client.kind)
                .bind(&client.scopes)
                .bind(client.searches_per_minute)
                .bind(client.children_per_hour)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done == 1)
    }
}

/// Whose account with the same user id a write may replace.
#[derive(Debug, Clone, Copy)]
enum Replace {
    /// Seeding: the account is written whole, wherever it was.
    AnyOrganisation,
    /// An authoriser's grant: never an account of another organisation.
    SameOrganisation,
}

/// The columns [`account_from_row`] reads, from `accounts a JOIN organisations o`.
const ACCOUNT_COLUMNS: &str = "a.user_id, a.display_name, a.roles, a.phone, a.email, a.active, \
    a.clearance_reference, a.clearance_expires, a.training_completed, a.authorised_by, a.authorised_at, \
    a.recertify_by, a.kind, a.scopes, a.searches_per_minute, a.children_per_hour, \
    o.id AS org_id, o.name AS org_name, o.source, o.source_org_id";

/// An account's API-client columns, as written.
struct ClientColumns {
    kind: &'static str,
    scopes: Option<String>,
    searches_per_minute: Option<i64>,
    children_per_hour: Option<i64>,
}

impl ClientColumns {
    fn of(account: &Account) -> Self {
        match &account.client {
            None => Self {
                kind: "user",
                scopes: None,
                searches_per_minute: None,
                children_per_hour: None,
            },
            Some(terms) => Self {
                kind: "client",
                scopes: Some(
                    serde_json::to_string(
                        &terms.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    )
                    .unwrap_or_else(|_| "[]".to_owned()),
                ),
                searches_per_minute: terms.searches_per_minute.map(i64::from),
                children_per_hour: terms.children_per_hour.map(i64::from),
            },
        }
    }
}

fn client_from_row(row: &impl StoreRow) -> Result<Option<ClientTerms>, StoreError> {
    let kind: String = row.try_get("kind")?;
    if kind != "client" {
        return Ok(None);
    }
    let scopes: Option<String> = row.try_get("scopes")?;
    let names: Vec<String> = serde_json::from_str(scopes.as_deref().unwrap_or("[]"))
        .map_err(|e| StoreError::Corrupt(format!("scopes: {e}")))?;
    let scopes = names
        .iter()
        .map(|n| {
            ClientScope::parse(n).ok_or_else(|| StoreError::Corrupt(format!("unknown scope {n}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let quota = |column: &str| -> Result<Option<u32>, StoreError> {
        let value: Option<i64> = row.try_get(column)?;
        value
            .map(|v| u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{column}: {v}"))))
            .transpose()
    };
    Ok(Some(ClientTerms {
        scopes,
        searches_per_minute: quota("searches_per_minute")?,
        children_per_hour: quota("children_per_hour")?,
    }))
}

fn new_child_id() -> String {
    format!("ch_{}", uuid::Uuid::new_v4().simple())
}

/// Each group's children, as `linked` holds its records, in the order the group first names them; and the proposed
/// merges (a group across children) and splits (a child across groups) that answer shows.
#[allow(clippy::type_complexity)]
fn link_answer(
    groups: &[Vec<(RecordRef, f64)>],
    linked: &HashMap<RecordRef, String>,
) -> (Vec<Vec<(String, Vec<RecordRef>)>>, Vec<String>, Vec<String>) {
    let mut answer = Vec::with_capacity(groups.len());
    let mut merges = Vec::new();
    for group in groups {
        let mut children: Vec<(String, Vec<RecordRef>)> = Vec::new();
        for (record, _) in group {
            let Some(child) = linked.get(record) else {
                continue;
            };
            match children.iter_mut().find(|(c, _)| c == child) {
                Some((_, records)) => records.push(record.clone()),
                None => children.push((child.clone(), vec![record.clone()])),
            }
        }
        if children.len() > 1 {
            // Records of different children now score as one child: kept apart, and recorded for a person to decide.
            let mut ids: Vec<&str> = children.iter().map(|(c, _)| c.as_str()).collect();
            ids.sort_unstable();
            merges.push(ids.join(","));
        }
        answer.push(children);
    }
    // A child whose records now fall into different groups no longer scores as one child: its links stand, and a
    // proposed split is recorded for a person to decide.
    let mut groups_of: HashMap<&str, usize> = HashMap::new();
    for children in &answer {
        for (child, _) in children {
            *groups_of.entry(child.as_str()).or_default() += 1;
        }
    }
    let mut splits: Vec<String> = groups_of
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(child, _)| child.to_owned())
        .collect();
    merges.sort_unstable();
    merges.dedup();
    splits.sort_unstable();
    (answer, merges, splits)
}

/// `count` groups of `width` numbered placeholders from `$first`: `($3), ($4)` or `($1, $2, $3), ($4, $5, $6)`,
/// without parentheses when `width` is 1 (`$3, $4`). Both backends bind `$n` by position when the numbers appear in
/// order.
pub(crate) fn placeholders(first: usize, count: usize, width: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(count * (width * 5 + 4));
    for i in 0..count {
        if i > 0 {
            out.push_str(", ");
        }
        let n = first + i * width;
        if width == 1 {
            let _ = write!(out, "${n}");
        } else {
            out.push('(');
            for k in n..n + width {
                let _ = write!(out, "{}${k}", if k > n { ", " } else { "" });
            }
            out.push(')');
        }
    }
    out
}

/// Each record's source and id, in turn: the parameters of `(source, record_id) IN (…)`.
fn record_params(records: &[RecordRef]) -> Vec<&str> {
    records
        .iter()
        .flat_map(|r| [r.source.as_str(), r.id.as_str()])
        .collect()
}

fn record_ref(row: &impl StoreRow) -> Result<RecordRef, StoreError> {
    let source: String = row.try_get("source")?;
    let source = SourceName::parse(&source)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown source {source}")))?;
    Ok(RecordRef::new(source, row.try_get::<String>("record_id")?))
}

fn timestamp(row: &impl StoreRow, column: &str) -> Result<DateTime<Utc>, StoreError> {
    let text: String = row.try_get(column)?;
    DateTime::<chrono::FixedOffset>::from_str(&text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn account_from_row(row: &impl StoreRow) -> Result<Account, StoreError> {
    let roles: String = row.try_get("roles")?;
    let roles: Vec<String> =
        serde_json::from_str(&roles).map_err(|e| StoreError::Corrupt(format!("roles: {e}")))?;
    let source: Option<String> = row.try_get("source")?;
    let source_org_id: Option<String> = row.try_get("source_org_id")?;
    let source = match (source, source_org_id) {
        (Some(s), Some(id)) => Some(RecordRef::new(
            SourceName::parse(&s)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown source {s}")))?,
            id,
        )),
        _ => None,
    };
    let date = |column: &str| -> Result<NaiveDate, StoreError> {
        let text: String = row.try_get(column)?;
        text.parse()
            .map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
    };
    Ok(Account {
        client: client_from_row(row)?,
        authorisation: Authorisation {
            clearance_reference: row.try_get("clearance_reference")?,
            clearance_expires: date("clearance_expires")?,
            training_completed: date("training_completed")?,
            authorised_by: row.try_get("authorised_by")?,
            authorised_at: timestamp(row, "authorised_at")?,
            recertify_by: timestamp(row, "recertify_by")?,
        },
        user_id: row.try_get("user_id")?,
        display_name: row.try_get("display_name")?,
        organisation: OrganisationRecord {
            id: row.try_get("org_id")?,
            name: row.try_get("org_name")?,
            source,
        },
        roles,
        phone: row.try_get("phone")?,
        email: row.try_get("email")?,
        active: row.try_get("active")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{Stores, on_each_backend};

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(placeholders(3, 2, 1), "$3, $4");
        assert_eq!(placeholders(1, 2, 3), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(placeholders(2, 0, 2), "");
    }

    /// The steps of SQLite's plan for a statement, each parameter bound to a string.
    fn plan_of(conn: &rusqlite::Connection, statement: &str) -> Vec<String> {
        let mut explain = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {statement}"))
            .expect("statement");
        let params = vec!["x"; explain.parameter_count()];
        explain
            .query_map(rusqlite::params_from_iter(params), |row| row.get(3))
            .expect("plan")
            .collect::<Result<_, _>>()
            .expect("plan rows")
    }

    /// SQLite's plan for each statement an answer runs, at one and at several ids: each table is searched by a key
    /// or an index, never scanned, however large it grows.
    #[tokio::test]
    async fn every_read_of_an_answer_uses_an_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("store.db");
        Store::open_sqlite(&file).await.expect("store");
        let conn = rusqlite::Connection::open(&file).expect("connection");
        use crate::audit::sql;
        for count in [1, 3] {
            for statement in [
                statements::children_of(count),
                statements::shielded_records(count),
                statements::RECORDS_OF.to_owned(),
                statements::linked(count),
                statements::shielded(count),
                statements::flags(count),
                shields::overridden_sql(count),
                sql::counts(count),
                sql::VIEWS_SINCE.to_owned(),
                sql::known(count),
                sql::OLDEST.to_owned(),
                sql::PRUNE.to_owned(),
            ] {
                let plan = plan_of(&conn, &statement);
                assert!(
                    plan.iter().any(|step| step.starts_with("SEARCH")),
                    "{statement}: {plan:?}"
                );
                // A scan of the statement's own list of values is no scan of a table.
                let scans_a_table =
                    |step: &String| step.starts_with("SCAN") && !step.contains("CONSTANT ROW");
                assert!(!plan.iter().any(scans_a_table), "{statement}: {plan:?}");
            }
        }
        // The writer reads a principal's views with every record it commits: from the index alone, in its order.
        for statement in [
            sql::counts(1),
            sql::counts(3),
            sql::VIEWS_SINCE.to_owned(),
            sql::OLDEST.to_owned(),
        ] {
            let plan = plan_of(&conn, &statement);
            assert!(
                plan.iter()
                    .any(|step| step.contains("COVERING INDEX child_views_by_principal")),
                "{statement}: {plan:?}"
            );
            assert!(
                !plan.iter().any(|step| step.contains("TEMP B-TREE")),
                "{statement}: {plan:?}"
            );
        }
    }

    on_each_backend!(
        links_keep_child_ids,
        linked_answers_records_and_shields_in_one_lookup,
        a_linked_record_is_never_moved,
        a_child_whose_records_no_longer_score_as_one_keeps_them_and_a_split_is_proposed,
        shields_and_flags_round_trip,
        two_requests_linking_the_same_new_records_at_once_both_succeed,
        a_child_linked_by_two_requests_at_once_is_one_child_or_a_proposed_merge,
    );

    async fn links_keep_child_ids(stores: &Stores) {
        let store = stores.fresh().await;
        let h = RecordRef::new(SourceName::Health, "p1");
        let s = RecordRef::new(SourceName::School, "u1");
        let first = store
            .link(&[vec![(h.clone(), 1.0)]], "test")
            .await
            .expect("link");
        let child = first[0][0].0.clone();
        let second = store
            .link(&[vec![(h.clone(), 1.0), (s.clone(), 0.9)]], "test")
            .await
            .expect("link");
        assert_eq!(second[0], vec![(child.clone(), vec![h.clone(), s.clone()])]);
        assert_eq!(store.records_of(&child).await.expect("records"), vec![h, s]);
    }

    async fn linked_answers_records_and_shields_in_one_lookup(stores: &Stores) {
        let store = stores.fresh().await;
        let (a, b) = (
            RecordRef::new(SourceName::Health, "p1"),
            RecordRef::new(SourceName::School, "u1"),
        );
        let ids = store
            .link(
                &[
                    vec![(a.clone(), 1.0), (b.clone(), 1.0)],
                    vec![(RecordRef::new(SourceName::Health, "p2"), 1.0)],
                ],
                "test",
            )
            .await
            .expect("link");
        let (first, second) = (ids[0][0].0.clone(), ids[1][0].0.clone());
        store
            .put_shield(&Shield {
                child_id: second.clone(),
                reason: "r".into(),
                requested_by: "a".into(),
                approved_by: "b".into(),
                review_due: Utc::now(),
            })
            .await
            .expect("shield");
        let linked = store
            .linked(&[first.clone(), second.clone(), "ch_unknown".into()])
            .await
            .expect("linked");
        assert_eq!(linked.records[&first], vec![a, b]);
        assert_eq!(linked.records.len(), 2);
        assert_eq!(linked.shielded, HashSet::from([second]));
    }

    async fn a_linked_record_is_never_moved(stores: &Stores) {
        let store = stores.fresh().await;
        let a = RecordRef::new(SourceName::Health, "p1");
        let b = RecordRef::new(SourceName::School, "u1");
        let ids = store
            .link(&[vec![(a.clone(), 1.0)], vec![(b.clone(), 1.0)]], "test")
            .await
            .expect("link");
        let (ca, cb) = (ids[0][0].0.clone(), ids[1][0].0.clone());
        assert_ne!(ca, cb);
        let joined = store
            .link(&[vec![(a.clone(), 1.0), (b.clone(), 1.0)]], "test")
            .await
            .expect("link");
        assert_eq!(
            joined[0],
            vec![(ca.clone(), vec![a.clone()]), (cb.clone(), vec![b.clone()])]
        );
        // Kept apart, and a merge proposed once, with its reason, however often the records score as one child.
        store
            .link(&[vec![(a, 1.0), (b, 1.0)]], "test")
            .await
            .expect("link");
        let events = store.link_events().await.expect("events");
        assert_eq!(events.len(), 1, "{events:?}");
        let mut expected = vec![ca, cb];
        expected.sort();
        assert_eq!(events[0].kind, "merge-proposed");
        assert_eq!(events[0].child_ids, expected);
        assert_eq!(events[0].rule, "test");
        assert!(!events[0].reason.is_empty());
    }

    async fn a_child_whose_records_no_longer_score_as_one_keeps_them_and_a_split_is_proposed(
        stores: &Stores,
    ) {
        let store = stores.fresh().await;
        let a = RecordRef::new(SourceName::Health, "p1");
        let b = RecordRef::new(SourceName::School, "u1");
        let linked = store
            .link(&[vec![(a.clone(), 1.0), (b.clone(), 1.0)]], "test")
            .await
            .expect("link");
        let child = linked[0][0].0.clone();
        // The same records, now in two groups: the child keeps both, each group answers with it.
        let apart = store
            .link(&[vec![(a.clone(), 1.0)], vec![(b.clone(), 1.0)]], "test")
            .await
            .expect("link");
        assert_eq!(apart[0], vec![(child.clone(), vec![a.clone()])]);
        assert_eq!(apart[1], vec![(child.clone(), vec![b.clone()])]);
        assert_eq!(
            store.records_of(&child).await.expect("records"),
            vec![a.clone(), b.clone()]
        );
        store
            .link(&[vec![(a, 1.0)], vec![(b, 1.0)]], "test")
            .await
            .expect("link");
        let events = store.link_events().await.expect("events");
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].kind, "split-proposed");
        assert_eq!(events[0].child_ids, vec![child]);
        assert!(!events[0].reason.is_empty());
    }

    async fn shields_and_flags_round_trip(stores: &Stores) {
        let store = stores.fresh().await;
        let ids = store
            .link(
                &[vec![(RecordRef::new(SourceName::Health, "p1"), 1.0)]],
                "test",
            )
            .await
            .expect("link");
        let child = ids[0][0].0.clone();
        let account = Account {
            user_id: "teacher".into(),
            display_name: "Priya Shah".into(),
            organisation: OrganisationRecord {
                id: "org-1".into(),
                name: "Riverside".into(),
                source: None,
            },
            roles: vec!["teacher".into()],
            phone: None,
            email: Some("p@example.org".into()),
            active: true,
            authorisation: crate::store::Authorisation::seeded("authoriser"),
            client: None,
        };
        store.upsert_account(&account).await.expect("account");
        assert_eq!(
            store.account("teacher").await.expect("account"),
            Some(account.clone())
        );
        let now = Utc::now();
        let flag = FlagRecord {
            id: "f1".into(),
            child_id: child.clone(),
            kind: "HAS_INFORMATION".into(),
            note: "call the office".into(),
            raised_by: account,
            raised_at: now,
            expires_at: now + chrono::Duration::days(90),
        };
        store.put_flag(&flag).await.expect("flag");
        let flags = store
            .flags(std::slice::from_ref(&child), now)
            .await
            .expect("flags");
        assert_eq!(flags[&child].len(), 1);
        let owner = store
            .flag_owner("f1")
            .await
            .expect("owner")
            .expect("a flag");
        assert_eq!(
            (
                owner.child_id.as_str(),
                owner.raised_by.as_str(),
                owner.organisation_id.as_str()
            ),
            (child.as_str(), "teacher", "org-1")
        );
        assert!(store.flag_owner("f-none").await.expect("owner").is_none());
        // Withdrawn once; a second withdrawal changes nothing, and the flag no longer shows.
        assert!(
            store
                .withdraw_flag("f1", "teacher", now)
                .await
                .expect("withdraw")
        );
        assert!(
            !store
                .withdraw_flag("f1", "teacher", now)
                .await
                .expect("withdraw")
        );
        assert!(
            store
                .flags(std::slice::from_ref(&child), now)
                .await
                .expect("flags")
                .get(&child)
                .is_none_or(Vec::is_empty)
        );
        let disclosure = crate::store::Disclosure {
            id: "dsc_1".into(),
            child_id: child.clone(),
            recorded_by: "teacher".into(),
            organisation_id: "org-1".into(),
            recipient: "Police child protection unit".into(),
            purpose: "strategy discussion".into(),
            lawful_basis: "PUBLIC_TASK".into(),
            consent: false,
            at: now,
        };
        store.put_disclosure(&disclosure).await.expect("disclosure");
        let read = store.disclosures(&child).await.expect("disclosures");
        assert_eq!(read.len(), 1);
        assert_eq!(
            (
                read[0].recipient.as_str(),
                read[0].lawful_basis.as_str(),
                read[0].consent
            ),
            ("Police child protection unit", "PUBLIC_TASK", false)
        );
        assert!(
            store
                .disclosures("ch_other")
                .await
                .expect("disclosures")
                .is_empty()
        );
        assert!(
            store
                .flags(
                    std::slice::from_ref(&child),
                    now + chrono::Duration::days(91)
                )
                .await
                .expect("flags")
                .is_empty()
        );
        assert!(
            store
                .shielded(std::slice::from_ref(&child))
                .await
                .expect("shielded")
                .is_empty()
        );
        let shield = Shield {
            child_id: child.clone(),
            reason: "risk".into(),
            requested_by: "a".into(),
            approved_by: "b".into(),
            review_due: now,
        };
        store.put_shield(&shield).await.expect("shield");
        assert!(
            store
                .shielded(std::slice::from_ref(&child))
                .await
                .expect("shielded")
                .contains(&child)
        );
    }

    async fn two_requests_linking_the_same_new_records_at_once_both_succeed(stores: &Stores) {
        let store = stores.fresh().await;
        // Two connections open before the race, so that neither transaction is over before the other begins.
        let (warm, _) = tokio::join!(store.link_events(), store.link_events());
        warm.expect("events");
        let records: Vec<RecordRef> = (0..20)
            .map(|i| RecordRef::new(SourceName::Health, format!("p{i}")))
            .collect();
        let forward: Vec<Vec<(RecordRef, f64)>> =
            records.iter().map(|r| vec![(r.clone(), 1.0)]).collect();
        let backward: Vec<Vec<(RecordRef, f64)>> = forward.iter().rev().cloned().collect();
        // Each writes the links the other writes, in the other order: neither waits on the other for ever.
        let (a, b) = tokio::join!(store.link(&forward, "test"), store.link(&backward, "test"));
        let (a, b) = (a.expect("link"), b.expect("link"));
        assert_eq!((a.len(), b.len()), (20, 20));
        let linked = store.children_of(&records).await.expect("children");
        assert_eq!(linked.len(), 20);
        // The first link of each record stands, and both requests answer with it: neither shows a child id the
        // store does not hold for the record.
        for (i, record) in records.iter().enumerate() {
            let child = &linked[record];
            assert_eq!(a[i], vec![(child.clone(), vec![record.clone()])]);
            assert_eq!(b[19 - i], vec![(child.clone(), vec![record.clone()])]);
            assert_eq!(
                store.records_of(child).await.expect("records"),
                vec![record.clone()]
            );
        }
        // A child made by the request that lost a record is not left behind without one.
        let children: i64 = on_pool!(store, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM children")
                .fetch_one(pool)
                .await
                .expect("count")
        });
        assert_eq!(children, 20);
    }

    async fn a_child_linked_by_two_requests_at_once_is_one_child_or_a_proposed_merge(
        stores: &Stores,
    ) {
        // Two gateways, each linking overlapping groups of the same three new records of one child: every answer
        // names the children the store holds for its records, and a group the race left across children is
        // recorded as a proposed merge, never silently split.
        let gateways = stores.gateways(2).await;
        let (h, s, e) = (
            RecordRef::new(SourceName::Health, "p1"),
            RecordRef::new(SourceName::School, "u1"),
            RecordRef::new(SourceName::EarlyYears, "k1"),
        );
        let groups = [
            vec![(h.clone(), 1.0), (s.clone(), 1.0)],
            vec![(s.clone(), 1.0), (e.clone(), 1.0)],
            vec![(e.clone(), 1.0), (h.clone(), 1.0), (s.clone(), 1.0)],
        ];
        let links: Vec<_> = (0..12)
            .map(|i| gateways[i % 2].link(std::slice::from_ref(&groups[i % 3]), "test"))
            .collect();
        let answers = futures::future::join_all(links).await;
        let store = &gateways[0];
        let all = [h.clone(), s.clone(), e.clone()];
        let linked = store.children_of(&all).await.expect("children");
        assert_eq!(linked.len(), 3);
        for answer in answers {
            for (child, records) in &answer.expect("link")[0] {
                for record in records {
                    assert_eq!(&linked[record], child);
                }
            }
        }
        let distinct: HashSet<&String> = linked.values().collect();
        if distinct.len() > 1 {
            let events = store.link_events().await.expect("events");
            assert!(
                events.iter().any(|e| e.kind == "merge-proposed"),
                "{linked:?} {events:?}"
            );
        }
        let children: i64 = on_pool!(store, |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM children")
                .fetch_one(pool)
                .await
                .expect("count")
        });
        assert_eq!(children as usize, distinct.len());
    }
}
