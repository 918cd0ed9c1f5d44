//! End-to-end tests: the real gateway on `127.0.0.1:0` against the three simulators, over HTTP, as a client sees it.

use childgraph_tests::{Answer, TestGateway};
use serde_json::{Value, json};

const SEARCH: &str = r#"
query Search($c: ChildSearchInput!) {
  searchChildren(criteria: $c, access: { purpose: SAFEGUARDING }) {
    tooManyResults
    matches {
      score
      child {
        id shielded
        name { given family }
        dateOfBirth gender
        identifiers { kind value source }
        address { lines postcode }
        carers { name relationship phone }
        services { kind source organisation { name } practitioner { name } }
        participation { kind source description status }
        flags { kind note raisedBy { name } }
        sources { source status responseTimeMs }
      }
    }
  }
}"#;

async fn search(gateway: &TestGateway, user: &str, criteria: Value) -> Answer {
    gateway
        .query_vars(user, SEARCH, json!({ "c": criteria }))
        .await
}

fn amelia() -> Value {
    json!({ "familyName": "Hartley", "dateOfBirth": "2019-06-14" })
}

/// Amelia's id, as a GP's search finds her.
async fn amelia_id(gateway: &TestGateway) -> String {
    let answer = search(gateway, "gp", amelia()).await;
    matches(&answer)
        .first()
        .and_then(|m| m["child"]["id"].as_str())
        .unwrap_or_else(|| panic!("Amelia: {:#}", answer.body))
        .to_owned()
}

