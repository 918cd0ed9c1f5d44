//! Authentication: a bearer JWT, checked against the trusted issuers' keys, then the account store.

use std::collections::HashMap;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{AuthConfig, KeyAlgorithm};
use crate::store::{Account, Standing, Store};

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
    #[error(
        "your authorisation has lapsed: your clearance has expired; an authoriser of your organisation can recertify you"
    )]
    ClearanceExpired,
    #[error(
        "your authorisation has lapsed: it was not recertified in time; an authoriser of your organisation can recertify you"
    )]
    RecertificationMissed,
    #[error("the account store is unavailable")]
    Store,
}

impl AuthError {
    /// The `extensions.code` of the error.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Invalid | AuthError::Expired => "UNAUTHENTICATED",
            AuthError::NoMfa
            | AuthError::NoAccount
            | AuthError::ClearanceExpired
            | AuthError::RecertificationMissed => "FORBIDDEN",
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
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
}

/// What a token that passed every check proved: whose it is and when it is valid.
#[derive(Debug, Clone)]
struct Verified {
    sub: String,
    exp: u64,
    nbf: Option<u64>,
}

/// Checks bearer tokens and finds the account behind them.
#[derive(Debug)]
pub struct Authenticator {
    issuers: Vec<Issuer>,
    /// Keys by `kid`. A token names its key; the key names its issuer and algorithm, never the token's header.
    keys: HashMap<String, TrustedKey>,
    leeway: u64,
    store: Store,
    /// Active accounts read recently, by user id; none when accounts are read on every request.
    accounts: Option<moka::future::Cache<String, Account>>,
    /// Tokens that passed every check, by the SHA-256 of the token, so that a client's next request with the same
    /// token skips the signature check. Its time limits are checked again on every use.
    verified: Option<moka::sync::Cache<[u8; 32], Verified>>,
}

/// How long a verified token is kept. Keys are fixed for the life of the process, so only the token's own time limits,
/// checked on every use, can end its validity sooner.
const VERIFIED_TOKEN_TTL: std::time::Duration = std::time::Duration::from_secs(60);

/// The most accounts kept between reads of the store.
const MAX_KEPT_ACCOUNTS: u64 = 10_000;

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
            accounts: None,
            verified: None,
        })
    }

    /// Keeps each active account for up to `ttl` after reading it, so that a user's requests do not each read the
    /// store. A revoked or changed account then takes effect within `ttl`. Zero reads the store on every request.
    pub fn with_account_cache(mut self, ttl: std::time::Duration) -> Self {
        self.accounts = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(MAX_KEPT_ACCOUNTS)
                .time_to_live(ttl)
                .build()
        });
        self.verified = (!ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(MAX_KEPT_ACCOUNTS)
                .time_to_live(VERIFIED_TOKEN_TTL)
                .build()
        });
        self
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
        let digest: [u8; 32] = {
            use sha2::Digest as _;
            sha2::Sha256::digest(token.as_bytes()).into()
        };
        if let Some(seen) = self.verified.as_ref().and_then(|v| v.get(&digest)) {
            let now = jsonwebtoken::get_current_timestamp();
            if now > seen.exp.saturating_add(self.leeway) {
                return Err(AuthError::Expired);
            }
            if seen
                .nbf
                .is_none_or(|nbf| nbf <= now.saturating_add(self.leeway))
            {
                return self.active_account(seen.sub).await;
            }
        }
        let verified = self.verify(token)?;
        if let Some(cache) = &self.verified {
            cache.insert(digest, verified.clone());
        }
        self.active_account(verified.sub).await
    }

    /// Checks a token's signature, issuer, audience, time limits and MFA.
    fn verify(&self, token: &str) -> Result<Verified, AuthError> {
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
        Ok(Verified {
            sub: claims.sub,
            exp: claims.exp,
            nbf: claims.nbf,
        })
    }

    /// The active account of this user, from the accounts kept or from the store. Only active accounts are kept.
    async fn active_account(&self, user_id: String) -> Result<Account, AuthError> {
        let read = async {
            match self.store.account(&user_id).await {
                Ok(Some(account)) => standing(account),
                Ok(None) => Err(AuthError::NoAccount),
                Err(e) => {
                    tracing::error!(error = %e, "account lookup failed");
                    Err(AuthError::Store)
                }
            }
        };
        let Some(accounts) = &self.accounts else {
            return read.await;
        };
        let account = accounts
            .try_get_with(user_id.clone(), read)
            .await
            .map_err(|e| match *e {
                AuthError::Store => AuthError::Store,
                AuthError::ClearanceExpired => AuthError::ClearanceExpired,
                AuthError::RecertificationMissed => AuthError::RecertificationMissed,
                _ => AuthError::NoAccount,
            })?;
        // A kept account may have lapsed since it was read.
        standing(account)
    }

    /// Drops a kept account at once, so a revoked or changed account takes effect on this gateway's next request.
    pub async fn forget(&self, user_id: &str) {
        if let Some(accounts) = &self.accounts {
            accounts.invalidate(user_id).await;
        }
    }
}

