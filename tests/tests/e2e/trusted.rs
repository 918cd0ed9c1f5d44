//! Trusted documents: registered operations by id, and trusted mode.

use childgraph_tests::TestGateway;
use serde_json::json;
use sha2::Digest as _;

const ME: &str = "query Me { me { userId } }";

fn id(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn in_trusted_mode_only_registered_operations_run() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("documents.json");
    std::fs::write(
        &manifest,
        json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{ "id": id(ME), "name": "Me", "type": "query", "body": ME }],
        })
        .to_string(),
    )
    .unwrap();
    let gateway = TestGateway::builder()
        .children(0)
        .configure(|o| {
            o.request.trusted_documents = Some(childgraph::config::TrustedDocumentsConfig {
                manifest,
                enforce: childgraph::graphql::trusted::Enforce::Everyone,
            })
        })
        .spawn()
        .await;
    let token = gateway.token("gp");
    let http = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        http.post(gateway.url())
            .bearer_auth(&token)
            .json(&body)
            .send()
    };

    // By id alone, and by its registered text.
    let by_id =
        post(json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": id(ME) } } }))
            .await
            .unwrap();
    assert_eq!(by_id.status(), 200);
    let body: serde_json::Value = by_id.json().await.unwrap();
    assert_eq!(body["data"]["me"]["userId"], "gp", "{body:#}");
    let answer = gateway.query("gp", ME).await;
    assert!(answer.errors().is_empty(), "{:#}", answer.body);

    // Any other text is refused, and the refusal audited; an unknown id is a bad request.
    let other = gateway.query("gp", "{ me { userId roles } }").await;
    assert_eq!(other.codes(), ["FORBIDDEN"], "{:#}", other.body);
    let unknown = post(json!({ "extensions": { "persistedQuery": { "version": 1, "sha256Hash": id("{ me { roles } }") } } }))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    let records: Vec<(String, String)> = sqlx::query_as(
        "SELECT operation, outcome FROM audit_log WHERE user_id = 'gp' AND operation = 'request'",
    )
    .fetch_all(&mut gateway.db().await)
    .await
    .unwrap();
    assert_eq!(records, [("request".to_owned(), "denied".to_owned())]);
    gateway.stop().await;
}
