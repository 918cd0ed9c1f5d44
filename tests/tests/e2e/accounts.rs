//! Accounts as authorisers manage them: granted within their own organisation, revoked at once, lapsed by time.

use childgraph_tests::TestGateway;
use serde_json::{Value, json};

const AUTHORISE: &str = r#"
mutation($input: AuthoriseUserInput!) {
  authoriseUser(input: $input) { userId organisationId roles clearanceReference clearanceExpires authorisedBy recertifyBy standing }
}"#;

const REVOKE: &str = r#"
mutation($user: String!) { revokeUser(userId: $user, reason: "left the council") { userId standing } }"#;

const RECERTIFY: &str = r#"
mutation($user: String!, $expires: Date) {
  recertifyUser(userId: $user, clearanceExpires: $expires) { userId standing recertifyBy clearanceExpires }
}"#;

const ME: &str = "{ me { userId roles } }";

const VIEW: &str = r#"query($id: ID!) { child(id: $id, access: { purpose: SAFEGUARDING }) { id name { given } } }"#;

fn days_from_today(days: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(days)).to_string()
}

fn grant(user: &str, organisation: &str, roles: &[&str]) -> Value {
    json!({ "input": {
        "userId": user,
        "displayName": "Sam Duty",
        "organisationId": organisation,
        "roles": roles,
        "clearanceReference": "DBS-001234",
        "clearanceExpires": days_from_today(365),
        "trainingCompleted": days_from_today(-7),
        "email": "sam.duty@council.example",
    }})
}

async fn amelia(gateway: &TestGateway) -> String {
    let found = gateway
        .query(
            "teacher",
            r#"{ searchChildren(criteria: { familyName: "Hartley", dateOfBirth: "2019-06-14" }, access: { purpose: SAFEGUARDING }) { matches { child { id } } } }"#,
        )
        .await;
    found.body["data"]["searchChildren"]["matches"][0]["child"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{:#}", found.body))
        .to_owned()
}

#[tokio::test]
async fn an_authoriser_grants_access_in_their_own_organisation_only() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let id = amelia(&gateway).await;

    // Before any authorisation, the user is refused.
    let before = gateway.query("duty-worker", ME).await;
    assert_eq!(before.codes(), ["FORBIDDEN"], "{:#}", before.body);

    let granted = gateway
        .query_vars(
            "authoriser",
            AUTHORISE,
            grant("duty-worker", "org-council", &["social-worker"]),
        )
        .await;
    assert!(granted.errors().is_empty(), "{:#}", granted.body);
    let account = &granted.body["data"]["authoriseUser"];
    assert_eq!(account["standing"], "ACTIVE");
    assert_eq!(account["authorisedBy"], "authoriser");
    assert_eq!(account["organisationId"], "org-council");
    let recertify_by: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(account["recertifyBy"].clone()).unwrap();
    let months = (recertify_by - chrono::Utc::now()).num_days();
    assert!((118..=124).contains(&months), "four months: {months} days");

    let view = gateway
        .query_vars("duty-worker", VIEW, json!({ "id": id }))
        .await;
    assert!(view.errors().is_empty(), "{:#}", view.body);
    assert_eq!(view.body["data"]["child"]["name"]["given"], "Amelia");

    // Another organisation's account, another organisation, and the authoriser's own account are all refused.
    for (variables, what) in [
        (
            grant("gp", "org-council", &["gp"]),
            "another organisation's user",
        ),
        (
            grant("new-gp", "org-elm-tree", &["gp"]),
            "another organisation",
        ),
        (
            grant("authoriser", "org-council", &["social-worker"]),
            "their own account",
        ),
    ] {
        let refused = gateway.query_vars("authoriser", AUTHORISE, variables).await;
        assert_eq!(refused.codes(), ["FORBIDDEN"], "{what}: {:#}", refused.body);
    }
    let gp = gateway
        .query_vars("authoriser", REVOKE, json!({ "user": "gp" }))
        .await;
    assert_eq!(gp.codes(), ["FORBIDDEN"], "{:#}", gp.body);
    let still = gateway.query("gp", ME).await;
    assert!(
        still.errors().is_empty(),
        "the GP is untouched: {:#}",
        still.body
    );

    // Without accounts.manage, nobody authorises.
    let teacher = gateway
        .query_vars(
            "teacher",
            AUTHORISE,
            grant("helper", "org-riverside", &["teacher"]),
        )
        .await;
    assert_eq!(teacher.codes(), ["FORBIDDEN"], "{:#}", teacher.body);

    // Bad grants say what to fix.
    let mut unknown = grant("duty-2", "org-council", &["wizard"]);
    let bad = gateway
        .query_vars("authoriser", AUTHORISE, unknown.clone())
        .await;
    assert_eq!(bad.codes(), ["BAD_REQUEST"], "{:#}", bad.body);
    assert!(
        bad.errors()[0]["message"]
            .as_str()
            .unwrap()
            .contains("wizard")
    );
    unknown["input"]["roles"] = json!(["social-worker"]);
    unknown["input"]["clearanceExpires"] = json!(days_from_today(-1));
    let expired = gateway.query_vars("authoriser", AUTHORISE, unknown).await;
    assert_eq!(expired.codes(), ["BAD_REQUEST"], "{:#}", expired.body);

    // The authoriser lists the organisation's accounts, and every change is audited with the account it was about.
    let listed = gateway
        .query("authoriser", "{ organisationAccounts { userId standing } }")
        .await;
    let users: Vec<&str> = listed.body["data"]["organisationAccounts"]
        .as_array()
        .unwrap_or_else(|| panic!("{:#}", listed.body))
        .iter()
        .filter_map(|a| a["userId"].as_str())
        .collect();
    assert_eq!(users, ["auditor", "authoriser", "duty-worker"]);
    let subjects: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT operation, outcome, subject FROM audit_log WHERE operation LIKE 'account.%' ORDER BY seq",
    )
    .fetch_all(&mut gateway.db().await)
    .await
    .unwrap();
    assert_eq!(
        subjects[0],
        (
            "account.authorise".to_owned(),
            "ok".to_owned(),
            Some("duty-worker".to_owned())
        )
    );
    for user in ["gp", "new-gp", "authoriser"] {
        assert!(
            subjects
                .iter()
                .any(|s| s.1 == "denied" && s.2.as_deref() == Some(user)),
            "the refusal for {user} is audited: {subjects:?}"
        );
    }
}

