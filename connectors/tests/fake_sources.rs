//! The connectors against fake sources served by axum on 127.0.0.1:0: the requests they send, paging, and how failures map to errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use childgraph_connectors::{
    Connector, ConnectorError, EarlyYearsConnector, FhirConnector, OneRosterConnector, Parts,
    RequestReads, SourceConfig,
};
use childgraph_schema::{NhsNumber, SearchCriteria};
use chrono::NaiveDate;
use url::Url;

/// One request as the fake source saw it: the path and the decoded query parameters.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
}

impl Seen {
    fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

enum Reply {
    Json(StatusCode, Vec<(&'static str, String)>, String),
    /// Answers only after the connector has given up.
    Slow,
}

fn ok(body: serde_json::Value) -> Reply {
    Reply::Json(StatusCode::OK, Vec::new(), body.to_string())
}

type Handler = Arc<dyn Fn(&Seen, &str) -> Reply + Send + Sync>;

struct Fake {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    /// Serves `handler` on a fresh loopback port. The handler gets the request and the server's own origin, for paging links.
    async fn spawn(handler: impl Fn(&Seen, &str) -> Reply + Send + Sync + 'static) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let (log, at) = (seen.clone(), origin.clone());
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (log, at, handler) = (log.clone(), at.clone(), handler.clone());
            async move {
                let url = Url::parse(&format!("{at}{}", req.uri())).unwrap();
                let request = Seen {
                    path: url.path().to_owned(),
                    query: url.query_pairs().into_owned().collect(),
                    headers: req.headers().clone(),
                };
                log.lock().unwrap().push(request.clone());
                match handler(&request, &at) {
                    Reply::Json(status, headers, body) => {
                        let mut response: Response = (status, body).into_response();
                        for (name, value) in headers {
                            response.headers_mut().insert(name, value.parse().unwrap());
                        }
                        response
                    }
                    Reply::Slow => {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        StatusCode::OK.into_response()
                    }
                }
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake { base: origin, seen }
    }

    fn config(&self, path: &str) -> SourceConfig {
        let mut config = SourceConfig::new(Url::parse(&format!("{}{path}", self.base)).unwrap());
        config.request_timeout = Duration::from_millis(300);
        config
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn paths(&self) -> Vec<String> {
        let mut paths: Vec<String> = self.seen().into_iter().map(|s| s.path).collect();
        paths.sort();
        paths
    }
}

fn by_birth(date: &str) -> SearchCriteria {
    SearchCriteria {
        family_name: Some("Hartley".into()),
        date_of_birth: Some(NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap()),
        ..Default::default()
    }
}

fn patient(id: &str) -> serde_json::Value {
    serde_json::json!({"resourceType": "Patient", "id": id, "name": [{"use": "official", "family": "Hartley", "given": ["Amelia"]}], "birthDate": "2019-06-14"})
}

fn bundle(resources: Vec<serde_json::Value>, next: Option<String>) -> serde_json::Value {
    let mut links = vec![serde_json::json!({"relation": "self", "url": "x"})];
    if let Some(next) = next {
        links.push(serde_json::json!({"relation": "next", "url": next}));
    }
    serde_json::json!({
        "resourceType": "Bundle", "type": "searchset", "total": resources.len(), "link": links,
        "entry": resources.into_iter().map(|r| serde_json::json!({"resource": r, "search": {"mode": "match"}})).collect::<Vec<_>>()
    })
}

#[tokio::test]
async fn fhir_search_sends_both_blocks_and_follows_next_links() {
    let fake = Fake::spawn(|req, origin| match req.param("page") {
        None if req.param("birthdate").is_some() => ok(bundle(
            vec![patient("p1"), patient("p2")],
            Some(format!("{origin}/fhir/Patient?page=2&_count=100")),
        )),
        Some("2") => ok(bundle(vec![patient("p3"), patient("p1")], None)),
        _ => ok(bundle(vec![patient("p1")], None)),
    })
    .await;
    let connector = FhirConnector::new(fake.config("/fhir")).unwrap();
    let mut criteria = by_birth("2019-06-14");
    criteria.nhs_number = Some(NhsNumber::parse("9434765919").unwrap());
    let records = connector.search(&criteria).await.unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["p1", "p2", "p3"]);

    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    let identifier = seen
        .iter()
        .find_map(|s| s.param("identifier"))
        .expect("an identifier block");
    assert_eq!(identifier, "https://fhir.nhs.uk/Id/nhs-number|9434765919");
    let birth = seen
        .iter()
        .find(|s| s.param("birthdate").is_some())
        .unwrap();
    assert_eq!(birth.param("birthdate"), Some("2019-06-14"));
    assert_eq!(birth.param("_count"), Some("100"));
    assert_eq!(
        birth.headers.get("accept").and_then(|v| v.to_str().ok()),
        Some("application/fhir+json")
    );
}

#[tokio::test]
async fn fhir_search_stops_at_max_search_results() {
    let fake = Fake::spawn(|_, origin| {
        ok(bundle(
            vec![patient("p1"), patient("p2")],
            Some(format!("{origin}/fhir/Patient?page=again")),
        ))
    })
    .await;
    let mut config = fake.config("/fhir");
    config.max_search_results = 1;
    let records = FhirConnector::new(config)
        .unwrap()
        .search(&by_birth("2019-06-14"))
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(fake.seen().len(), 1);
}

#[tokio::test]
async fn fhir_details_fetch_only_the_parts_asked_for() {
    let fake = Fake::spawn(|req, _| match req.path.as_str() {
        "/fhir/EpisodeOfCare" => ok(bundle(
            vec![serde_json::json!({
                "resourceType": "EpisodeOfCare", "id": "e1", "status": "active", "patient": {"reference": "Patient/p1"},
                "type": [{"coding": [{"system": "urn:childgraph:fhir:service-type", "code": "general-practice"}]}],
                "managingOrganization": {"reference": "Organization/o1"}, "careManager": {"reference": "Practitioner/d1"}
            })],
            None,
        )),
        "/fhir/Organization" => ok(bundle(
            vec![serde_json::json!({"resourceType": "Organization", "id": "o1", "name": "Mill Lane Surgery"})],
            None,
        )),
        "/fhir/Practitioner" => ok(bundle(
            vec![serde_json::json!({"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Shah"}]})],
            None,
        )),
        _ => ok(bundle(Vec::new(), None)),
    })
    .await;
    let connector = FhirConnector::new(fake.config("/fhir")).unwrap();
    let ids = vec!["p1".to_string(), "p2".to_string()];

    let none = connector.details(&ids, Parts::NONE).await.unwrap();
    assert_eq!(none.len(), 2);
    assert!(fake.seen().is_empty());

    let details = connector
        .details(
            &ids,
            Parts {
                involvements: true,
                ..Parts::NONE
            },
        )
        .await
        .unwrap();
    // This server ignores `_revinclude` (its self link does not echo it), so the connector asks the plain way.
    assert_eq!(
        fake.paths(),
        [
            "/fhir/EpisodeOfCare",
            "/fhir/Organization",
            "/fhir/Patient",
            "/fhir/Practitioner"
        ]
    );
    let seen = fake.seen();
    let sent = |path: &str| seen.iter().find(|s| s.path == path).expect("sent");
    assert_eq!(
        sent("/fhir/Patient").param("_revinclude"),
        Some("EpisodeOfCare:patient")
    );
    assert_eq!(sent("/fhir/EpisodeOfCare").param("patient"), Some("p1,p2"));
    let includes: Vec<&str> = sent("/fhir/EpisodeOfCare")
        .query
        .iter()
        .filter(|(n, _)| n == "_include")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        includes,
        ["EpisodeOfCare:organization", "EpisodeOfCare:care-manager"]
    );
    // This server ignored `_include`, so the referenced resources were read on their own.
    let involvement = &details["p1"].involvements[0];
    assert_eq!(
        involvement.organisation.as_ref().map(|o| o.name.as_str()),
        Some("Mill Lane Surgery")
    );
    assert_eq!(
        involvement.practitioner.as_ref().map(|p| p.name.as_str()),
        Some("Shah")
    );
}

#[tokio::test]
async fn fhir_details_come_in_one_search_from_a_server_that_applies_revinclude() {
    let fake = Fake::spawn(|req, origin| match req.path.as_str() {
        "/fhir/Patient" => {
            // The self link echoes every parameter, as a server does for those it applied.
            let echoed = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(req.query.iter())
                .finish();
            ok(serde_json::json!({
                "resourceType": "Bundle", "type": "searchset", "total": 1,
                "link": [{"relation": "self", "url": format!("{origin}/fhir/Patient?{echoed}")}],
                "entry": [
                    {"search": {"mode": "match"}, "resource": patient("p1")},
                    {"search": {"mode": "include"}, "resource": {
                        "resourceType": "EpisodeOfCare", "id": "e1", "status": "active", "patient": {"reference": "Patient/p1"},
                        "type": [{"coding": [{"system": "urn:childgraph:fhir:service-type", "code": "general-practice"}]}],
                        "managingOrganization": {"reference": "Organization/o1"}, "careManager": {"reference": "Practitioner/d1"}}},
                    // About a patient nobody asked about: not taken.
                    {"search": {"mode": "include"}, "resource": {
                        "resourceType": "EpisodeOfCare", "id": "e9", "status": "active", "patient": {"reference": "Patient/p9"},
                        "type": [{"coding": [{"system": "urn:childgraph:fhir:service-type", "code": "social-care"}]}]}},
                    {"search": {"mode": "include"}, "resource": {"resourceType": "RelatedPerson", "id": "r1", "patient": {"reference": "Patient/p1"},
                        "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}],
                        "name": [{"family": "Hartley", "given": ["Sarah"]}]}},
                    {"search": {"mode": "include"}, "resource": {"resourceType": "Organization", "id": "o1", "name": "Mill Lane Surgery"}},
                    {"search": {"mode": "include"}, "resource": {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Shah"}]}},
                    // Included but referred to by nothing asked for: not taken.
                    {"search": {"mode": "include"}, "resource": {"resourceType": "Organization", "id": "o9", "name": "Elsewhere"}}
                ]
            }))
        }
        _ => ok(bundle(Vec::new(), None)),
    })
    .await;
    let connector = FhirConnector::new(fake.config("/fhir")).unwrap();
    let parts = Parts {
        carers: true,
        involvements: true,
        participation: false,
    };
    let details = connector.details(&["p1".into()], parts).await.unwrap();
    assert_eq!(fake.paths(), ["/fhir/Patient"]);
    let seen = &fake.seen()[0];
    let sent = |name: &str| -> Vec<&str> {
        seen.query
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(
        sent("_revinclude"),
        ["RelatedPerson:patient", "EpisodeOfCare:patient"],
        "participation was not asked for, so Encounters are not"
    );
    assert_eq!(
        sent("_include:iterate"),
        ["EpisodeOfCare:organization", "EpisodeOfCare:care-manager"]
    );
    let d = &details["p1"];
    assert_eq!(d.involvements.len(), 1);
    assert_eq!(
        d.involvements[0]
            .organisation
            .as_ref()
            .map(|o| o.name.as_str()),
        Some("Mill Lane Surgery")
    );
    assert_eq!(
        d.involvements[0]
            .practitioner
            .as_ref()
            .map(|p| p.name.as_str()),
        Some("Shah")
    );
    assert_eq!(d.carers.len(), 1);
    assert!(d.participation.is_empty());
}

#[tokio::test]
async fn fhir_records_are_batched_by_100() {
    let fake = Fake::spawn(|req, _| {
        let ids = req.param("_id").unwrap_or_default();
        ok(bundle(ids.split(',').map(patient).collect(), None))
    })
    .await;
    let ids: Vec<String> = (0..250).map(|i| format!("p{i}")).collect();
    let records = FhirConnector::new(fake.config("/fhir"))
        .unwrap()
        .records(&ids)
        .await
        .unwrap();
    assert_eq!(records.len(), 250);
    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    assert!(
        seen.iter()
            .all(|s| s.param("_id").unwrap().split(',').count() <= 100)
    );
}

#[tokio::test]
async fn failures_map_to_errors_without_child_data() {
    let fake = Fake::spawn(|req, origin| match req.path.as_str() {
        "/fhir/Patient" => Reply::Json(
            StatusCode::INTERNAL_SERVER_ERROR,
            Vec::new(),
            "{}".into(),
        ),
        "/bad/Patient" => Reply::Json(
            StatusCode::BAD_REQUEST,
            Vec::new(),
            serde_json::json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "invalid", "diagnostics": "no family Hartley"}]}).to_string(),
        ),
        "/slow/Patient" => Reply::Slow,
        "/junk/Patient" => Reply::Json(StatusCode::OK, Vec::new(), "{\"resourceType\": \"Bundle\", \"entry\": [Hartley".into()),
        "/away/Patient" => ok(bundle(vec![patient("p1")], Some("http://elsewhere.invalid/fhir/Patient?page=2".into()))),
        "/busy/Patient" => Reply::Json(StatusCode::TOO_MANY_REQUESTS, Vec::new(), String::new()),
        _ => ok(bundle(vec![patient("p1")], Some(format!("{origin}/nowhere"))))
    })
    .await;
    let criteria = by_birth("2019-06-14");
    let search = |path: &'static str| {
        let connector = FhirConnector::new(fake.config(path)).unwrap();
        let criteria = criteria.clone();
        async move { connector.search(&criteria).await.unwrap_err() }
    };

    let error = search("/fhir").await;
    assert!(
        matches!(error, ConnectorError::Unavailable { .. }),
        "{error}"
    );
    let error = search("/bad").await;
    assert!(matches!(error, ConnectorError::Rejected { .. }), "{error}");
    assert_eq!(
        error.to_string(),
        "health refused the request: status 400 (invalid)"
    );
    let error = search("/slow").await;
    assert!(error.is_timeout(), "{error}");
    let error = search("/junk").await;
    assert!(matches!(error, ConnectorError::Malformed { .. }), "{error}");
    let error = search("/away").await;
    assert!(matches!(error, ConnectorError::Malformed { .. }), "{error}");
    let error = search("/busy").await;
    assert!(
        matches!(error, ConnectorError::Unavailable { .. }),
        "{error}"
    );

    // No message names the child, the date searched for or the URL.
    for path in ["/fhir", "/bad", "/slow", "/junk", "/away"] {
        let message = search(path).await.to_string();
        for secret in ["Hartley", "2019-06-14", "127.0.0.1", "birthdate"] {
            assert!(!message.contains(secret), "{message}");
        }
    }
}

