//! An issuer's JWK Set (RFC 7517), fetched from its `jwks_url`: parsed into verification keys, kept in memory,
//! refreshed in the background and fetched again, at a bounded rate, when a token names a key it does not hold.
//!
//! Only signature keys for RS256 (`kty` RSA), ES256 (`kty` EC, `crv` P-256) and EdDSA (`kty` OKP, `crv` Ed25519)
//! are kept. A key's algorithm is fixed by the key: its `alg` when it has one, which must agree with its type, or
//! else its type and curve. A key that does not qualify is left out with a warning naming its `kid`; it never costs
//! the rest of the set.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use base64::Engine as _;
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm as JwkAlgorithm, KeyOperations,
    PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

use crate::auth::TrustedKey;

/// How often a JWK Set is fetched again, by default.
pub const DEFAULT_REFRESH_SECONDS: u64 = 300;
/// The least time between two fetches triggered by an unknown `kid`, by default.
pub const DEFAULT_MIN_REFETCH_SECONDS: u64 = 30;
/// How long connecting to a JWKS endpoint may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one fetch of a JWK Set may take, from connecting to the last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWK Set read. Real ones hold a few keys, a few kilobytes.
const MAX_BODY_BYTES: usize = 256 * 1024;
/// The first wait before fetching again after a failed fetch; it doubles on each failure, up to
/// [`MAX_RETRY_WAIT`] (or the refresh interval, if shorter).
const FIRST_RETRY_WAIT: Duration = Duration::from_secs(1);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// The smallest RSA modulus accepted, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Where and how often to fetch one issuer's JWK Set.
#[derive(Clone)]
pub struct JwksSpec {
    pub url: url::Url,
    /// How often the set is fetched again.
    pub refresh: Duration,
    /// The least time between two fetches triggered by a token naming an unknown `kid`.
    pub min_refetch: Duration,
    /// A PEM bundle of CA certificates trusted for the endpoint, besides the public roots.
    pub ca_pem: Option<Vec<u8>>,
    pub connect_timeout: Duration,
    /// The longest one fetch may take.
    pub timeout: Duration,
}

impl JwksSpec {
    /// A JWK Set at this URL, with the default intervals and timeouts.
    pub fn new(url: url::Url) -> Self {
        Self {
            url,
            refresh: Duration::from_secs(DEFAULT_REFRESH_SECONDS),
            min_refetch: Duration::from_secs(DEFAULT_MIN_REFETCH_SECONDS),
            ca_pem: None,
            connect_timeout: CONNECT_TIMEOUT,
            timeout: FETCH_TIMEOUT,
        }
    }
}

impl std::fmt::Debug for JwksSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksSpec")
            .field("url", &self.url.as_str())
            .field("refresh", &self.refresh)
            .field("min_refetch", &self.min_refetch)
            .field("ca_pem", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a JWKS client could not be built. Startup stops on it: it is a config error, not a network one.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("jwks_ca_file holds no valid PEM certificate")]
    CaCertificate,
    #[error("the http client for the JWKS could not be built")]
    Client,
}

/// Why one fetch failed. Carries no URL query and no body.
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("{0}")]
    Http(reqwest::Error),
    #[error("the endpoint answered {0}")]
    Status(reqwest::StatusCode),
    #[error("the answer is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("the answer is not a JWK Set: {0}")]
    NotAJwkSet(serde_json::Error),
}

/// Verification keys by `kid`.
pub(crate) type KeySet = HashMap<String, Arc<TrustedKey>>;

/// One issuer's fetched keys, and the fetches that keep them fresh.
pub(crate) struct Jwks {
    issuer: String,
    url: url::Url,
    client: reqwest::Client,
    refresh: Duration,
    min_refetch: Duration,
    /// The last good set, replaced whole by each successful fetch; empty until the first.
    keys: ArcSwap<KeySet>,
    fetches: Mutex<Fetches>,
}

#[derive(Default)]
struct Fetches {
    /// The fetch under way, which every caller meanwhile joins; cleared by the fetch itself when done.
    in_flight: Option<Shared<BoxFuture<'static, bool>>>,
    /// When the last fetch triggered by an unknown `kid` began.
    last_on_demand: Option<Instant>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("issuer", &self.issuer)
            .field("url", &self.url.as_str())
            .field("keys", &self.keys.load().len())
            .finish_non_exhaustive()
    }
}

impl Jwks {
    pub(crate) fn new(issuer: &str, spec: JwksSpec) -> Result<Arc<Self>, JwksError> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(spec.connect_timeout)
            .timeout(spec.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            // Keys come from the configured URL only, never from wherever it points.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("childgraph/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &spec.ca_pem {
            let certificates =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|_| JwksError::CaCertificate)?;
            if certificates.is_empty() {
                return Err(JwksError::CaCertificate);
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let client = builder.build().map_err(|_| JwksError::Client)?;
        Ok(Arc::new(Self {
            issuer: issuer.to_owned(),
            url: spec.url,
            client,
            refresh: spec.refresh,
            min_refetch: spec.min_refetch,
            keys: ArcSwap::from_pointee(KeySet::new()),
            fetches: Mutex::new(Fetches::default()),
        }))
    }

