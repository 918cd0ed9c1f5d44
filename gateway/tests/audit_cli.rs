//! `childgraph audit verify` as an operator runs it, against a SQLite store file tampered with directly.

use std::process::Command;

use childgraph::audit::{AuditEntry, AuditLog};
use childgraph::store::Store;

fn entry(n: usize) -> AuditEntry {
    AuditEntry {
        organisation_id: "org-1".to_owned(),
        roles: vec!["gp".to_owned()],
        child_ids: vec![format!("ch_{n}")],
        shown: vec!["identity".to_owned()],
        ..AuditEntry::outside_a_request(
            format!("req-{n}"),
            "gp".to_owned(),
            "SAFEGUARDING",
            "view",
            "ok",
            &"0".repeat(64),
        )
    }
}

/// Runs `audit verify` on the store in `dir`; its exit status and output.
fn verify(dir: &std::path::Path, anchor: Option<&str>) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_childgraph"));
    command.args(["audit", "verify", "--data-dir"]).arg(dir);
    if let Some(anchor) = anchor {
        command.args(["--anchor", anchor]);
    }
    let output = command.output().expect("childgraph runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

async fn sql(path: &std::path::Path, statement: &str) {
    let url = format!("sqlite://{}", path.display());
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("open the file");
    sqlx::query(statement)
        .execute(&mut db)
        .await
        .expect("tamper");
}

#[tokio::test]
async fn verify_exits_non_zero_on_an_edited_file_and_finds_a_cut_end_against_an_anchor() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(childgraph::demo::STORE_FILE);
    let store = Store::open_sqlite(&path).await.expect("store");
    let log = AuditLog::start(store.clone());
    for n in 0..6 {
        log.append(entry(n)).await.expect("append");
    }
    drop(log);
    drop(store);

    let (whole, text) = verify(dir.path(), None);
    assert!(whole, "{text}");
    let head = text
        .lines()
        .find_map(|l| l.strip_prefix("head: "))
        .unwrap_or_else(|| panic!("no head in {text}"))
        .to_owned();
    assert!(head.starts_with("6:"), "{head}");

    // The last record cut off: the chain is whole, but not against the head noted before.
    sql(&path, "DELETE FROM audit_log WHERE seq = 6").await;
    let (whole, text) = verify(dir.path(), None);
    assert!(whole, "{text}");
    let (whole, text) = verify(dir.path(), Some(&head));
    assert!(!whole, "{text}");
    assert!(text.contains("cut from its end"), "{text}");

    // An edited record breaks the chain, anchor or none.
    sql(
        &path,
        "UPDATE audit_log SET user_id = 'someone-else' WHERE seq = 2",
    )
    .await;
    let (whole, text) = verify(dir.path(), None);
    assert!(!whole, "{text}");
    assert!(text.contains("broken at record 2"), "{text}");

    // A malformed anchor is refused, naming the form it takes.
    let (whole, text) = verify(dir.path(), Some("6"));
    assert!(!whole, "{text}");
    assert!(text.contains("SEQ:HASH"), "{text}");
}