/// How a FHIR search against `addr` fails, with the config `adjust` leaves.
async fn fhir_search_error(
    addr: std::net::SocketAddr,
    adjust: impl FnOnce(&mut SourceConfig),
) -> ConnectorError {
    let mut config = SourceConfig::new(Url::parse(&format!("http://{addr}/fhir")).unwrap());
    adjust(&mut config);
    FhirConnector::new(config)
        .unwrap()
        .search(&by_birth("2019-06-14"))
        .await
        .unwrap_err()
}

#[tokio::test]
async fn refused_connections_are_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let error = fhir_search_error(addr, |_| {}).await;
    assert!(
        matches!(error, ConnectorError::Unavailable { .. }),
        "{error}"
    );
}

/// A source that declares a body longer than the connector takes is refused on its headers: the connector reads none
/// of it, so it does not wait for a body that never comes.
#[tokio::test]
async fn an_answer_declared_too_long_is_refused_before_its_body_is_read() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = [0u8; 4096];
        let _ = socket.read(&mut request).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/fhir+json\r\ncontent-length: 40000000\r\n\r\n{";
        socket.write_all(head.as_bytes()).await.unwrap();
        // The rest never comes; the connection stays open until the test ends.
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let error = fhir_search_error(addr, |config| {
        config.retry.max_retries = 0;
        config.request_timeout = Duration::from_secs(30);
    })
    .await;
    // Waiting for the body would have ended at the request timeout, as a timeout.
    assert!(
        matches!(&error, ConnectorError::Malformed { detail, .. } if detail.contains("too large")),
        "{error}"
    );
}