fn matches(answer: &Answer) -> Vec<Value> {
    answer.body["data"]["searchChildren"]["matches"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn sources_of(child: &Value, list: &str) -> Vec<String> {
    let mut sources: Vec<String> = child[list]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["source"].as_str().map(str::to_owned))
        .collect();
    sources.sort();
    sources.dedup();
    sources
}

fn status_of(child: &Value, source: &str) -> String {
    child["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["source"] == source)
        .expect("listed")["status"]
        .as_str()
        .expect("status")
        .to_owned()
}

#[tokio::test]
async fn a_child_in_all_three_sources_comes_back_as_one_child_with_each_sources_data() {
    let gateway = TestGateway::builder().spawn().await;
    let answer = search(&gateway, "gp", amelia()).await;
    assert_eq!(answer.status, 200);
    assert!(answer.errors().is_empty(), "{:#}", answer.body);
    let found = matches(&answer);
    assert_eq!(found.len(), 1, "{:#}", answer.body);
    let child = &found[0]["child"];
    assert_eq!(
        child["name"],
        json!({ "given": "Amelia", "family": "Hartley" })
    );
    assert_eq!(child["dateOfBirth"], "2019-06-14");
    assert!(!child["shielded"].as_bool().expect("bool"));
    // The identifiers come from health (NHS number) and school (UPN, under the school's misspelling).
    let identifiers = sources_of(child, "identifiers");
    assert!(
        identifiers.contains(&"HEALTH".to_owned()) && identifiers.contains(&"SCHOOL".to_owned()),
        "{child:#}"
    );
    // Services come from health (GP) and school; participation from all three.
    assert!(
        sources_of(child, "services").contains(&"SCHOOL".to_owned()),
        "{child:#}"
    );
    assert!(
        sources_of(child, "services").contains(&"HEALTH".to_owned()),
        "{child:#}"
    );
    assert!(
        sources_of(child, "participation").contains(&"EARLY_YEARS".to_owned()),
        "{child:#}"
    );
    for source in ["HEALTH", "SCHOOL", "EARLY_YEARS"] {
        assert_eq!(status_of(child, source), "OK");
    }
    assert!(!child["carers"].as_array().expect("carers").is_empty());
    assert_eq!(child["flags"][0]["kind"], "HAS_INFORMATION");
    let score = found[0]["score"].as_f64().expect("score");
    assert!((0.0..=1.0).contains(&score));

    // The id is stable: the same search gives the same child, and `child` finds it again.
    let again = search(&gateway, "gp", amelia()).await;
    assert_eq!(matches(&again)[0]["child"]["id"], child["id"]);
    let by_id = gateway
        .query_vars(
            "gp",
            "query($id: ID!) { child(id: $id, access: { purpose: SAFEGUARDING }) { id name { family } sources { source status } } }",
            json!({ "id": child["id"] }),
        )
        .await;
    assert!(by_id.errors().is_empty(), "{:#}", by_id.body);
    assert_eq!(by_id.body["data"]["child"]["name"]["family"], "Hartley");
    gateway.stop().await;
}

/// A search's first match, without what differs from one gateway to another: its id and the sources' times.
fn comparable(answer: &Answer) -> Value {
    assert!(answer.errors().is_empty(), "{:#}", answer.body);
    let mut child = matches(answer)[0]["child"].clone();
    child["id"] = Value::Null;
    for source in child["sources"].as_array_mut().expect("sources") {
        source["responseTimeMs"] = Value::Null;
    }
    child
}

#[tokio::test]
async fn sources_spoken_to_over_http2_give_the_same_answer_as_over_http1() {
    let over_http2 = TestGateway::builder()
        .cache(false)
        .configure(|o| o.http_version = childgraph_connectors::HttpVersion::Http2)
        .spawn()
        .await;
    let by_default = TestGateway::builder().cache(false).spawn().await;
    let (a, b) = tokio::join!(
        search(&over_http2, "gp", amelia()),
        search(&by_default, "gp", amelia())
    );
    let child = comparable(&a);
    assert_eq!(child["name"]["family"], "Hartley");
    assert_eq!(child, comparable(&b));
    for source in ["health", "school", "early_years"] {
        // Every request came over HTTP/2 where it was asked for, and none by default, at an `http://` URL.
        let sent = over_http2.requests(source).await;
        assert!(sent > 0, "{source}");
        assert_eq!(over_http2.http2_requests(source).await, sent, "{source}");
        assert!(by_default.requests(source).await > 0, "{source}");
        assert_eq!(by_default.http2_requests(source).await, 0, "{source}");
    }
}

#[tokio::test]
async fn a_source_answering_500_leaves_the_others_data_and_names_itself() {
    let gateway = TestGateway::builder().spawn().await;
    gateway
        .set_faults("school", json!({ "error_rate": 1.0 }))
        .await;
    let answer = search(&gateway, "gp", amelia()).await;
    let errors = answer.errors_with("SOURCE_UNAVAILABLE");
    assert_eq!(errors.len(), 1, "{:#}", answer.body);
    assert_eq!(errors[0]["extensions"]["source"], "school");
    let found = matches(&answer);
    assert_eq!(found.len(), 1, "{:#}", answer.body);
    let child = &found[0]["child"];
    assert_eq!(status_of(child, "SCHOOL"), "UNAVAILABLE");
    assert_eq!(status_of(child, "HEALTH"), "OK");
    assert!(sources_of(child, "services").contains(&"HEALTH".to_owned()));
    assert!(sources_of(child, "participation").contains(&"EARLY_YEARS".to_owned()));
    assert!(!sources_of(child, "services").contains(&"SCHOOL".to_owned()));

    // Clearing the faults brings the source back.
    gateway.set_faults("school", json!({})).await;
    let answer = search(&gateway, "gp", amelia()).await;
    assert!(answer.errors().is_empty(), "{:#}", answer.body);
    gateway.stop().await;
}

#[tokio::test]
async fn a_hanging_source_times_out_without_holding_the_answer() {
    let gateway = TestGateway::builder().spawn().await;
    gateway
        .set_faults("early_years", json!({ "hang": true }))
        .await;
    let answer = search(&gateway, "gp", amelia()).await;
    let errors = answer.errors_with("SOURCE_UNAVAILABLE");
    assert_eq!(errors.len(), 1, "{:#}", answer.body);
    assert_eq!(errors[0]["extensions"]["source"], "early_years");
    let found = matches(&answer);
    assert_eq!(found.len(), 1);
    let child = &found[0]["child"];
    assert_eq!(status_of(child, "EARLY_YEARS"), "TIMEOUT");
    assert!(sources_of(child, "services").contains(&"SCHOOL".to_owned()));
    gateway.stop().await;
}

#[tokio::test]
async fn requests_without_a_valid_token_are_unauthenticated() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let query = "{ me { name } }";
    let none = gateway.query_with(None, query, json!({})).await;
    assert_eq!(none.status, 401);
    assert_eq!(none.codes(), ["UNAUTHENTICATED"]);
    assert!(none.body["data"].is_null());

    // A token signed by another key, with the same key id, is refused.
    let other = TestGateway::builder().children(0).spawn().await;
    let forged = other.token("teacher");
    let answer = gateway.query_with(Some(&forged), query, json!({})).await;
    assert_eq!(answer.status, 401);
    assert_eq!(answer.codes(), ["UNAUTHENTICATED"]);

    let garbage = gateway
        .query_with(Some("not.a.token"), query, json!({}))
        .await;
    assert_eq!(garbage.codes(), ["UNAUTHENTICATED"]);

    let me = gateway.query("teacher", query).await;
    assert_eq!(me.body["data"]["me"]["name"], "Priya Shah");
    other.stop().await;
    gateway.stop().await;
}

#[tokio::test]
async fn a_shielded_child_shows_identity_only_and_hides_from_searches_on_hidden_fields() {
    let gateway = TestGateway::builder().spawn().await;
    let noah = json!({ "familyName": "Okafor", "dateOfBirth": "2021-11-03" });
    let answer = search(&gateway, "mch-nurse", noah.clone()).await;
    let found = matches(&answer);
    assert_eq!(found.len(), 1, "{:#}", answer.body);
    let child = &found[0]["child"];
    assert_eq!(child["shielded"], true);
    assert_eq!(child["name"]["given"], "Noah");
    assert_eq!(child["dateOfBirth"], "2021-11-03");
    for field in [
        "address",
        "carers",
        "services",
        "participation",
        "identifiers",
        "flags",
    ] {
        assert!(
            child[field].is_null(),
            "{field} should be withheld: {child:#}"
        );
    }
    let redacted = answer.errors_with("REDACTED");
    assert!(!redacted.is_empty());
    for error in &redacted {
        assert_eq!(error["extensions"]["reason"], "SHIELDED");
    }
    // Nothing about where he lives reached the answer by any path.
    let text = answer.body.to_string();
    for field in ["lines", "postcode", "organisation"] {
        assert!(
            !text.contains(&format!("\"{field}\"")),
            "{field} leaked: {text}"
        );
    }

    // A search on his postcode must not find him, nor say that he exists.
    let mut by_postcode = noah.clone();
    by_postcode["postcode"] = json!("HF2 7QT");
    let answer = search(&gateway, "mch-nurse", by_postcode).await;
    assert_eq!(matches(&answer).len(), 0, "{:#}", answer.body);
    assert_eq!(
        answer.body["data"]["searchChildren"]["tooManyResults"],
        false
    );
    assert!(answer.errors().is_empty(), "{:#}", answer.body);
    gateway.stop().await;
}

#[tokio::test]
async fn a_noisy_duplicate_of_a_shielded_child_in_another_source_is_shielded_too() {
    use childgraph_simulators::cast;
    // Maya is shielded. The early-years register misspells her family name, has her day and month of birth the other
    // way round and no NHS number, and nothing links that record to her beforehand: the gateway meets it live.
    let gateway = TestGateway::builder().spawn().await;
    let duplicate = json!({
        "familyName": cast::MAYA_EARLY_YEARS_FAMILY,
        "dateOfBirth": cast::MAYA_EARLY_YEARS_DATE_OF_BIRTH,
    });
    let true_details = json!({
        "givenName": cast::MAYA.given,
        "familyName": cast::MAYA.family,
        "dateOfBirth": cast::MAYA.date_of_birth,
    });
    let mut ids = Vec::new();
    for (user, criteria) in [
        ("kinder-educator", duplicate.clone()),
        ("teacher", duplicate),
        ("mch-nurse", true_details),
    ] {
        let answer = search(&gateway, user, criteria.clone()).await;
        let found = matches(&answer);
        assert!(!found.is_empty(), "{user} {criteria}: {:#}", answer.body);
        for m in &found {
            let child = &m["child"];
            assert_eq!(child["shielded"], true, "{user} {criteria}: {child:#}");
            assert!(child["participation"].is_null(), "{child:#}");
            assert!(child["address"].is_null(), "{child:#}");
            ids.push(child["id"].as_str().expect("id").to_owned());
        }
        // Nothing of where she goes or lives reached the answer.
        let text = answer.body.to_string();
        for secret in [cast::KINDERGARTEN_NAME, "HF2 3RW", "Linden Court"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }
    // Viewed by id afterwards, each child found is still shielded.
    ids.sort();
    ids.dedup();
    for id in ids {
        let answer = gateway
            .query_vars(
                "kinder-educator",
                "query($id: ID!) { child(id: $id, access: { purpose: SAFEGUARDING }) { id shielded participation { source } } }",
                json!({ "id": id }),
            )
            .await;
        assert_eq!(
            answer.body["data"]["child"]["shielded"], true,
            "{:#}",
            answer.body
        );
        assert!(answer.body["data"]["child"]["participation"].is_null());
    }
    gateway.stop().await;
}

#[tokio::test]
async fn a_shield_covers_a_possible_match_that_the_search_found_and_the_shielded_child_did_not() {
    // Isla is shielded; her twin Ava is a possible match of her (same family name, birth date and address). A search
    // for Ava by her given name does not match Isla, yet Ava must come back shielded.
    let gateway = TestGateway::builder().spawn().await;
    let isla = json!({ "givenName": "Isla", "familyName": "Brennan", "dateOfBirth": "2017-01-22" });
    let answer = search(&gateway, "gp", isla).await;
    let isla_id = matches(&answer)[0]["child"]["id"]
        .as_str()
        .expect("Isla's id")
        .to_owned();
    gateway
        .store()
        .await
        .put_shield(&childgraph::store::Shield {
            child_id: isla_id.clone(),
            reason: "test".into(),
            requested_by: "shield-officer-1".into(),
            approved_by: "shield-officer-2".into(),
            review_due: chrono::Utc::now() + chrono::Duration::days(30),
        })
        .await
        .expect("shield");
    let ava = json!({ "givenName": "Ava", "familyName": "Brennan", "dateOfBirth": "2017-01-22" });
    let answer = search(&gateway, "teacher", ava).await;
    let found = matches(&answer);
    assert_eq!(found.len(), 1, "{:#}", answer.body);
    let child = &found[0]["child"];
    assert_eq!(child["name"]["given"], "Ava");
    assert_ne!(child["id"], isla_id.as_str());
    assert_eq!(child["shielded"], true, "{child:#}");
    assert!(child["address"].is_null(), "{child:#}");
    gateway.stop().await;
}

#[tokio::test]
async fn a_record_restricted_at_source_shields_the_child() {
    let gateway = TestGateway::builder().spawn().await;
    let answer = search(
        &gateway,
        "gp",
        json!({ "familyName": "Fernandes", "dateOfBirth": "2012-09-05" }),
    )
    .await;
    let found = matches(&answer);
    assert_eq!(found.len(), 1, "{:#}", answer.body);
    let child = &found[0]["child"];
    assert_eq!(child["shielded"], true);
    assert_eq!(status_of(child, "HEALTH"), "RESTRICTED");
    assert!(child["services"].is_null());
    gateway.stop().await;
}

#[tokio::test]
async fn twins_are_two_children() {
    let gateway = TestGateway::builder().spawn().await;
    let answer = search(
        &gateway,
        "teacher",
        json!({ "familyName": "Brennan", "dateOfBirth": "2017-01-22" }),
    )
    .await;
    let found = matches(&answer);
    assert_eq!(found.len(), 2, "{:#}", answer.body);
    let mut names: Vec<&str> = found
        .iter()
        .filter_map(|m| m["child"]["name"]["given"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["Ava", "Isla"]);
    assert_ne!(found[0]["child"]["id"], found[1]["child"]["id"]);
    gateway.stop().await;
}

#[tokio::test]
async fn the_teachers_role_withholds_the_address_and_says_why() {
    let gateway = TestGateway::builder().spawn().await;
    let answer = search(&gateway, "teacher", amelia()).await;
    let child = &matches(&answer)[0]["child"];
    assert!(child["address"].is_null());
    let redacted = answer.errors_with("REDACTED");
    assert!(
        redacted
            .iter()
            .any(|e| e["extensions"]["reason"] == "ROLE"
                && e["extensions"]["category"] == "location")
    );
    assert!(child["carers"].as_array().is_some_and(|c| !c.is_empty()));
    gateway.stop().await;
}

#[tokio::test]
async fn a_withheld_field_is_null_in_the_data_beside_its_error() {
    let gateway = TestGateway::builder().spawn().await;
    // The teacher's roles see no location: each address below is withheld, and each organisation is asked for its
    // address alone.
    let query = r#"{ searchChildren(criteria: {familyName: "Hartley", dateOfBirth: "2019-06-14"},
        access: {purpose: SAFEGUARDING}) {
      matches { child { name { given } address { lines } services { kind organisation { address { lines } } } } } } }"#;
    let answer = gateway.query("teacher", query).await;
    let child = &matches(&answer)[0]["child"];
    assert_eq!(child["name"]["given"], "Amelia", "{:#}", answer.body);
    let fields = child.as_object().expect("the child is an object");
    assert!(
        fields.get("address").is_some_and(Value::is_null),
        "the withheld address is there, as null: {child:#}"
    );
    let services = child["services"].as_array().expect("services");
    assert!(!services.is_empty());
    for service in services {
        let organisation = service["organisation"].as_object().unwrap_or_else(|| {
            panic!("an organisation is an object though its address is withheld: {service:#}")
        });
        assert_eq!(organisation.len(), 1, "{service:#}");
        assert!(organisation["address"].is_null(), "{service:#}");
    }
    // One error for each null: the child's address, and each organisation's.
    let redacted = answer.errors_with("REDACTED");
    assert_eq!(redacted.len(), 1 + services.len(), "{:#}", answer.body);
    for error in &redacted {
        let path = error["path"].as_array().expect("a path");
        assert_eq!(path.last(), Some(&json!("address")), "{error:#}");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn criteria_below_the_minimum_are_refused() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let answer = search(&gateway, "teacher", json!({ "familyName": "Hartley" })).await;
    assert_eq!(answer.codes(), ["INSUFFICIENT_CRITERIA"]);
    let answer = search(&gateway, "teacher", json!({ "nhsNumber": "1234567890" })).await;
    assert_eq!(answer.codes(), ["BAD_REQUEST"]);
    let answer = search(
        &gateway,
        "teacher",
        json!({ "familyName": "Hartley", "dateOfBirth": "14/06/2019" }),
    )
    .await;
    assert_eq!(answer.codes(), ["BAD_REQUEST"]);
    gateway.stop().await;
}

#[tokio::test]
async fn hostile_names_are_searched_literally() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    for name in [
        "O'Brien",
        "' OR '1'='1",
        "a&b=c",
        "Smith,Jones",
        "a|b",
        "😀",
        "Zoe\u{0301}",
        "$x\\y",
        "Zed\\,Q",
    ] {
        let answer = search(
            &gateway,
            "teacher",
            json!({ "familyName": name, "dateOfBirth": "2019-06-14" }),
        )
        .await;
        assert!(answer.errors().is_empty(), "{name}: {:#}", answer.body);
        assert_eq!(matches(&answer).len(), 0, "{name}: {:#}", answer.body);
    }
    // An invisible right-to-left mark does not hide a child.
    let answer = search(
        &gateway,
        "teacher",
        json!({ "familyName": "\u{200F}Hartley", "dateOfBirth": "2019-06-14" }),
    )
    .await;
    assert!(
        answer.codes().iter().all(|c| c == "REDACTED"),
        "{:#}",
        answer.body
    );
    assert_eq!(matches(&answer).len(), 1, "{:#}", answer.body);
    let long = "x".repeat(10_000);
    let answer = search(
        &gateway,
        "teacher",
        json!({ "familyName": long, "dateOfBirth": "2019-06-14" }),
    )
    .await;
    assert_eq!(answer.codes(), ["BAD_REQUEST"]);
    gateway.stop().await;
}

#[tokio::test]
async fn a_user_who_sees_no_child_data_is_forbidden() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let answer = search(&gateway, "authoriser", amelia()).await;
    assert_eq!(answer.codes(), ["FORBIDDEN"]);
    assert!(answer.body["data"].is_null() || answer.body["data"]["searchChildren"].is_null());
    gateway.stop().await;
}

