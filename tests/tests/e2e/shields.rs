//! The shield lifecycle over GraphQL: request, approval by a second person, override, alert, review and lift.

use childgraph_tests::{Answer, TestGateway};
use serde_json::{Value, json};

const FIND: &str = r#"
query Find($c: ChildSearchInput!) {
  searchChildren(criteria: $c, access: { purpose: SAFEGUARDING }) {
    matches { child { id shielded name { given } address { postcode } carers { name } } }
  }
}"#;

fn amelia() -> Value {
    json!({ "familyName": "Hartley", "dateOfBirth": "2019-06-14" })
}

async fn find(gateway: &TestGateway, user: &str) -> (Value, Answer) {
    let answer = gateway
        .query_vars(user, FIND, json!({ "c": amelia() }))
        .await;
    let child = answer.body["data"]["searchChildren"]["matches"][0]["child"].clone();
    assert!(child.is_object(), "{:#}", answer.body);
    (child, answer)
}

async fn mutate(gateway: &TestGateway, user: &str, query: &str, variables: Value) -> Answer {
    gateway.query_vars(user, query, variables).await
}

const REQUEST: &str = "mutation($id: ID!, $r: String!) { requestShield(childId: $id, reason: $r) { id childId requestedBy approvedBy } }";
const APPROVE: &str = "mutation($id: ID!) { approveShield(requestId: $id) { childId approvedBy requestedBy reviewDue } }";
const LIFT: &str = "mutation($id: ID!, $r: String!) { liftShield(childId: $id, reason: $r) }";
const OVERRIDE: &str = "mutation($id: ID!, $j: String!) { overrideShield(childId: $id, justification: $j) { childId userId expiresAt } }";
const JUSTIFICATION: &str =
    "Seen at the emergency department tonight; need the GP and carers to arrange safe discharge.";

fn code(answer: &Answer) -> Option<String> {
    answer.codes().into_iter().next()
}

