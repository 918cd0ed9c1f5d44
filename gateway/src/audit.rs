//! The audit log: one durable, hash-chained record per operation, written before the answer leaves.
//!
//! Records go through one writer per gateway, which commits whatever has queued while the last commit ran in one
//! transaction (group commit), then tells each waiting request that its record is down. On SQLite the writer is a
//! thread with a connection of its own, which, while records come at one a millisecond or faster, waits a
//! millisecond (`LINGER`) to gather more before each commit; on PostgreSQL, a task over the pool. A request whose
//! record could not be written gets `INTERNAL` and no child data.
//!
//! Each record's hash is SHA-256 over its fields and the hash of the record before it ([`GENESIS`] for the first),
//! so [`verify`] finds any edited, deleted or reordered record.
//!
//! A record of an answer that shows children carries a [`Charge`] against the principal's quota of distinct
//! children, decided in the same transaction: the children first shown are kept with the record, or, over the
//! quota, the record is written as refused (`rate_limited`, nothing shown) and the answer is not sent.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::quotas::{Admission, Charge, VIEW_WINDOW, Verdict, Viewed, millis};
use crate::store::{Backend, Store, StoreError, StoreRow, on_pool};

/// The `prev_hash` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The most records one commit takes.
const MAX_GROUP: usize = 512;
/// Rows per statement on PostgreSQL, where each statement is a round trip: 18 values a record, well under its limit
/// on bound values. The SQLite writer, in process, runs one kept statement per row.
const ROWS_PER_INSERT: usize = 128;
/// How often views that have left the quota's window are removed.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// How often, at most, the writer logs the chain's head (`audit head`), the anchor that `audit verify --anchor` checks.
const HEAD_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// One operation, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: chrono::DateTime<chrono::Utc>,
    pub request_id: String,
    pub user_id: String,
    pub organisation_id: String,
    pub roles: Vec<String>,
    /// The API client, for partner agencies' client-credentials tokens.
    pub client: Option<String>,
    pub purpose: String,
    pub justification: Option<String>,
    pub operation: String,
    pub child_ids: Vec<String>,
    /// Categories the answer could show, and those it withheld.
    pub shown: Vec<String>,
    pub withheld: Vec<String>,
    pub outcome: String,
    pub policy_hash: String,
    /// The account an account action was about (`account.authorise`, `account.revoke`, `account.recertify`).
    pub subject: Option<String>,
}

impl AuditEntry {
    /// A record made now, outside a practitioner's request scope (the gateway's stop, an operator's command, a refused
    /// sign-in), naming no child, role or organisation; set those fields after, where they are known.
    pub fn outside_a_request(
        request_id: String,
        user_id: String,
        purpose: &str,
        operation: &str,
        outcome: &str,
        policy_hash: &str,
    ) -> Self {
        Self {
            at: chrono::Utc::now(),
            request_id,
            user_id,
            organisation_id: String::new(),
            roles: Vec::new(),
            client: None,
            purpose: purpose.to_owned(),
            justification: None,
            operation: operation.to_owned(),
            child_ids: Vec::new(),
            shown: Vec::new(),
            withheld: Vec::new(),
            outcome: outcome.to_owned(),
            policy_hash: policy_hash.to_owned(),
            subject: None,
        }
    }
}

/// A record as stored, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// The hash of a record: its fields, in a fixed order, then the previous record's hash. A field added to the record
/// later (`subject`) joins the hash only when it is set, so records written before it still verify.
///
/// What is hashed is the fields as one compact JSON array, written straight into the hasher.
pub fn hash(entry: &AuditEntry, prev_hash: &str) -> String {
    let mut hasher = Sha256::new();
    serde_json::to_writer(&mut hasher, &Hashed { entry, prev_hash }).expect(
        "strings and lists of strings always serialise, and the hasher never fails a write",
    );
    format!("{:x}", hasher.finalize())
}

/// A record's fields in the order its hash takes them.
struct Hashed<'a> {
    entry: &'a AuditEntry,
    prev_hash: &'a str,
}

impl serde::Serialize for Hashed<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        #[derive(serde::Serialize)]
        struct Subject<'a> {
            subject: &'a str,
        }
        let e = self.entry;
        let mut seq = serializer.serialize_seq(None)?;
        seq.serialize_element(&e.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))?;
        seq.serialize_element(&e.request_id)?;
        seq.serialize_element(&e.user_id)?;
        seq.serialize_element(&e.organisation_id)?;
        seq.serialize_element(&e.roles)?;
        seq.serialize_element(&e.client)?;
        seq.serialize_element(&e.purpose)?;
        seq.serialize_element(&e.justification)?;
        seq.serialize_element(&e.operation)?;
        seq.serialize_element(&e.child_ids)?;
        seq.serialize_element(&e.shown)?;
        seq.serialize_element(&e.withheld)?;
        seq.serialize_element(&e.outcome)?;
        seq.serialize_element(&e.policy_hash)?;
        if let Some(subject) = &e.subject {
            seq.serialize_element(&Subject { subject })?;
        }
        seq.serialize_element(self.prev_hash)?;
        seq.end()
    }
}

/// A record waiting for the writer: its entry, its charge if any, and who waits for the outcome.
struct Pending {
    entry: AuditEntry,
    charge: Option<Charge>,
    done: oneshot::Sender<Settled>,
}

/// How a record's commit went, and when the writer knew.
#[derive(Debug)]
struct Settled {
    outcome: Result<Admission, String>,
    at: std::time::Instant,
}

/// A handle on the writer task. Cloning is cheap; the task ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
    /// Transactions committed: records waiting together go down in one.
    commits: Arc<std::sync::atomic::AtomicU64>,
}

impl AuditLog {
    /// Starts the writer task over the store, counting views for a monitor window of an hour.
    pub fn start(store: Store) -> Self {
        Self::counting_views(store, VIEW_WINDOW)
    }

    /// Starts the writer task over the store. An admitted charge answers with the principal's distinct children
    /// within `count_window` (the monitor's), and views are kept for that window or the quota's, the longer.
    pub fn counting_views(store: Store, count_window: std::time::Duration) -> Self {
        let (tx, rx) = mpsc::channel(4 * MAX_GROUP);
        let commits = Arc::new(std::sync::atomic::AtomicU64::new(0));
        match store.backend() {
            Backend::Sqlite(pool, _) => {
                // The file the pool's connections open, with the options they were opened with.
                let file = pool.connect_options().get_filename().to_path_buf();
                let done = commits.clone();
                std::thread::Builder::new()
                    .name("audit-writer".to_owned())
                    .spawn(move || sqlite_writer(file, rx, count_window, done))
                    .expect("the system starts a thread");
            }
            Backend::Postgres(pool) => {
                tokio::spawn(writer(pool.clone(), rx, count_window, commits.clone()));
            }
        }
        Self { tx, commits }
    }

