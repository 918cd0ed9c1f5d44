//! Authentication: a bearer JWT, checked against the trusted issuers' keys, then the account store.
//!
//! An issuer's keys are static (PEM files named in the config), fetched from its JWKS endpoint (`jwks`), or both.
//! Key ids are unique only within an issuer: a token's key is looked up among the keys of the issuer its (not yet
//! verified) `iss` claim names; the signature and the `iss` check then confirm both.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::{AuthConfig, KeyAlgorithm};
use crate::jwks::{Jwks, JwksSpec};
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
    #[error("a client-credentials token names an API client's account; this account is a person's")]
    NotAClient,
    #[error("this account is an API client's: it signs in with a client-credentials token")]
    AClient,
    #[error("the account store is unavailable")]
    Store,
}

/// A refused sign-in, with the user the token names when its signature, issuer, audience and time limits held: a
/// refusal of a known user (no MFA, no active authorisation, the wrong kind of account) is theirs to answer for in
/// the audit log. A token that failed those checks names nobody.
#[derive(Debug)]
pub struct Refused {
    pub error: AuthError,
    pub user_id: Option<String>,
}

impl Refused {
    fn anonymous(error: AuthError) -> Self {
        Refused {
            error,
            user_id: None,
        }
    }

    fn of(user_id: &str) -> impl FnOnce(AuthError) -> Self + '_ {
        move |error| Refused {
            error,
            user_id: Some(user_id.to_owned()),
        }
    }
}

impl AuthError {
    /// The `extensions.code` of the error.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing | AuthError::Invalid | AuthError::Expired => "UNAUTHENTICATED",
            AuthError::NoMfa
            | AuthError::NoAccount
            | AuthError::ClearanceExpired
            | AuthError::RecertificationMissed
            | AuthError::NotAClient
            | AuthError::AClient => "FORBIDDEN",
            AuthError::Store => "INTERNAL",
        }
    }
}