/// The ids named in an OR-filter of `field='value'` predicates.
fn filter_values(filter: &str) -> Vec<String> {
    filter
        .split(" OR ")
        .filter_map(|p| {
            let value = p.split_once("='")?.1.strip_suffix('\'')?;
            Some(value.replace("''", "'"))
        })
        .collect()
}

#[tokio::test]
async fn oneroster_pages_by_offset_and_splits_filters() {
    const BORN: usize = 150;
    let fake = Fake::spawn(|req, _| {
        let filter = req.param("filter").unwrap_or_default().to_owned();
        match req.path.rsplit('/').next().unwrap() {
            "demographics" if filter.starts_with("birthDate=") => {
                let offset: usize = req.param("offset").unwrap().parse().unwrap();
                let limit: usize = req.param("limit").unwrap().parse().unwrap();
                let page: Vec<_> = (offset..(offset + limit).min(BORN))
                    .map(|i| serde_json::json!({"sourcedId": format!("s{i}"), "birthDate": "2019-06-14", "sex": "male"}))
                    .collect();
                Reply::Json(
                    StatusCode::OK,
                    vec![("x-total-count", BORN.to_string())],
                    serde_json::json!({"demographics": page}).to_string(),
                )
            }
            "users" => {
                let users: Vec<_> = filter_values(&filter)
                    .into_iter()
                    .map(|id| serde_json::json!({
                        "sourcedId": id, "givenName": "A", "familyName": "B", "identifier": "B801200005001",
                        "roles": [{"roleType": "primary", "role": "student"}]
                    }))
                    .collect();
                ok(serde_json::json!({"users": users}))
            }
            _ => Reply::Json(
                StatusCode::BAD_REQUEST,
                Vec::new(),
                serde_json::json!({"imsx_codeMajor": "failure", "imsx_severity": "error", "imsx_description": "bad filter Hartley",
                    "imsx_CodeMinor": {"imsx_codeMinorField": [{"imsx_codeMinorFieldName": "TargetEndSystem", "imsx_codeMinorFieldValue": "invalid_filter_field"}]}}).to_string(),
            ),
        }
    })
    .await;
    let connector =
        OneRosterConnector::new(fake.config("/ims/oneroster/rostering/v1p2"), 2).unwrap();
    let records = connector.search(&by_birth("2019-06-14")).await.unwrap();
    assert_eq!(records.len(), BORN);
    assert!(records.iter().all(|r| r.date_of_birth.is_some()));

    let seen = fake.seen();
    let demographics: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.ends_with("/demographics"))
        .collect();
    assert_eq!(demographics.len(), 2);
    assert_eq!(
        demographics[0].param("filter"),
        Some("birthDate='2019-06-14'")
    );
    let users: Vec<&Seen> = seen.iter().filter(|s| s.path.ends_with("/users")).collect();
    assert_eq!(users.len(), BORN / 2);
    assert!(
        users
            .iter()
            .all(|u| filter_values(u.param("filter").unwrap()).len() == 2)
    );

    let error = connector
        .details(&["s1".into()], Parts::ALL)
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "school refused the request: status 400 (invalid_filter_field)"
    );
}

