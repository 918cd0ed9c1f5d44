//! The audit log, as auditors and the gateway's operators see it.

use childgraph_tests::TestGateway;
use serde_json::{Value, json};

const FIND: &str = r#"
query Find($c: ChildSearchInput!) {
  searchChildren(criteria: $c, access: { purpose: SAFEGUARDING, justification: "school concern" }) {
    matches { child { id carers { name } } }
  }
}"#;

const LOG: &str = "query($id: ID!) { childAccessLog(childId: $id) { userId organisationId roles purpose justification operation shown withheld outcome policyHash } }";

#[tokio::test]
async fn every_answer_is_recorded_and_an_auditor_reads_who_saw_what() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let criteria = json!({ "c": { "familyName": "Hartley", "dateOfBirth": "2019-06-14" } });
    let answer = gateway.query_vars("teacher", FIND, criteria).await;
    let id = answer.body["data"]["searchChildren"]["matches"][0]["child"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{:#}", answer.body))
        .to_owned();
    let view = gateway
        .query(
            "gp",
            &format!(r#"{{ child(id: "{id}", access: {{ purpose: SERVICE_COORDINATION }}) {{ name {{ given }} }} }}"#),
        )
        .await;
    assert!(view.errors().is_empty(), "{:#}", view.body);

    // A teacher asking for the address is shown the name and withheld the address.
    let address = gateway
        .query(
            "teacher",
            &format!(r#"{{ child(id: "{id}", access: {{ purpose: SAFEGUARDING }}) {{ name {{ given }} address {{ postcode }} }} }}"#),
        )
        .await;
    assert_eq!(address.codes(), ["REDACTED"], "{:#}", address.body);

    let refused = gateway.query_vars("gp", LOG, json!({ "id": id })).await;
    assert_eq!(refused.codes(), ["FORBIDDEN"], "{:#}", refused.body);
    let log = gateway
        .query_vars("auditor", LOG, json!({ "id": id }))
        .await;
    let records = log.body["data"]["childAccessLog"]
        .as_array()
        .unwrap_or_else(|| panic!("{:#}", log.body))
        .clone();
    let search = records
        .iter()
        .find(|r| r["operation"] == "search")
        .expect("the search is recorded");
    assert_eq!(search["userId"], "teacher");
    assert_eq!(search["purpose"], "SAFEGUARDING");
    assert_eq!(search["justification"], "school concern");
    assert_eq!(search["outcome"], "ok");
    assert!(
        search["shown"]
            .as_array()
            .unwrap()
            .contains(&json!("carers"))
    );
    // The record names the categories of the fields selected: the search selected no address.
    for list in ["shown", "withheld"] {
        assert!(
            !search[list]
                .as_array()
                .unwrap()
                .contains(&json!("location")),
            "{search:#}"
        );
    }
    assert_eq!(search["policyHash"].as_str().unwrap().len(), 64);
    let seen = records
        .iter()
        .find(|r| r["operation"] == "view")
        .expect("the view is recorded");
    assert_eq!(seen["userId"], "gp");
    assert_eq!(seen["purpose"], "SERVICE_COORDINATION");
    assert_eq!(seen["shown"], json!(["identity"]), "{seen:#}");
    assert_eq!(seen["withheld"], json!([]), "{seen:#}");
    let teacher_view = records
        .iter()
        .find(|r| r["operation"] == "view" && r["userId"] == "teacher")
        .expect("the teacher's view is recorded");
    assert_eq!(
        teacher_view["shown"],
        json!(["identity"]),
        "{teacher_view:#}"
    );
    assert_eq!(
        teacher_view["withheld"],
        json!(["location"]),
        "{teacher_view:#}"
    );

    // The auditor's own reading is recorded too, and the chain is whole.
    let store = gateway.store().await;
    let read = childgraph::audit::for_child(&store, &id).await.unwrap();
    assert!(
        read.iter()
            .any(|r| r.entry.operation == "audit.read" && r.entry.user_id == "auditor")
    );
    let (whole, report) = childgraph::audit_cli::verify(&store).await.unwrap();
    assert!(whole, "{report}");
    let sar = childgraph::audit_cli::subject_access(&store, &id)
        .await
        .unwrap();
    assert!(
        sar.lines()
            .any(|l| l.contains("\tteacher\t") && l.contains("\tsearch\t")),
        "{sar}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn without_an_audit_record_there_is_no_child_data() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let criteria = json!({ "c": { "familyName": "Hartley", "dateOfBirth": "2019-06-14" } });
    let answer = gateway.query_vars("gp", FIND, criteria.clone()).await;
    assert!(answer.errors().is_empty(), "{:#}", answer.body);
    let child = answer.body["data"]["searchChildren"]["matches"][0]["child"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The audit log becomes unwritable.
    let mut db = gateway.db().await;
    sqlx::query("ALTER TABLE audit_log RENAME TO audit_log_away")
        .execute(&mut db)
        .await
        .unwrap();

    let answer = gateway.query_vars("gp", FIND, criteria.clone()).await;
    assert_internal_without_data(&answer, "searchChildren", "gp");

    // A child by its id: for a role whose record is written while the details are fetched (a GP's), and for one
    // whose record waits for them (a teacher's), no record means no data.
    let view = "query($id: ID!) { child(id: $id, access: {purpose: SAFEGUARDING}) { id name { given } services { kind } } }";
    for user in ["gp", "teacher"] {
        let answer = gateway.query_vars(user, view, json!({ "id": child })).await;
        assert_internal_without_data(&answer, "child", user);
    }

    // Nor does any action take effect unrecorded: an override and a flag are refused, and neither is stored.
    let mut rows = Vec::new();
    for table in ["shield_overrides", "flags"] {
        let (count,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut db)
            .await
            .unwrap();
        rows.push(count);
    }
    let override_shield = "mutation($id: ID!, $j: String!) { overrideShield(childId: $id, justification: $j) { childId } }";
    let justification =
        "Seen at the emergency department tonight; the GP must arrange a safe discharge.";
    let overridden = gateway
        .query_vars(
            "social-worker",
            override_shield,
            json!({ "id": child, "j": justification }),
        )
        .await;
    assert_eq!(overridden.codes(), ["INTERNAL"], "{:#}", overridden.body);
    let raise = "mutation($id: ID!) { raiseFlag(childId: $id, kind: HAS_INFORMATION, note: \"Call the school first.\") { id } }";
    let flagged = gateway
        .query_vars("teacher", raise, json!({ "id": child }))
        .await;
    assert_eq!(flagged.codes(), ["INTERNAL"], "{:#}", flagged.body);
    for (table, before) in ["shield_overrides", "flags"].into_iter().zip(rows) {
        let (after,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut db)
            .await
            .unwrap();
        assert_eq!(after, before, "{table} changed without an audit record");
    }

    // And when it is writable again, answers resume, chained to the records before.
    sqlx::query("ALTER TABLE audit_log_away RENAME TO audit_log")
        .execute(&mut db)
        .await
        .unwrap();
    let answer = gateway.query_vars("gp", FIND, criteria).await;
    assert!(answer.errors().is_empty(), "{:#}", answer.body);
    let (whole, report) = childgraph::audit_cli::verify(&gateway.store().await)
        .await
        .unwrap();
    assert!(whole, "{report}");
    gateway.stop().await;
}

/// The answer is `INTERNAL` alone, with no data under `field` and no child's name anywhere.
fn assert_internal_without_data(answer: &childgraph_tests::Answer, field: &str, user: &str) {
    assert_eq!(answer.codes(), ["INTERNAL"], "{user}: {:#}", answer.body);
    assert!(
        answer.body["data"].is_null() || answer.body["data"][field].is_null(),
        "{user}: {:#}",
        answer.body
    );
    assert!(
        !answer.body.to_string().contains("Amelia"),
        "{user}: {:#}",
        answer.body
    );
}

#[tokio::test]
async fn a_spent_search_quota_refuses_with_when_to_retry_until_its_window_passes() {
    let gateway = TestGateway::builder()
        .children(0)
        .configure(|o| o.request.searches_per_minute = 60)
        .spawn()
        .await;
    let criteria = json!({ "c": { "familyName": "Hartley", "dateOfBirth": "2019-06-14" } });
    // A token bucket of 60 a minute holds 60 at first, then refills one a second.
    for _ in 0..60 {
        let answer = gateway.query_vars("gp", FIND, criteria.clone()).await;
        assert!(answer.errors().is_empty(), "{:#}", answer.body);
    }
    let refused = gateway.query_vars("gp", FIND, criteria.clone()).await;
    assert_eq!(refused.codes(), ["RATE_LIMITED"], "{:#}", refused.body);
    let retry = refused.errors()[0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert!(
        gateway
            .metrics()
            .await
            .contains(r#"childgraph_rate_limited_total{quota="searches"} 1"#)
    );
    assert!(refused.body["data"].is_null() || refused.body["data"]["searchChildren"].is_null());
    // Another user's quota is their own.
    let other = gateway
        .query_vars("mch-nurse", FIND, criteria.clone())
        .await;
    assert!(other.errors().is_empty(), "{:#}", other.body);
    // Asked again before the time given, still refused.
    let still = gateway.query_vars("gp", FIND, criteria.clone()).await;
    assert_eq!(still.codes(), ["RATE_LIMITED"], "{:#}", still.body);
    // Once the window has passed, the user may search again.
    tokio::time::sleep(std::time::Duration::from_secs(retry)).await;
    let again = gateway.query_vars("gp", FIND, criteria).await;
    assert!(again.errors().is_empty(), "{:#}", again.body);
    gateway.stop().await;
}

#[tokio::test]
async fn introspection_follows_the_config_and_wide_queries_are_refused() {
    let closed = TestGateway::builder()
        .children(0)
        .configure(|o| o.request.introspection = false)
        .spawn()
        .await;
    // Disabled, introspection answers nothing about the schema.
    let answer = closed
        .query("gp", "{ __schema { queryType { name } } }")
        .await;
    assert!(
        answer.body["data"]["__schema"].is_null(),
        "{:#}",
        answer.body
    );
    assert!(
        !answer.body.to_string().contains("\"Query\""),
        "{:#}",
        answer.body
    );
    closed.stop().await;

    // The demo answers it, for GraphiQL.
    let demo = TestGateway::builder().children(0).spawn().await;
    let answer = demo
        .query("gp", "{ __schema { queryType { name } } }")
        .await;
    assert_eq!(
        answer.body["data"]["__schema"]["queryType"]["name"], "Query",
        "{:#}",
        answer.body
    );

    // 61 aliases of one root field: one request must not become a bulk read.
    let fields: Vec<String> = (0..61).map(|i| format!("m{i}: me {{ name }}")).collect();
    let answer = demo
        .query("gp", &format!("{{ {} }}", fields.join(" ")))
        .await;
    assert_eq!(answer.codes(), ["QUERY_TOO_COMPLEX"], "{:#}", answer.body);
    // A batch of operations in one body is not accepted.
    let response = reqwest::Client::new()
        .post(demo.url())
        .bearer_auth(demo.token("gp"))
        .json(&json!([{ "query": "{ me { name } }" }, { "query": "{ me { name } }" }]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);

    // Deeper than 12 levels is refused, even where every level is allowed.
    let deep = format!(
        "{{ __type(name: \"Query\") {{ fields {{ type {} name {} }} }} }}",
        "{ ofType ".repeat(11),
        "}".repeat(11)
    );
    let answer = demo.query("gp", &deep).await;
    assert_eq!(answer.codes(), ["QUERY_TOO_COMPLEX"], "{:#}", answer.body);
    let shallow = "{ __type(name: \"Query\") { fields { type { ofType { name } } } } }";
    let answer = demo.query("gp", shallow).await;
    assert!(answer.errors().is_empty(), "{:#}", answer.body);

    // A body over the limit (64 KiB by default) is refused with 413 before it is read whole, whether its length is
    // declared or it comes in chunks; one under it is read.
    let padded = |bytes: usize| {
        json!({ "query": format!("# {}\n{{ me {{ name }} }}", "x".repeat(bytes)) }).to_string()
    };
    let client = reqwest::Client::new();
    let declared = client
        .post(demo.url())
        .bearer_auth(demo.token("gp"))
        .header("content-type", "application/json")
        .body(padded(70_000))
        .send()
        .await
        .unwrap();
    assert_eq!(declared.status().as_u16(), 413);
    let refusal: Value = declared.json().await.unwrap();
    assert_eq!(refusal["errors"][0]["extensions"]["code"], "BAD_REQUEST");
    let body = padded(70_000).into_bytes();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(8192).map(|chunk| Ok(chunk.to_vec())).collect();
    let chunked = client
        .post(demo.url())
        .bearer_auth(demo.token("gp"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(chunked.status().as_u16(), 413);
    let under = client
        .post(demo.url())
        .bearer_auth(demo.token("gp"))
        .header("content-type", "application/json")
        .body(padded(60_000))
        .send()
        .await
        .unwrap();
    assert_eq!(under.status().as_u16(), 200);
    let answer: Value = under.json().await.unwrap();
    assert!(answer["data"]["me"]["name"].is_string(), "{answer:#}");
    demo.stop().await;
}

/// Finds a cast child's id by family name and date of birth, as this user.
async fn find_as(gateway: &TestGateway, user: &str, family: &str, born: &str) -> String {
    let answer = gateway
        .query_vars(
            user,
            FIND,
            json!({ "c": { "familyName": family, "dateOfBirth": born } }),
        )
        .await;
    answer.body["data"]["searchChildren"]["matches"][0]["child"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{:#}", answer.body))
        .to_owned()
}

async fn find_id(gateway: &TestGateway, family: &str, born: &str) -> String {
    find_as(gateway, "gp", family, born).await
}

const VIEW: &str = "query($id: ID!) { child(id: $id, access: { purpose: SAFEGUARDING }) { id } }";

/// An answer is composed while its record is committed, and leaves only once the record is down: while another
/// connection holds the store's write lock, the answer waits, and when it comes its record is there.
#[tokio::test]
async fn an_answer_leaves_only_once_its_record_is_down() {
    let gateway = TestGateway::builder().children(0).spawn().await;
    let child = find_id(&gateway, "Hartley", "2019-06-14").await;
    let records = || async {
        childgraph::audit::for_child(&gateway.store().await, &child)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.entry.operation == "view")
            .count()
    };
    let before = records().await;

    let mut db = gateway.db().await;
    let view = "query($id: ID!) { child(id: $id, access: {purpose: SAFEGUARDING}) { id name { given } services { kind } } }";
    // A GP's record is handed over before the details are fetched (and a teacher's once the first of them tell
    // whether the school works with the child): both answers wait.
    for user in ["gp", "teacher"] {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut db)
            .await
            .unwrap();
        let asked = gateway.query_vars(user, view, json!({ "id": child }));
        tokio::pin!(asked);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(400), &mut asked)
                .await
                .is_err(),
            "{user}: answered while the store's write lock kept its record out"
        );
        sqlx::query("ROLLBACK").execute(&mut db).await.unwrap();
        let answer = asked.await;
        assert!(answer.errors().is_empty(), "{user}: {:#}", answer.body);
        assert_eq!(
            answer.body["data"]["child"]["id"],
            json!(child),
            "{user}: {:#}",
            answer.body
        );
        assert_eq!(answer.body["data"]["child"]["name"]["given"], "Amelia");
        assert_eq!(
            answer.body["data"]["child"]["services"]
                .as_array()
                .map(Vec::len),
            Some(4)
        );
    }
    assert_eq!(records().await, before + 2);
    gateway.stop().await;
}

/// A teacher sees a child's carers only if the school works with the child, which the child's enrolments tell: the
/// carers are fetched after them. The answer's record is handed over in between, once what the answer may show is
/// known, so it is written while the carers are fetched, and is down well before the answer.
#[tokio::test]
async fn a_teachers_record_is_written_while_the_details_that_wait_on_the_relation_are_fetched() {
    const LATENCY_MS: u64 = 300;
    // Room for the phases one after another at this latency, well past the default 2 s.
    let gateway = TestGateway::builder()
        .children(0)
        .cache(false)
        .deadline_ms(10_000)
        .spawn()
        .await;
    let child = find_id(&gateway, "Hartley", "2019-06-14").await;
    for source in ["health", "school", "early_years"] {
        gateway
            .set_faults(source, json!({ "latency_ms": LATENCY_MS }))
            .await;
    }
    let view = "query($id: ID!) { child(id: $id, access: {purpose: SAFEGUARDING}) { id carers { name } } }";
    let started = std::time::Instant::now();
    let answered = async {
        let answer = gateway
            .query_vars("teacher", view, json!({ "id": child }))
            .await;
        (answer, started.elapsed())
    };
    let recorded = async {
        let mut db = gateway.db().await;
        loop {
            let (n,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM audit_log WHERE user_id = 'teacher' AND operation = 'view'",
            )
            .fetch_one(&mut db)
            .await
            .unwrap();
            if n > 0 {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "never recorded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    let ((answer, answered_after), recorded_after) = tokio::join!(answered, recorded);
    assert!(answer.errors().is_empty(), "{:#}", answer.body);
    let carers = answer.body["data"]["child"]["carers"]
        .as_array()
        .map_or(0, Vec::len);
    assert!(carers > 0, "{:#}", answer.body);
    // The carers' round, a source call of LATENCY_MS at least, came after the record was down. Half of it leaves room
    // for a slow commit on a busy disk.
    let ahead = answered_after.saturating_sub(recorded_after);
    assert!(
        ahead >= std::time::Duration::from_millis(LATENCY_MS / 2),
        "recorded after {recorded_after:?}, answered after {answered_after:?}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_spent_quota_of_distinct_children_refuses_new_children_only() {
    let mut gateway = TestGateway::builder()
        .children(0)
        .configure(|o| o.request.children_per_hour = 3)
        .spawn()
        .await;
    // Each child a search shows spends one of the GP's three.
    let amelia = find_id(&gateway, "Hartley", "2019-06-14").await;
    let leo = find_id(&gateway, "Fernandes", "2012-09-05").await;
    // The twins' search would show two children with one left: it is refused whole, with when to retry.
    let twins = json!({ "c": { "familyName": "Brennan", "dateOfBirth": "2017-01-22" } });
    let refused = gateway.query_vars("gp", FIND, twins).await;
    assert_eq!(refused.codes(), ["RATE_LIMITED"], "{:#}", refused.body);
    assert!(
        refused.body["data"]["searchChildren"].is_null(),
        "{:#}",
        refused.body
    );
    let retry = refused.errors()[0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .unwrap();
    assert!((60..=3600).contains(&retry), "{retry}");
    // A view of one new child takes the last.
    let noah = find_as(&gateway, "teacher", "Okafor", "2021-11-03").await;
    let view = gateway.query_vars("gp", VIEW, json!({ "id": noah })).await;
    assert!(view.errors().is_empty(), "{:#}", view.body);
    let isla = find_as(&gateway, "teacher", "Brennan", "2017-01-22").await;
    let refused = gateway.query_vars("gp", VIEW, json!({ "id": isla })).await;
    assert_eq!(refused.codes(), ["RATE_LIMITED"], "{:#}", refused.body);
    assert!(
        refused.body["data"]["child"].is_null(),
        "{:#}",
        refused.body
    );
    // Each refusal is counted, by the quota refused.
    let metrics = gateway.metrics().await;
    let refusals = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"childgraph_rate_limited_total{quota="children"} "#))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(refusals >= Some(2.0), "{metrics}");
    // Children already shown this hour are free to show again.
    for id in [&amelia, &leo, &noah] {
        let again = gateway.query_vars("gp", VIEW, json!({ "id": id })).await;
        assert!(again.errors().is_empty(), "{:#}", again.body);
    }
    // The count is kept in the store: a gateway started again still refuses a fourth child, and still shows the
    // three.
    gateway.restart().await;
    let refused = gateway.query_vars("gp", VIEW, json!({ "id": isla })).await;
    assert_eq!(refused.codes(), ["RATE_LIMITED"], "{:#}", refused.body);
    let again = gateway.query_vars("gp", VIEW, json!({ "id": leo })).await;
    assert!(again.errors().is_empty(), "{:#}", again.body);
    // Another user's quota is their own.
    let other = gateway
        .query_vars("social-worker", VIEW, json!({ "id": isla }))
        .await;
    assert!(other.errors().is_empty(), "{:#}", other.body);
    // The refusal is audited, naming the child refused.
    let audited = childgraph::audit::for_child(&gateway.store().await, &isla)
        .await
        .unwrap();
    assert!(
        audited
            .iter()
            .any(|r| r.entry.user_id == "gp" && r.entry.outcome == "rate_limited"),
        "{audited:?}"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn viewing_more_distinct_children_than_the_threshold_alerts_auditors() {
    let gateway = TestGateway::builder()
        .children(0)
        .configure(|o| o.monitoring.distinct_children_alert = 2)
        .spawn()
        .await;
    find_id(&gateway, "Hartley", "2019-06-14").await;
    find_id(&gateway, "Hartley", "2019-06-14").await;
    find_id(&gateway, "Fernandes", "2012-09-05").await;
    let quiet = gateway
        .query("auditor", "{ accessAlerts { userId } }")
        .await;
    assert_eq!(
        quiet.body["data"]["accessAlerts"],
        json!([]),
        "{:#}",
        quiet.body
    );
    // The third distinct child passes the threshold of two.
    find_id(&gateway, "Brennan", "2017-01-22").await;
    let alerts = gateway
        .query(
            "auditor",
            "{ accessAlerts { userId organisationId roles requestId } viewingActivity { windowMinutes threshold users { userId distinctChildren alerted } } }",
        )
        .await;
    assert!(alerts.errors().is_empty(), "{:#}", alerts.body);
    let list = alerts.body["data"]["accessAlerts"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{:#}", alerts.body);
    assert_eq!(list[0]["userId"], "gp");
    assert_eq!(list[0]["organisationId"], "org-elm-tree");
    let activity = &alerts.body["data"]["viewingActivity"];
    assert_eq!(activity["windowMinutes"], 60);
    assert_eq!(activity["threshold"], 2);
    assert_eq!(
        activity["users"][0],
        json!({ "userId": "gp", "distinctChildren": 4, "alerted": true }),
        "the twins make four: {:#}",
        alerts.body
    );
    // One alert a window, however many more children.
    find_id(&gateway, "Okafor", "2021-11-03").await;
    let again = gateway
        .query("auditor", "{ accessAlerts { userId } }")
        .await;
    assert_eq!(
        again.body["data"]["accessAlerts"].as_array().unwrap().len(),
        1
    );
    assert!(
        gateway
            .metrics()
            .await
            .contains("childgraph_access_alerts_total 1")
    );
    // Only auditors read the monitor.
    let refused = gateway.query("gp", "{ accessAlerts { userId } }").await;
    assert_eq!(refused.codes(), ["FORBIDDEN"], "{:#}", refused.body);
    gateway.stop().await;
}

/// A request still running when the drain deadline passes is cut, the gateway stops without waiting for it, and the
/// audit log's last record says the deadline ended the drain.
#[tokio::test]
async fn a_request_running_past_the_drain_deadline_is_cut_and_the_stop_record_says_so() {
    let mut gateway = TestGateway::builder()
        .children(0)
        .deadline_ms(20_000)
        .source_timeout_ms(20_000)
        .configure(|o| o.drain = std::time::Duration::from_secs(1))
        .spawn()
        .await;
    gateway
        .set_faults("health", json!({ "latency_ms": 8000 }))
        .await;
    let (url, token) = (gateway.url(), gateway.token("gp"));
    let slow = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .bearer_auth(token)
            .json(&json!({ "query": FIND, "variables": { "c": { "familyName": "Hartley", "dateOfBirth": "2019-06-14" } } }))
            .send()
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let started = std::time::Instant::now();
    gateway.shut_down().await;
    let took = started.elapsed();
    // The drain's second, then the last record; not the source's eight seconds.
    assert!(took >= std::time::Duration::from_millis(900), "{took:?}");
    assert!(took < std::time::Duration::from_secs(6), "{took:?}");
    let cut = slow.await.unwrap();
    assert!(
        cut.is_err() || cut.as_ref().is_ok_and(|r| !r.status().is_success()),
        "the request was answered: {cut:?}"
    );
    let (operation, outcome): (String, String) =
        sqlx::query_as("SELECT operation, outcome FROM audit_log ORDER BY seq DESC LIMIT 1")
            .fetch_one(&mut gateway.db().await)
            .await
            .unwrap();
    assert_eq!(
        (operation.as_str(), outcome.as_str()),
        ("gateway.stop", "deadline")
    );
}