    /// How many transactions the writer has committed: fewer than the records appended when they came together.
    pub fn commits(&self) -> u64 {
        self.commits.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Appends a record, returning once it is committed.
    pub async fn append(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.append_charged(entry, None).await.map(|_| ())
    }

    /// Appends a record with its charge against the principal's quota of distinct children (the record's
    /// `child_ids`), returning once it is committed. Refused, the record is written as `rate_limited`, with no
    /// categories shown or withheld.
    pub async fn append_charged(
        &self,
        entry: AuditEntry,
        charge: Option<Charge>,
    ) -> Result<Admission, StoreError> {
        self.submit_charged(entry, charge)
            .await?
            .committed()
            .await
            .0
    }

    /// Hands a record with its charge to the writer, returning once the writer has it, before it is committed:
    /// the caller may work on meanwhile, and learns how the record went from [`Receipt::committed`].
    pub async fn submit_charged(
        &self,
        entry: AuditEntry,
        charge: Option<Charge>,
    ) -> Result<Receipt, StoreError> {
        let handed = std::time::Instant::now();
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Pending {
                entry,
                charge,
                done,
            })
            .await
            .map_err(|_| StoreError::Corrupt("the audit writer has stopped".to_owned()))?;
        Ok(Receipt { wait, handed })
    }
}

/// A record the writer has been handed, and how its commit will go.
#[derive(Debug)]
pub struct Receipt {
    wait: oneshot::Receiver<Settled>,
    handed: std::time::Instant,
}

impl Receipt {
    /// Waits for the record's commit: the admission of its charge, or why it is not down; and how long after the
    /// hand-over the writer knew, however much later the caller asked.
    pub async fn committed(self) -> (Result<Admission, StoreError>, std::time::Duration) {
        let Ok(settled) = self.wait.await else {
            let stopped = StoreError::Corrupt("the audit writer has stopped".to_owned());
            return (Err(stopped), self.handed.elapsed());
        };
        let took = settled.at.saturating_duration_since(self.handed);
        let outcome = settled
            .outcome
            .map_err(|e| StoreError::Corrupt(format!("audit write failed: {e}")));
        (outcome, took)
    }
}

/// What a writer keeps between commits, and what it does after each, whichever store it writes.
struct WriterState {
    count_window: std::time::Duration,
    commits: Arc<std::sync::atomic::AtomicU64>,
    /// The seq and hash of the last record, once read. A commit takes them and puts back the new ones only when it
    /// succeeds, so after a failure they are read again: the store may hold less than was assumed.
    last: Option<(i64, String)>,
    pruned: Option<std::time::Instant>,
    head_logged: Option<std::time::Instant>,
}

/// The records queued while the last commit ran, up to [`MAX_GROUP`], taken apart for one commit.
struct Group {
    entries: Vec<AuditEntry>,
    charges: Vec<Option<Charge>>,
    waiting: Vec<oneshot::Sender<Settled>>,
}

impl Group {
    fn gather(first: Pending, rx: &mut mpsc::Receiver<Pending>) -> Self {
        let mut group = Self {
            entries: vec![first.entry],
            charges: vec![first.charge],
            waiting: vec![first.done],
        };
        group.take_queued(rx);
        group
    }

    /// Adds the records queued now, up to [`MAX_GROUP`].
    fn take_queued(&mut self, rx: &mut mpsc::Receiver<Pending>) {
        while self.entries.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(next) => {
                    self.entries.push(next.entry);
                    self.charges.push(next.charge);
                    self.waiting.push(next.done);
                }
                Err(_) => break,
            }
        }
    }
}

/// How long a busy SQLite writer waits for more records before it commits a group, and the arrival rate that makes
/// it busy: at one record or more per `LINGER`, waiting gathers more records into each commit and its sync, which
/// costs the writer's thread most of its time, and saves wake-ups on both sides; slower, a record is committed as
/// soon as it comes, and waiting would only add to the answer's time.
const LINGER: std::time::Duration = std::time::Duration::from_micros(1000);

/// The writer's measure of how fast records come: the mean gap between them, smoothed over the last few groups.
#[derive(Debug, Default)]
struct Pace {
    last: Option<std::time::Instant>,
    gap_us: Option<f64>,
    /// Records taken while waiting after the last decision: they came after it, so they count towards the next.
    since: usize,
}

impl Pace {
    /// Notes `n` records gathered at `now`, and says whether to wait [`LINGER`] for more before committing them.
    fn linger(&mut self, n: usize, now: std::time::Instant) -> bool {
        let n = n + std::mem::take(&mut self.since);
        if let Some(last) = self.last {
            let gap = now.duration_since(last).as_secs_f64() * 1e6 / n.max(1) as f64;
            self.gap_us = Some(match self.gap_us {
                Some(mean) => 0.8 * mean + 0.2 * gap,
                None => gap,
            });
        }
        self.last = Some(now);
        self.gap_us
            .is_some_and(|mean| mean <= LINGER.as_secs_f64() * 1e6)
    }

    /// Notes `n` more records, taken while waiting.
    fn took(&mut self, n: usize) {
        self.since += n;
    }
}

impl WriterState {
    fn new(count_window: std::time::Duration, commits: Arc<std::sync::atomic::AtomicU64>) -> Self {
        Self {
            count_window,
            commits,
            last: None,
            pruned: None,
            head_logged: None,
        }
    }

    /// How the next commit treats the views it keeps.
    fn views(&self) -> Views {
        Views {
            count_window: self.count_window,
            prune: self.pruned.is_none_or(|t| t.elapsed() >= PRUNE_EVERY),
        }
    }

    /// Tells each waiting request how its record went, after a commit that treated views as `views` says.
    fn settle(
        &mut self,
        views: Views,
        waiting: Vec<oneshot::Sender<Settled>>,
        outcome: Result<Vec<Admission>, String>,
    ) {
        let at = std::time::Instant::now();
        match outcome {
            Ok(admissions) => {
                self.commits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if views.prune {
                    self.pruned = Some(std::time::Instant::now());
                }
                // The head, written where the store's users cannot reach (the logs), anchors the chain's end: a
                // later `audit verify --anchor SEQ:HASH` finds records cut from the end, which leave a whole chain.
                if self
                    .head_logged
                    .is_none_or(|t| t.elapsed() >= HEAD_LOG_EVERY)
                    && let Some((seq, hash)) = &self.last
                {
                    tracing::info!(target: "childgraph::audit", seq, hash = %hash, "audit head");
                    self.head_logged = Some(at);
                }
                for (done, admission) in waiting.into_iter().zip(admissions) {
                    let _ = done.send(Settled {
                        outcome: Ok(admission),
                        at,
                    });
                }
            }
            Err(e) => {
                for done in waiting {
                    let _ = done.send(Settled {
                        outcome: Err(e.clone()),
                        at,
                    });
                }
            }
        }
    }
}

/// The writer over PostgreSQL: a task, its statements sent in one transaction that other gateways' writers queue
/// behind.
async fn writer(
    pool: sqlx::PgPool,
    mut rx: mpsc::Receiver<Pending>,
    count_window: std::time::Duration,
    commits: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut state = WriterState::new(count_window, commits);
    while let Some(first) = rx.recv().await {
        let mut group = Group::gather(first, &mut rx);
        let views = state.views();
        let outcome = commit(
            &pool,
            &mut state.last,
            &mut group.entries,
            &group.charges,
            views,
        )
        .await
        .map_err(|e| e.to_string());
        state.settle(views, group.waiting, outcome);
    }
}