#[tokio::test]
async fn oneroster_details_follow_the_profiled_chain() {
    let fake = Fake::spawn(|req, _| {
        let filter = req.param("filter").unwrap_or_default().to_owned();
        let ids = filter_values(&filter);
        let body = match req.path.rsplit('/').next().unwrap() {
            "enrollments" if filter.starts_with("user.sourcedId") => serde_json::json!({"enrollments": [
                {"sourcedId": "en1", "role": "student", "user": {"sourcedId": "s1"}, "class": {"sourcedId": "c1"},
                 "school": {"sourcedId": "sch1"}, "beginDate": "2025-09-03"}]}),
            "enrollments" => serde_json::json!({"enrollments": [
                {"sourcedId": "en2", "role": "teacher", "primary": "true", "user": {"sourcedId": "t1"}, "class": {"sourcedId": "c1"}}]}),
            "classes" => serde_json::json!({"classes": [{"sourcedId": "c1", "title": "Year 2 Oak"}]}),
            "orgs" => serde_json::json!({"orgs": [{"sourcedId": "sch1", "name": "Mill Lane Primary", "type": "school"}]}),
            "users" => serde_json::json!({"users": ids.iter().map(|id| match id.as_str() {
                "s1" => serde_json::json!({"sourcedId": "s1", "givenName": "A", "familyName": "B",
                    "roles": [{"roleType": "primary", "role": "student"}], "agents": [{"sourcedId": "g1", "type": "user", "href": "h"}]}),
                "g1" => serde_json::json!({"sourcedId": "g1", "givenName": "C", "familyName": "B", "roles": [{"roleType": "primary", "role": "parent"}],
                    "metadata": {"relationship": "father"}}),
                _ => serde_json::json!({"sourcedId": id, "givenName": "T", "familyName": "Okafor", "roles": [{"roleType": "primary", "role": "teacher"}]}),
            }).collect::<Vec<_>>()}),
            _ => serde_json::json!({}),
        };
        ok(body)
    })
    .await;
    let connector =
        OneRosterConnector::new(fake.config("/ims/oneroster/rostering/v1p2"), 2).unwrap();
    let details = connector.details(&["s1".into()], Parts::ALL).await.unwrap();
    let d = &details["s1"];
    assert_eq!(d.carers[0].relationship.as_deref(), Some("father"));
    assert_eq!(d.participation[0].description, "Enrolled in Year 2 Oak");
    assert_eq!(
        d.involvements[0]
            .practitioner
            .as_ref()
            .map(|p| p.name.as_str()),
        Some("T Okafor")
    );
    let filters: Vec<String> = fake
        .seen()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s.path.rsplit('/').next().unwrap(),
                s.param("filter").unwrap()
            )
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        filters,
        [
            "classes sourcedId='c1'",
            "enrollments class.sourcedId='c1' AND role='teacher'",
            "enrollments user.sourcedId='s1'",
            "orgs sourcedId='sch1'",
            // The student's agents and the class teachers, in one read.
            "users sourcedId='g1' OR sourcedId='t1'",
            "users sourcedId='s1'",
        ]
    );

    // Within one request, the details' read of the students is the one `records` made: it is not sent again, even
    // with the cache off.
    let mut config = fake.config("/ims/oneroster/rostering/v1p2");
    config.cache.enabled = false;
    let connector = OneRosterConnector::new(config, 2).unwrap();
    let before = fake.seen().len();
    RequestReads::new()
        .scope(async {
            connector.records(&["s1".into()]).await.unwrap();
            connector.details(&["s1".into()], Parts::ALL).await.unwrap();
        })
        .await;
    let students_read = fake.seen()[before..]
        .iter()
        .filter(|s| s.path.ends_with("/users") && s.param("filter") == Some("sourcedId='s1'"))
        .count();
    assert_eq!(students_read, 1);
    // No read at all was sent twice: every repeat was answered from the request's reads.
    let sent: Vec<String> = fake.seen()[before..]
        .iter()
        .map(|s| format!("{} {:?}", s.path, s.query))
        .collect();
    let distinct: std::collections::HashSet<&String> = sent.iter().collect();
    assert_eq!(distinct.len(), sent.len());
    assert!(connector.stats().reused >= 1);
}