#[tokio::test]
async fn a_shield_takes_two_people_can_be_overridden_by_one_user_and_lifted() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let (child, _) = find(&gateway, "gp").await;
    let id = child["id"].as_str().unwrap().to_owned();
    assert_eq!(child["shielded"], false);
    assert!(child["carers"].as_array().is_some_and(|c| !c.is_empty()));

    // The GP asks; a role without shield.request may not.
    let vars = json!({ "id": id, "r": "A court order restricts where the family may be found." });
    let refused = mutate(&gateway, "auditor", REQUEST, vars.clone()).await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{:#}",
        refused.body
    );
    let empty = mutate(&gateway, "gp", REQUEST, json!({ "id": id, "r": "   " })).await;
    assert_eq!(
        code(&empty).as_deref(),
        Some("BAD_REQUEST"),
        "{:#}",
        empty.body
    );
    let unknown = mutate(
        &gateway,
        "gp",
        REQUEST,
        json!({ "id": "ch_nobody", "r": "x" }),
    )
    .await;
    assert_eq!(
        code(&unknown).as_deref(),
        Some("BAD_REQUEST"),
        "{:#}",
        unknown.body
    );
    let asked = mutate(&gateway, "gp", REQUEST, vars).await;
    let request = asked.body["data"]["requestShield"].clone();
    assert_eq!(request["requestedBy"], "gp", "{:#}", asked.body);
    assert!(request["approvedBy"].is_null());
    let request_id = request["id"].as_str().unwrap().to_owned();

    // Nothing changes until a shield officer approves; the requester's role cannot approve.
    let (child, _) = find(&gateway, "gp").await;
    assert_eq!(child["shielded"], false);
    let refused = mutate(&gateway, "gp", APPROVE, json!({ "id": request_id })).await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{:#}",
        refused.body
    );
    let pending = gateway
        .query(
            "shield-officer-1",
            "{ pendingShieldRequests { id childId } }",
        )
        .await;
    assert!(
        pending.body["data"]["pendingShieldRequests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == request_id.as_str()),
        "{:#}",
        pending.body
    );
    let approved = mutate(
        &gateway,
        "shield-officer-1",
        APPROVE,
        json!({ "id": request_id }),
    )
    .await;
    let shield = &approved.body["data"]["approveShield"];
    assert_eq!(
        shield["approvedBy"], "shield-officer-1",
        "{:#}",
        approved.body
    );
    assert_eq!(shield["requestedBy"], "gp");
    let review_due: chrono::DateTime<chrono::Utc> =
        shield["reviewDue"].as_str().unwrap().parse().unwrap();
    let months = (review_due - chrono::Utc::now()).num_days();
    assert!((180..=185).contains(&months), "review due in {months} days");
    let again = mutate(
        &gateway,
        "shield-officer-2",
        APPROVE,
        json!({ "id": request_id }),
    )
    .await;
    assert_eq!(
        code(&again).as_deref(),
        Some("BAD_REQUEST"),
        "{:#}",
        again.body
    );

    // Shielded: identity only, for everyone.
    let (child, answer) = find(&gateway, "gp").await;
    assert_eq!(child["shielded"], true);
    assert!(child["carers"].is_null());
    assert!(
        answer
            .errors_with("REDACTED")
            .iter()
            .any(|e| e["extensions"]["reason"] == "SHIELDED")
    );

    // An override: only with the right, only with a long enough justification, and only for that user.
    let vars = json!({ "id": id, "j": JUSTIFICATION });
    let refused = mutate(&gateway, "teacher", OVERRIDE, vars.clone()).await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{:#}",
        refused.body
    );
    let short = mutate(
        &gateway,
        "social-worker",
        OVERRIDE,
        json!({ "id": id, "j": "urgent" }),
    )
    .await;
    assert_eq!(
        code(&short).as_deref(),
        Some("BAD_REQUEST"),
        "{:#}",
        short.body
    );
    assert!(
        short.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at least 40")
    );
    let made = mutate(&gateway, "social-worker", OVERRIDE, vars).await;
    let expires: chrono::DateTime<chrono::Utc> = made.body["data"]["overrideShield"]["expiresAt"]
        .as_str()
        .unwrap_or_else(|| panic!("{:#}", made.body))
        .parse()
        .unwrap();
    let minutes = (expires - chrono::Utc::now()).num_minutes();
    assert!((29..=30).contains(&minutes), "{minutes}");
    let (child, answer) = find(&gateway, "social-worker").await;
    assert_eq!(child["shielded"], true);
    assert!(
        child["carers"].as_array().is_some_and(|c| !c.is_empty()),
        "{:#}",
        answer.body
    );
    assert!(
        child["address"]["postcode"].is_string(),
        "{:#}",
        answer.body
    );
    let (child, _) = find(&gateway, "gp").await;
    assert!(
        child["carers"].is_null(),
        "the override is the social worker's alone"
    );
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("childgraph_shield_overrides_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("childgraph_redactions_total{reason=\"SHIELDED\"}"),
        "{metrics}"
    );
    let policy_seconds: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("childgraph_policy_seconds_total "))
        .and_then(|v| v.parse().ok())
        .expect("the policy's time on /metrics");
    assert!(
        policy_seconds > 0.0,
        "the answers' policy work is timed: {metrics}"
    );
    let audited = childgraph::audit::for_child(&gateway.store().await, &id)
        .await
        .unwrap();
    for operation in ["shield.request", "shield.approve", "shield.override"] {
        assert!(
            audited.iter().any(|r| r.entry.operation == operation),
            "{operation} is audited"
        );
    }

    // Shield officers see the alert at once; others may not list alerts.
    let alerts = gateway
        .query(
            "shield-officer-2",
            "{ shieldAlerts { childId userId justification } }",
        )
        .await;
    let list = alerts.body["data"]["shieldAlerts"]
        .as_array()
        .unwrap_or_else(|| panic!("{:#}", alerts.body))
        .clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["userId"], "social-worker");
    assert_eq!(list[0]["justification"], JUSTIFICATION);
    let refused = gateway
        .query("teacher", "{ shieldAlerts { childId } }")
        .await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{:#}",
        refused.body
    );

    // Lifting ends the shield and any override of it.
    let refused = mutate(
        &gateway,
        "social-worker",
        LIFT,
        json!({ "id": id, "r": "order ended" }),
    )
    .await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{:#}",
        refused.body
    );
    let lifted = mutate(
        &gateway,
        "shield-officer-2",
        LIFT,
        json!({ "id": id, "r": "The court order has ended." }),
    )
    .await;
    assert_eq!(lifted.body["data"]["liftShield"], true, "{:#}", lifted.body);
    let (child, _) = find(&gateway, "gp").await;
    assert_eq!(child["shielded"], false);
    assert!(child["carers"].as_array().is_some_and(|c| !c.is_empty()));
    gateway.stop().await;
}