#[tokio::test]
async fn an_authoriser_without_a_practitioner_role_sees_no_child_data() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let id = amelia(&gateway).await;
    let view = gateway
        .query_vars("authoriser", VIEW, json!({ "id": id }))
        .await;
    assert_eq!(view.codes(), ["FORBIDDEN"], "{:#}", view.body);
    assert!(view.body["data"]["child"].is_null(), "{:#}", view.body);
}

#[tokio::test]
async fn a_revoked_user_is_refused_on_their_next_request() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let granted = gateway
        .query_vars(
            "authoriser",
            AUTHORISE,
            grant("duty-worker", "org-council", &["social-worker"]),
        )
        .await;
    assert!(granted.errors().is_empty(), "{:#}", granted.body);
    // The account is read, and kept for the gateway's account cache period.
    assert!(gateway.query("duty-worker", ME).await.errors().is_empty());

    let revoked = gateway
        .query_vars("authoriser", REVOKE, json!({ "user": "duty-worker" }))
        .await;
    assert_eq!(
        revoked.body["data"]["revokeUser"]["standing"], "REVOKED",
        "{:#}",
        revoked.body
    );
    let refused = gateway.query("duty-worker", ME).await;
    assert_eq!(refused.codes(), ["FORBIDDEN"], "{:#}", refused.body);
    // The refusal is a denied attempt, in the audit log under the user's name.
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    let store = gateway.store().await;
    let denied = childgraph::audit::by_operation(&store, "sign_in", since)
        .await
        .unwrap();
    assert_eq!(denied.len(), 1, "{denied:#?}");
    assert_eq!(denied[0].entry.user_id, "duty-worker");
    assert_eq!(denied[0].entry.outcome, "denied");
    // A token that names nobody (signed by another key) is refused, and not recorded.
    let forged = gateway
        .query_with(
            Some("eyJhbGciOiJFZERTQSIsImtpZCI6Im5vIn0.e30.c2ln"),
            ME,
            Value::Null,
        )
        .await;
    assert_eq!(forged.codes(), ["UNAUTHENTICATED"], "{:#}", forged.body);
    let after = childgraph::audit::by_operation(&store, "sign_in", since)
        .await
        .unwrap();
    assert_eq!(after.len(), 1, "{after:#?}");

    // A revoked account is not recertified; it is authorised again.
    let recertify = gateway
        .query_vars("authoriser", RECERTIFY, json!({ "user": "duty-worker" }))
        .await;
    assert_eq!(recertify.codes(), ["BAD_REQUEST"], "{:#}", recertify.body);
    let again = gateway
        .query_vars(
            "authoriser",
            AUTHORISE,
            grant("duty-worker", "org-council", &["social-worker"]),
        )
        .await;
    assert_eq!(
        again.body["data"]["authoriseUser"]["standing"], "ACTIVE",
        "{:#}",
        again.body
    );
    assert!(gateway.query("duty-worker", ME).await.errors().is_empty());
}