fn child(id: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "first_name": "Amelia", "last_name": "Hartley", "date_of_birth": "2019-06-14",
        "carers": [{"name": "Sarah Hartley", "relationship": "mother"}], "updated_at": "2025-01-01T00:00:00Z"})
}

#[tokio::test]
async fn early_years_search_follows_next_and_sends_both_blocks() {
    let fake = Fake::spawn(|req, origin| {
        let page = req.param("offset").unwrap_or("0");
        let body = match (req.param("family_name"), page) {
            (Some(_), _) => serde_json::json!({"items": [child("c1")], "total": 1, "limit": 50, "offset": 0, "next": null}),
            (None, "0") => serde_json::json!({"items": [child("c1"), child("c2")], "total": 3, "limit": 2, "offset": 0,
                "next": format!("{origin}/api/v1/children?date_of_birth=2019-06-14&limit=2&offset=2")}),
            _ => serde_json::json!({"items": [child("c3")], "total": 3, "limit": 2, "offset": 2}),
        };
        ok(body)
    })
    .await;
    let mut config = fake.config("/api/v1");
    config.bearer_token = Some("s3cret".into());
    let connector = EarlyYearsConnector::new(config).unwrap();
    let records = connector.search(&by_birth("2019-06-14")).await.unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["c1", "c2", "c3"]);
    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(
        |s| s.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer s3cret")
    ));
    assert!(
        seen.iter()
            .any(|s| s.param("family_name") == Some("Hartley")
                && s.param("date_of_birth") == Some("2019-06-14"))
    );
}