    /// The fetched key with this id, if the last good set holds one.
    pub(crate) fn get(&self, kid: &str) -> Option<Arc<TrustedKey>> {
        self.keys.load().get(kid).cloned()
    }

    /// Starts the background task that fetches the set now and then every `refresh`, sooner after a failure. The
    /// task ends when the keys are dropped or the handle is aborted.
    pub(crate) fn start(
        self: &Arc<Self>,
        runtime: &tokio::runtime::Handle,
    ) -> tokio::task::AbortHandle {
        runtime
            .spawn(refresh_loop(Arc::downgrade(self)))
            .abort_handle()
    }

    /// Fetches the set again because a token named a key it does not hold, unless such a fetch began less than
    /// `min_refetch` ago. A fetch already under way is joined rather than repeated. Returns when the fetch is done
    /// (bounded by the fetch timeout), or at once when it is not allowed.
    pub(crate) async fn refetch_for_unknown_kid(self: &Arc<Self>) {
        let fetch = {
            let mut fetches = self.fetches.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(fetch) = &fetches.in_flight {
                Some(fetch.clone())
            } else if fetches
                .last_on_demand
                .is_some_and(|at| at.elapsed() < self.min_refetch)
            {
                None
            } else {
                fetches.last_on_demand = Some(Instant::now());
                Some(self.begin(&mut fetches))
            }
        };
        match fetch {
            Some(fetch) => {
                fetch.await;
            }
            None => tracing::debug!(
                issuer = %self.issuer,
                "unknown key id; the JWK Set was fetched too recently to fetch it again"
            ),
        }
    }

    /// Fetches the set, or joins the fetch under way; true when it succeeded.
    async fn fetch(self: &Arc<Self>) -> bool {
        let fetch = {
            let mut fetches = self.fetches.lock().unwrap_or_else(|e| e.into_inner());
            match &fetches.in_flight {
                Some(fetch) => fetch.clone(),
                None => self.begin(&mut fetches),
            }
        };
        fetch.await
    }