#[tokio::test]
async fn access_lapses_when_recertification_is_missed_or_the_clearance_expires() {
    let gateway = TestGateway::builder()
        .children(0)
        .configure(|o| o.account_cache = std::time::Duration::ZERO)
        .spawn()
        .await;
    let granted = gateway
        .query_vars(
            "authoriser",
            AUTHORISE,
            grant("duty-worker", "org-council", &["social-worker"]),
        )
        .await;
    assert!(granted.errors().is_empty(), "{:#}", granted.body);
    let set = |sql: &'static str| {
        let gateway = &gateway;
        async move {
            sqlx::query(sql)
                .execute(&mut gateway.db().await)
                .await
                .unwrap();
        }
    };

    // Four months pass without a recertification.
    set("UPDATE accounts SET recertify_by = '2020-01-01T00:00:00+00:00' WHERE user_id = 'duty-worker'").await;
    let lapsed = gateway.query("duty-worker", ME).await;
    assert_eq!(lapsed.codes(), ["FORBIDDEN"], "{:#}", lapsed.body);
    assert!(
        lapsed.errors()[0]["message"]
            .as_str()
            .unwrap()
            .contains("recertified"),
        "{:#}",
        lapsed.body
    );
    let recertified = gateway
        .query_vars("authoriser", RECERTIFY, json!({ "user": "duty-worker" }))
        .await;
    assert_eq!(
        recertified.body["data"]["recertifyUser"]["standing"], "ACTIVE",
        "{:#}",
        recertified.body
    );
    assert!(gateway.query("duty-worker", ME).await.errors().is_empty());

    // The clearance expires.
    set("UPDATE accounts SET clearance_expires = '2020-01-01' WHERE user_id = 'duty-worker'").await;
    let lapsed = gateway.query("duty-worker", ME).await;
    assert_eq!(lapsed.codes(), ["FORBIDDEN"], "{:#}", lapsed.body);
    assert!(
        lapsed.errors()[0]["message"]
            .as_str()
            .unwrap()
            .contains("clearance"),
        "{:#}",
        lapsed.body
    );
    // Recertifying needs the renewed clearance's expiry.
    let missing = gateway
        .query_vars("authoriser", RECERTIFY, json!({ "user": "duty-worker" }))
        .await;
    assert_eq!(missing.codes(), ["BAD_REQUEST"], "{:#}", missing.body);
    let renewed = gateway
        .query_vars(
            "authoriser",
            RECERTIFY,
            json!({ "user": "duty-worker", "expires": days_from_today(200) }),
        )
        .await;
    assert_eq!(
        renewed.body["data"]["recertifyUser"]["clearanceExpires"],
        days_from_today(200),
        "{:#}",
        renewed.body
    );
    assert!(gateway.query("duty-worker", ME).await.errors().is_empty());
}

const AUTHORISE_CLIENT: &str = r#"
mutation($input: AuthoriseClientInput!) {
  authoriseClient(input: $input) { userId standing client { scopes searchesPerMinute childrenPerHour } }
}"#;

const FIND: &str = r#"query($f: String!, $d: Date!) { searchChildren(criteria: { familyName: $f, dateOfBirth: $d }, access: { purpose: SAFEGUARDING }) { matches { child { id } } } }"#;