#[tokio::test]
async fn shields_due_for_review_are_listed_for_shield_officers() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let (child, _) = find(&gateway, "gp").await;
    let id = child["id"].as_str().unwrap().to_owned();
    let store = gateway.store().await;
    store
        .put_shield(&childgraph::store::Shield {
            child_id: id.clone(),
            reason: "review test".to_owned(),
            requested_by: "gp".to_owned(),
            approved_by: "shield-officer-1".to_owned(),
            review_due: chrono::Utc::now() - chrono::Duration::days(1),
        })
        .await
        .unwrap();
    let due = gateway
        .query(
            "shield-officer-1",
            "{ shieldsDueForReview { childId reviewDue } }",
        )
        .await;
    let list = due.body["data"]["shieldsDueForReview"]
        .as_array()
        .unwrap_or_else(|| panic!("{:#}", due.body))
        .clone();
    // Noah is shielded by the demo, due later; Amelia's is overdue.
    assert!(list.iter().any(|s| s["childId"] == id.as_str()), "{list:?}");
    assert!(
        list.iter()
            .all(|s| s["reviewDue"].as_str().unwrap() < chrono::Utc::now().to_rfc3339().as_str())
    );
    let refused = gateway
        .query("gp", "{ shieldsDueForReview { childId } }")
        .await;
    assert_eq!(code(&refused).as_deref(), Some("FORBIDDEN"));
    gateway.stop().await;
}