/// The account, if its standing lets its user in now.
fn standing(account: Account) -> Result<Account, AuthError> {
    match account.standing(chrono::Utc::now()) {
        Standing::Active => Ok(account),
        Standing::Revoked => Err(AuthError::NoAccount),
        Standing::ClearanceExpired => Err(AuthError::ClearanceExpired),
        Standing::RecertificationMissed => Err(AuthError::RecertificationMissed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo_key::DemoKey;
    use crate::store::OrganisationRecord;

    async fn setup() -> (tempfile::TempDir, DemoKey, Authenticator) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open_sqlite(&dir.path().join("auth.db"))
            .await
            .expect("store");
        store
            .upsert_account(&Account {
                user_id: "teacher".into(),
                display_name: "Priya Shah".into(),
                organisation: OrganisationRecord {
                    id: "org".into(),
                    name: "School".into(),
                    source: None,
                },
                roles: vec!["teacher".into()],
                phone: None,
                email: None,
                active: true,
                authorisation: crate::store::Authorisation::seeded("authoriser"),
                client: None,
            })
            .await
            .expect("account");
        let key = DemoKey::load_or_create(dir.path()).expect("key");
        let auth = Authenticator::new(vec![key.issuer()], 30, store).expect("authenticator");
        (dir, key, auth)
    }

    fn b64(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn header(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[tokio::test]
    async fn a_valid_token_finds_its_account() {
        let (_dir, key, auth) = setup().await;
        let token = key.token("teacher").expect("token");
        assert_eq!(
            auth.authenticate(Some(&header(&token)))
                .await
                .expect("valid")
                .user_id,
            "teacher"
        );
        assert!(matches!(
            auth.authenticate(Some(&header(&key.token("nobody").expect("token"))))
                .await,
            Err(AuthError::NoAccount)
        ));
        assert!(matches!(
            auth.authenticate(None).await,
            Err(AuthError::Missing)
        ));
    }

    #[tokio::test]
    async fn a_deactivated_account_is_refused_at_once_without_a_cache_and_within_its_ttl_with_one()
    {
        let (_dir, key, auth) = setup().await;
        let store = auth.store.clone();
        let auth = auth.with_account_cache(std::time::Duration::from_secs(3600));
        let uncached = Authenticator::new(vec![key.issuer()], 30, store.clone())
            .expect("authenticator")
            .with_account_cache(std::time::Duration::ZERO);
        let token = header(&key.token("teacher").expect("token"));
        assert!(auth.authenticate(Some(&token)).await.is_ok());
        assert!(uncached.authenticate(Some(&token)).await.is_ok());

        let mut account = store
            .account("teacher")
            .await
            .expect("read")
            .expect("found");
        account.active = false;
        store.upsert_account(&account).await.expect("deactivate");
        assert!(matches!(
            uncached.authenticate(Some(&token)).await,
            Err(AuthError::NoAccount)
        ));
        // Kept for its TTL, as documented; an account never seen active is never kept.
        assert!(auth.authenticate(Some(&token)).await.is_ok());
        auth.accounts.as_ref().expect("a cache").invalidate_all();
        assert!(matches!(
            auth.authenticate(Some(&token)).await,
            Err(AuthError::NoAccount)
        ));
        assert!(matches!(
            auth.authenticate(Some(&token)).await,
            Err(AuthError::NoAccount)
        ));
    }

    #[tokio::test]
    async fn alg_none_and_hmac_with_the_public_key_are_refused() {
        let (_dir, key, auth) = setup().await;
        let token = key.token("teacher").expect("token");
        let payload = token.split('.').nth(1).expect("payload");
        let none = format!(
            "{}.{payload}.",
            b64(br#"{"alg":"none","kid":"childgraph-demo"}"#)
        );
        assert!(matches!(
            auth.authenticate(Some(&header(&none))).await,
            Err(AuthError::Invalid)
        ));

        // An HS256 token whose secret is the public key: the classic confusion attack.
        let public = key.issuer().keys[0].pem.clone();
        let mut h = jsonwebtoken::Header::new(Algorithm::HS256);
        h.kid = Some("childgraph-demo".into());
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                payload,
            )
            .expect("base64"),
        )
        .expect("claims");
        let forged = jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(&public),
        )
        .expect("encode");
        assert!(matches!(
            auth.authenticate(Some(&header(&forged))).await,
            Err(AuthError::Invalid)
        ));
    }

    #[tokio::test]
    async fn a_verified_token_kept_between_requests_still_expires_on_time() {
        let (dir, key, _) = setup().await;
        let store = Store::open_sqlite(&dir.path().join("auth.db"))
            .await
            .expect("store");
        let auth = Authenticator::new(vec![key.issuer()], 0, store)
            .expect("authenticator")
            .with_account_cache(std::time::Duration::from_secs(60));
        let pem = std::fs::read(dir.path().join(crate::demo_key::KEY_FILE)).expect("key file");
        let encoding = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("key");
        let mut h = jsonwebtoken::Header::new(Algorithm::EdDSA);
        h.kid = Some("childgraph-demo".into());
        let now = chrono::Utc::now().timestamp();
        let claims = serde_json::json!({ "iss": crate::config::DEMO_ISSUER, "aud": "childgraph", "sub": "teacher",
            "exp": now + 2, "amr": ["mfa"] });
        let token = jsonwebtoken::encode(&h, &claims, &encoding).expect("encode");
        for _ in 0..2 {
            let account = auth
                .authenticate(Some(&header(&token)))
                .await
                .expect("valid");
            assert_eq!(account.user_id, "teacher");
        }
        // A token that differs in one character is checked afresh, not taken from the kept ones.
        let at = token.rfind('.').expect("signed") + 1;
        let flipped = if token[at..].starts_with('A') {
            "B"
        } else {
            "A"
        };
        let tampered = format!("{}{flipped}{}", &token[..at], &token[at + 1..]);
        assert!(matches!(
            auth.authenticate(Some(&header(&tampered))).await,
            Err(AuthError::Invalid)
        ));
        tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
        assert!(matches!(
            auth.authenticate(Some(&header(&token))).await,
            Err(AuthError::Expired)
        ));
    }

    #[tokio::test]
    async fn a_token_without_mfa_is_forbidden_and_an_expired_one_unauthenticated() {
        let (dir, _key, auth) = setup().await;
        let pem = std::fs::read(dir.path().join(crate::demo_key::KEY_FILE)).expect("key file");
        let encoding = jsonwebtoken::EncodingKey::from_ed_pem(&pem).expect("key");
        let mut h = jsonwebtoken::Header::new(Algorithm::EdDSA);
        h.kid = Some("childgraph-demo".into());
        let now = chrono::Utc::now().timestamp();
        let claims = |amr: &[&str], exp: i64| serde_json::json!({ "iss": crate::config::DEMO_ISSUER, "aud": "childgraph", "sub": "teacher", "exp": exp, "nbf": now - 10, "amr": amr });
        let no_mfa =
            jsonwebtoken::encode(&h, &claims(&["pwd"], now + 600), &encoding).expect("encode");
        assert!(matches!(
            auth.authenticate(Some(&header(&no_mfa))).await,
            Err(AuthError::NoMfa)
        ));
        let expired =
            jsonwebtoken::encode(&h, &claims(&["mfa"], now - 3600), &encoding).expect("encode");
        assert!(matches!(
            auth.authenticate(Some(&header(&expired))).await,
            Err(AuthError::Expired)
        ));
        let mut wrong_audience = claims(&["mfa"], now + 600);
        wrong_audience["aud"] = "someone-else".into();
        let token = jsonwebtoken::encode(&h, &wrong_audience, &encoding).expect("encode");
        assert!(matches!(
            auth.authenticate(Some(&header(&token))).await,
            Err(AuthError::Invalid)
        ));
    }
}
