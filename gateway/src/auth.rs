//! Authentication: a bearer JWT, checked against the trusted issuers' keys, then the account store.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{AuthConfig, KeyAlgorithm};
use crate::store::{Account, Store};

/// Why a request was not let in. Messages are for the client: they say what to fix and reveal nothing else.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the bearer token is not valid")]
    Invalid,
    #[error("the bearer token has expired")]
    Expired,
    #[error(
        "multi-factor authentication is required: the token's amr claim names none of the accepted methods"
    )]
    NoMfa,
    #[error("there is no active authorisation for this user")]
    NoAccount,
    #[error("the account store is unavailable")]
    Store,
}

impl AuthError {
    /// The `extensions.code` of the error.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Invalid | AuthError::Expired => "UNAUTHENTICATED",
            AuthError::NoMfa | AuthError::NoAccount => "FORBIDDEN",
            AuthError::Store => "INTERNAL",
        }
    }
}

/// A key trusted to sign tokens for one issuer.
struct TrustedKey {
    algorithm: Algorithm,
    key: DecodingKey,
    issuer: usize,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKey")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .finish()
    }
}

#[derive(Debug)]
struct Issuer {
    issuer: String,
    audience: String,
    required_amr: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    amr: Vec<String>,
}

/// Checks bearer tokens and finds the account behind them.
#[derive(Debug)]
pub struct Authenticator {
    issuers: Vec<Issuer>,
    /// Keys by `kid`. A token names its key; the key names its issuer and algorithm, never the token's header.
    keys: HashMap<String, TrustedKey>,
    leeway: u64,
    store: Store,
}

/// A key to trust, already loaded.
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub kid: String,
    pub algorithm: KeyAlgorithm,
    /// The public key, PEM encoded.
    pub pem: Vec<u8>,
}

/// An issuer to trust, with its keys loaded.
#[derive(Debug, Clone)]
pub struct IssuerSpec {
    pub issuer: String,
    pub audience: String,
    pub required_amr: Vec<String>,
    pub keys: Vec<KeySpec>,
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("key {kid} is not a valid {algorithm:?} public key in PEM form")]
    Parse {
        kid: String,
        algorithm: KeyAlgorithm,
    },
    #[error("key id {0} is used twice")]
    DuplicateKid(String),
}

impl Authenticator {
    pub fn new(issuers: Vec<IssuerSpec>, leeway: u64, store: Store) -> Result<Self, KeyError> {
        let mut keys = HashMap::new();
        let mut list = Vec::new();
        for (index, spec) in issuers.into_iter().enumerate() {
            for key in spec.keys {
                let parse_error = || KeyError::Parse {
                    kid: key.kid.clone(),
                    algorithm: key.algorithm,
                };
                let (algorithm, decoding) = match key.algorithm {
                    KeyAlgorithm::RS256 => (Algorithm::RS256, DecodingKey::from_rsa_pem(&key.pem)),
                    KeyAlgorithm::ES256 => (Algorithm::ES256, DecodingKey::from_ec_pem(&key.pem)),
                    KeyAlgorithm::EdDSA => (Algorithm::EdDSA, DecodingKey::from_ed_pem(&key.pem)),
                };
                let decoding = decoding.map_err(|_| parse_error())?;
                if keys
                    .insert(
                        key.kid.clone(),
                        TrustedKey {
                            algorithm,
                            key: decoding,
                            issuer: index,
                        },
                    )
                    .is_some()
                {
                    return Err(KeyError::DuplicateKid(key.kid));
                }
            }
            list.push(Issuer {
                issuer: spec.issuer,
                audience: spec.audience,
                required_amr: spec.required_amr,
            });
        }
        Ok(Self {
            issuers: list,
            keys,
            leeway,
            store,
        })
    }
}

/// Loads the issuers and keys a config file names.
pub fn load_issuers(config: &AuthConfig) -> Result<Vec<IssuerSpec>, KeyError> {
    let mut issuers = Vec::new();
    for issuer in &config.issuers {
        let mut keys = Vec::new();
        for key in &issuer.keys {
            let pem = std::fs::read(&key.public_key_file).map_err(|source| KeyError::Read {
                path: key.public_key_file.clone(),
                source,
            })?;
            keys.push(KeySpec {
                kid: key.kid.clone(),
                algorithm: key.algorithm,
                pem,
            });
        }
        issuers.push(IssuerSpec {
            issuer: issuer.issuer.clone(),
            audience: issuer.audience.clone(),
            required_amr: issuer.required_amr.clone(),
            keys,
        });
    }
    Ok(issuers)
}

impl Authenticator {
    /// Checks the `Authorization` header's value and returns the account of the user it names.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Account, AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        // An unknown or unsupported `alg` (including `none` and HS*) fails here or at the algorithm check below.
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        let trusted = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(AuthError::Invalid)?;
        if header.alg != trusted.algorithm {
            return Err(AuthError::Invalid);
        }
        let issuer = &self.issuers[trusted.issuer];
        let mut validation = Validation::new(trusted.algorithm);
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_audience(&[&issuer.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway;
        let data = jsonwebtoken::decode::<Claims>(token, &trusted.key, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid,
            },
        )?;
        let claims = data.claims;
        if !claims.amr.iter().any(|m| issuer.required_amr.contains(m)) {
            return Err(AuthError::NoMfa);
        }
        let account = self.store.account(&claims.sub).await.map_err(|e| {
            tracing::error!(error = %e, "account lookup failed");
            AuthError::Store
        })?;
        match account {
            Some(account) if account.active => Ok(account),
            _ => Err(AuthError::NoAccount),
        }
    }
}