#[tokio::test]
async fn early_years_details_batch_ids() {
    let fake = Fake::spawn(|req, _| {
        let list = |name: &str| -> Vec<String> {
            req.param(name).unwrap_or_default().split(',').map(str::to_owned).collect()
        };
        let body = match req.path.as_str() {
            "/api/v1/children/batch" => serde_json::json!({"items": list("ids").iter().map(|id| child(id)).collect::<Vec<_>>()}),
            "/api/v1/enrolments" => serde_json::json!({"items": list("child_ids").iter().map(|id| serde_json::json!({
                "id": format!("e-{id}"), "child_id": id, "setting_id": "set1", "programme": "kindergarten", "hours_per_week": 15,
                "status": "active", "start_date": "2023-01-30"})).collect::<Vec<_>>()}),
            "/api/v1/settings" => serde_json::json!({"items": [{"id": "set1", "name": "Sunny Days", "type": "kindergarten"}]}),
            _ => serde_json::json!({}),
        };
        ok(body)
    })
    .await;
    let connector = EarlyYearsConnector::new(fake.config("/api/v1")).unwrap();
    let ids: Vec<String> = (0..150).map(|i| format!("c{i}")).collect();
    let details = connector.details(&ids, Parts::ALL).await.unwrap();
    assert_eq!(details.len(), 150);
    let d = &details["c149"];
    assert_eq!(d.carers[0].relationship.as_deref(), Some("mother"));
    assert_eq!(
        d.participation[0].description,
        "kindergarten, 15 hours a week"
    );
    assert_eq!(
        d.involvements[0]
            .organisation
            .as_ref()
            .map(|o| o.name.as_str()),
        Some("Sunny Days")
    );
    let counts = fake.paths().into_iter().fold(HashMap::new(), |mut m, p| {
        *m.entry(p).or_insert(0) += 1;
        m
    });
    assert_eq!(counts["/api/v1/children/batch"], 2);
    assert_eq!(counts["/api/v1/enrolments"], 2);
    assert_eq!(counts["/api/v1/settings"], 1);
}