/// A key trusted to sign tokens for one issuer. Its algorithm is the key's, never the token header's.
pub(crate) struct TrustedKey {
    pub(crate) kid: String,
    pub(crate) algorithm: Algorithm,
    pub(crate) key: DecodingKey,
    /// The JWK it was read from, for a fetched key: a refetch that finds it unchanged keeps it.
    pub(crate) jwk: Option<jsonwebtoken::jwk::Jwk>,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Issuer {
    issuer: String,
    audience: String,
    required_amr: Vec<String>,
    client_credentials: bool,
    /// Static keys by `kid`; they win over a fetched key with the same id.
    keys: HashMap<String, Arc<TrustedKey>>,
    /// The keys fetched from the issuer's JWKS endpoint, if it has one.
    jwks: Option<Arc<Jwks>>,
}

/// The `iss` claim of a token not yet verified: it says only where to look for the key.
#[derive(Deserialize)]
struct UnverifiedIssuer {
    iss: String,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    amr: Vec<String>,
    /// RFC 9068: the client the token was issued to; equal to `sub` for a client-credentials token.
    #[serde(default)]
    client_id: Option<String>,
    /// RFC 8693 / 9068: the scopes granted, space-separated.
    #[serde(default)]
    scope: Option<String>,
    exp: u64,
    #[serde(default)]
    nbf: Option<u64>,
}

/// What a token that passed every check proved: whose it is and when it is valid, and the key that verified it.
#[derive(Debug, Clone)]
struct Verified {
    /// Whether a person's token shows MFA (a client's needs none).
    mfa: bool,
    sub: String,
    /// For a client-credentials token: the scopes it was granted (`None` when it names none).
    client: Option<Option<Vec<String>>>,
    exp: u64,
    nbf: Option<u64>,
    issuer: usize,
    key: Arc<TrustedKey>,
}

/// The background tasks that keep fetched keys fresh; they end with the authenticator.
#[derive(Debug, Default)]
struct RefreshTasks(Vec<tokio::task::AbortHandle>);

impl Drop for RefreshTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Checks bearer tokens and finds the account behind them.
#[derive(Debug)]
pub struct Authenticator {
    /// The trusted issuers, each with its keys. A token's `iss` names its issuer, its `kid` the key within it; the key
    /// fixes the algorithm, never the token's header.
    issuers: Vec<Issuer>,
    leeway: u64,
    store: Store,
    /// Active accounts read recently, by user id; none when accounts are read on every request.
    accounts: Option<moka::future::Cache<String, Account>>,
    /// Tokens that passed every check, by the SHA-256 of the token, so that a client's next request with the same
    /// token skips the signature check. Its time limits are checked again on every use.
    verified: Option<moka::sync::Cache<[u8; 32], Verified>>,
    _refresh: RefreshTasks,
}

/// How long a verified token is kept. Its own time limits are checked on every use, and so is its key: a token whose
/// key has left its issuer's JWK Set, or changed there, is checked afresh.
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

/// An issuer to trust, with its static keys loaded and where to fetch the others.
#[derive(Debug, Clone)]
pub struct IssuerSpec {
    pub issuer: String,
    pub audience: String,
    pub required_amr: Vec<String>,
    /// Whether the issuer's client-credentials tokens are taken, for API clients.
    pub client_credentials: bool,
    pub keys: Vec<KeySpec>,
    /// The issuer's JWK Set, fetched in the background.
    pub jwks: Option<JwksSpec>,
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
    #[error("issuer {issuer}: {source}")]
    Jwks {
        issuer: String,
        source: crate::jwks::JwksError,
    },
    #[error("keys cannot be fetched outside a tokio runtime")]
    NoRuntime,
}

impl Authenticator {
    /// Trusts these issuers. Returns at once: an issuer's JWK Set is fetched in the background, and until it arrives
    /// that issuer's tokens (other than those of its static keys) are refused. Fetching needs a tokio runtime.
    pub fn new(issuers: Vec<IssuerSpec>, leeway: u64, store: Store) -> Result<Self, KeyError> {
        // Static key ids stay unique across issuers, as they always were.
        let mut static_kids = HashSet::new();
        let mut list = Vec::new();
        let mut refresh = RefreshTasks::default();
        for spec in issuers {
            let mut keys = HashMap::new();
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
                if !static_kids.insert(key.kid.clone()) {
                    return Err(KeyError::DuplicateKid(key.kid));
                }
                keys.insert(
                    key.kid.clone(),
                    Arc::new(TrustedKey {
                        kid: key.kid,
                        algorithm,
                        key: decoding,
                        jwk: None,
                    }),
                );
            }
            let jwks = match spec.jwks {
                None => None,
                Some(jwks) => {
                    let runtime =
                        tokio::runtime::Handle::try_current().map_err(|_| KeyError::NoRuntime)?;
                    let jwks = Jwks::new(&spec.issuer, jwks).map_err(|source| KeyError::Jwks {
                        issuer: spec.issuer.clone(),
                        source,
                    })?;
                    refresh.0.push(jwks.start(&runtime));
                    Some(jwks)
                }
            };
            list.push(Issuer {
                issuer: spec.issuer,
                audience: spec.audience,
                required_amr: spec.required_amr,
                client_credentials: spec.client_credentials,
                keys,
                jwks,
            });
        }
        Ok(Self {
            issuers: list,
            leeway,
            store,
            accounts: None,
            verified: None,
            _refresh: refresh,
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

/// The `iss` claim of a token, read without verifying anything.
fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<UnverifiedIssuer>(&json)
        .ok()
        .map(|claims| claims.iss)
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
        let jwks = match &issuer.jwks_url {
            None => None,
            Some(url) => {
                let ca_pem = match &issuer.jwks_ca_file {
                    None => None,
                    Some(path) => Some(std::fs::read(path).map_err(|source| KeyError::Read {
                        path: path.clone(),
                        source,
                    })?),
                };
                Some(JwksSpec {
                    refresh: issuer.jwks_refresh(),
                    min_refetch: issuer.jwks_min_refetch(),
                    ca_pem,
                    ..JwksSpec::new(url.clone())
                })
            }
        };
        issuers.push(IssuerSpec {
            issuer: issuer.issuer.clone(),
            audience: issuer.audience.clone(),
            required_amr: issuer.required_amr.clone(),
            client_credentials: issuer.client_credentials,
            keys,
            jwks,
        });
    }
    Ok(issuers)
}

impl Authenticator {
    /// Checks the `Authorization` header's value and returns the account of the user it names.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Account, AuthError> {
        self.sign_in(authorization).await.map_err(|r| r.error)
    }

