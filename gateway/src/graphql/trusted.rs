//! Trusted documents: a registered list of operations, by the SHA-256 of their text. A client sends a document's id
//! (Apollo's `extensions.persistedQuery.sha256Hash`) instead of, or with, its text; in trusted mode only registered
//! operations run, for partner agencies' API clients or for everyone.
//!
//! The list is a JSON file: an Apollo persisted-query manifest (`{"format": "apollo-persisted-query-manifest",
//! "operations": [{"id", "body", ...}]}`) or a map of id to text (`{"<id>": "<text>"}`, as Relay writes). Each id is
//! the hex SHA-256 of its text, optionally prefixed `sha256:`, and is checked when the file is read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_graphql::Value;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Who may send only registered operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforce {
    /// Partner agencies' API clients; people's portals may send any text.
    Clients,
    Everyone,
}

#[derive(Debug, thiserror::Error)]
pub enum TrustedError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a persisted-query manifest or a map of id to text: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: document {id} is not the SHA-256 of its text")]
    WrongId { path: PathBuf, id: String },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum File {
    Manifest { operations: Vec<Operation> },
    Map(HashMap<String, String>),
}

#[derive(Deserialize)]
struct Operation {
    id: String,
    body: String,
}

/// Why a request's document was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An id the list does not hold (`BAD_REQUEST`).
    #[error("no registered document has this id")]
    UnknownId,
    /// A text sent with an id that is not that text's.
    #[error("the query text is not the document its id names")]
    Mismatch,
    /// Text that is not registered, in trusted mode (`FORBIDDEN`).
    #[error("only registered operations run for your account: send a registered document's id")]
    NotTrusted,
}

/// The registered documents, and who is held to them.
#[derive(Debug, Clone)]
pub struct TrustedDocuments {
    by_id: Arc<HashMap<String, String>>,
    enforce: Enforce,
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl TrustedDocuments {
    /// Reads and checks the list.
    pub fn load(path: &Path, enforce: Enforce) -> Result<Self, TrustedError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrustedError::Read {
            path: path.into(),
            source,
        })?;
        let file: File = serde_json::from_str(&text).map_err(|e| TrustedError::Format {
            path: path.into(),
            message: e.to_string(),
        })?;
        let pairs: Vec<(String, String)> = match file {
            File::Manifest { operations } => {
                operations.into_iter().map(|o| (o.id, o.body)).collect()
            }
            File::Map(map) => map.into_iter().collect(),
        };
        let mut by_id = HashMap::new();
        for (id, body) in pairs {
            let hex = id
                .strip_prefix("sha256:")
                .unwrap_or(&id)
                .to_ascii_lowercase();
            if hex != sha256_hex(&body) {
                return Err(TrustedError::WrongId {
                    path: path.into(),
                    id,
                });
            }
            by_id.insert(hex, body);
        }
        Ok(Self {
            by_id: Arc::new(by_id),
            enforce,
        })
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Puts the registered text in place of an id, and, in trusted mode for this principal, refuses text that is
    /// not registered.
    pub fn resolve(
        &self,
        request: &mut async_graphql::Request,
        is_client: bool,
    ) -> Result<(), Refusal> {
        let id = request
            .extensions
            .0
            .get("persistedQuery")
            .and_then(|p| match p {
                Value::Object(o) => o.get("sha256Hash"),
                _ => None,
            })
            .and_then(|h| match h {
                Value::String(s) => Some(s.to_ascii_lowercase()),
                _ => None,
            });
        if let Some(id) = id {
            let body = self.by_id.get(&id).ok_or(Refusal::UnknownId)?;
            if !request.query.is_empty() && request.query != *body {
                return Err(Refusal::Mismatch);
            }
            request.query = body.clone();
            return Ok(());
        }
        let enforced = match self.enforce {
            Enforce::Everyone => true,
            Enforce::Clients => is_client,
        };
        if enforced && !self.by_id.contains_key(&sha256_hex(&request.query)) {
            return Err(Refusal::NotTrusted);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEARCH: &str = "query($c: ChildSearchInput!) { searchChildren(criteria: $c, access: {purpose: SAFEGUARDING}) { tooManyResults } }";

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("documents.json");
        std::fs::write(&path, text).unwrap();
        path
    }

    fn with_id(id: &str, query: &str) -> async_graphql::Request {
        let mut request = async_graphql::Request::new(query);
        request.extensions.0.insert(
            "persistedQuery".into(),
            async_graphql::value!({ "version": 1, "sha256Hash": id }),
        );
        request
    }

    #[test]
    fn both_file_formats_load_and_a_wrong_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let id = sha256_hex(SEARCH);
        let manifest = serde_json::json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{ "id": id, "name": "Search", "type": "query", "body": SEARCH }],
        });
        let loaded = TrustedDocuments::load(&write(&dir, &manifest.to_string()), Enforce::Clients);
        assert_eq!(loaded.unwrap().len(), 1);
        let map = serde_json::json!({ format!("sha256:{id}"): SEARCH });
        let loaded = TrustedDocuments::load(&write(&dir, &map.to_string()), Enforce::Clients);
        assert_eq!(loaded.unwrap().len(), 1);
        let wrong = serde_json::json!({ "0000": SEARCH });
        assert!(matches!(
            TrustedDocuments::load(&write(&dir, &wrong.to_string()), Enforce::Clients),
            Err(TrustedError::WrongId { .. })
        ));
        assert!(matches!(
            TrustedDocuments::load(&write(&dir, "[1, 2]"), Enforce::Clients),
            Err(TrustedError::Format { .. })
        ));
    }

    #[test]
    fn an_id_stands_for_its_text_and_trusted_mode_refuses_other_text() {
        let dir = tempfile::tempdir().unwrap();
        let id = sha256_hex(SEARCH);
        let path = write(&dir, &serde_json::json!({ id.clone(): SEARCH }).to_string());
        let clients = TrustedDocuments::load(&path, Enforce::Clients).unwrap();

        let mut request = with_id(&id, "");
        assert_eq!(clients.resolve(&mut request, true), Ok(()));
        assert_eq!(request.query, SEARCH);
        // The registered text itself is accepted; the id with another text, or an unknown id, is not.
        assert_eq!(
            clients.resolve(&mut async_graphql::Request::new(SEARCH), true),
            Ok(())
        );
        assert_eq!(
            clients.resolve(&mut with_id(&id, "{ me { userId } }"), false),
            Err(Refusal::Mismatch)
        );
        assert_eq!(
            clients.resolve(&mut with_id(&sha256_hex("x"), ""), false),
            Err(Refusal::UnknownId)
        );
        // Any other text: refused for a client, accepted for a person unless everyone is held to the list.
        let other = "{ me { userId } }";
        assert_eq!(
            clients.resolve(&mut async_graphql::Request::new(other), true),
            Err(Refusal::NotTrusted)
        );
        assert_eq!(
            clients.resolve(&mut async_graphql::Request::new(other), false),
            Ok(())
        );
        let everyone = TrustedDocuments::load(&path, Enforce::Everyone).unwrap();
        assert_eq!(
            everyone.resolve(&mut async_graphql::Request::new(other), false),
            Err(Refusal::NotTrusted)
        );
    }
}