#[tokio::test]
async fn an_api_client_acts_within_its_scopes_and_its_own_quota() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let amelia = amelia(&gateway).await;
    let leo = gateway
        .query_vars(
            "teacher",
            FIND,
            json!({ "f": "Fernandes", "d": "2012-09-05" }),
        )
        .await
        .body["data"]["searchChildren"]["matches"][0]["child"]["id"]
        .as_str()
        .expect("Leo")
        .to_owned();
    let granted = gateway
        .query_vars(
            "authoriser",
            AUTHORISE_CLIENT,
            json!({ "input": {
                "clientId": "partner-case-system",
                "displayName": "Partner agency case system",
                "organisationId": "org-council",
                "roles": ["social-worker"],
                "scopes": ["VIEW"],
                "agreementReference": "DSA-2026-014",
                "agreementExpires": days_from_today(365),
                "childrenPerHour": 1,
            }}),
        )
        .await;
    let client = &granted.body["data"]["authoriseClient"];
    assert_eq!(client["standing"], "ACTIVE", "{:#}", granted.body);
    assert_eq!(client["client"]["scopes"], json!(["VIEW"]));

    let key = &gateway.demo().key;
    let token = key
        .client_token("partner-case-system", &["view", "search"])
        .unwrap();
    let view = gateway
        .query_with(Some(&token), VIEW, json!({ "id": amelia }))
        .await;
    assert!(view.errors().is_empty(), "{:#}", view.body);
    assert_eq!(view.body["data"]["child"]["name"]["given"], "Amelia");

    // The token asked for search too, but the account was not granted it.
    let search = gateway
        .query_with(
            Some(&token),
            FIND,
            json!({ "f": "Hartley", "d": "2019-06-14" }),
        )
        .await;
    assert_eq!(search.codes(), ["FORBIDDEN"], "{:#}", search.body);
    // A token granted less than the account holds is held to the token's scopes.
    let narrow = key
        .client_token("partner-case-system", &["search"])
        .unwrap();
    let refused = gateway
        .query_with(Some(&narrow), VIEW, json!({ "id": amelia }))
        .await;
    assert_eq!(refused.codes(), ["FORBIDDEN"], "{:#}", refused.body);
    // No client may act beyond its scopes' operations: shield actions need a person.
    let shield = gateway
        .query_with(
            Some(&token),
            r#"mutation($id: ID!) { requestShield(childId: $id, reason: "court order") { id } }"#,
            json!({ "id": amelia }),
        )
        .await;
    assert_eq!(shield.codes(), ["FORBIDDEN"], "{:#}", shield.body);

    // The client's own quota of one distinct child an hour holds, though the gateway's is off here.
    let second = gateway
        .query_with(Some(&token), VIEW, json!({ "id": leo }))
        .await;
    assert_eq!(second.codes(), ["RATE_LIMITED"], "{:#}", second.body);

    // A client token naming a person's account, and a person's token naming the client's, are both refused.
    let posing = key.client_token("gp", &["view"]).unwrap();
    let posed = gateway
        .query_with(Some(&posing), VIEW, json!({ "id": amelia }))
        .await;
    assert_eq!(posed.codes(), ["FORBIDDEN"], "{:#}", posed.body);
    let person = gateway.query("partner-case-system", ME).await;
    assert_eq!(person.codes(), ["FORBIDDEN"], "{:#}", person.body);

    // The audit names the client in the records of what it did; the two refused sign-ins are each recorded as a
    // denied attempt of the account the token named.
    let clients: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT operation, client FROM audit_log WHERE user_id = 'partner-case-system' AND operation <> 'sign_in'
         ORDER BY seq",
    )
    .fetch_all(&mut gateway.db().await)
    .await
    .unwrap();
    assert!(!clients.is_empty());
    assert!(
        clients
            .iter()
            .all(|(_, c)| c.as_deref() == Some("partner-case-system")),
        "{clients:?}"
    );
    // An auditor reading the child's access log sees the client too.
    let log = gateway
        .query_vars(
            "auditor",
            "query($id: ID!) { childAccessLog(childId: $id) { userId client operation } }",
            json!({ "id": amelia }),
        )
        .await;
    let entries = log.body["data"]["childAccessLog"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|e| e["userId"] == "partner-case-system" && e["client"] == "partner-case-system"),
        "{:#}",
        log.body
    );
    let sign_ins: Vec<(String, String)> = sqlx::query_as(
        "SELECT user_id, outcome FROM audit_log WHERE operation = 'sign_in' ORDER BY seq",
    )
    .fetch_all(&mut gateway.db().await)
    .await
    .unwrap();
    assert_eq!(
        sign_ins,
        [
            ("gp".to_owned(), "denied".to_owned()),
            ("partner-case-system".to_owned(), "denied".to_owned())
        ]
    );
}