    /// As [`authenticate`](Self::authenticate), naming the user a refused token was verified for.
    pub async fn sign_in(&self, authorization: Option<&str>) -> Result<Account, Refused> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(Refused::anonymous(AuthError::Missing))?;
        let digest: [u8; 32] = {
            use sha2::Digest as _;
            sha2::Sha256::digest(token.as_bytes()).into()
        };
        if let Some(seen) = self
            .verified
            .as_ref()
            .and_then(|v| v.get(&digest))
            .filter(|seen| self.still_trusted(seen))
        {
            let now = jsonwebtoken::get_current_timestamp();
            if now > seen.exp.saturating_add(self.leeway) {
                return Err(Refused::anonymous(AuthError::Expired));
            }
            if seen
                .nbf
                .is_none_or(|nbf| nbf <= now.saturating_add(self.leeway))
            {
                let account = self
                    .active_account(seen.sub.clone())
                    .await
                    .map_err(Refused::of(&seen.sub))?;
                return fit(account, seen.client.as_ref()).map_err(Refused::of(&seen.sub));
            }
        }
        let verified = self.verify(token).await.map_err(Refused::anonymous)?;
        if !verified.mfa {
            return Err(Refused::of(&verified.sub)(AuthError::NoMfa));
        }
        if let Some(cache) = &self.verified {
            cache.insert(digest, verified.clone());
        }
        let account = self
            .active_account(verified.sub.clone())
            .await
            .map_err(Refused::of(&verified.sub))?;
        fit(account, verified.client.as_ref()).map_err(Refused::of(&verified.sub))
    }

    /// Checks a token's signature, issuer, audience, time limits and MFA.
    async fn verify(&self, token: &str) -> Result<Verified, AuthError> {
        // An unknown `alg` (including `none`) fails here; one no key can have (HS*, PS*, …) just below, before any
        // lookup or fetch; one that differs from the key's at the algorithm check after.
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        if !matches!(
            header.alg,
            Algorithm::RS256 | Algorithm::ES256 | Algorithm::EdDSA
        ) {
            return Err(AuthError::Invalid);
        }
        let kid = header.kid.as_deref().ok_or(AuthError::Invalid)?;
        let iss = unverified_issuer(token).ok_or(AuthError::Invalid)?;
        let (index, trusted) = match self.find_key(&iss, kid) {
            Some(found) => found,
            None => {
                // Perhaps the issuer has rotated its keys: fetch its JWK Set again (at a bounded rate) and look once more.
                let refetches = self
                    .issuers
                    .iter()
                    .filter(|i| i.issuer == iss)
                    .filter_map(|i| i.jwks.as_ref())
                    .map(|jwks| jwks.refetch_for_unknown_kid());
                futures::future::join_all(refetches).await;
                self.find_key(&iss, kid).ok_or(AuthError::Invalid)?
            }
        };
        if header.alg != trusted.algorithm {
            return Err(AuthError::Invalid);
        }
        let issuer = &self.issuers[index];
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
        // A client-credentials token is a machine's, with no person to have passed MFA; only issuers trusted with
        // them may send one, and it must name a client account.
        let client = (issuer.client_credentials
            && claims.client_id.as_deref() == Some(&*claims.sub))
        .then(|| {
            claims
                .scope
                .as_deref()
                .map(|s| s.split_whitespace().map(str::to_owned).collect())
        });
        // Checked by the caller, which can then name the user it refuses.
        let mfa = client.is_some() || claims.amr.iter().any(|m| issuer.required_amr.contains(m));
        Ok(Verified {
            mfa,
            sub: claims.sub,
            client,
            exp: claims.exp,
            nbf: claims.nbf,
            issuer: index,
            key: trusted,
        })
    }

    /// The key with this id among the keys of the issuers named `iss`: static keys first, then fetched ones.
    fn find_key(&self, iss: &str, kid: &str) -> Option<(usize, Arc<TrustedKey>)> {
        self.issuers
            .iter()
            .enumerate()
            .filter(|(_, issuer)| issuer.issuer == iss)
            .find_map(|(index, issuer)| {
                issuer
                    .keys
                    .get(kid)
                    .cloned()
                    .or_else(|| issuer.jwks.as_ref().and_then(|jwks| jwks.get(kid)))
                    .map(|key| (index, key))
            })
    }

