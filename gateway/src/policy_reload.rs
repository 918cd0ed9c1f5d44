//! The policy in force, and its reload: on a change to the file, or on SIGHUP.
//!
//! A request takes one snapshot of the policy when it starts and decides every field with it, so a reload never
//! splits one answer between two policies. A file that does not compile is refused: the last good policy stays in
//! force and the error, with file, line and column, goes to the log.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use childgraph_policies::Policy;
use sha2::{Digest, Sha256};

/// The policy in force, shared by every request.
#[derive(Debug)]
pub struct ActivePolicy {
    current: ArcSwap<Policy>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl ActivePolicy {
    pub fn new(policy: Policy, metrics: Arc<crate::metrics::Metrics>) -> Arc<Self> {
        metrics.policy_in_force(policy.hash());
        Arc::new(Self {
            current: ArcSwap::from_pointee(policy),
            metrics,
        })
    }

    /// The policy now in force: a request keeps this snapshot to its end.
    pub fn snapshot(&self) -> Arc<Policy> {
        self.current.load_full()
    }

    fn replace(&self, policy: Policy) {
        self.metrics.policy_in_force(policy.hash());
        self.current.store(Arc::new(policy));
    }
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    /// The file compiled and differs from the policy in force, which it now replaces.
    Replaced { hash: String },
    /// The file is the policy already in force.
    Unchanged,
}

/// Reads and compiles the file, and puts it in force if it compiles and differs. An error leaves the policy in force.
pub fn reload(active: &ActivePolicy, path: &Path) -> anyhow::Result<Reloaded> {
    let text =
        std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    let hash: String = Sha256::digest(&text)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if hash == active.snapshot().hash() {
        return Ok(Reloaded::Unchanged);
    }
    let text = String::from_utf8(text)
        .map_err(|_| anyhow::anyhow!("{}: the policy is not UTF-8 text", path.display()))?;
    let policy = Policy::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("{}", e.in_file(&path.display().to_string())))?;
    let hash = policy.hash().to_owned();
    active.replace(policy);
    Ok(Reloaded::Replaced { hash })
}

/// Reloads the file when it changes (looked at every `every`) and on SIGHUP, until `stop` completes. Polling the
/// content, not watching for events, also sees a Kubernetes ConfigMap's atomic symlink swap.
pub async fn watch(
    active: Arc<ActivePolicy>,
    path: PathBuf,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|e| tracing::error!(error = %e, "cannot listen for SIGHUP; the policy file is still watched"))
        .ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    // The last error reported, so that a broken file is logged once, not at every look.
    let mut reported: Option<String> = None;
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<()>();
        let asked = tokio::select! {
            () = &mut stop => return,
            _ = tick.tick() => false,
            () = hup => true,
        };
        match reload(&active, &path) {
            Ok(Reloaded::Replaced { hash }) => {
                reported = None;
                active.metrics.policy_reload("replaced");
                tracing::info!(policy_hash = %hash, "policy reloaded");
            }
            Ok(Reloaded::Unchanged) => {
                reported = None;
                if asked {
                    tracing::info!("policy unchanged on SIGHUP");
                }
            }
            Err(e) => {
                let message = e.to_string();
                if asked || reported.as_deref() != Some(message.as_str()) {
                    active.metrics.policy_reload("refused");
                    tracing::error!(error = %message, in_force = %active.snapshot().hash(), "policy reload refused; the last good policy stays in force");
                }
                reported = Some(message);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use childgraph_policies::DEFAULT_POLICY;

    #[cfg(unix)]
    #[tokio::test]
    async fn sighup_reloads_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, DEFAULT_POLICY).unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let active = ActivePolicy::new(Policy::default_policy(), metrics);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        // Looked at once on start, then not for an hour: only the signal can reload it in time.
        let watcher = tokio::spawn(watch(
            active.clone(),
            path.clone(),
            Duration::from_secs(3600),
            async {
                let _ = stopped.await;
            },
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let changed = DEFAULT_POLICY.replace("until_age: 18", "until_age: 17");
        std::fs::write(&path, &changed).unwrap();
        let before = active.snapshot().hash().to_owned();
        let status = std::process::Command::new("kill")
            .args(["-HUP", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let mut reloaded = false;
        for _ in 0..100 {
            if active.snapshot().hash() != before {
                reloaded = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(reloaded, "SIGHUP put the changed file in force");
        assert_eq!(active.snapshot().age_limit().until, 17);
        let _ = stop.send(());
        watcher.await.unwrap();
    }

    #[test]
    fn a_good_file_replaces_the_policy_and_a_bad_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, DEFAULT_POLICY).unwrap();
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let active = ActivePolicy::new(Policy::default_policy(), metrics.clone());
        assert_eq!(reload(&active, &path).unwrap(), Reloaded::Unchanged);

        let stricter = DEFAULT_POLICY.replace(
            "    sees: [identity, identifiers, carers, contact, services, participation, flags]\n    scope: own-organisation",
            "    sees: [identity]\n    scope: own-organisation",
        );
        assert_ne!(stricter, DEFAULT_POLICY);
        std::fs::write(&path, &stricter).unwrap();
        let before = active.snapshot();
        let Reloaded::Replaced { hash } = reload(&active, &path).unwrap() else {
            panic!("a changed file is put in force");
        };
        assert_eq!(active.snapshot().hash(), hash);
        assert_ne!(before.hash(), hash);
        assert!(
            metrics
                .render()
                .contains(&format!("childgraph_policy_info{{hash=\"{hash}\"}} 1"))
        );
        assert!(
            !metrics.render().contains(before.hash()),
            "only the policy in force is 1"
        );
        // A snapshot taken before the reload still decides as it did.
        let teacher = before.grant(["teacher"]);
        assert!(
            before
                .decide(
                    teacher,
                    Default::default(),
                    childgraph_schema::Field::ChildCarers
                )
                .is_visible()
        );
        let now = active.snapshot();
        assert!(
            !now.decide(
                now.grant(["teacher"]),
                Default::default(),
                childgraph_schema::Field::ChildCarers
            )
            .is_visible()
        );

        let broken = stricter.replace("sees: [identity]\n", "sees: [identity, secrets]\n");
        std::fs::write(&path, &broken).unwrap();
        let error = reload(&active, &path).unwrap_err().to_string();
        // The error points at the unknown name: file, line and column.
        let places: Vec<String> = broken
            .lines()
            .enumerate()
            .filter_map(|(i, line)| {
                let column = line.find("secrets")? + 1;
                Some(format!("{}:{}:{column}: ", path.display(), i + 1))
            })
            .collect();
        assert!(!places.is_empty());
        assert!(
            places.iter().any(|place| error.starts_with(place)),
            "{error} names none of {places:?}"
        );
        assert!(error.contains("secrets"), "{error}");
        assert_eq!(
            active.snapshot().hash(),
            hash,
            "the last good policy stays in force"
        );
    }
}