#[tokio::test]
async fn a_mutation_sent_with_get_is_refused() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let response = reqwest::Client::new()
        .get(gateway.url())
        .query(&[(
            "query",
            "mutation { liftShield(childId: \"x\", reason: \"y\") }",
        )])
        .bearer_auth(gateway.token("shield-officer-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 405);
    gateway.stop().await;
}

const RAISE: &str = "mutation($id: ID!, $n: String!) { raiseFlag(childId: $id, kind: HAS_INFORMATION, note: $n) { id kind note raisedBy { name organisation } } }";
const FLAGS: &str = r#"query($id: ID!) { child(id: $id, access: { purpose: SAFEGUARDING }) { flags { id kind note raisedBy { name } } } }"#;

#[tokio::test]
async fn practitioners_raise_and_withdraw_flags_and_record_disclosures() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let (child, _) = find(&gateway, "gp").await;
    let id = child["id"].as_str().unwrap().to_owned();

    let refused = mutate(
        &gateway,
        "auditor",
        RAISE,
        json!({ "id": id, "n": "call me" }),
    )
    .await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{:#}",
        refused.body
    );
    let long = mutate(
        &gateway,
        "teacher",
        RAISE,
        json!({ "id": id, "n": "x".repeat(281) }),
    )
    .await;
    assert_eq!(
        code(&long).as_deref(),
        Some("BAD_REQUEST"),
        "{:#}",
        long.body
    );
    let raised = mutate(
        &gateway,
        "teacher",
        RAISE,
        json!({ "id": id, "n": "Please call the school office before a home visit." }),
    )
    .await;
    let flag_id = raised.body["data"]["raiseFlag"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{:#}", raised.body))
        .to_owned();
    assert_eq!(
        raised.body["data"]["raiseFlag"]["raisedBy"]["name"],
        "Priya Shah"
    );

    // Another practitioner sees it on the child.
    let seen = gateway.query_vars("gp", FLAGS, json!({ "id": id })).await;
    let flags = seen.body["data"]["child"]["flags"]
        .as_array()
        .unwrap_or_else(|| panic!("{:#}", seen.body))
        .clone();
    assert!(
        flags
            .iter()
            .any(|f| f["id"] == flag_id.as_str() && f["raisedBy"]["name"] == "Priya Shah")
    );

    // Only the raiser, or their organisation, withdraws it.
    let withdraw = "mutation($id: ID!) { withdrawFlag(flagId: $id) }";
    let refused = mutate(&gateway, "gp", withdraw, json!({ "id": flag_id })).await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{:#}",
        refused.body
    );
    let done = mutate(&gateway, "teacher", withdraw, json!({ "id": flag_id })).await;
    assert_eq!(done.body["data"]["withdrawFlag"], true, "{:#}", done.body);
    let seen = gateway.query_vars("gp", FLAGS, json!({ "id": id })).await;
    assert!(!seen.body.to_string().contains(&flag_id), "{:#}", seen.body);

    // Any kind of flag carries how to reach its raiser; a colleague of the raiser's organisation may withdraw it.
    let store = gateway.store().await;
    let mut colleague = store
        .account("teacher")
        .await
        .unwrap()
        .expect("the teacher");
    colleague.user_id = "teacher-2".to_owned();
    colleague.display_name = "Tom Reed".to_owned();
    store.upsert_account(&colleague).await.unwrap();
    let raise = "mutation($id: ID!, $k: FlagKind!) { raiseFlag(childId: $id, kind: $k, note: \"Speak to the head first.\") { id kind raisedBy { name organisation email } } }";
    for kind in ["TAKING_ACTION", "ASSESSMENT_DONE"] {
        let raised = mutate(&gateway, "teacher", raise, json!({ "id": id, "k": kind })).await;
        let flag = &raised.body["data"]["raiseFlag"];
        assert_eq!(flag["kind"], kind, "{:#}", raised.body);
        assert_eq!(flag["raisedBy"]["name"], "Priya Shah", "{:#}", raised.body);
        assert!(
            flag["raisedBy"]["organisation"].is_string(),
            "{:#}",
            raised.body
        );
        let by_colleague =
            mutate(&gateway, "teacher-2", withdraw, json!({ "id": flag["id"] })).await;
        assert_eq!(
            by_colleague.body["data"]["withdrawFlag"], true,
            "{:#}",
            by_colleague.body
        );
    }

    // A disclosure outside the system is recorded, and audited.
    let disclose = "mutation($id: ID!) { recordDisclosure(childId: $id, recipient: \"Hartfield Police Child Protection Unit\", purpose: \"Strategy discussion\", lawfulBasis: PUBLIC_TASK, consent: false) { id lawfulBasis consent recordedBy } }";
    let refused = mutate(&gateway, "auditor", disclose, json!({ "id": id })).await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{:#}",
        refused.body
    );
    let recorded = mutate(&gateway, "gp", disclose, json!({ "id": id })).await;
    assert_eq!(
        recorded.body["data"]["recordDisclosure"]["lawfulBasis"], "PUBLIC_TASK",
        "{:#}",
        recorded.body
    );
    assert_eq!(
        recorded.body["data"]["recordDisclosure"]["recordedBy"],
        "gp"
    );
    let log = childgraph::audit::for_child(&store, &id).await.unwrap();
    for operation in ["flag.raise", "flag.withdraw", "disclosure"] {
        assert!(
            log.iter()
                .any(|r| r.entry.operation == operation && r.entry.outcome == "ok"),
            "{operation}"
        );
    }
    assert_eq!(store.disclosures(&id).await.unwrap().len(), 1);
    gateway.stop().await;
}

/// Shields a child: the GP asks, a shield officer approves.
async fn shield(gateway: &TestGateway, child_id: &Value) {
    let reason = "A court order restricts where the family may be found.";
    let asked = mutate(
        gateway,
        "gp",
        REQUEST,
        json!({ "id": child_id, "r": reason }),
    )
    .await;
    let request_id = asked.body["data"]["requestShield"]["id"].clone();
    let approved = mutate(
        gateway,
        "shield-officer-1",
        APPROVE,
        json!({ "id": request_id }),
    )
    .await;
    assert!(approved.errors().is_empty(), "{:#}", approved.body);
}

const SEARCH: &str = r#"
query Find($c: ChildSearchInput!) {
  searchChildren(criteria: $c, access: { purpose: SAFEGUARDING }) {
    tooManyResults
    matches { child { id name { given } address { postcode } } }
  }
}"#;

/// With a limit of one result, the twins are too many for a search on visible fields; shielded, they are left out of
/// a search that uses their hidden postcode before the results are counted, so that its `tooManyResults` says
/// nothing of them.
#[tokio::test]
async fn a_shielded_child_found_only_through_a_hidden_field_is_not_counted_either() {
    let gateway = TestGateway::builder()
        .children(0)
        .configure(|o| o.request.max_results = 1)
        .spawn()
        .await;
    let twin = |given: &str| json!({ "c": { "givenName": given, "familyName": "Brennan", "dateOfBirth": "2017-01-22" } });
    let isla = gateway.query_vars("gp", SEARCH, twin("Isla")).await;
    let isla = isla.body["data"]["searchChildren"]["matches"][0]["child"].clone();
    let ava = gateway.query_vars("gp", SEARCH, twin("Ava")).await;
    let ava = ava.body["data"]["searchChildren"]["matches"][0]["child"].clone();
    let postcode = ava["address"]["postcode"].as_str().unwrap().to_owned();
    assert_eq!(
        isla["address"]["postcode"],
        postcode.as_str(),
        "twins share a home"
    );

    shield(&gateway, &isla["id"]).await;

    // Visible fields only: both twins match, one over the limit, and no list.
    let both = json!({ "c": { "familyName": "Brennan", "dateOfBirth": "2017-01-22" } });
    let answer = gateway.query_vars("gp", SEARCH, both).await;
    assert_eq!(
        answer.body["data"]["searchChildren"]["tooManyResults"], true,
        "{:#}",
        answer.body
    );
    assert!(
        answer.body["data"]["searchChildren"]["matches"].is_null(),
        "{:#}",
        answer.body
    );
    assert!(answer.errors().is_empty(), "{:#}", answer.body);

    // The same with the postcode, which a shielded record hides. The shield covers Ava too, a possible match of
    // her sister, so neither is found; counted before they were left out, two would have been over the limit.
    let by_postcode = json!({ "c": { "familyName": "Brennan", "dateOfBirth": "2017-01-22", "postcode": postcode } });
    let answer = gateway.query_vars("gp", SEARCH, by_postcode).await;
    let result = &answer.body["data"]["searchChildren"];
    assert_eq!(result["tooManyResults"], false, "{:#}", answer.body);
    assert_eq!(result["matches"], json!([]), "{:#}", answer.body);
    assert!(answer.errors().is_empty(), "{:#}", answer.body);
    // And on visible fields, Ava shows as shielded: her postcode withheld.
    let answer = gateway.query_vars("gp", SEARCH, twin("Ava")).await;
    let shown = &answer.body["data"]["searchChildren"]["matches"][0]["child"];
    assert_eq!(shown["id"], ava["id"], "{:#}", answer.body);
    assert!(shown["address"].is_null(), "{:#}", answer.body);
    gateway.stop().await;
}

/// A shield covers a possible match the moment it is approved: a twin whose id a practitioner already holds shows
/// as shielded when viewed by that id, with no search in between.
#[tokio::test]
async fn an_approved_shield_covers_a_possible_match_viewed_by_its_id_at_once() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let twin = |given: &str| json!({ "c": { "givenName": given, "familyName": "Brennan", "dateOfBirth": "2017-01-22" } });
    let found = |answer: &Answer| {
        answer.body["data"]["searchChildren"]["matches"][0]["child"]["id"].clone()
    };
    let isla = found(&gateway.query_vars("gp", SEARCH, twin("Isla")).await);
    let ava = found(&gateway.query_vars("gp", SEARCH, twin("Ava")).await);
    let view = format!(
        "{{ child(id: {ava}, access: {{ purpose: SAFEGUARDING }}) {{ id shielded address {{ postcode }} }} }}"
    );
    let before = gateway.query("gp", &view).await;
    assert_eq!(
        before.body["data"]["child"]["shielded"], false,
        "{:#}",
        before.body
    );
    assert!(before.body["data"]["child"]["address"]["postcode"].is_string());

    shield(&gateway, &isla).await;

    let after = gateway.query("gp", &view).await;
    assert_eq!(
        after.body["data"]["child"]["shielded"], true,
        "{:#}",
        after.body
    );
    assert!(
        after.body["data"]["child"]["address"].is_null(),
        "{:#}",
        after.body
    );
    let redacted = after.errors_with("REDACTED");
    assert_eq!(
        redacted[0]["extensions"]["reason"], "SHIELDED",
        "{:#}",
        after.body
    );
    // The spread shield is in the register, for a shield officer to review.
    let ava = ava.as_str().unwrap().to_owned();
    let register = gateway
        .store()
        .await
        .shielded(std::slice::from_ref(&ava))
        .await
        .unwrap();
    assert!(register.contains(&ava));
    gateway.stop().await;
}

/// The policy decides who is alerted to an override: the roles `shielding.override.alert` names read
/// `shieldAlerts`, and no others, shield officers included.
#[tokio::test]
async fn shield_alerts_go_to_the_roles_the_policy_alerts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.yaml");
    let text = childgraph_policies::DEFAULT_POLICY
        .replace("alert: [shield-officer]", "alert: [social-worker]");
    assert_ne!(text, childgraph_policies::DEFAULT_POLICY);
    std::fs::write(&policy, text).expect("write the policy");
    let gateway = TestGateway::builder()
        .children(0)
        .configure(|o| o.policy = Some(policy))
        .spawn()
        .await;
    let (child, _) = find(&gateway, "gp").await;
    let made = mutate(
        &gateway,
        "social-worker",
        OVERRIDE,
        json!({ "id": child["id"], "j": JUSTIFICATION }),
    )
    .await;
    assert!(made.errors().is_empty(), "{:#}", made.body);
    let read = gateway
        .query("social-worker", "{ shieldAlerts { userId } }")
        .await;
    assert_eq!(
        read.body["data"]["shieldAlerts"][0]["userId"], "social-worker",
        "{:#}",
        read.body
    );
    let refused = gateway
        .query("shield-officer-1", "{ shieldAlerts { userId } }")
        .await;
    assert_eq!(
        code(&refused).as_deref(),
        Some("FORBIDDEN"),
        "{:#}",
        refused.body
    );
    gateway.stop().await;
}