/// Two people, even when one person holds both roles: a user who may request and approve shields cannot approve
/// their own request, and the attempt is on record.
#[tokio::test]
async fn one_person_with_both_shield_roles_cannot_approve_their_own_request() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let granted = gateway
        .query_vars(
            "authoriser",
            AUTHORISE,
            grant(
                "duty-lead",
                "org-council",
                &["social-worker", "shield-officer"],
            ),
        )
        .await;
    assert!(granted.errors().is_empty(), "{:#}", granted.body);
    let found = gateway
        .query(
            "duty-lead",
            r#"{ searchChildren(criteria: { familyName: "Hartley", dateOfBirth: "2019-06-14" }, access: { purpose: SAFEGUARDING }) { matches { child { id } } } }"#,
        )
        .await;
    let child = found.body["data"]["searchChildren"]["matches"][0]["child"]["id"].clone();
    assert!(child.is_string(), "{:#}", found.body);
    let asked = gateway
        .query_vars(
            "duty-lead",
            r#"mutation($id: ID!) { requestShield(childId: $id, reason: "court order") { id } }"#,
            json!({ "id": child }),
        )
        .await;
    let request = asked.body["data"]["requestShield"]["id"].clone();
    assert!(request.is_string(), "{:#}", asked.body);
    let approve = r#"mutation($id: ID!) { approveShield(requestId: $id) { childId } }"#;
    let own = gateway
        .query_vars("duty-lead", approve, json!({ "id": request }))
        .await;
    assert_eq!(own.codes(), ["FORBIDDEN"], "{:#}", own.body);
    let records: Vec<(String, String)> = sqlx::query_as(
        "SELECT operation, outcome FROM audit_log WHERE user_id = 'duty-lead' AND operation LIKE 'shield.%' ORDER BY seq",
    )
    .fetch_all(&mut gateway.db().await)
    .await
    .unwrap();
    let expected = [("shield.request", "ok"), ("shield.approve", "denied")]
        .map(|(o, r)| (o.to_owned(), r.to_owned()));
    assert_eq!(records, expected);
    // Someone else approves it.
    let other = gateway
        .query_vars("shield-officer-1", approve, json!({ "id": request }))
        .await;
    assert_eq!(
        other.body["data"]["approveShield"]["childId"], child,
        "{:#}",
        other.body
    );
}

/// A genuine token without MFA: `FORBIDDEN` over HTTP, with a message that says what is missing, and a denied
/// sign-in on record under the user it names.
#[tokio::test]
async fn a_token_without_mfa_is_forbidden_with_a_clear_message_and_recorded() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let pem = std::fs::read(gateway.dir.path().join(childgraph::demo_key::KEY_FILE)).unwrap();
    let key = jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("childgraph-demo".into());
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "iss": childgraph::config::DEMO_ISSUER, "aud": "childgraph", "sub": "gp",
        "iat": now, "nbf": now, "exp": now + 600, "amr": ["pwd"] });
    let token = jsonwebtoken::encode(&header, &claims, &key).unwrap();
    let answer = gateway.query_with(Some(&token), ME, Value::Null).await;
    assert_eq!(answer.status, 403, "{:#}", answer.body);
    assert_eq!(answer.codes(), ["FORBIDDEN"], "{:#}", answer.body);
    let message = answer.body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("multi-factor authentication is required"),
        "{message}"
    );
    assert!(answer.body["data"].is_null(), "{:#}", answer.body);
    let denied: Vec<(String, String)> =
        sqlx::query_as("SELECT user_id, outcome FROM audit_log WHERE operation = 'sign_in'")
            .fetch_all(&mut gateway.db().await)
            .await
            .unwrap();
    assert_eq!(denied, [("gp".to_owned(), "denied".to_owned())]);
}