/// The writer over a SQLite file: a thread with a connection of its own, so that a commit is one hand-over from the
/// requests to the thread and one back, however many statements it runs. (Through the pool, each statement is a round
/// trip to the connection's thread, and a record's commit took six.)
fn sqlite_writer(
    file: std::path::PathBuf,
    mut rx: mpsc::Receiver<Pending>,
    count_window: std::time::Duration,
    commits: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut state = WriterState::new(count_window, commits);
    let mut connection = None;
    let mut pace = Pace::default();
    while let Some(first) = rx.blocking_recv() {
        let mut group = Group::gather(first, &mut rx);
        let gathered = group.entries.len();
        if pace.linger(gathered, std::time::Instant::now()) && gathered < MAX_GROUP {
            std::thread::sleep(LINGER);
            group.take_queued(&mut rx);
            pace.took(group.entries.len() - gathered);
        }
        let views = state.views();
        // Opened on the first record, and again after a failed commit: the file may have gone and come back.
        let outcome = match &mut connection {
            Some(conn) => Ok(conn),
            None => sqlite::open(&file).map(|c| connection.insert(c)),
        }
        .map_err(|e| e.to_string())
        .and_then(|conn| {
            sqlite::commit(
                conn,
                &mut state.last,
                &mut group.entries,
                &group.charges,
                views,
            )
            .map_err(|e| e.to_string())
        });
        if outcome.is_err() {
            connection = None;
        }
        state.settle(views, group.waiting, outcome);
    }
}

/// How a commit treats the views it keeps.
#[derive(Debug, Clone, Copy)]
struct Views {
    /// The monitor's window, over which an admission counts the principal's distinct children.
    count_window: std::time::Duration,
    /// Whether this commit removes the views kept longer.
    prune: bool,
}

/// What a commit reads and when, decided before it touches the store.
struct Plan<'a> {
    now_ms: i64,
    /// Views older than this are removed when the commit prunes, and not read.
    since: i64,
    /// The quota's and the monitor's windows start here.
    quota_since: i64,
    count_since: i64,
    principals: Vec<&'a str>,
    /// The charged records, by their place in the group.
    charged: Vec<(usize, &'a Charge)>,
}

impl<'a> Plan<'a> {
    fn new(charges: &'a [Option<Charge>], views: Views) -> Self {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut principals: Vec<&str> = charges
            .iter()
            .flatten()
            .map(|c| c.principal.as_str())
            .collect();
        principals.sort_unstable();
        principals.dedup();
        Self {
            now_ms,
            since: now_ms - millis(crate::quotas::retention(views.count_window)),
            quota_since: now_ms - millis(VIEW_WINDOW),
            count_since: now_ms - millis(views.count_window),
            principals,
            charged: charges
                .iter()
                .enumerate()
                .filter_map(|(i, c)| Some((i, c.as_ref()?)))
                .collect(),
        }
    }

    /// The (principal, child) pairs the charged answers show: only their rows are read, and counts of the rest.
    fn asked<'e>(&self, entries: &'e [AuditEntry]) -> Vec<(&'a str, &'e str)> {
        let mut asked: Vec<(&str, &str)> = self
            .charged
            .iter()
            .flat_map(|(i, c)| {
                entries[*i]
                    .child_ids
                    .iter()
                    .map(move |child| (c.principal.as_str(), child.as_str()))
            })
            .collect();
        asked.sort_unstable();
        asked.dedup();
        asked
    }

    /// Decides the charges in order against what the store holds, and the (principal, child) pairs first shown now.
    fn decide(
        &self,
        entries: &[AuditEntry],
        viewed: &mut Viewed,
        count_window: std::time::Duration,
    ) -> (Vec<Verdict>, Vec<(String, String)>) {
        crate::quotas::decide(
            self.charged
                .iter()
                .map(|(i, c)| (*c, entries[*i].child_ids.as_slice())),
            viewed,
            self.now_ms,
            count_window,
        )
    }

    /// What each refused charge's retry time needs read (in the order of `charged`): the principal, and how many of
    /// the children they were shown within the hour come before the one that must leave it, from the oldest. `None`
    /// for an admitted charge, and for one whose answer alone holds more children than the whole quota.
    fn oldest_to_leave(&self, verdicts: &[Verdict]) -> Vec<Option<(&'a str, i64)>> {
        self.charged
            .iter()
            .zip(verdicts)
            .map(|((_, charge), verdict)| match verdict {
                Verdict::Refused {
                    over,
                    at_once: false,
                } => Some((
                    charge.principal.as_str(),
                    i64::try_from(over - 1).unwrap_or(i64::MAX),
                )),
                _ => None,
            })
            .collect()
    }

    /// Each record's admission, from its charge's verdict and, when refused, when the child that must leave the hour
    /// was first shown (`firsts`, as [`Self::oldest_to_leave`] asked); a refused record says so and shows nothing.
    fn admit(
        &self,
        entries: &mut [AuditEntry],
        verdicts: &[Verdict],
        firsts: Vec<Option<i64>>,
    ) -> Vec<Admission> {
        let mut admissions = vec![Admission::Admitted { distinct: 0 }; entries.len()];
        for (((i, _), verdict), first) in self.charged.iter().zip(verdicts).zip(firsts) {
            let admission = admission(*verdict, first, self.now_ms);
            admissions[*i] = admission;
            if !admission.is_admitted() {
                let entry = &mut entries[*i];
                entry.outcome = "rate_limited".to_owned();
                entry.shown.clear();
                entry.withheld.clear();
            }
        }
        admissions
    }
}

/// A charge's admission from its verdict. A refusal waits for the oldest child that must leave the hour to leave it:
/// `first` is when that child was first shown (read only when the answer alone was not over the whole quota).
fn admission(verdict: Verdict, first: Option<i64>, now_ms: i64) -> Admission {
    match verdict {
        Verdict::Admitted { distinct } => Admission::Admitted { distinct },
        Verdict::Refused { at_once: true, .. } => Admission::Refused {
            retry_after: VIEW_WINDOW.as_secs(),
        },
        Verdict::Refused { .. } => Admission::Refused {
            retry_after: crate::quotas::view_retry_after(first, now_ms),
        },
    }
}

/// The records of a group chained after `(seq, prev)`: each one's seq, entry, previous hash and hash.
fn chain(
    entries: &[AuditEntry],
    mut seq: i64,
    mut prev: String,
) -> Vec<(i64, &AuditEntry, String, String)> {
    let mut chained = Vec::with_capacity(entries.len());
    for entry in entries {
        let h = hash(entry, &prev);
        seq += 1;
        chained.push((seq, entry, prev, h.clone()));
        prev = h;
    }
    chained
}

