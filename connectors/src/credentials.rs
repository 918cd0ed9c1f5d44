//! How the gateway proves itself to a source: a static bearer token, or OAuth2 client credentials exchanged for short-lived access tokens.
//!
//! Secrets never show in debug output or in errors.

use std::time::{Duration, Instant};

use childgraph_schema::SourceName;
use url::Url;

use crate::error::ConnectorError;

/// The credentials sent to a source. Each is the gateway's own service identity, the same for every user.
#[derive(Clone, Default)]
pub enum Credentials {
    /// Nothing is sent, unless the older `SourceConfig::bearer_token` is set.
    #[default]
    None,
    /// A static bearer token.
    Bearer(String),
    /// OAuth2 client credentials (RFC 6749 §4.4): the client id and secret, sent with HTTP Basic to `token_url`, buy an access token that is kept until shortly before it expires.
    ClientCredentials {
        token_url: Url,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::None => f.write_str("None"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credentials::ClientCredentials {
                token_url,
                client_id,
                scope,
                ..
            } => f
                .debug_struct("ClientCredentials")
                .field("token_url", &token_url.as_str())
                .field("client_id", client_id)
                .field("client_secret", &"<redacted>")
                .field("scope", scope)
                .finish(),
        }
    }
}

/// How long before its stated expiry an access token is replaced, so that it does not expire on the way to the source.
fn refresh_margin(expires_in: Duration) -> Duration {
    (expires_in / 10).min(Duration::from_secs(30))
}

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Clone)]
struct Token {
    value: String,
    refresh_at: Instant,
}

/// Fetches and keeps the access token of one source.
pub(crate) struct TokenSource {
    source: SourceName,
    token_url: Url,
    client_id: String,
    client_secret: String,
    scope: Option<String>,
    /// An async mutex, held across the token request on purpose: callers that find the token stale wait for one refresh instead of each sending their own.
    current: tokio::sync::Mutex<Option<Token>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl TokenSource {
    pub fn new(
        source: SourceName,
        token_url: Url,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
    ) -> Self {
        Self {
            source,
            token_url,
            client_id,
            client_secret,
            scope,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// A token that is not about to expire, fetched if need be within `timeout`.
    pub async fn token(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<String, ConnectorError> {
        let mut current = self.current.lock().await;
        if let Some(token) = current.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let token = self.fetch(client, timeout).await?;
        let value = token.value.clone();
        *current = Some(token);
        Ok(value)
    }

    /// Drops `stale` after the source refused it, unless another caller has already replaced it.
    pub async fn invalidate(&self, stale: &str) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|t| t.value == stale) {
            *current = None;
        }
    }

    async fn fetch(
        &self,
        client: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Token, ConnectorError> {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let sent = Instant::now();
        let response = client
            .post(self.token_url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(&form)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    ConnectorError::Timeout {
                        source_name: self.source,
                    }
                } else {
                    self.unavailable("the token endpoint could not be reached".into())
                }
            })?;
        let status = response.status();
        if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
            // The token endpoint's body may echo the client id or worse: only the status is passed on.
            return Err(ConnectorError::Rejected {
                source_name: self.source,
                detail: format!(
                    "the token endpoint refused the credentials (status {})",
                    status.as_u16()
                ),
            });
        }
        if !status.is_success() {
            return Err(self.unavailable(format!(
                "the token endpoint answered status {}",
                status.as_u16()
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|_| self.unavailable("the token answer was cut off".into()))?;
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| ConnectorError::Malformed {
                source_name: self.source,
                detail: "the token answer does not parse".into(),
            })?;
        // A token without a stated lifetime is used for a minute and then replaced, rather than trusted forever.
        let expires_in = Duration::from_secs(parsed.expires_in.unwrap_or(60));
        Ok(Token {
            value: parsed.access_token,
            refresh_at: sent + expires_in - refresh_margin(expires_in),
        })
    }

    fn unavailable(&self, detail: String) -> ConnectorError {
        ConnectorError::Unavailable {
            source_name: self.source,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_secrets() {
        let bearer = format!("{:?}", Credentials::Bearer("s3cret".into()));
        assert!(!bearer.contains("s3cret"));
        let client = format!(
            "{:?}",
            Credentials::ClientCredentials {
                token_url: Url::parse("https://auth/token").unwrap(),
                client_id: "gateway".into(),
                client_secret: "s3cret".into(),
                scope: None,
            }
        );
        assert!(!client.contains("s3cret"));
        assert!(client.contains("gateway"));
    }

    #[test]
    fn tokens_are_replaced_before_they_expire() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(30)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(10)),
            Duration::from_secs(1)
        );
    }
}