/// Searches the fake as each of the three sources, at the paths the connectors' profiles give; returns the school's
/// records.
async fn search_every_source(
    fake: &Fake,
    criteria: &SearchCriteria,
) -> Vec<childgraph_schema::PersonRecord> {
    FhirConnector::new(fake.config("/fhir"))
        .unwrap()
        .search(criteria)
        .await
        .unwrap();
    let school = OneRosterConnector::new(fake.config("/ims/oneroster/rostering/v1p2"), 2)
        .unwrap()
        .search(criteria)
        .await
        .unwrap();
    EarlyYearsConnector::new(fake.config("/api/v1"))
        .unwrap()
        .search(criteria)
        .await
        .unwrap();
    school
}

#[tokio::test]
async fn every_source_also_blocks_on_the_birth_date_with_day_and_month_swapped() {
    let fake = Fake::spawn(|req, _| match req.path.as_str() {
        p if p.starts_with("/fhir") => ok(bundle(Vec::new(), None)),
        p if p.ends_with("/demographics") => ok(serde_json::json!({"demographics": []})),
        p if p.ends_with("/users") => ok(serde_json::json!({"users": []})),
        _ => {
            ok(serde_json::json!({"items": [], "total": 0, "limit": 50, "offset": 0, "next": null}))
        }
    })
    .await;
    search_every_source(&fake, &by_birth("2021-11-03")).await;
    let seen = fake.seen();
    let mut fhir: Vec<&str> = seen.iter().filter_map(|s| s.param("birthdate")).collect();
    fhir.sort();
    assert_eq!(fhir, ["2021-03-11", "2021-11-03"]);
    let school: Vec<&str> = seen
        .iter()
        .filter(|s| s.path.ends_with("/demographics"))
        .filter_map(|s| s.param("filter"))
        .collect();
    assert_eq!(school, ["birthDate='2021-11-03' OR birthDate='2021-03-11'"]);
    let mut early_years: Vec<&str> = seen
        .iter()
        .filter(|s| s.path.ends_with("/children") && s.param("family_name").is_none())
        .filter_map(|s| s.param("date_of_birth"))
        .collect();
    early_years.sort();
    assert_eq!(early_years, ["2021-03-11", "2021-11-03"]);

    // A day that cannot be a month gives one date only, and without a given name there is no name block.
    let before = fake.seen().len();
    FhirConnector::new(fake.config("/fhir"))
        .unwrap()
        .search(&by_birth("2019-06-14"))
        .await
        .unwrap();
    assert_eq!(fake.seen().len() - before, 1);
}