/// Commits a group of records in one transaction on PostgreSQL, with their charges, and returns each one's admission.
///
/// Other gateways append to the same log, so the tail is read every time, under a lock that every appender takes.
async fn commit(
    pool: &sqlx::PgPool,
    last: &mut Option<(i64, String)>,
    entries: &mut [AuditEntry],
    charges: &[Option<Charge>],
    views: Views,
) -> Result<Vec<Admission>, StoreError> {
    let plan = Plan::new(charges, views);
    let mut tx = pool.begin().await?;
    // Appends wait for each other here, and for nothing else: readers are not blocked. The lock is taken before the
    // tail is read, so the tail read is the one this transaction extends.
    sqlx::query("LOCK TABLE audit_log IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    // The quota of distinct children: how many each principal charged here was shown within the quota's and the
    // monitor's windows, and when the children these answers show were; then each charge decided in order.
    let mut viewed = Viewed::new();
    for chunk in plan.principals.chunks(ROWS_PER_INSERT) {
        let sql = sql::counts(chunk.len());
        let mut q = sqlx::query(&sql)
            .bind(plan.quota_since)
            .bind(plan.count_since);
        for principal in chunk {
            q = q.bind(*principal);
        }
        for row in q.fetch_all(&mut *tx).await? {
            read_counts(&mut viewed, &row)?;
        }
    }
    for chunk in plan.asked(entries).chunks(ROWS_PER_INSERT) {
        let sql = sql::known(chunk.len());
        let mut q = sqlx::query(&sql).bind(plan.since);
        for (principal, child) in chunk {
            q = q.bind(*principal).bind(child);
        }
        for row in q.fetch_all(&mut *tx).await? {
            read_known(&mut viewed, &row)?;
        }
    }
    let (verdicts, shown) = plan.decide(entries, &mut viewed, views.count_window);
    let mut firsts = Vec::with_capacity(verdicts.len());
    for lookup in plan.oldest_to_leave(&verdicts) {
        firsts.push(match lookup {
            Some((principal, offset)) => {
                sqlx::query_scalar(sql::OLDEST)
                    .bind(principal)
                    .bind(plan.quota_since)
                    .bind(offset)
                    .fetch_optional(&mut *tx)
                    .await?
            }
            None => None,
        });
    }
    let admissions = plan.admit(entries, &verdicts, firsts);
    for chunk in shown.chunks(ROWS_PER_INSERT) {
        let sql = sql::insert_views(chunk.len());
        let mut q = sqlx::query(&sql);
        for (principal, child) in chunk {
            q = q.bind(principal).bind(child).bind(plan.now_ms);
        }
        q.execute(&mut *tx).await?;
    }
    if views.prune {
        sqlx::query(sql::PRUNE)
            .bind(plan.since)
            .execute(&mut *tx)
            .await?;
    }
    let (seq, prev) = match sqlx::query(sql::TAIL).fetch_optional(&mut *tx).await? {
        Some(row) => (row.try_get("seq")?, row.try_get("hash")?),
        None => (0, GENESIS.to_owned()),
    };
    // One statement per chunk of records, each record's seq one past the last: assigned here, under the lock, so a
    // transaction rolled back leaves no gap (a PostgreSQL sequence would).
    let chained = chain(entries, seq, prev);
    for chunk in chained.chunks(ROWS_PER_INSERT) {
        let sql = sql::insert_records(chunk.len());
        let mut q = sqlx::query(&sql);
        for (seq, entry, prev, h) in chunk {
            let row = sql::record_values(entry);
            q = q.bind(*seq).bind(row.at);
            for text in row.texts {
                q = q.bind(text);
            }
            q = q.bind(prev).bind(h);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    *last = chained.last().map(|(seq, _, _, h)| (*seq, h.clone()));
    Ok(admissions)
}

/// A row of [`sql::counts`]: a principal's distinct children within the quota's and the monitor's windows.
fn read_counts(viewed: &mut Viewed, row: &impl StoreRow) -> Result<(), StoreError> {
    let count = |column| -> Result<usize, StoreError> {
        Ok(usize::try_from(row.try_get::<i64>(column)?).unwrap_or(0))
    };
    let views = viewed.entry(row.try_get("principal")?).or_default();
    views.in_quota = count("in_quota")?;
    views.in_count = count("in_count")?;
    Ok(())
}

/// A row of [`sql::known`]: when a principal was first shown a child within the window.
fn read_known(viewed: &mut Viewed, row: &impl StoreRow) -> Result<(), StoreError> {
    viewed
        .entry(row.try_get("principal")?)
        .or_default()
        .known
        .insert(row.try_get("child_id")?, row.try_get("first_at")?);
    Ok(())
}

/// The statements both writers run, with numbered placeholders (`$1`, which both databases take), bound in order.
pub(crate) mod sql {
    use super::AuditEntry;
    use crate::store::placeholders;

    /// Each principal's distinct children within the quota's window (`$1`) and the monitor's (`$2`).
    pub fn counts(principals: usize) -> String {
        format!(
            "SELECT principal, SUM(CASE WHEN first_at > $1 THEN 1 ELSE 0 END) AS in_quota, \
             SUM(CASE WHEN first_at > $2 THEN 1 ELSE 0 END) AS in_count \
             FROM child_views WHERE principal IN ({}) GROUP BY principal",
            placeholders(3, principals, 1)
        )
    }

    /// A principal's (`$1`) distinct children shown since `$2`: what `counts` gives, for one principal and one
    /// window, as SQLite counts it fastest.
    pub const VIEWS_SINCE: &str =
        "SELECT COUNT(*) FROM child_views WHERE principal = $1 AND first_at > $2";

    /// When each (principal, child) pair was first shown, since `$1`.
    pub fn known(pairs: usize) -> String {
        format!(
            "SELECT principal, child_id, first_at FROM child_views WHERE first_at > $1 AND (principal, child_id) IN ({})",
            placeholders(2, pairs, 2)
        )
    }

    /// When the principal's (`$1`) child shown within the hour (since `$2`), `$3` from the oldest, was first shown.
    pub const OLDEST: &str = "SELECT first_at FROM child_views WHERE principal = $1 AND first_at > $2 \
         ORDER BY first_at LIMIT 1 OFFSET $3";

    /// Views of (principal, child, first_at); a row left from an earlier window is the child shown anew.
    pub fn insert_views(rows: usize) -> String {
        format!(
            "INSERT INTO child_views (principal, child_id, first_at) VALUES {} \
             ON CONFLICT (principal, child_id) DO UPDATE SET first_at = excluded.first_at",
            placeholders(1, rows, 3)
        )
    }

    /// Removes the views first shown at or before `$1`.
    pub const PRUNE: &str = "DELETE FROM child_views WHERE first_at <= $1";

    /// The chain's tail.
    pub const TAIL: &str = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1";

    pub fn insert_records(rows: usize) -> String {
        format!(
            "INSERT INTO audit_log ({}) VALUES {}",
            super::COLUMNS,
            placeholders(1, rows, 18)
        )
    }

    /// A record's values between its seq and its hashes, as `insert_records` binds them: its time, then its text
    /// columns in order.
    pub struct RecordValues<'a> {
        pub at: String,
        pub texts: [Text<'a>; 14],
    }

    /// A text column's value: borrowed, joined from a list, or absent (NULL).
    pub type Text<'a> = Option<std::borrow::Cow<'a, str>>;

    pub fn record_values(entry: &AuditEntry) -> RecordValues<'_> {
        fn text(s: &str) -> Text<'_> {
            Some(s.into())
        }
        fn joined(list: &[String]) -> Text<'static> {
            Some(list.join(",").into())
        }
        RecordValues {
            at: entry.at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            texts: [
                text(&entry.request_id),
                text(&entry.user_id),
                text(&entry.organisation_id),
                joined(&entry.roles),
                entry.client.as_deref().map(Into::into),
                text(&entry.purpose),
                entry.justification.as_deref().map(Into::into),
                text(&entry.operation),
                joined(&entry.child_ids),
                joined(&entry.shown),
                joined(&entry.withheld),
                text(&entry.outcome),
                text(&entry.policy_hash),
                entry.subject.as_deref().map(Into::into),
            ],
        }
    }
}