#[tokio::test]
async fn a_data_directory_serves_one_population_seed() {
    use childgraph::demo::{Demo, DemoOptions};
    let dir = tempfile::tempdir().expect("temp dir");
    let options = |seed| DemoOptions {
        children: 0,
        seed,
        ..DemoOptions::new(
            std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            dir.path().to_owned(),
        )
    };
    let demo = Demo::start(options(1)).await.expect("first start");
    demo.stop().await.expect("stop");
    let again = Demo::start(options(1)).await.expect("same seed restarts");
    again.stop().await.expect("stop");
    let error = Demo::start(options(2))
        .await
        .expect_err("another seed is refused")
        .to_string();
    assert!(error.contains("seed 1"), "{error}");
}

#[tokio::test]
async fn a_hanging_source_never_delays_the_answer_past_the_deadline() {
    a_hanging_source_is_left_at_the_deadline(childgraph_connectors::HttpVersion::Auto).await;
}

/// Over HTTP/2 the hanging requests share one connection with every other request to the source: leaving them at the
/// deadline must neither hold the answer nor the requests that follow.
#[tokio::test]
async fn a_hanging_source_over_http2_never_delays_the_answer_past_the_deadline() {
    a_hanging_source_is_left_at_the_deadline(childgraph_connectors::HttpVersion::Http2).await;
}