    /// Starts a fetch in a task of its own, so that it completes and stores its keys even when every caller waiting
    /// for it has gone.
    fn begin(self: &Arc<Self>, fetches: &mut Fetches) -> Shared<BoxFuture<'static, bool>> {
        let this = self.clone();
        let task = tokio::spawn(async move {
            let ok = this.fetch_and_store().await;
            this.fetches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .in_flight = None;
            ok
        });
        let fetch = async move { task.await.unwrap_or(false) }.boxed().shared();
        fetches.in_flight = Some(fetch.clone());
        fetch
    }

    /// One fetch: on success the set replaces the last one whole; on failure the last good set stays.
    async fn fetch_and_store(&self) -> bool {
        let body = match self.download().await {
            Ok(body) => body,
            Err(e) => {
                self.fetch_failed(&e);
                return false;
            }
        };
        let previous = self.keys.load_full();
        let keys = match parse_key_set(&self.issuer, &body, &previous) {
            Ok(keys) => keys,
            Err(e) => {
                self.fetch_failed(&FetchError::NotAJwkSet(e));
                return false;
            }
        };
        if keys.is_empty() {
            tracing::warn!(issuer = %self.issuer, "the JWK Set holds no usable key: this issuer's tokens are refused");
        }
        let changed =
            keys.len() != previous.len() || keys.keys().any(|kid| !previous.contains_key(kid));
        if changed {
            let mut kids: Vec<&str> = keys.keys().map(String::as_str).collect();
            kids.sort_unstable();
            tracing::info!(issuer = %self.issuer, kids = ?kids, "JWK Set fetched; the keys in use changed");
        } else {
            tracing::debug!(issuer = %self.issuer, keys = keys.len(), "JWK Set fetched; no change");
        }
        self.keys.store(Arc::new(keys));
        true
    }

    fn fetch_failed(&self, error: &FetchError) {
        if self.keys.load().is_empty() {
            tracing::warn!(issuer = %self.issuer, %error,
                "cannot fetch the JWK Set; this issuer's tokens are refused until its keys arrive");
        } else {
            tracing::warn!(issuer = %self.issuer, %error,
                "cannot fetch the JWK Set; the last good keys stay in use");
        }
    }

    async fn download(&self) -> Result<Vec<u8>, FetchError> {
        let http = |e: reqwest::Error| FetchError::Http(e.without_url());
        let mut response = self
            .client
            .get(self.url.clone())
            .header(
                reqwest::header::ACCEPT,
                "application/jwk-set+json, application/json",
            )
            .send()
            .await
            .map_err(http)?;
        if !response.status().is_success() {
            return Err(FetchError::Status(response.status()));
        }
        if response
            .content_length()
            .is_some_and(|length| length > MAX_BODY_BYTES as u64)
        {
            return Err(FetchError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(http)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(FetchError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Fetches at once, then every `refresh` (less up to a tenth, so that replicas spread out), and after a failure
/// again after 1 s, 2 s, 4 s … up to a minute.
async fn refresh_loop(jwks: Weak<Jwks>) {
    let mut retry = FIRST_RETRY_WAIT;
    loop {
        let Some(this) = jwks.upgrade() else {
            return;
        };
        let wait = if this.fetch().await {
            retry = FIRST_RETRY_WAIT;
            let spread = rand::Rng::gen_range(&mut rand::thread_rng(), 0.0..0.1);
            this.refresh.mul_f64(1.0 - spread)
        } else {
            let wait = retry.min(this.refresh);
            retry = (retry * 2).min(MAX_RETRY_WAIT);
            wait
        };
        drop(this);
        tokio::time::sleep(wait).await;
    }
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// The usable keys of a JWK Set document. Fails only when the document is not a JWK Set at all; a key that does
/// not qualify is left out with a warning. A key unchanged since `previous` keeps its identity there, so that the
/// tokens it verified stay verified.
pub(crate) fn parse_key_set(
    issuer: &str,
    body: &[u8],
    previous: &KeySet,
) -> Result<KeySet, serde_json::Error> {
    let raw: RawSet = serde_json::from_slice(body)?;
    let mut keys = KeySet::new();
    for value in raw.keys {
        let Some(kid) = value
            .get("kid")
            .and_then(serde_json::Value::as_str)
            .filter(|kid| !kid.is_empty())
            .map(str::to_owned)
        else {
            tracing::warn!(issuer, "a key in the JWK Set has no kid and is ignored");
            continue;
        };
        if keys.contains_key(&kid) {
            tracing::warn!(issuer, kid = ?kid, "the JWK Set holds this kid twice; the first key is kept");
            continue;
        }
        let (algorithm, key, jwk) = match usable_key(value) {
            Ok(usable) => usable,
            Err(reason) => {
                tracing::warn!(issuer, kid = ?kid, reason, "a key in the JWK Set is ignored");
                continue;
            }
        };
        let trusted = match previous.get(&kid) {
            Some(kept) if kept.jwk.as_ref() == Some(&jwk) => kept.clone(),
            _ => Arc::new(TrustedKey {
                kid: kid.clone(),
                algorithm,
                key,
                jwk: Some(jwk),
            }),
        };
        keys.insert(kid, trusted);
    }
    Ok(keys)
}

/// The algorithm and key of a JWK, when it is a public signature key of an accepted algorithm.
fn usable_key(value: serde_json::Value) -> Result<(Algorithm, DecodingKey, Jwk), &'static str> {
    let jwk: Jwk = serde_json::from_value(value)
        .map_err(|_| "not a public key of a known type, curve and algorithm")?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("not a signature key: its use is not sig"),
    }
    if jwk
        .common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err("its key_ops do not include verify");
    }
    let decode = |field: &str| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(field)
            .map_err(|_| "its key material is not base64url")
    };
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let n = decode(&rsa.n)?;
            let significant = n.iter().skip_while(|b| **b == 0).count();
            if significant < MIN_RSA_MODULUS_BYTES {
                return Err("an RSA key shorter than 2048 bits");
            }
            if decode(&rsa.e)?.iter().all(|b| *b == 0) {
                return Err("an RSA key without an exponent");
            }
            Algorithm::RS256
        }
        AlgorithmParameters::EllipticCurve(ec) if ec.curve == EllipticCurve::P256 => {
            if decode(&ec.x)?.len() != 32 || decode(&ec.y)?.len() != 32 {
                return Err("a P-256 key whose coordinates are not 32 bytes");
            }
            Algorithm::ES256
        }
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            if decode(&okp.x)?.len() != 32 {
                return Err("an Ed25519 key that is not 32 bytes");
            }
            Algorithm::EdDSA
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric key (kty oct) is never trusted");
        }
        AlgorithmParameters::EllipticCurve(_) | AlgorithmParameters::OctetKeyPair(_) => {
            return Err("a curve other than P-256 (EC) or Ed25519 (OKP)");
        }
    };
    if let Some(named) = jwk.common.key_algorithm {
        let named = match named {
            JwkAlgorithm::RS256 => Algorithm::RS256,
            JwkAlgorithm::ES256 => Algorithm::ES256,
            JwkAlgorithm::EdDSA => Algorithm::EdDSA,
            _ => return Err("its alg is not RS256, ES256 or EdDSA"),
        };
        if named != by_type {
            return Err("its alg does not fit its key type");
        }
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| "its key material is not valid")?;
    Ok((by_type, key, jwk))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn ed25519(kid: &str, extra: serde_json::Value) -> serde_json::Value {
        let signing = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let mut jwk = serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "kid": kid,
            "x": b64(signing.verifying_key().as_bytes()) });
        if let (Some(jwk), Some(extra)) = (jwk.as_object_mut(), extra.as_object()) {
            jwk.extend(extra.clone());
        }
        jwk
    }

    fn kids(set: &KeySet) -> Vec<&str> {
        let mut kids: Vec<&str> = set.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }

    #[test]
    fn only_signature_keys_of_the_accepted_algorithms_are_kept() {
        let p256 = serde_json::json!({ "kty": "EC", "crv": "P-256", "kid": "p256",
            "x": b64(&[1; 32]), "y": b64(&[2; 32]) });
        let set = serde_json::json!({ "keys": [
            ed25519("good", serde_json::json!({})),
            ed25519("good-sig", serde_json::json!({ "use": "sig", "alg": "EdDSA", "key_ops": ["verify"] })),
            p256,
            { "kty": "oct", "kid": "hmac", "alg": "HS256", "k": b64(b"a shared secret of some length!!") },
            { "kty": "oct", "kid": "oct", "k": b64(b"a shared secret of some length!!") },
            ed25519("ed-as-hs256", serde_json::json!({ "alg": "HS256" })),
            ed25519("ed-as-es256", serde_json::json!({ "alg": "ES256" })),
            ed25519("ed-none", serde_json::json!({ "alg": "none" })),
            ed25519("ed-enc", serde_json::json!({ "use": "enc" })),
            ed25519("ed-sign-only", serde_json::json!({ "key_ops": ["sign"] })),
            ed25519("", serde_json::json!({})),
            { "kty": "OKP", "crv": "Ed25519", "x": b64(&[3; 32]) },
            { "kty": "OKP", "crv": "Ed25519", "kid": "ed-short", "x": b64(&[3; 31]) },
            { "kty": "EC", "crv": "P-384", "kid": "p384", "x": b64(&[1; 48]), "y": b64(&[2; 48]) },
            { "kty": "RSA", "kid": "rsa-1024", "n": b64(&[0xC5; 128]), "e": "AQAB" },
            { "kty": "RSA", "kid": "rsa-ps256", "alg": "PS256", "n": b64(&[0xC5; 256]), "e": "AQAB" },
            { "kty": "XYZ", "kid": "junk" },
            "not even an object",
            ed25519("good", serde_json::json!({})),
        ]});
        let keys = parse_key_set(
            "https://login.example.org",
            set.to_string().as_bytes(),
            &KeySet::new(),
        )
        .expect("a JWK Set");
        assert_eq!(kids(&keys), ["good", "good-sig", "p256"]);
        assert_eq!(keys["good"].algorithm, Algorithm::EdDSA);
        assert_eq!(keys["p256"].algorithm, Algorithm::ES256);

        // An RSA key of 2048 bits, with or without its alg, is RS256.
        let rsa = serde_json::json!({ "keys": [
            { "kty": "RSA", "kid": "rsa", "n": b64(&[0xC5; 256]), "e": "AQAB" },
            { "kty": "RSA", "kid": "rsa-alg", "alg": "RS256", "use": "sig", "n": b64(&[0xC5; 256]), "e": "AQAB" },
        ]});
        let keys =
            parse_key_set("i", rsa.to_string().as_bytes(), &KeySet::new()).expect("a JWK Set");
        assert_eq!(kids(&keys), ["rsa", "rsa-alg"]);
        assert!(keys.values().all(|k| k.algorithm == Algorithm::RS256));
    }

    #[test]
    fn a_document_that_is_not_a_jwk_set_fails_and_an_unchanged_key_keeps_its_identity() {
        for body in [&b"<html>"[..], b"{}", br#"{"keys": {}}"#, b"[]"] {
            assert!(parse_key_set("i", body, &KeySet::new()).is_err());
        }
        let set = serde_json::json!({ "keys": [ed25519("a", serde_json::json!({})), ed25519("b", serde_json::json!({}))] });
        let first = parse_key_set("i", set.to_string().as_bytes(), &KeySet::new()).expect("set");
        let mut changed = set.clone();
        changed["keys"][1] = ed25519("b", serde_json::json!({}));
        let second = parse_key_set("i", changed.to_string().as_bytes(), &first).expect("set");
        assert!(Arc::ptr_eq(&first["a"], &second["a"]));
        assert!(!Arc::ptr_eq(&first["b"], &second["b"]));
    }
}