#[tokio::test]
async fn every_source_also_blocks_on_the_first_letters_of_both_names() {
    let fake = Fake::spawn(|req, _| match req.path.as_str() {
        p if p.starts_with("/fhir") => ok(bundle(Vec::new(), None)),
        p if p.ends_with("/demographics") => ok(serde_json::json!({"demographics": [
            {"sourcedId": "s1", "birthDate": "2019-06-15"}
        ]})),
        // OneRoster's `~` finds names containing the value: a teacher and a pupil whose name only contains it come back too.
        p if p.ends_with("/users") && req.param("filter").is_some_and(|f| f.contains('~')) => {
            ok(serde_json::json!({"users": [
                {"sourcedId": "s1", "givenName": "Amelia", "familyName": "O'Hartley",
                 "roles": [{"roleType": "primary", "role": "student"}]},
                {"sourcedId": "s2", "givenName": "Pamela", "familyName": "Shao'Har",
                 "roles": [{"roleType": "primary", "role": "student"}]},
                {"sourcedId": "t1", "givenName": "Amelie", "familyName": "O'Hara",
                 "roles": [{"roleType": "primary", "role": "teacher"}]}
            ]}))
        }
        p if p.ends_with("/users") => ok(serde_json::json!({"users": []})),
        _ => {
            ok(serde_json::json!({"items": [], "total": 0, "limit": 50, "offset": 0, "next": null}))
        }
    })
    .await;
    let criteria = SearchCriteria {
        given_name: Some("Amelia Rose".into()),
        family_name: Some("O'Hartley".into()),
        date_of_birth: NaiveDate::from_ymd_opt(2019, 6, 14),
        ..Default::default()
    };
    let school = search_every_source(&fake, &criteria).await;
    let seen = fake.seen();
    let fhir: Vec<(Option<&str>, Option<&str>)> = seen
        .iter()
        .filter(|s| s.path.starts_with("/fhir") && s.param("given").is_some())
        .map(|s| (s.param("given"), s.param("family")))
        .collect();
    assert_eq!(fhir, [(Some("Ame"), Some("O'H"))]);
    let filters: Vec<&str> = seen
        .iter()
        .filter(|s| s.path.ends_with("/users"))
        .filter_map(|s| s.param("filter"))
        .filter(|f| f.contains('~'))
        .collect();
    assert_eq!(filters, ["givenName~'Ame' AND familyName~'O''H'"]);
    // Only the pupil whose names start with the letters is a candidate; her one-digit-off birth date is for the model.
    let ids: Vec<&str> = school.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["s1"]);
    let early_years: Vec<(Option<&str>, Option<&str>)> = seen
        .iter()
        .filter(|s| s.path.ends_with("/children") && s.param("given_name").is_some())
        .map(|s| (s.param("given_name"), s.param("family_name")))
        .collect();
    assert_eq!(early_years, [(Some("Ame"), Some("O'H"))]);
}