async fn a_hanging_source_is_left_at_the_deadline(version: childgraph_connectors::HttpVersion) {
    // The source timeout is far longer than the deadline, so only the deadline can end the wait.
    let gateway = TestGateway::builder()
        .deadline_ms(600)
        .source_timeout_ms(30_000)
        .cache(false)
        .configure(|o| o.http_version = version)
        .spawn()
        .await;
    // One answer first, so that over HTTP/2 the hanging requests go on a connection already in use.
    let before = search(&gateway, "gp", amelia()).await;
    assert_eq!(status_of(&matches(&before)[0]["child"], "HEALTH"), "OK");
    gateway.set_faults("health", json!({ "hang": true })).await;
    let started = std::time::Instant::now();
    let answer = search(&gateway, "gp", amelia()).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed < std::time::Duration::from_millis(1_500),
        "answered after {elapsed:?}"
    );
    let errors = answer.errors_with("SOURCE_UNAVAILABLE");
    assert_eq!(errors.len(), 1, "{:#}", answer.body);
    assert_eq!(errors[0]["extensions"]["source"], "health");
    // The healthy sources still had time for their part.
    let child = &matches(&answer)[0]["child"];
    assert_eq!(status_of(child, "HEALTH"), "TIMEOUT");
    assert_eq!(status_of(child, "SCHOOL"), "OK");
    assert!(
        sources_of(child, "services").contains(&"SCHOOL".to_owned()),
        "{child:#}"
    );
    assert!(
        sources_of(child, "participation").contains(&"EARLY_YEARS".to_owned()),
        "{child:#}"
    );
    // Once the source answers again, so does the gateway, on the same client.
    gateway.set_faults("health", json!({})).await;
    let after = search(&gateway, "gp", amelia()).await;
    assert_eq!(comparable(&after), comparable(&before), "{:#}", after.body);
    if version == childgraph_connectors::HttpVersion::Http2 {
        assert_eq!(
            gateway.http2_requests("health").await,
            gateway.requests("health").await
        );
    }
    gateway.stop().await;
}

#[tokio::test]
async fn users_with_different_policies_querying_one_child_at_once_each_get_their_own_view() {
    let gateway = TestGateway::builder().spawn().await;
    let rounds = (0..10).map(|_| async {
        let (teacher, gp) = tokio::join!(
            search(&gateway, "teacher", amelia()),
            search(&gateway, "gp", amelia())
        );
        let teacher_child = &matches(&teacher)[0]["child"];
        let gp_child = &matches(&gp)[0]["child"];
        assert_eq!(teacher_child["id"], gp_child["id"]);
        // The teacher's role does not see where a child lives; the GP's does.
        assert!(teacher_child["address"].is_null(), "{teacher_child:#}");
        assert!(
            teacher
                .errors_with("REDACTED")
                .iter()
                .all(|e| e["extensions"]["reason"] == "ROLE")
        );
        assert!(!teacher.errors_with("REDACTED").is_empty());
        assert_eq!(gp_child["address"]["postcode"], "HF1 2AB");
        assert!(gp.errors().is_empty(), "{:#}", gp.body);
        assert!(!teacher.body.to_string().contains("HF1 2AB"));
    });
    futures::future::join_all(rounds).await;
    gateway.stop().await;
}

