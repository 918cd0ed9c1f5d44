//! `childgraph audit verify|sar`: reads the audit log from the store a config names, or the demo's data directory.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::StoreConfig;
use crate::store::Store;

/// Opens the store of a config file, or of a demo data directory.
pub async fn open(config: Option<&Path>, data_dir: Option<&Path>) -> anyhow::Result<Store> {
    let store = match (config, data_dir) {
        (Some(config), None) => crate::config::Config::load(config)?.store,
        (None, Some(dir)) => StoreConfig::Sqlite(dir.join(crate::demo::STORE_FILE)),
        _ => anyhow::bail!("give --config FILE or --data-dir DIR"),
    };
    if let StoreConfig::Sqlite(path) = &store
        && !path.exists()
    {
        anyhow::bail!("there is no store at {}", path.display());
    }
    Ok(Store::open(&store).await?)
}

/// `audit verify`: whether the chain is whole; the answer says so, and how many records it holds.
pub async fn verify(store: &Store) -> anyhow::Result<(bool, String)> {
    verify_anchored(store, None).await
}

/// `audit verify --anchor SEQ:HASH`: as [`verify`], and the chain must still hold the anchor's record. The answer
/// gives the head to keep as the next anchor.
pub async fn verify_anchored(
    store: &Store,
    anchor: Option<&crate::audit::Anchor>,
) -> anyhow::Result<(bool, String)> {
    let verified = crate::audit::verify_anchored(store, anchor).await?;
    Ok(match verified.broken {
        None => (
            true,
            format!(
                "the audit log is whole: {} records, each chained to the one before{}\nhead: {}\n",
                verified.records,
                if anchor.is_some() {
                    ", and the anchor's record among them"
                } else {
                    ""
                },
                verified
                    .head
                    .map_or_else(|| "none (the log is empty)".to_owned(), |h| h.to_string())
            ),
        ),
        Some((seq, why)) => (
            false,
            format!("the audit log is broken at record {seq}: {why}\n"),
        ),
    })
}

/// `audit sar --child ID`: who saw what about this child, when and why, one line per record.
pub async fn subject_access(store: &Store, child_id: &str) -> anyhow::Result<String> {
    let records = crate::audit::for_child(store, child_id).await?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "time\tuser\torganisation\troles\tclient\tpurpose\tjustification\toperation\tshown\twithheld\toutcome"
    );
    for r in &records {
        let e = &r.entry;
        let _ = writeln!(
            out,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            e.at.to_rfc3339(),
            e.user_id,
            e.organisation_id,
            e.roles.join(","),
            e.client.as_deref().unwrap_or(""),
            e.purpose,
            e.justification.as_deref().unwrap_or(""),
            e.operation,
            e.shown.join(","),
            e.withheld.join(","),
            e.outcome
        );
    }
    let _ = writeln!(out, "{} records", records.len());
    Ok(out)
}