/// The writer's statements on its own SQLite connection.
mod sqlite {
    use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params_from_iter};

    use super::{AuditEntry, Charge, GENESIS, Plan, Viewed, Views, chain, read_known, sql};
    use crate::quotas::Admission;
    use crate::store::StoreError;

    /// Opens the file as the store's pool does: WAL, every commit synced, waiting up to 5 s for another writer.
    pub fn open(file: &std::path::Path) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            file,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        Ok(conn)
    }

    /// Commits a group of records in one transaction, with their charges, and returns each one's admission.
    ///
    /// One gateway writes a SQLite file, so the tail it appended last is the chain's tail: it is read only when not
    /// kept (at first, and after a failed commit).
    pub fn commit(
        conn: &mut Connection,
        last: &mut Option<(i64, String)>,
        entries: &mut [AuditEntry],
        charges: &[Option<Charge>],
        views: Views,
    ) -> Result<Vec<Admission>, StoreError> {
        let plan = Plan::new(charges, views);
        let kept = last.take();
        // Immediate: the transaction reads (the views) before it writes, and a deferred one could not then take the
        // write lock behind another writer.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // One row per statement: in process, a kept statement run again costs a few microseconds, while a statement
        // for each group's size would be parsed anew whenever the sizes vary more than the cache holds.
        let mut viewed = Viewed::new();
        {
            // Counted over the index's range for each window: SQLite steps through a range for `COUNT(*)` several
            // times faster than it sums a condition over the principal's every row.
            let mut since = tx.prepare_cached(sql::VIEWS_SINCE)?;
            let mut count = |principal: &str, from: i64| -> rusqlite::Result<usize> {
                since
                    .query_row(rusqlite::params![principal, from], |row| {
                        row.get::<_, i64>(0)
                    })
                    .map(|n| usize::try_from(n).unwrap_or(0))
            };
            for &principal in &plan.principals {
                let in_quota = count(principal, plan.quota_since)?;
                let in_count = if plan.count_since == plan.quota_since {
                    in_quota
                } else {
                    count(principal, plan.count_since)?
                };
                let views = viewed.entry(principal.to_owned()).or_default();
                views.in_quota = in_quota;
                views.in_count = in_count;
            }
            let mut known = tx.prepare_cached(&sql::known(1))?;
            for (principal, child) in plan.asked(entries) {
                let mut rows = known.query(rusqlite::params![plan.since, principal, child])?;
                while let Some(row) = rows.next()? {
                    read_known(&mut viewed, row)?;
                }
            }
        }
        let (verdicts, shown) = plan.decide(entries, &mut viewed, views.count_window);
        let mut firsts = Vec::with_capacity(verdicts.len());
        for lookup in plan.oldest_to_leave(&verdicts) {
            firsts.push(match lookup {
                Some((principal, offset)) => tx
                    .prepare_cached(sql::OLDEST)?
                    .query_row(
                        rusqlite::params![principal, plan.quota_since, offset],
                        |row| row.get(0),
                    )
                    .optional()?,
                None => None,
            });
        }
        let admissions = plan.admit(entries, &verdicts, firsts);
        {
            let mut insert = tx.prepare_cached(&sql::insert_views(1))?;
            for (principal, child) in &shown {
                insert.execute(rusqlite::params![principal, child, plan.now_ms])?;
            }
        }
        if views.prune {
            tx.prepare_cached(sql::PRUNE)?.execute([plan.since])?;
        }
        let (seq, prev) = match kept {
            Some(tail) => tail,
            None => tx
                .prepare_cached(sql::TAIL)?
                .query_row([], |row| Ok((row.get("seq")?, row.get("hash")?)))
                .optional()?
                .unwrap_or((0, GENESIS.to_owned())),
        };
        let chained = chain(entries, seq, prev);
        {
            let mut insert = tx.prepare_cached(&sql::insert_records(1))?;
            for (seq, entry, prev, h) in &chained {
                let row = sql::record_values(entry);
                let mut values: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(18);
                values.push(seq);
                values.push(&row.at);
                for text in &row.texts {
                    values.push(text);
                }
                values.push(prev);
                values.push(h);
                insert.execute(params_from_iter(values))?;
            }
        }
        tx.commit()?;
        *last = chained.last().map(|(seq, _, _, h)| (*seq, h.clone()));
        Ok(admissions)
    }
}

fn split(text: &str) -> Vec<String> {
    if text.is_empty() {
        Vec::new()
    } else {
        text.split(',').map(str::to_owned).collect()
    }
}

fn record_from_row(row: &impl StoreRow) -> Result<AuditRecord, StoreError> {
    let at: String = row.try_get("at")?;
    let at = chrono::DateTime::parse_from_rfc3339(&at)
        .map_err(|e| StoreError::Corrupt(format!("audit time: {e}")))?
        .with_timezone(&chrono::Utc);
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        entry: AuditEntry {
            at,
            request_id: row.try_get("request_id")?,
            user_id: row.try_get("user_id")?,
            organisation_id: row.try_get("organisation_id")?,
            roles: split(&row.try_get::<String>("roles")?),
            client: row.try_get("client")?,
            purpose: row.try_get("purpose")?,
            justification: row.try_get("justification")?,
            operation: row.try_get("operation")?,
            child_ids: split(&row.try_get::<String>("child_ids")?),
            shown: split(&row.try_get::<String>("shown")?),
            withheld: split(&row.try_get::<String>("withheld")?),
            outcome: row.try_get("outcome")?,
            policy_hash: row.try_get("policy_hash")?,
            subject: row.try_get("subject")?,
        },
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// The columns of `audit_log`, in the order the writers bind them and `record_from_row` reads them.
const COLUMNS: &str = "seq, at, request_id, user_id, organisation_id, roles, client, purpose, justification, \
    operation, child_ids, shown, withheld, outcome, policy_hash, subject, prev_hash, hash";

/// What `audit verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    /// The first record at fault, and why; `None` when the chain is whole.
    pub broken: Option<(i64, String)>,
    /// The last record's seq and hash, to note outside the store as a later anchor.
    pub head: Option<Anchor>,
}

/// A record known to have been in the chain, by its seq and hash, as the gateway logs its head (`audit head`) or
/// `audit verify` prints it: records cut from the end of the chain leave it whole, but not holding its anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: String,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed =
            || format!("an anchor is SEQ:HASH, a record's number and its 64-digit hash, not {s:?}");
        let (seq, hash) = s.split_once(':').ok_or_else(malformed)?;
        let seq: i64 = seq.trim().parse().map_err(|_| malformed())?;
        let hash = hash.trim().to_ascii_lowercase();
        if seq < 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed());
        }
        Ok(Anchor { seq, hash })
    }
}

impl std::fmt::Display for Anchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// Walks the whole chain in order: each record's `seq` follows the last, its `prev_hash` is the last record's hash,
/// and its hash is that of its own fields.
pub async fn verify(store: &Store) -> Result<Verified, StoreError> {
    verify_anchored(store, None).await
}

/// As [`verify`], and the chain must still hold the anchor's record, with the anchor's hash.
pub async fn verify_anchored(
    store: &Store,
    anchor: Option<&Anchor>,
) -> Result<Verified, StoreError> {
    use futures::{StreamExt, TryStreamExt};
    let query = format!("SELECT {COLUMNS} FROM audit_log ORDER BY seq");
    let mut rows: futures::stream::BoxStream<'_, Result<AuditRecord, StoreError>> =
        on_pool!(store, |pool| {
            sqlx::query(&query)
                .fetch(pool)
                .map(|row| record_from_row(&row?))
                .boxed()
        });
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1;
    let mut records = 0;
    while let Some(record) = rows.try_next().await? {
        records += 1;
        let fault = if record.seq != expected_seq {
            Some(format!(
                "record {} follows record {}: a record is missing",
                record.seq,
                expected_seq - 1
            ))
        } else if record.prev_hash != prev {
            Some("its prev_hash is not the hash of the record before: records were removed or reordered".to_owned())
        } else if hash(&record.entry, &record.prev_hash) != record.hash {
            Some("its hash does not match its contents: the record was edited".to_owned())
        } else {
            None
        };
        let fault = fault.or_else(|| {
            anchor
                .filter(|a| a.seq == record.seq && a.hash != record.hash)
                .map(|_| {
                    "its hash is not the anchor's: the log was rewritten from here on".to_owned()
                })
        });
        if let Some(why) = fault {
            return Ok(Verified {
                records,
                broken: Some((record.seq, why)),
                head: None,
            });
        }
        prev = record.hash;
        expected_seq += 1;
    }
    let last = expected_seq - 1;
    let broken = anchor.filter(|a| a.seq > last).map(|a| {
        (
            a.seq,
            format!("the log ends at record {last}, before the anchor's record: records were cut from its end"),
        )
    });
    Ok(Verified {
        records,
        broken,
        head: (last > 0).then_some(Anchor {
            seq: last,
            hash: prev,
        }),
    })
}