    /// Whether the key that verified a kept token is still the one its issuer has under that id.
    fn still_trusted(&self, seen: &Verified) -> bool {
        let issuer = &self.issuers[seen.issuer];
        let current = issuer.keys.get(&seen.key.kid).cloned().or_else(|| {
            issuer
                .jwks
                .as_ref()
                .and_then(|jwks| jwks.get(&seen.key.kid))
        });
        current.is_some_and(|key| Arc::ptr_eq(&key, &seen.key))
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

/// The account as the token may use it: a client-credentials token only a client account, narrowed to the scopes
/// the token was granted; a person's token only a person's account.
fn fit(mut account: Account, client: Option<&Option<Vec<String>>>) -> Result<Account, AuthError> {
    match (client, account.client.as_mut()) {
        (None, None) => Ok(account),
        (Some(granted), Some(terms)) => {
            if let Some(granted) = granted {
                terms
                    .scopes
                    .retain(|s| granted.iter().any(|g| g == s.as_str()));
            }
            Ok(account)
        }
        (Some(_), None) => Err(AuthError::NotAClient),
        (None, Some(_)) => Err(AuthError::AClient),
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

    /// A store in `dir` holding the active account of one teacher.
    async fn teacher_store(dir: &tempfile::TempDir) -> Store {
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
        store
    }

    async fn setup() -> (tempfile::TempDir, DemoKey, Authenticator) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = teacher_store(&dir).await;
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
    async fn client_credentials_pass_without_mfa_only_where_the_issuer_takes_them() {
        let (dir, key, auth) = setup().await;
        let mut client = auth
            .store
            .account("teacher")
            .await
            .expect("read")
            .expect("account");
        client.user_id = "partner".into();
        client.client = Some(crate::store::ClientTerms {
            scopes: vec![
                crate::store::ClientScope::View,
                crate::store::ClientScope::Search,
            ],
            searches_per_minute: None,
            children_per_hour: None,
        });
        auth.store.upsert_account(&client).await.expect("client");
        let token = key.client_token("partner", &["view"]).expect("token");
        let account = auth
            .authenticate(Some(&header(&token)))
            .await
            .expect("a client token of an issuer that takes them");
        assert_eq!(
            account.client.expect("a client").scopes,
            [crate::store::ClientScope::View],
            "narrowed to the token's scopes"
        );
        // The same token from an issuer not trusted with client credentials lacks MFA.
        let mut spec = key.issuer();
        spec.client_credentials = false;
        let strict = Authenticator::new(vec![spec], 30, auth.store.clone()).expect("authenticator");
        assert!(matches!(
            strict.authenticate(Some(&header(&token))).await,
            Err(AuthError::NoMfa)
        ));
        drop(dir);
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
        // Time limits hold with the leeway of 30 s, and not beyond it.
        let with = |exp: i64, nbf: i64| {
            let mut c = claims(&["mfa"], exp);
            c["nbf"] = nbf.into();
            jsonwebtoken::encode(&h, &c, &encoding).expect("encode")
        };
        let at = |exp: i64, nbf: i64| header(&with(exp, nbf));
        assert!(
            auth.authenticate(Some(&at(now - 10, now - 600)))
                .await
                .is_ok(),
            "expired 10 s ago, within the leeway"
        );
        assert!(matches!(
            auth.authenticate(Some(&at(now - 60, now - 600))).await,
            Err(AuthError::Expired)
        ));
        assert!(
            auth.authenticate(Some(&at(now + 600, now + 10)))
                .await
                .is_ok(),
            "valid in 10 s, within the leeway"
        );
        assert!(matches!(
            auth.authenticate(Some(&at(now + 600, now + 120))).await,
            Err(AuthError::Invalid)
        ));
        // Signed with a trusted key, but claiming an issuer the gateway does not trust.
        let mut wrong_issuer = claims(&["mfa"], now + 600);
        wrong_issuer["iss"] = "https://login.elsewhere.example".into();
        let token = jsonwebtoken::encode(&h, &wrong_issuer, &encoding).expect("encode");
        assert!(matches!(
            auth.authenticate(Some(&header(&token))).await,
            Err(AuthError::Invalid)
        ));
    }

    /// An issuer whose keys come from a JWKS endpoint served in this process.
    mod jwks {
        use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex};
        use std::time::{Duration, Instant};

        use ed25519_dalek::pkcs8::EncodePrivateKey as _;
        use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
        use jsonwebtoken::{Algorithm, EncodingKey, Header};

        use super::super::*;
        use super::{b64, header};
        use crate::jwks::JwksSpec;

        const ISSUER: &str = "https://login.example.org";

        /// What a JWKS endpoint serves, and how often it was asked.
        struct Served {
            set: Mutex<serde_json::Value>,
            /// The status it answers with; 200 serves the set.
            status: AtomicU16,
            hits: AtomicUsize,
        }

        async fn serve_jwks(
            axum::extract::State(served): axum::extract::State<Arc<Served>>,
        ) -> axum::response::Response {
            use axum::response::IntoResponse as _;
            served.hits.fetch_add(1, Ordering::SeqCst);
            match served.status.load(Ordering::SeqCst) {
                200 => axum::Json(served.set.lock().expect("set").clone()).into_response(),
                code => axum::http::StatusCode::from_u16(code)
                    .expect("status")
                    .into_response(),
            }
        }

        /// A JWKS endpoint in this process.
        struct JwksServer {
            url: url::Url,
            served: Arc<Served>,
            task: tokio::task::JoinHandle<()>,
        }

        impl Drop for JwksServer {
            fn drop(&mut self) {
                self.task.abort();
            }
        }

        impl JwksServer {
            async fn start(keys: &[&SigningKey]) -> Self {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                Self::on(listener, keys)
            }

            fn on(listener: tokio::net::TcpListener, keys: &[&SigningKey]) -> Self {
                let url = format!(
                    "http://{}/.well-known/jwks.json",
                    listener.local_addr().expect("address")
                );
                let served = Arc::new(Served {
                    set: Mutex::new(jwk_set(keys)),
                    status: AtomicU16::new(200),
                    hits: AtomicUsize::new(0),
                });
                let app = axum::Router::new()
                    .route("/.well-known/jwks.json", axum::routing::get(serve_jwks))
                    .with_state(served.clone());
                let task = tokio::spawn(async move {
                    axum::serve(listener, app).await.expect("serve");
                });
                Self {
                    url: url.parse().expect("url"),
                    served,
                    task,
                }
            }

            fn serve(&self, set: serde_json::Value) {
                *self.served.set.lock().expect("set") = set;
            }

            fn answer(&self, status: u16) {
                self.served.status.store(status, Ordering::SeqCst);
            }

            fn hits(&self) -> usize {
                self.served.hits.load(Ordering::SeqCst)
            }
        }

        /// A signing key and the JWK of its public half.
        struct SigningKey {
            kid: String,
            algorithm: Algorithm,
            encoding: EncodingKey,
            jwk: serde_json::Value,
        }

        fn eddsa(kid: &str) -> SigningKey {
            let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
            let pem = signing.to_pkcs8_pem(LineEnding::LF).expect("pem");
            SigningKey {
                kid: kid.into(),
                algorithm: Algorithm::EdDSA,
                encoding: EncodingKey::from_ed_pem(pem.as_bytes()).expect("key"),
                jwk: serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
                    "kid": kid, "x": b64(signing.verifying_key().as_bytes()) }),
            }
        }

        /// An ES256 key; its JWK names no `alg`, which its type and curve then fix.
        fn es256(kid: &str) -> SigningKey {
            use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
            let random = ring::rand::SystemRandom::new();
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &random)
                .expect("generate");
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &random)
                    .expect("pair");
            // An uncompressed point: 0x04, then x and y.
            let point = pair.public_key().as_ref();
            SigningKey {
                kid: kid.into(),
                algorithm: Algorithm::ES256,
                encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
                jwk: serde_json::json!({ "kty": "EC", "crv": "P-256", "kid": kid,
                    "x": b64(&point[1..33]), "y": b64(&point[33..65]) }),
            }
        }

        /// An RS256 key: a 2048-bit key made for these tests alone and kept beside them, since ring makes no RSA
        /// keys; its modulus is kept as hex for the JWK.
        fn rs256(kid: &str) -> SigningKey {
            let pem = include_bytes!("../tests/fixtures/rsa-test-key.pem");
            let hex = include_str!("../tests/fixtures/rsa-test-key.modulus.hex").trim();
            let modulus: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            SigningKey {
                kid: kid.into(),
                algorithm: Algorithm::RS256,
                encoding: EncodingKey::from_rsa_pem(pem).expect("key"),
                jwk: serde_json::json!({ "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                    "n": b64(&modulus), "e": "AQAB" }),
            }
        }

        #[tokio::test]
        async fn a_token_signed_with_an_rs256_key_of_the_jwks_is_accepted() {
            let rs = rs256("rs-1");
            let server = JwksServer::start(&[&rs]).await;
            let (_dir, auth) =
                authenticator(vec![issuer(ISSUER, &server.url, Duration::from_secs(30))]).await;
            assert!(accepted(&auth, &token(&rs)).await);
            // The same token with its signature altered is not.
            let good = token(&rs);
            let at = good.rfind('.').expect("signed") + 1;
            let flipped = if good[at..].starts_with('A') {
                "B"
            } else {
                "A"
            };
            let altered = format!("{}{flipped}{}", &good[..at], &good[at + 1..]);
            assert!(!accepted(&auth, &altered).await);
        }

        fn jwk_set(keys: &[&SigningKey]) -> serde_json::Value {
            serde_json::json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
        }

        fn claims(iss: &str) -> serde_json::Value {
            let now = chrono::Utc::now().timestamp();
            serde_json::json!({ "iss": iss, "aud": "childgraph", "sub": "teacher",
                "exp": now + 600, "nbf": now - 10, "amr": ["mfa"] })
        }

        fn signed(key: &SigningKey, kid: &str, iss: &str) -> String {
            let mut h = Header::new(key.algorithm);
            h.kid = Some(kid.into());
            header(&jsonwebtoken::encode(&h, &claims(iss), &key.encoding).expect("encode"))
        }

        fn token(key: &SigningKey) -> String {
            signed(key, &key.kid, ISSUER)
        }

        fn issuer(iss: &str, url: &url::Url, min_refetch: Duration) -> IssuerSpec {
            IssuerSpec {
                issuer: iss.into(),
                audience: "childgraph".into(),
                required_amr: vec!["mfa".into()],
                client_credentials: false,
                keys: Vec::new(),
                jwks: Some(JwksSpec {
                    // Long enough that only the first fetch and on-demand ones happen during a test.
                    refresh: Duration::from_secs(3600),
                    min_refetch,
                    ..JwksSpec::new(url.clone())
                }),
            }
        }

        async fn authenticator(issuers: Vec<IssuerSpec>) -> (tempfile::TempDir, Authenticator) {
            let dir = tempfile::tempdir().expect("temp dir");
            let auth = Authenticator::new(issuers, 30, super::teacher_store(&dir).await)
                .expect("authenticator");
            (dir, auth)
        }

        /// Waits for the background fetch to bring this key in.
        async fn fetched(auth: &Authenticator, issuer: usize, kid: &str) {
            let jwks = auth.issuers[issuer].jwks.as_ref().expect("a JWKS issuer");
            for _ in 0..200 {
                if jwks.get(kid).is_some() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            panic!("key {kid} was not fetched");
        }

        async fn accepted(auth: &Authenticator, token: &str) -> bool {
            match auth.authenticate(Some(token)).await {
                Ok(account) => account.user_id == "teacher",
                Err(AuthError::Invalid) => false,
                Err(e) => panic!("unexpected refusal: {e}"),
            }
        }

        #[tokio::test]
        async fn tokens_signed_with_eddsa_and_es256_keys_of_the_jwks_are_accepted() {
            let (ed, es) = (eddsa("ed-1"), es256("es-1"));
            let server = JwksServer::start(&[&ed, &es]).await;
            let (_dir, auth) =
                authenticator(vec![issuer(ISSUER, &server.url, Duration::from_secs(30))]).await;
            assert!(accepted(&auth, &token(&ed)).await);
            assert!(accepted(&auth, &token(&es)).await);
            fetched(&auth, 0, "es-1").await;
            let hits = server.hits();
            assert!(hits <= 2, "{hits} fetches");

            // The key fixes the algorithm: an ES256 token naming the EdDSA key is refused, and so is a token from an
            // issuer not trusted, without any fetch.
            assert!(!accepted(&auth, &signed(&es, "ed-1", ISSUER)).await);
            assert!(!accepted(&auth, &signed(&ed, "ed-1", "https://elsewhere.example.org")).await);
            assert_eq!(server.hits(), hits);
        }

        #[tokio::test]
        async fn a_rotated_key_is_fetched_on_demand_and_a_withdrawn_one_stops_working() {
            let (old, new) = (eddsa("2025"), es256("2026"));
            let server = JwksServer::start(&[&old]).await;
            let (_dir, auth) =
                authenticator(vec![issuer(ISSUER, &server.url, Duration::from_secs(60))]).await;
            // Tokens verified once are kept: a withdrawn key must end them too.
            let auth = auth.with_account_cache(Duration::from_secs(60));
            fetched(&auth, 0, "2025").await;
            assert_eq!(server.hits(), 1);
            let old_token = token(&old);
            assert!(accepted(&auth, &old_token).await);

            // Requests that meet the new kid together all wait for the one fetch the first of them starts.
            server.serve(jwk_set(&[&new]));
            let new_tokens: Vec<String> = (0..20).map(|_| token(&new)).collect();
            let answers =
                futures::future::join_all(new_tokens.iter().map(|t| accepted(&auth, t))).await;
            assert!(answers.iter().all(|ok| *ok), "{answers:?}");
            assert_eq!(server.hits(), 2, "one fetch, on demand");
            assert!(!accepted(&auth, &old_token).await);
            assert_eq!(server.hits(), 2);
        }

        #[tokio::test]
        async fn a_burst_of_unknown_kids_costs_at_most_one_fetch_in_the_window() {
            let key = eddsa("current");
            let server = JwksServer::start(&[&key]).await;
            let (_dir, auth) =
                authenticator(vec![issuer(ISSUER, &server.url, Duration::from_secs(60))]).await;
            fetched(&auth, 0, "current").await;
            assert_eq!(server.hits(), 1);

            let forged: Vec<String> = (0..100)
                .map(|_| signed(&key, &format!("k-{}", rand::random::<u64>()), ISSUER))
                .collect();
            let answers =
                futures::future::join_all(forged.iter().map(|t| auth.authenticate(Some(t)))).await;
            assert!(answers.iter().all(|a| matches!(a, Err(AuthError::Invalid))));
            assert_eq!(server.hits(), 2, "concurrent unknown kids share one fetch");

            // Within the window, an unknown kid is refused at once, with no fetch.
            let started = Instant::now();
            for t in &forged {
                assert!(!accepted(&auth, t).await);
            }
            assert!(started.elapsed() < Duration::from_secs(2));
            assert_eq!(server.hits(), 2);
            assert!(accepted(&auth, &token(&key)).await);
        }

        #[tokio::test]
        async fn the_gateway_starts_while_the_jwks_fails_and_accepts_tokens_once_it_answers() {
            let key = eddsa("k");
            let server = JwksServer::start(&[&key]).await;
            server.answer(500);
            let (_dir, auth) =
                authenticator(vec![issuer(ISSUER, &server.url, Duration::from_secs(1))]).await;
            let token = token(&key);
            assert!(!accepted(&auth, &token).await);
            assert!(server.hits() >= 1);

            server.answer(200);
            tokio::time::sleep(Duration::from_millis(1100)).await;
            assert!(accepted(&auth, &token).await);

            // A failed fetch keeps the last good set.
            server.answer(500);
            tokio::time::sleep(Duration::from_millis(1100)).await;
            assert!(!accepted(&auth, &signed(&key, "unknown", ISSUER)).await);
            assert!(accepted(&auth, &signed(&key, "k", ISSUER)).await);
        }

        #[tokio::test]
        async fn the_gateway_starts_while_nothing_listens_at_the_jwks_url() {
            let key = eddsa("k");
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let address = listener.local_addr().expect("address");
            drop(listener);
            let url: url::Url = format!("http://{address}/.well-known/jwks.json")
                .parse()
                .expect("url");
            let (_dir, auth) =
                authenticator(vec![issuer(ISSUER, &url, Duration::from_secs(1))]).await;
            let token = token(&key);
            assert!(!accepted(&auth, &token).await);

            let listener = tokio::net::TcpListener::bind(address)
                .await
                .expect("rebind");
            let server = JwksServer::on(listener, &[&key]);
            tokio::time::sleep(Duration::from_millis(1100)).await;
            assert!(accepted(&auth, &token).await);
            assert!(server.hits() >= 1);
        }

        #[tokio::test]
        async fn an_endpoint_that_never_answers_delays_a_token_by_the_fetch_timeout_only() {
            // Connections are taken by the kernel but never answered.
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let url: url::Url = format!("http://{}/jwks", listener.local_addr().expect("address"))
                .parse()
                .expect("url");
            let mut spec = issuer(ISSUER, &url, Duration::ZERO);
            if let Some(jwks) = &mut spec.jwks {
                jwks.timeout = Duration::from_millis(300);
            }
            let started = Instant::now();
            let (_dir, auth) = authenticator(vec![spec]).await;
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "construction does not wait"
            );
            let started = Instant::now();
            assert!(!accepted(&auth, &token(&eddsa("k"))).await);
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{:?}",
                started.elapsed()
            );
            drop(listener);
        }

        #[tokio::test]
        async fn hmac_keys_in_the_jwks_are_ignored_and_hmac_or_none_tokens_refused() {
            let good = eddsa("good");
            let secret = b"a shared secret, thirty-two bytes";
            let mut ed_as_hmac = eddsa("ed-as-hs256");
            ed_as_hmac.jwk["alg"] = "HS256".into();
            let server = JwksServer::start(&[&good, &ed_as_hmac]).await;
            let mut set = jwk_set(&[&good, &ed_as_hmac]);
            for kid in ["hmac", "oct"] {
                let mut jwk = serde_json::json!({ "kty": "oct", "kid": kid, "k": b64(secret) });
                if kid == "hmac" {
                    jwk["alg"] = "HS256".into();
                }
                set["keys"].as_array_mut().expect("keys").push(jwk);
            }
            server.serve(set);
            let (_dir, auth) =
                authenticator(vec![issuer(ISSUER, &server.url, Duration::ZERO)]).await;
            fetched(&auth, 0, "good").await;
            assert!(accepted(&auth, &token(&good)).await);
            let jwks = auth.issuers[0].jwks.as_ref().expect("jwks");
            for kid in ["hmac", "oct", "ed-as-hs256"] {
                assert!(jwks.get(kid).is_none(), "{kid} is kept");
            }

            let hmac = |kid: &str, secret: &[u8]| {
                let mut h = Header::new(Algorithm::HS256);
                h.kid = Some(kid.into());
                header(
                    &jsonwebtoken::encode(&h, &claims(ISSUER), &EncodingKey::from_secret(secret))
                        .expect("encode"),
                )
            };
            assert!(!accepted(&auth, &hmac("hmac", secret)).await);
            assert!(!accepted(&auth, &hmac("oct", secret)).await);
            // The public key of a JWKS key as an HMAC secret: the classic confusion attack.
            let public = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(good.jwk["x"].as_str().expect("x"))
                .expect("x");
            assert!(!accepted(&auth, &hmac("good", &public)).await);
            assert!(!accepted(&auth, &hmac("good", good.jwk.to_string().as_bytes())).await);
            assert!(!accepted(&auth, &signed(&ed_as_hmac, "ed-as-hs256", ISSUER)).await);
            let payload = b64(claims(ISSUER).to_string().as_bytes());
            let none = format!("{}.{payload}.", b64(br#"{"alg":"none","kid":"good"}"#));
            assert!(!accepted(&auth, &header(&none)).await);
        }

        #[tokio::test]
        async fn the_same_kid_at_two_issuers_names_two_keys() {
            let (a, b) = (eddsa("shared"), eddsa("shared"));
            let (server_a, server_b) = (
                JwksServer::start(&[&a]).await,
                JwksServer::start(&[&b]).await,
            );
            let issuer_b = "https://login.other.example.org";
            let (_dir, auth) = authenticator(vec![
                issuer(ISSUER, &server_a.url, Duration::from_secs(30)),
                issuer(issuer_b, &server_b.url, Duration::from_secs(30)),
            ])
            .await;
            fetched(&auth, 0, "shared").await;
            fetched(&auth, 1, "shared").await;
            assert!(accepted(&auth, &signed(&a, "shared", ISSUER)).await);
            assert!(accepted(&auth, &signed(&b, "shared", issuer_b)).await);
            assert!(!accepted(&auth, &signed(&b, "shared", ISSUER)).await);
            assert!(!accepted(&auth, &signed(&a, "shared", issuer_b)).await);
        }

        #[tokio::test]
        async fn static_keys_and_a_jwks_serve_one_issuer_together() {
            let demo =
                crate::demo_key::DemoKey::load_or_create(tempfile::tempdir().expect("dir").path())
                    .expect("demo key");
            let fetched_key = eddsa("fetched");
            let server = JwksServer::start(&[&fetched_key]).await;
            let mut spec = demo.issuer();
            spec.jwks = issuer(ISSUER, &server.url, Duration::from_secs(30)).jwks;
            let (_dir, auth) = authenticator(vec![spec]).await;
            fetched(&auth, 0, "fetched").await;
            assert!(accepted(&auth, &header(&demo.token("teacher").expect("token"))).await);
            assert!(
                accepted(
                    &auth,
                    &signed(&fetched_key, "fetched", crate::config::DEMO_ISSUER)
                )
                .await
            );
        }
    }
}
