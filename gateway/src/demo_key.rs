//! The demo's own signing key: an Ed25519 key in a PKCS#8 PEM file in the data directory, created on first run.
//!
//! Tokens it signs carry the demo issuer, which only `demo` trusts; `serve` refuses to.

use std::path::{Path, PathBuf};

use chrono::Utc;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::auth::{IssuerSpec, KeySpec};
use crate::config::{DEMO_ISSUER, KeyAlgorithm};

pub const KEY_FILE: &str = "demo-signing-key.pem";
pub const DEMO_AUDIENCE: &str = "childgraph";
const KID: &str = "childgraph-demo";
/// Demo tokens last a working day.
const TOKEN_HOURS: i64 = 8;

#[derive(Debug, thiserror::Error)]
pub enum DemoKeyError {
    #[error("no demo key in {0}: run `childgraph demo` first, or pass the demo's --data-dir")]
    Missing(PathBuf),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not an Ed25519 PKCS#8 key")]
    Invalid(PathBuf),
    #[error("cannot sign a token: {0}")]
    Sign(String),
}

/// The demo signing key.
pub struct DemoKey {
    signing: SigningKey,
}

impl std::fmt::Debug for DemoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DemoKey")
    }
}

#[derive(Serialize)]
struct DemoClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    amr: [&'a str; 3],
}

/// A client-credentials token's claims (RFC 9068): `client_id` is `sub`, no `amr`, and the scopes granted.
#[derive(Serialize)]
struct ClientClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    client_id: &'a str,
    scope: String,
    iat: i64,
    nbf: i64,
    exp: i64,
}

impl DemoKey {
    /// Reads the key from the data directory, creating it if it is not there.
    pub fn load_or_create(dir: &Path) -> Result<Self, DemoKeyError> {
        let path = dir.join(KEY_FILE);
        if path.exists() {
            return Self::load(dir);
        }
        let signing = SigningKey::generate(&mut rand::rngs::OsRng);
        let pem = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| DemoKeyError::Invalid(path.clone()))?;
        write_private(&path, pem.as_bytes())
            .map_err(|source| DemoKeyError::Write { path, source })?;
        Ok(Self { signing })
    }

    /// Reads the key from the data directory.
    pub fn load(dir: &Path) -> Result<Self, DemoKeyError> {
        let path = dir.join(KEY_FILE);
        if !path.exists() {
            return Err(DemoKeyError::Missing(dir.to_owned()));
        }
        let pem = std::fs::read_to_string(&path).map_err(|source| DemoKeyError::Read {
            path: path.clone(),
            source,
        })?;
        let signing = SigningKey::from_pkcs8_pem(&pem).map_err(|_| DemoKeyError::Invalid(path))?;
        Ok(Self { signing })
    }

    fn sign(&self, claims: &impl Serialize) -> Result<String, DemoKeyError> {
        let pem = self
            .signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| DemoKeyError::Sign(e.to_string()))?;
        let key = EncodingKey::from_ed_pem(pem.as_bytes())
            .map_err(|e| DemoKeyError::Sign(e.to_string()))?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(KID.to_owned());
        jsonwebtoken::encode(&header, claims, &key).map_err(|e| DemoKeyError::Sign(e.to_string()))
    }

    /// A client-credentials token for an API client, granted these scopes (`search`, `view`, `flag`, `disclosure`).
    pub fn client_token(&self, client: &str, scopes: &[&str]) -> Result<String, DemoKeyError> {
        let now = Utc::now().timestamp();
        self.sign(&ClientClaims {
            iss: DEMO_ISSUER,
            aud: DEMO_AUDIENCE,
            sub: client,
            client_id: client,
            scope: scopes.join(" "),
            iat: now,
            nbf: now,
            exp: now + TOKEN_HOURS * 3600,
        })
    }

    /// A token for a demo user, with the claims real tokens must carry.
    pub fn token(&self, user: &str) -> Result<String, DemoKeyError> {
        let now = Utc::now().timestamp();
        let claims = DemoClaims {
            iss: DEMO_ISSUER,
            aud: DEMO_AUDIENCE,
            sub: user,
            iat: now,
            nbf: now,
            exp: now + TOKEN_HOURS * 3600,
            amr: ["pwd", "otp", "mfa"],
        };
        self.sign(&claims)
    }

    /// The issuer that trusts this key: the demo's, and only the demo's.
    pub fn issuer(&self) -> IssuerSpec {
        let pem = self
            .signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default();
        IssuerSpec {
            issuer: DEMO_ISSUER.to_owned(),
            audience: DEMO_AUDIENCE.to_owned(),
            required_amr: vec!["mfa".to_owned()],
            // The demo shows partner agencies' API clients too.
            client_credentials: true,
            keys: vec![KeySpec {
                kid: KID.to_owned(),
                algorithm: KeyAlgorithm::EdDSA,
                pem: pem.into_bytes(),
            }],
            jwks: None,
        }
    }
}

/// Writes a secret file readable by its owner only.
fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(contents)
}