/// Every record that names a child, oldest first: who saw what about them, when and why.
pub async fn for_child(store: &Store, child_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
    // The id is matched literally: `%` and `_` in it are no wildcards.
    let query = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE ',' || child_ids || ',' LIKE '%,' || $1 || ',%' ESCAPE '\\' \
         ORDER BY seq"
    );
    let literal = child_id
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    on_pool!(store, |pool| {
        sqlx::query(&query)
            .bind(&literal)
            .fetch_all(pool)
            .await?
            .iter()
            .map(record_from_row)
            .collect()
    })
}

/// The records of one operation since a time, newest first.
pub async fn by_operation(
    store: &Store,
    operation: &str,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<AuditRecord>, StoreError> {
    let query = format!(
        "SELECT {COLUMNS} FROM audit_log WHERE operation = $1 AND at >= $2 ORDER BY seq DESC"
    );
    on_pool!(store, |pool| {
        sqlx::query(&query)
            .bind(operation)
            .bind(since.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .fetch_all(pool)
            .await?
            .iter()
            .map(record_from_row)
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::{Stores, on_each_backend, on_postgres};

    #[test]
    fn the_writer_waits_for_more_records_only_while_they_come_faster_than_one_a_linger() {
        let start = std::time::Instant::now();
        let at = |us: u64| start + std::time::Duration::from_micros(us);
        let mut pace = Pace::default();
        // The first record has no pace: it is committed at once.
        assert!(!pace.linger(1, at(0)));
        // One record every 5 ms, as at 200 answers a second: never.
        for i in 1..=20 {
            assert!(!pace.linger(1, at(i * 5_000)), "record {i}");
        }
        // Then records every 0.3 ms, as at saturation: within a few groups the writer waits.
        let mut now = 100_000;
        let waits: Vec<bool> = (0..10)
            .map(|_| {
                now += 300;
                pace.linger(1, at(now))
            })
            .collect();
        assert!(waits[9], "{waits:?}");
        // Several records gathered at once count as that many arrivals.
        let mut burst = Pace::default();
        assert!(!burst.linger(1, at(0)));
        assert!(burst.linger(8, at(4_000)));
        // Records taken while it waits came after its decision, and keep it waiting: each round, one record gathered
        // and three more taken in the wait is four records in 1.5 ms, not one.
        let mut busy = Pace::default();
        assert!(!busy.linger(1, at(0)));
        assert!(busy.linger(4, at(1_000)));
        for round in 1..=10 {
            busy.took(3);
            assert!(
                busy.linger(1, at(1_000 + round * 1_500)),
                "round {round}: {busy:?}"
            );
        }
        // And once they slow again, it stops waiting.
        let waits: Vec<bool> = (0..20)
            .map(|_| {
                now += 10_000;
                pace.linger(1, at(now))
            })
            .collect();
        assert!(!waits[19], "{waits:?}");
    }

    on_each_backend!(
        records_waiting_together_commit_together,
        concurrent_appends_make_one_whole_chain,
        an_edited_record_is_found,
        a_deleted_record_is_found,
        a_swapped_pair_is_found,
        an_account_actions_subject_is_covered_by_the_hash,
        charges_are_decided_in_the_transaction_of_their_records,
        charged_records_and_links_written_at_once_all_commit,
        a_receipt_times_the_commit_not_the_callers_wait,
    );
    on_postgres!(
        two_gateways_appending_at_once_make_one_whole_chain,
        two_gateways_hold_one_quota_together,
        replicas_starting_together_migrate_once,
    );

    /// Four gateways opening one empty database at once: each starts, the migrations are applied once, and the
    /// schema serves them all.
    async fn replicas_starting_together_migrate_once(stores: &Stores) {
        let gateways = stores.gateways(4).await;
        let applied: Vec<i64> = on_pool!(&gateways[0], |pool| {
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(pool)
                .await
                .unwrap()
        });
        let mut unique = applied.clone();
        unique.dedup();
        assert_eq!(applied, unique, "a migration applied twice");
        assert_eq!(
            applied.len(),
            sqlx::migrate!("./migrations_postgres").iter().count()
        );
        for (i, store) in gateways.iter().enumerate() {
            AuditLog::start(store.clone())
                .append(entry(i))
                .await
                .unwrap();
        }
        assert_eq!(verify(&gateways[0]).await.unwrap().records, 4);
    }

    #[test]
    fn an_anchor_is_a_seq_and_a_whole_hash() {
        let hash = "ab".repeat(32);
        let anchor: Anchor = format!("12:{hash}").parse().unwrap();
        assert_eq!(
            anchor,
            Anchor {
                seq: 12,
                hash: hash.clone()
            }
        );
        assert_eq!(anchor.to_string(), format!("12:{hash}"));
        for bad in [
            "12",
            "x:ab",
            "0:abab",
            &format!("-1:{hash}"),
            &format!("3:{}", &hash[1..]),
            &format!("3:{}g", &hash[1..]),
        ] {
            assert!(bad.parse::<Anchor>().is_err(), "{bad}");
        }
    }

    /// Records already written keep verifying: the hash of a fixed record, with and without a subject, with text that
    /// JSON escapes, is the one the chain has always used.
    #[test]
    fn a_records_hash_is_the_one_written_before() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-03-04T05:06:07.123456789Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let mut e = AuditEntry {
            at,
            request_id: "req-\"1\"".to_owned(),
            user_id: "gp\\one".to_owned(),
            organisation_id: "org-1".to_owned(),
            roles: vec!["gp".to_owned(), "nurse".to_owned()],
            client: Some("partner\u{202e}".to_owned()),
            purpose: "SAFEGUARDING".to_owned(),
            justification: Some("O'Brien \u{1F600}\n".to_owned()),
            operation: "view".to_owned(),
            child_ids: vec!["ch_1".to_owned(), "ch_2".to_owned()],
            shown: vec!["identity".to_owned()],
            withheld: vec![],
            outcome: "ok".to_owned(),
            subject: None,
            policy_hash: "abc".to_owned(),
        };
        assert_eq!(
            hash(&e, GENESIS),
            "079df3477d3ed769044370bb7f9879523d8b5397925d9965fc0c1f0b082eceea"
        );
        e.subject = Some("teacher-2".to_owned());
        e.client = None;
        e.justification = None;
        assert_eq!(
            hash(
                &e,
                "079df3477d3ed769044370bb7f9879523d8b5397925d9965fc0c1f0b082eceea"
            ),
            "1b7b055ef006a095d882294eab65079cbfefa0f28c5b2cd0b02d5d8a6def1663"
        );
    }

    fn entry(n: usize) -> AuditEntry {
        AuditEntry {
            at: chrono::Utc::now(),
            request_id: format!("req-{n}"),
            user_id: "gp".to_owned(),
            organisation_id: "org-1".to_owned(),
            roles: vec!["gp".to_owned()],
            client: None,
            purpose: "SAFEGUARDING".to_owned(),
            justification: None,
            operation: "view".to_owned(),
            child_ids: vec![format!("ch_{n}")],
            shown: vec!["identity".to_owned()],
            withheld: vec![],
            outcome: "ok".to_owned(),
            subject: None,
            policy_hash: "abc".to_owned(),
        }
    }

    /// A view by the user of these children, and its charge against a quota of `limit`.
    fn view(
        user: &str,
        children: std::ops::Range<usize>,
        limit: u32,
    ) -> (AuditEntry, Option<Charge>) {
        let mut e = entry(children.start);
        e.user_id = user.to_owned();
        e.child_ids = children.map(|i| format!("ch_{i}")).collect();
        let charge = Charge {
            principal: user.to_owned(),
            limit: Some(limit),
        };
        (e, Some(charge))
    }

    async fn charged(log: &AuditLog, (entry, charge): (AuditEntry, Option<Charge>)) -> Admission {
        log.append_charged(entry, charge).await.unwrap()
    }

    /// The outcomes of a user's records, oldest first.
    async fn outcomes(store: &Store, user: &str) -> Vec<(String, String)> {
        on_pool!(store, |pool| {
            sqlx::query_as("SELECT outcome, shown FROM audit_log WHERE user_id = $1 ORDER BY seq")
                .bind(user)
                .fetch_all(pool)
                .await
                .unwrap()
        })
    }

    async fn charges_are_decided_in_the_transaction_of_their_records(stores: &Stores) {
        let store = stores.fresh().await;
        let log = AuditLog::start(store.clone());
        assert_eq!(
            charged(&log, view("gp", 0..2, 3)).await,
            Admission::Admitted { distinct: 2 }
        );
        assert_eq!(
            charged(&log, view("gp", 1..3, 3)).await,
            Admission::Admitted { distinct: 3 }
        );
        let Admission::Refused { retry_after } = charged(&log, view("gp", 3..4, 3)).await else {
            panic!("a fourth child is over the quota of three");
        };
        assert!((3590..=3601).contains(&retry_after), "{retry_after}");
        assert_eq!(
            charged(&log, view("gp", 0..3, 3)).await,
            Admission::Admitted { distinct: 3 }
        );
        // The refusal is recorded as such, showing nothing; the children it named are not counted.
        let ok = ("ok".to_owned(), "identity".to_owned());
        let refused = ("rate_limited".to_owned(), String::new());
        assert_eq!(
            outcomes(&store, "gp").await,
            [ok.clone(), ok.clone(), refused.clone(), ok.clone()]
        );
        // A record without a charge is not held to the quota, and another user has a quota of their own.
        log.append(view("gp", 5..6, 3).0).await.unwrap();
        assert_eq!(
            charged(&log, view("sw", 3..4, 3)).await,
            Admission::Admitted { distinct: 1 }
        );
        // The count is the store's: a gateway started again over it (a writer of its own) holds the same.
        drop(log);
        let log = AuditLog::start(store.clone());
        assert!(matches!(
            charged(&log, view("gp", 4..5, 3)).await,
            Admission::Refused { .. }
        ));
        // Appends at once, one new child each, are decided in turn: exactly the quota is let through.
        let appends: Vec<_> = (10..30)
            .map(|i| charged(&log, view("hv", i..i + 1, 5)))
            .collect();
        let admitted = futures::future::join_all(appends)
            .await
            .into_iter()
            .filter(|a| a.is_admitted())
            .count();
        assert_eq!(admitted, 5);
        // An hour on, the user's children have left the window: three new ones fit, and what left the window is
        // removed (a writer's first commit prunes).
        tamper(
            &store,
            "UPDATE child_views SET first_at = first_at - 3600000 WHERE principal = 'gp'",
        )
        .await;
        drop(log);
        let log = AuditLog::start(store.clone());
        assert_eq!(
            charged(&log, view("gp", 40..43, 3)).await,
            Admission::Admitted { distinct: 3 }
        );
        let kept: Vec<String> = on_pool!(&store, |pool| {
            sqlx::query_scalar(
                "SELECT child_id FROM child_views WHERE principal = 'gp' ORDER BY child_id",
            )
            .fetch_all(pool)
            .await
            .unwrap()
        });
        assert_eq!(kept, ["ch_40", "ch_41", "ch_42"]);
        assert_eq!(verify(&store).await.unwrap().broken, None);
    }

    async fn charged_records_and_links_written_at_once_all_commit(stores: &Stores) {
        // A charged record's transaction reads the views before it writes; searches link records in transactions of
        // their own meanwhile. None of them may fail for the other's lock.
        let store = stores.fresh().await;
        let log = AuditLog::start(store.clone());
        let linker = store.clone();
        let linking = tokio::spawn(async move {
            for i in 0..400 {
                let record = childgraph_schema::RecordRef::new(
                    childgraph_schema::SourceName::Health,
                    format!("p{i}"),
                );
                linker
                    .link(&[vec![(record, 1.0)]], "test")
                    .await
                    .expect("the link is written");
            }
        });
        // One record at a time, each its own transaction, while the links go on.
        for i in 0..100 {
            assert!(
                charged(&log, view("gp", i..i + 1, 1000))
                    .await
                    .is_admitted()
            );
        }
        linking.await.expect("the links");
        assert_eq!(verify(&store).await.unwrap().broken, None);
    }

    async fn two_gateways_hold_one_quota_together(stores: &Stores) {
        // One user, their views alternating between two gateways over one database: the quota of ten holds across
        // both, not ten at each.
        let gateways = stores.gateways(2).await;
        let logs: Vec<AuditLog> = gateways.iter().cloned().map(AuditLog::start).collect();
        let appends: Vec<_> = (0..40)
            .map(|i| charged(&logs[i % 2], view("gp", i..i + 1, 10)))
            .collect();
        let admissions = futures::future::join_all(appends).await;
        let admitted = admissions.iter().filter(|a| a.is_admitted()).count();
        assert_eq!(admitted, 10, "{admissions:?}");
        let counted: i64 = on_pool!(&gateways[0], |pool| {
            sqlx::query_scalar("SELECT COUNT(*) FROM child_views WHERE principal = 'gp'")
                .fetch_one(pool)
                .await
                .unwrap()
        });
        assert_eq!(counted, 10);
        assert_eq!(verify(&gateways[1]).await.unwrap().broken, None);
    }

    /// Group commit: 300 records appended at once go down in far fewer transactions, each still durable before its
    /// append returns.
    async fn records_waiting_together_commit_together(stores: &Stores) {
        let store = stores.fresh().await;
        let log = AuditLog::start(store.clone());
        let writes: Vec<_> = (0..300).map(|i| log.append(entry(i))).collect();
        for result in futures::future::join_all(writes).await {
            result.unwrap();
        }
        let commits = log.commits();
        assert!(
            (1..=30).contains(&commits),
            "{commits} commits for 300 records"
        );
        assert_eq!(verify(&store).await.unwrap().records, 300);
        // One record alone is one commit.
        log.append(entry(300)).await.unwrap();
        assert_eq!(log.commits(), commits + 1);
    }

    /// A record handed over and asked about a second later: it was down long before, and the receipt says how soon
    /// after the hand-over, not how long the caller took to ask.
    async fn a_receipt_times_the_commit_not_the_callers_wait(stores: &Stores) {
        let store = stores.fresh().await;
        let log = AuditLog::start(store.clone());
        let receipt = log.submit_charged(entry(0), None).await.unwrap();
        let asked_after = std::time::Duration::from_secs(1);
        tokio::time::sleep(asked_after).await;
        let (outcome, took) = receipt.committed().await;
        assert!(outcome.unwrap().is_admitted());
        assert!(took < asked_after, "{took:?}");
        assert_eq!(for_child(&store, "ch_0").await.unwrap().len(), 1);
    }

    async fn store_with(stores: &Stores, n: usize) -> Store {
        let store = stores.fresh().await;
        let log = AuditLog::start(store.clone());
        let writes: Vec<_> = (0..n).map(|i| log.append(entry(i))).collect();
        for result in futures::future::join_all(writes).await {
            result.unwrap();
        }
        store
    }

    async fn tamper(store: &Store, sql: &str) {
        on_pool!(store, |pool| {
            sqlx::query(sql).execute(pool).await.unwrap();
        });
    }

    async fn concurrent_appends_make_one_whole_chain(stores: &Stores) {
        let store = store_with(stores, 300).await;
        let verified = verify(&store).await.unwrap();
        assert_eq!(
            verified,
            Verified {
                records: 300,
                broken: None,
                head: verify(&store).await.unwrap().head
            }
        );
        assert_eq!(verified.head.map(|h| h.seq), Some(300));
        let since = chrono::Utc::now() - chrono::Duration::minutes(5);
        let views = by_operation(&store, "view", since).await.unwrap();
        assert_eq!(views.len(), 300);
        assert!(
            views.windows(2).all(|w| w[0].seq > w[1].seq),
            "newest first"
        );
        assert!(
            by_operation(&store, "search", since)
                .await
                .unwrap()
                .is_empty()
        );
        let later = chrono::Utc::now() + chrono::Duration::minutes(5);
        assert!(
            by_operation(&store, "view", later)
                .await
                .unwrap()
                .is_empty()
        );
        let records = for_child(&store, "ch_7").await.unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].entry.child_ids, ["ch_7"]);
        assert!(for_child(&store, "ch_").await.unwrap().is_empty());
        // Wildcards in the id are taken literally.
        for wild in ["%", "ch%", "ch_%", "ch__", "_h_7"] {
            assert!(for_child(&store, wild).await.unwrap().is_empty(), "{wild}");
        }
    }

    async fn an_edited_record_is_found(stores: &Stores) {
        let store = store_with(stores, 10).await;
        tamper(
            &store,
            "UPDATE audit_log SET user_id = 'someone-else' WHERE seq = 4",
        )
        .await;
        let verified = verify(&store).await.unwrap();
        assert_eq!(
            verified.broken.as_ref().map(|b| b.0),
            Some(4),
            "{verified:?}"
        );
        assert!(verified.broken.unwrap().1.contains("edited"));
    }

    async fn a_deleted_record_is_found(stores: &Stores) {
        let store = store_with(stores, 10).await;
        tamper(&store, "DELETE FROM audit_log WHERE seq = 6").await;
        assert_eq!(verify(&store).await.unwrap().broken.map(|b| b.0), Some(7));
        // Renumbered to hide the gap, the chain still breaks.
        tamper(&store, "UPDATE audit_log SET seq = seq - 1 WHERE seq > 6").await;
        assert_eq!(verify(&store).await.unwrap().broken.map(|b| b.0), Some(6));
        // The last record removed leaves a whole chain but one short: `verify` reports the count for comparison
        // with the log's own counters.
        let store = store_with(stores, 3).await;
        let head = verify(&store).await.unwrap().head.expect("a head");
        assert_eq!(head.seq, 3);
        tamper(&store, "DELETE FROM audit_log WHERE seq = 3").await;
        assert_eq!(verify(&store).await.unwrap().records, 2);
        // Against the head noted before, the cut is found.
        let cut = verify_anchored(&store, Some(&head))
            .await
            .unwrap()
            .broken
            .unwrap();
        assert_eq!(cut.0, 3);
        assert!(cut.1.contains("cut from its end"), "{}", cut.1);
        // An anchor still in the chain holds; one whose hash the chain no longer has does not.
        let earlier = Anchor {
            seq: 2,
            hash: verify(&store).await.unwrap().head.unwrap().hash,
        };
        assert_eq!(
            verify_anchored(&store, Some(&earlier))
                .await
                .unwrap()
                .broken,
            None
        );
        let rewritten = Anchor {
            seq: 2,
            hash: "0".repeat(64),
        };
        let broken = verify_anchored(&store, Some(&rewritten))
            .await
            .unwrap()
            .broken
            .unwrap();
        assert_eq!(broken.0, 2);
        assert!(broken.1.contains("rewritten"), "{}", broken.1);
    }

    async fn a_swapped_pair_is_found(stores: &Stores) {
        let store = store_with(stores, 10).await;
        tamper(&store, "UPDATE audit_log SET seq = -1 WHERE seq = 3").await;
        tamper(&store, "UPDATE audit_log SET seq = 3 WHERE seq = 4").await;
        tamper(&store, "UPDATE audit_log SET seq = 4 WHERE seq = -1").await;
        assert_eq!(verify(&store).await.unwrap().broken.map(|b| b.0), Some(3));
    }

    async fn an_account_actions_subject_is_covered_by_the_hash(stores: &Stores) {
        let store = stores.fresh().await;
        let log = AuditLog::start(store.clone());
        for n in 0..4 {
            let mut e = entry(n);
            if n % 2 == 1 {
                e.operation = "account.revoke".to_owned();
                e.child_ids.clear();
                e.subject = Some(format!("user-{n}"));
            }
            log.append(e).await.unwrap();
        }
        assert_eq!(verify(&store).await.unwrap().broken, None);
        tamper(
            &store,
            "UPDATE audit_log SET subject = 'user-9' WHERE seq = 2",
        )
        .await;
        assert_eq!(verify(&store).await.unwrap().broken.map(|b| b.0), Some(2));
        // A subject added to a record that had none is an edit too.
        tamper(
            &store,
            "UPDATE audit_log SET subject = 'user-9' WHERE seq = 1",
        )
        .await;
        assert_eq!(verify(&store).await.unwrap().broken.map(|b| b.0), Some(1));
    }

    async fn two_gateways_appending_at_once_make_one_whole_chain(stores: &Stores) {
        // Two gateways over one database, each with its own writer, their appends interleaved: one chain, every
        // record in it once, its seq contiguous.
        let gateways = stores.gateways(2).await;
        let logs: Vec<AuditLog> = gateways.iter().cloned().map(AuditLog::start).collect();
        let writes: Vec<_> = (0..400).map(|i| logs[i % 2].append(entry(i))).collect();
        for result in futures::future::join_all(writes).await {
            result.unwrap();
        }
        for store in &gateways {
            assert_eq!(
                verify(store).await.unwrap(),
                Verified {
                    records: 400,
                    broken: None,
                    head: verify(store).await.unwrap().head
                }
            );
        }
        for i in [0, 1, 398, 399] {
            assert_eq!(
                for_child(&gateways[0], &format!("ch_{i}"))
                    .await
                    .unwrap()
                    .len(),
                1
            );
        }
    }
}