#[tokio::test]
async fn a_failing_source_opens_its_breaker_and_then_fails_at_once() {
    let gateway = TestGateway::builder().spawn().await;
    gateway
        .set_faults("school", json!({ "error_rate": 1.0 }))
        .await;
    let readyz = format!("http://{}/readyz", gateway.demo().gateway);
    let breaker = || async {
        let ready: Value = gateway
            .http
            .get(&readyz)
            .send()
            .await
            .expect("readyz")
            .json()
            .await
            .expect("json");
        ready["sources"]["school"]["breaker"]
            .as_str()
            .expect("a breaker state")
            .to_owned()
    };
    let mut searches = 0;
    while breaker().await != "open" {
        searches += 1;
        assert!(searches <= 10, "the breaker never opened");
        let answer = search(&gateway, "gp", amelia()).await;
        assert_eq!(answer.errors_with("SOURCE_UNAVAILABLE").len(), 1);
    }
    // Open: the school is not asked, and its part fails at once.
    let before = gateway.requests("school").await;
    let answer = search(&gateway, "gp", amelia()).await;
    assert_eq!(gateway.requests("school").await, before);
    let errors = answer.errors_with("SOURCE_UNAVAILABLE");
    assert_eq!(errors.len(), 1, "{:#}", answer.body);
    assert_eq!(errors[0]["extensions"]["source"], "school");
    let child = &matches(&answer)[0]["child"];
    let school = child["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["source"] == "SCHOOL")
        .expect("school");
    assert_eq!(school["status"], "UNAVAILABLE");
    assert!(
        school["responseTimeMs"].as_u64().expect("ms") <= 5,
        "{school}"
    );
    assert!(sources_of(child, "services").contains(&"HEALTH".to_owned()));
    // One source down leaves the gateway ready: its answers are partial, not empty.
    let ready = gateway.http.get(&readyz).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
    gateway.stop().await;
}

#[tokio::test]
async fn readiness_fails_only_when_every_source_is_down() {
    let gateway = TestGateway::builder()
        .children(0)
        .configure(|o| o.breaker.open_for_ms = Some(1000))
        .spawn()
        .await;
    let readyz = format!("http://{}/readyz", gateway.demo().gateway);
    for source in ["health", "school", "early_years"] {
        gateway
            .set_faults(source, json!({ "error_rate": 1.0 }))
            .await;
    }
    let mut searches = 0;
    let body = loop {
        let answer = gateway.http.get(&readyz).send().await.expect("readyz");
        if answer.status() == 503 {
            break answer.json::<Value>().await.expect("json");
        }
        searches += 1;
        assert!(searches <= 10, "readiness never failed");
        search(&gateway, "gp", amelia()).await;
    };
    assert_eq!(body["sources_down"], true, "{body:#}");
    assert_eq!(body["store"], "ok", "{body:#}");
    assert_eq!(body["policy"].as_str().map(str::len), Some(64), "{body:#}");
    // Once the breakers' wait is over, the gateway is ready again with no request sent: out of service, it would
    // get none to probe the sources with.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let again = gateway.http.get(&readyz).send().await.expect("readyz");
    assert_eq!(again.status(), 200);
    gateway.stop().await;
}

/// Every field of a child, as a portal would ask for it.
const CHILD_FIELDS: &str = "id shielded name { given family } dateOfBirth gender identifiers { kind value } \
    address { postcode } carers { name phone } services { kind organisation { name phone } practitioner { name } } \
    participation { kind description status organisation { name } } flags { kind } sources { source status }";

/// The requests each source (health, school, early years) receives for one `child` query.
async fn cost_of(gateway: &TestGateway, user: &str, id: &str, fields: &str) -> [u64; 3] {
    answer_and_cost(gateway, user, id, fields).await.1
}

/// One `child` query's answer, and the requests each source (health, school, early years) received for it.
async fn answer_and_cost(
    gateway: &TestGateway,
    user: &str,
    id: &str,
    fields: &str,
) -> (Answer, [u64; 3]) {
    let count = || async {
        [
            gateway.requests("health").await,
            gateway.requests("school").await,
            gateway.requests("early_years").await,
        ]
    };
    let before = count().await;
    let query =
        format!("{{ child(id: \"{id}\", access: {{ purpose: SAFEGUARDING }}) {{ {fields} }} }}");
    let answer = gateway.query(user, &query).await;
    assert!(
        answer.body["data"]["child"]["id"].is_string(),
        "{:#}",
        answer.body
    );
    let after = count().await;
    (answer, [0, 1, 2].map(|i| after[i] - before[i]))
}

/// A category the policy withholds is never fetched: a shield officer, who sees identity only, asking for every
/// field of Amelia costs each source what the GP's identity-only query costs, where the GP's full answer costs more.
#[tokio::test]
async fn a_withheld_category_is_never_fetched() {
    let gateway = TestGateway::builder()
        .children(0)
        .cache(false)
        .spawn()
        .await;
    let id = amelia_id(&gateway).await;
    let identity = "id name { given family } dateOfBirth gender";
    let gp_identity = cost_of(&gateway, "gp", &id, identity).await;
    let gp_everything = cost_of(&gateway, "gp", &id, CHILD_FIELDS).await;
    let officer_everything = cost_of(&gateway, "shield-officer-1", &id, CHILD_FIELDS).await;
    assert_eq!(
        officer_everything, gp_identity,
        "GP's full answer: {gp_everything:?}"
    );
    assert!(
        gp_everything.iter().sum::<u64>() > gp_identity.iter().sum::<u64>(),
        "{gp_everything:?} against {gp_identity:?}"
    );
    gateway.stop().await;
}

/// Gateway ids of `n` generated children, found through the gateway by NHS number.
async fn child_ids(gateway: &TestGateway, n: usize) -> Vec<String> {
    use childgraph_simulators::population::{Population, PopulationConfig};
    let population = Population::generate(&PopulationConfig {
        children: gateway.children(),
        seed: gateway.seed(),
        as_of: chrono::Utc::now().date_naive(),
        ..PopulationConfig::default()
    });
    let mut ids = Vec::new();
    for record in population.health.iter().filter(|r| !r.restricted) {
        let Some(nhs) = &record.nhs_number else {
            continue;
        };
        let answer = search(gateway, "gp", json!({ "nhsNumber": nhs.to_string() })).await;
        if let Some(id) = matches(&answer)
            .first()
            .and_then(|m| m["child"]["id"].as_str())
        {
            ids.push(id.to_owned());
        }
        if ids.len() == n {
            break;
        }
    }
    assert_eq!(ids.len(), n);
    ids
}

#[tokio::test]
async fn many_child_fields_cost_each_source_a_constant_number_of_requests() {
    let gateway = TestGateway::builder().cache(false).spawn().await;
    let ids = child_ids(&gateway, 50).await;
    let mut costs = Vec::new();
    for n in [1, 10, 50] {
        let fields: Vec<String> = ids[..n]
            .iter()
            .enumerate()
            .map(|(i, id)| format!("c{i}: child(id: \"{id}\", access: {{ purpose: SAFEGUARDING }}) {{ {CHILD_FIELDS} }}"))
            .collect();
        let query = format!("{{ {} }}", fields.join("\n"));
        let before = [
            gateway.requests("health").await,
            gateway.requests("school").await,
            gateway.requests("early_years").await,
        ];
        let answer = gateway.query("gp", &query).await;
        assert!(
            answer.codes().iter().all(|c| c == "REDACTED"),
            "{:#}",
            answer.body
        );
        assert_eq!(answer.body["data"].as_object().expect("data").len(), n);
        let after = [
            gateway.requests("health").await,
            gateway.requests("school").await,
            gateway.requests("early_years").await,
        ];
        costs.push((
            n,
            [
                after[0] - before[0],
                after[1] - before[1],
                after[2] - before[2],
            ],
        ));
    }
    eprintln!("source requests (health, school, early years) per query of n children: {costs:?}");
    // The bound ARCHITECTURE.md states: per source, a fixed number of requests whatever n, plus one per extra page
    // of 100 entries.
    for &(n, [health, school, early_years]) in &costs {
        assert!(health <= 3, "{n} children cost health {health} requests");
        assert!(school <= 8, "{n} children cost school {school} requests");
        assert!(
            early_years <= 4,
            "{n} children cost early years {early_years} requests"
        );
    }
    let (one, fifty) = (costs[0].1, costs[2].1);
    for source in 0..3 {
        assert!(fifty[source] <= one[source] + 2, "{costs:?}");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn retries_against_a_failing_source_never_exceed_their_budget() {
    use childgraph::config::{BreakerSettings, RetrySettings};
    // A breaker that never opens and no cache, so every search reaches the failing source; a budget of 3 retries.
    let gateway = TestGateway::builder()
        .cache(false)
        .configure(|o| {
            o.breaker = BreakerSettings {
                failure_threshold: Some(1_000),
                open_for_ms: None,
            };
            o.retry = RetrySettings {
                max_retries: Some(2),
                budget_ratio: Some(0.0),
                budget_max: Some(3.0),
                ..Default::default()
            };
        })
        .spawn()
        .await;
    gateway
        .set_faults("school", json!({ "error_rate": 1.0 }))
        .await;
    let before = gateway.requests("school").await;
    let searches = 8;
    for _ in 0..searches {
        let answer = search(&gateway, "gp", amelia()).await;
        assert_eq!(answer.errors_with("SOURCE_UNAVAILABLE").len(), 1);
    }
    // Each search makes one first attempt (the request's later phases skip a source that failed in it); retries add
    // at most the budget's 3, whatever the number of searches.
    let sent = gateway.requests("school").await - before;
    assert_eq!(
        sent,
        searches + 3,
        "the school received {sent} requests for {searches} searches"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn searches_cost_each_source_a_constant_number_of_requests_at_1_10_and_50_results() {
    use childgraph_simulators::population::Crowd;
    let born = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").expect("date");
    let gateway = TestGateway::builder()
        .cache(false)
        .configure(|o| {
            o.request.max_results = 50;
            o.crowds = vec![
                Crowd {
                    family_name: "Crowder".into(),
                    date_of_birth: born("2016-05-05"),
                    size: 10,
                },
                Crowd {
                    family_name: "Manyfold".into(),
                    date_of_birth: born("2020-02-02"),
                    size: 50,
                },
            ];
        })
        .spawn()
        .await;
    let query = format!(
        "query($c: ChildSearchInput!) {{ searchChildren(criteria: $c, access: {{ purpose: SAFEGUARDING }}) \
         {{ tooManyResults matches {{ score child {{ {CHILD_FIELDS} }} }} }} }}"
    );
    let mut costs = Vec::new();
    for (family, born, expected) in [
        ("Hartley", "2019-06-14", 1),
        ("Crowder", "2016-05-05", 10),
        ("Manyfold", "2020-02-02", 50),
    ] {
        let before = [
            gateway.requests("health").await,
            gateway.requests("school").await,
            gateway.requests("early_years").await,
        ];
        let answer = gateway
            .query_vars(
                "gp",
                &query,
                json!({ "c": { "familyName": family, "dateOfBirth": born } }),
            )
            .await;
        assert!(
            answer.codes().iter().all(|c| c == "REDACTED"),
            "{:#}",
            answer.body
        );
        assert_eq!(matches(&answer).len(), expected, "{family}");
        // A shielded child's details are never fetched: the count would not cover them.
        assert!(
            matches(&answer)
                .iter()
                .all(|m| m["child"]["shielded"] == false),
            "{family}"
        );
        let after = [
            gateway.requests("health").await,
            gateway.requests("school").await,
            gateway.requests("early_years").await,
        ];
        costs.push((
            expected,
            [
                after[0] - before[0],
                after[1] - before[1],
                after[2] - before[2],
            ],
        ));
    }
    eprintln!(
        "source requests (health, school, early years) per search returning n children: {costs:?}"
    );
    for &(n, [health, school, early_years]) in &costs {
        assert!(health <= 4, "{n} results cost health {health} requests");
        assert!(school <= 10, "{n} results cost school {school} requests");
        assert!(
            early_years <= 5,
            "{n} results cost early years {early_years} requests"
        );
    }
    gateway.stop().await;
}

#[tokio::test]
async fn the_school_service_names_the_class_teacher() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let answer = search(&gateway, "teacher", amelia()).await;
    let child = &matches(&answer)[0]["child"];
    let school = child["services"]
        .as_array()
        .expect("services")
        .iter()
        .find(|s| s["source"] == "SCHOOL")
        .expect("a school service");
    assert_eq!(school["organisation"]["name"], "Riverside Primary School");
    assert_eq!(school["practitioner"]["name"], "Priya Shah");
    gateway.stop().await;
}

#[tokio::test]
async fn server_timing_tells_time_waiting_on_sources_from_the_gateways_own() {
    let gateway = TestGateway::builder().cache(false).spawn().await;
    for source in ["health", "school", "early_years"] {
        gateway
            .set_faults(source, json!({ "latency_ms": 40 }))
            .await;
    }
    let answer = search(&gateway, "gp", amelia()).await;
    assert_eq!(matches(&answer).len(), 1, "{:#}", answer.body);
    let source = answer.timing("source").expect("a source timing");
    let total = answer.timing("gateway").expect("a gateway timing");
    // A search waits on the sources twice at least, one phase after the other: blocking queries, then details.
    assert!(source >= 80.0, "{:?}", answer.server_timing);
    assert!(total >= source, "{:?}", answer.server_timing);
    // The slowest source's own time, unrounded: the largest `responseTimeMs` in the answer, to within rounding.
    let slowest = answer
        .timing("slowest-source")
        .expect("a slowest-source timing");
    assert!(
        slowest >= 80.0 && slowest <= total,
        "{:?}",
        answer.server_timing
    );
    let largest = matches(&answer)
        .iter()
        .flat_map(|m| {
            m["child"]["sources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|s| s["responseTimeMs"].as_f64())
        .fold(0.0, f64::max);
    assert!(
        (slowest - largest).abs() <= 0.6,
        "{slowest} against {largest}"
    );
    // The composed answer's wait for its access record: part of the gateway's own time, none of the sources' (to
    // within the rounding of the three).
    let audit = answer.timing("audit").expect("an audit timing");
    assert!(
        audit >= 0.0 && audit <= total - source + 0.1,
        "{:?}",
        answer.server_timing
    );

    // A query that calls no source waits on none.
    let me = gateway.query("gp", "{ me { userId } }").await;
    assert_eq!(me.timing("source"), Some(0.0), "{:?}", me.server_timing);
    assert_eq!(
        me.timing("slowest-source"),
        Some(0.0),
        "{:?}",
        me.server_timing
    );
    // Nor does it wait for an access record: `me` shows no child, and none is written.
    let audit = me.timing("audit").expect("an audit timing");
    assert!(audit < 0.1, "{:?}", me.server_timing);
    gateway.stop().await;
}

#[tokio::test]
async fn a_child_keeps_its_id_across_repeated_searches_and_restarts() {
    let mut gateway = TestGateway::builder().spawn().await;
    let first = amelia_id(&gateway).await;
    assert_eq!(amelia_id(&gateway).await, first);
    gateway.restart().await;
    assert_eq!(amelia_id(&gateway).await, first);
    let viewed = gateway
        .query_vars(
            "gp",
            "query($id: ID!) { child(id: $id, access: {purpose: SAFEGUARDING}) { id name { given } } }",
            json!({ "id": first }),
        )
        .await;
    assert_eq!(
        viewed.body["data"]["child"]["name"]["given"], "Amelia",
        "{:#}",
        viewed.body
    );
    gateway.stop().await;
}

/// A teacher sees a child's identity whether or not the school works with the child, so an answer of identity alone
/// reads nothing to learn whether it does: it costs each source what a GP's costs, and no service or participation of
/// the child is fetched. Ask for the identifiers too, which the teacher sees only of the school's children, and the
/// gateway must first learn it.
#[tokio::test]
async fn an_answer_the_relation_cannot_change_fetches_nothing_to_learn_it() {
    let gateway = TestGateway::builder()
        .children(0)
        .cache(false)
        .spawn()
        .await;
    let id = amelia_id(&gateway).await;
    let cost = |user, fields| answer_and_cost(&gateway, user, &id, fields);
    let identity = "id name { given family } dateOfBirth gender";
    let (gp, gp_sent) = cost("gp", identity).await;
    let (teacher, teacher_sent) = cost("teacher", identity).await;
    assert!(gp.errors().is_empty(), "{:#}", gp.body);
    assert!(teacher.errors().is_empty(), "{:#}", teacher.body);
    assert_eq!(teacher.body["data"], gp.body["data"]);
    assert_eq!(teacher_sent, gp_sent, "health, school, early years");

    // The identifiers depend on the relation: the school's enrolments are read to learn it, and Amelia is the
    // school's, so the teacher sees them.
    let with_ids = "id name { given } identifiers { kind value }";
    let (teacher, teacher_sent) = cost("teacher", with_ids).await;
    let (_, gp_sent) = cost("gp", with_ids).await;
    assert!(teacher.errors().is_empty(), "{:#}", teacher.body);
    assert!(
        teacher.body["data"]["child"]["identifiers"]
            .as_array()
            .is_some_and(|i| !i.is_empty()),
        "{:#}",
        teacher.body
    );
    assert!(
        teacher_sent[1] > gp_sent[1],
        "{teacher_sent:?} against {gp_sent:?}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_kindergarten_sees_only_the_identity_of_a_child_it_does_not_work_with() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    // The twins are at school, not at the kindergarten: the kinder educator's scope is their own organisation.
    let twins =
        json!({ "givenName": "Isla", "familyName": "Brennan", "dateOfBirth": "2017-01-22" });
    let answer = search(&gateway, "kinder-educator", twins.clone()).await;
    let child = &matches(&answer)[0]["child"];
    assert_eq!(child["name"]["given"], "Isla", "{:#}", answer.body);
    for field in ["carers", "services", "participation", "flags"] {
        assert!(
            child[field].is_null(),
            "{field} should be withheld: {child:#}"
        );
    }
    let redacted = answer.errors_with("REDACTED");
    let reasons: Vec<(&str, &str)> = redacted
        .iter()
        .map(|e| {
            (
                e["extensions"]["reason"].as_str().unwrap(),
                e["extensions"]["category"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(reasons.contains(&("NOT_RELEVANT", "carers")), "{reasons:?}");
    assert!(
        reasons.contains(&("NOT_RELEVANT", "services")),
        "{reasons:?}"
    );
    // Her carers were never asked for: the relation was decided before they would have been fetched.
    assert!(
        !answer.body.to_string().contains("\"phone\""),
        "{:#}",
        answer.body
    );

    // The same educator sees the full detail of a child the kindergarten works with.
    // Amelia's enrolment there has ended, and the kindergarten still works with her record.
    let answer = search(&gateway, "kinder-educator", amelia()).await;
    let child = &matches(&answer)[0]["child"];
    assert!(
        child["participation"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "{:#}",
        answer.body
    );
    assert!(
        answer
            .errors_with("REDACTED")
            .iter()
            .all(|e| e["extensions"]["reason"] != "NOT_RELEVANT"),
        "{:#}",
        answer.body
    );

    // A role whose scope is any child sees the twins' carers.
    let answer = search(&gateway, "gp", twins).await;
    let child = &matches(&answer)[0]["child"];
    assert!(
        child["carers"].as_array().is_some_and(|c| !c.is_empty()),
        "{:#}",
        answer.body
    );
    gateway.stop().await;
}

#[tokio::test]
async fn sensitive_services_show_only_to_a_role_allowed_them() {
    use childgraph_simulators::population::{Population, PopulationConfig};
    let gateway = TestGateway::builder().spawn().await;
    let population = Population::generate(&PopulationConfig {
        children: gateway.children(),
        seed: gateway.seed(),
        as_of: chrono::Utc::now().date_naive(),
        ..PopulationConfig::default()
    });
    let age_limit = chrono::Utc::now().date_naive() - chrono::Months::new(12 * 17);
    let record = population
        .health
        .iter()
        .find(|r| {
            r.sensitive.is_some()
                && !r.restricted
                && r.nhs_number.is_some()
                && r.birth_date > age_limit
        })
        .expect("a child with a sensitive service");
    let criteria = json!({ "nhsNumber": record.nhs_number.as_ref().unwrap().to_string() });
    let sensitive = ["MENTAL_HEALTH", "SEXUAL_HEALTH", "SUBSTANCE_MISUSE"];
    let kinds = |answer: &Answer| -> Vec<String> {
        let child = &matches(answer)[0]["child"];
        child["services"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(child["participation"].as_array().into_iter().flatten())
            .filter_map(|s| s["kind"].as_str().map(str::to_owned))
            .collect()
    };
    let social = search(&gateway, "social-worker", criteria.clone()).await;
    assert!(
        kinds(&social)
            .iter()
            .any(|k| sensitive.contains(&k.as_str())),
        "{:#}",
        social.body
    );
    let gp = search(&gateway, "gp", criteria).await;
    assert!(!kinds(&gp).is_empty(), "{:#}", gp.body);
    assert!(
        kinds(&gp).iter().all(|k| !sensitive.contains(&k.as_str())),
        "{:#}",
        gp.body
    );
    // Left out, not redacted: an error would say that such a service exists.
    let text = gp.body.to_string();
    assert!(!text.contains("sensitive"), "{text}");
    gateway.stop().await;
}

#[tokio::test]
async fn a_changed_policy_file_is_put_in_force_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, childgraph_policies::DEFAULT_POLICY).unwrap();
    let watched = path.clone();
    let gateway = TestGateway::builder()
        .children(0)
        .configure(move |o| {
            o.policy = Some(watched);
            o.policy_poll = std::time::Duration::from_millis(50);
        })
        .spawn()
        .await;
    let carers_reason = |answer: &Answer| -> Option<String> {
        answer
            .errors_with("REDACTED")
            .iter()
            .find(|e| e["extensions"]["category"] == "carers")
            .map(|e| e["extensions"]["reason"].as_str().unwrap().to_owned())
    };
    let answer = search(&gateway, "teacher", amelia()).await;
    assert_eq!(carers_reason(&answer), None, "{:#}", answer.body);

    // The policy officer takes carers away from teachers.
    let stricter = childgraph_policies::DEFAULT_POLICY.replace(
        "    sees: [identity, identifiers, carers, contact, services, participation, flags]\n    scope: own-organisation",
        "    sees: [identity, identifiers, contact, services, participation, flags]\n    scope: own-organisation",
    );
    assert_ne!(stricter, childgraph_policies::DEFAULT_POLICY);
    std::fs::write(&path, &stricter).unwrap();
    let mut reason = None;
    for _ in 0..100 {
        let answer = search(&gateway, "teacher", amelia()).await;
        reason = carers_reason(&answer);
        if reason.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(reason.as_deref(), Some("ROLE"));
    let hash = childgraph_policies::Policy::from_yaml(&stricter)
        .unwrap()
        .hash()
        .to_owned();
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(&format!("childgraph_policy_info{{hash=\"{hash}\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains("childgraph_policy_reloads_total{outcome=\"replaced\"} 1"),
        "{metrics}"
    );
    // Every audit record carries the hash of the policy it was decided under: the first search's the default's, the
    // last's the new one's.
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    let searches = childgraph::audit::by_operation(&gateway.store().await, "search", since)
        .await
        .unwrap();
    let default_hash = childgraph_policies::Policy::default_policy()
        .hash()
        .to_owned();
    // Newest first.
    assert_eq!(searches.last().unwrap().entry.policy_hash, default_hash);
    assert_eq!(searches.first().unwrap().entry.policy_hash, hash);

    // A broken file is refused: the last good policy stays in force, and the gateway answers as before.
    std::fs::write(
        &path,
        stricter.replace("sees: [identity]\n", "sees: [identity, secrets]\n"),
    )
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let answer = search(&gateway, "teacher", amelia()).await;
    assert_eq!(matches(&answer).len(), 1, "{:#}", answer.body);
    assert_eq!(carers_reason(&answer).as_deref(), Some("ROLE"));
    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains(&format!("childgraph_policy_info{{hash=\"{hash}\"}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains("childgraph_policy_reloads_total{outcome=\"refused\"}"),
        "{metrics}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_child_past_the_age_limit_shows_identity_only_unless_still_at_school() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    // Amelia is at school. With the limit at her age, and no extension at school, she is out of scope.
    let born = chrono::NaiveDate::from_ymd_opt(2019, 6, 14).unwrap();
    let age = chrono::Utc::now().date_naive().years_since(born).unwrap();
    let policy = |at_school: u32| {
        childgraph_policies::DEFAULT_POLICY
            .replace("until_age: 18", &format!("until_age: {age}"))
            .replace(
                "at_school_until_age: 19",
                &format!("at_school_until_age: {at_school}"),
            )
    };
    std::fs::write(&path, policy(age)).unwrap();
    let watched = path.clone();
    let gateway = TestGateway::builder()
        .children(0)
        .configure(move |o| {
            o.policy = Some(watched);
            o.policy_poll = std::time::Duration::from_millis(50);
        })
        .spawn()
        .await;
    let answer = search(&gateway, "gp", amelia()).await;
    let child = &matches(&answer)[0]["child"];
    assert_eq!(child["name"]["given"], "Amelia", "{:#}", answer.body);
    assert!(child["carers"].is_null(), "{:#}", answer.body);
    assert!(child["address"].is_null(), "{:#}", answer.body);
    assert!(
        answer
            .errors_with("REDACTED")
            .iter()
            .any(|e| e["extensions"]["reason"] == "NOT_RELEVANT"
                && e["extensions"]["category"] == "carers"),
        "{:#}",
        answer.body
    );

    // Extended while at school: she is in scope again.
    std::fs::write(&path, policy(age + 1)).unwrap();
    let mut carers = Value::Null;
    for _ in 0..100 {
        let answer = search(&gateway, "gp", amelia()).await;
        carers = matches(&answer)[0]["child"]["carers"].clone();
        if !carers.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(carers.as_array().is_some_and(|c| !c.is_empty()), "{carers}");
    gateway.stop().await;
}

/// The value of a sample on `/metrics`, by its name and labels as written.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A failing source and a slow one show on `/metrics`: their calls by outcome, the failing one's breaker open, and
/// the cache's misses beside its hits.
#[tokio::test]
async fn metrics_count_failed_and_timed_out_calls_an_open_breaker_and_cache_misses() {
    let gateway = TestGateway::builder()
        .children(0)
        .source_timeout_ms(300)
        .configure(|o| {
            o.breaker.failure_threshold = Some(2);
            o.breaker.open_for_ms = Some(60_000);
            o.retry.max_retries = Some(0);
        })
        .spawn()
        .await;
    let answer = search(&gateway, "gp", amelia()).await;
    assert!(
        answer.errors_with("SOURCE_UNAVAILABLE").is_empty(),
        "{:#}",
        answer.body
    );
    gateway
        .set_faults("health", json!({ "error_rate": 1.0 }))
        .await;
    gateway
        .set_faults("school", json!({ "latency_ms": 1000 }))
        .await;
    let other = json!({ "familyName": "Okafor", "dateOfBirth": "2021-11-03" });
    for criteria in [
        other.clone(),
        json!({ "familyName": "Fernandes", "dateOfBirth": "2012-09-05" }),
        other,
    ] {
        let answer = search(&gateway, "gp", criteria).await;
        assert!(
            !answer.errors_with("SOURCE_UNAVAILABLE").is_empty(),
            "{:#}",
            answer.body
        );
    }
    let metrics = gateway.metrics().await;
    let value = |series: &str| {
        sample(&metrics, series).unwrap_or_else(|| panic!("no {series} in {metrics}"))
    };
    assert!(
        value(
            r#"childgraph_source_call_duration_seconds_count{outcome="unavailable",source="health"}"#
        ) >= 1.0
    );
    assert!(
        value(
            r#"childgraph_source_call_duration_seconds_count{outcome="timeout",source="school"}"#
        ) >= 1.0
    );
    assert_eq!(
        value(r#"childgraph_source_breaker_state{source="health"}"#),
        2.0,
        "open"
    );
    assert_eq!(
        value(r#"childgraph_source_breaker_state{source="early_years"}"#),
        0.0,
        "closed"
    );
    assert!(value(r#"childgraph_source_cache_misses_total{source="early_years"}"#) >= 2.0);
    gateway.stop().await;
}

#[tokio::test]
async fn metrics_time_requests_sources_and_audit_writes_and_name_no_child() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    for _ in 0..3 {
        let answer = search(&gateway, "gp", amelia()).await;
        assert_eq!(matches(&answer).len(), 1, "{:#}", answer.body);
    }
    let refused = gateway.query("nobody", "{ me { userId } }").await;
    assert_eq!(refused.status, 403);
    let metrics = gateway.metrics().await;
    assert!(
        sample(
            &metrics,
            r#"childgraph_request_duration_seconds_count{status="200"}"#
        ) >= Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            r#"childgraph_request_duration_seconds_count{status="403"}"#
        ),
        Some(1.0),
        "{metrics}"
    );
    for source in ["health", "school", "early_years"] {
        assert!(
            sample(
                &metrics,
                &format!(
                    r#"childgraph_source_call_duration_seconds_count{{outcome="ok",source="{source}"}}"#
                )
            ) >= Some(3.0),
            "{source}: {metrics}"
        );
        assert!(
            sample(
                &metrics,
                &format!(r#"childgraph_source_requests_total{{source="{source}"}}"#)
            ) > Some(0.0),
            "{metrics}"
        );
        assert_eq!(
            sample(
                &metrics,
                &format!(r#"childgraph_source_breaker_state{{source="{source}"}}"#)
            ),
            Some(0.0),
            "{metrics}"
        );
    }
    // The demo caches: the second and third searches were answered from it.
    assert!(
        sample(
            &metrics,
            r#"childgraph_source_cache_hits_total{source="health"}"#
        ) > Some(0.0),
        "{metrics}"
    );
    assert!(
        sample(&metrics, "childgraph_audit_write_seconds_count") >= Some(3.0),
        "{metrics}"
    );
    // Labels carry sources, statuses and outcomes only: no name, date of birth or child id.
    let id = matches(&search(&gateway, "gp", amelia()).await)[0]["child"]["id"]
        .as_str()
        .expect("an id")
        .to_owned();
    let metrics = gateway.metrics().await;
    for child_data in ["Hartley", "Amelia", "2019-06-14", id.as_str()] {
        assert!(!metrics.contains(child_data), "{child_data} in /metrics");
    }
    gateway.stop().await;
}

#[tokio::test]
async fn a_clients_request_id_is_kept_only_when_plain() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let token = gateway.token("gp");
    let echo = |id: &'static str| {
        let (http, url, token) = (gateway.http.clone(), gateway.url(), token.clone());
        async move {
            let response = http
                .post(url)
                .bearer_auth(token)
                .header("x-request-id", id)
                .json(&json!({ "query": "{ me { userId } }" }))
                .send()
                .await
                .expect("an answer");
            response.headers()["x-request-id"]
                .to_str()
                .expect("ascii")
                .to_owned()
        }
    };
    assert_eq!(echo("portal-7.42:a_b").await, "portal-7.42:a_b");
    // It goes into the logs, the spans and the audit log: anything else, or anything long, is replaced.
    for hostile in ["Amelia Hartley 2019-06-14", "a\"b", "x".repeat(65).leak()] {
        let replaced = echo(hostile).await;
        assert_ne!(replaced, hostile);
        let uuid = replaced.len() == 36
            && replaced.chars().filter(|c| *c == '-').count() == 4
            && replaced.chars().all(|c| c == '-' || c.is_ascii_hexdigit());
        assert!(uuid, "the gateway's own id, a UUID: {replaced}");
    }
    gateway.stop().await;
}
