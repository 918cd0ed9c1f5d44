//! Protocol tests: each simulator's router answers the requests of `connectors/PROFILES.md` as the profile says, and faults behave.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use childgraph_simulators::population::Population;
use childgraph_simulators::{FaultState, Faults, PopulationConfig, SimulatorKind, cast, router};
use serde_json::Value;
use tower::ServiceExt;

const HOST: &str = "sim.test";

fn population() -> Arc<Population> {
    static POPULATION: OnceLock<Arc<Population>> = OnceLock::new();
    POPULATION
        .get_or_init(|| {
            Arc::new(Population::generate(&PopulationConfig {
                children: 3000,
                ..PopulationConfig::default()
            }))
        })
        .clone()
}

fn app(kind: SimulatorKind) -> (Router, Arc<FaultState>) {
    let faults = Arc::new(FaultState::new(Faults::default()));
    (router(kind, population(), faults.clone()), faults)
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "invalid JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn content_type(&self) -> &str {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

async fn send(app: &Router, method: &str, uri: &str, body: &str) -> Answer {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

async fn get(app: &Router, uri: &str) -> Answer {
    send(app, "GET", uri, "").await
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn fold(s: &str) -> String {
    // Enough folding for the names the tests pick.
    s.to_lowercase()
        .replace(['ë', 'é', 'è'], "e")
        .replace(['ü', 'ú'], "u")
        .replace('ñ', "n")
        .replace('ś', "s")
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// FHIR

#[tokio::test]
async fn fhir_family_prefix_is_case_and_accent_insensitive() {
    let (app, _) = app(SimulatorKind::Health);
    let p = population();
    let family = p
        .health
        .iter()
        .map(|r| r.family.to_string())
        .find(|f| f != &fold(f) && !f.contains(' ') && !f.is_ascii())
        .expect("an accented family name");
    let prefix: String = fold(&family).to_uppercase().chars().take(5).collect();
    let expected = p
        .health
        .iter()
        .filter(|r| fold(&r.family).starts_with(&prefix.to_lowercase()))
        .count();
    let a = get(
        &app,
        &format!("/fhir/Patient?family={}&_count=200", enc(&prefix)),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.content_type().starts_with("application/fhir+json"));
    let bundle = a.json();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], expected);
    assert!(expected > 0);
    let entry = &bundle["entry"][0];
    assert_eq!(entry["search"]["mode"], "match");
    assert!(
        entry["fullUrl"]
            .as_str()
            .unwrap()
            .starts_with("http://sim.test/fhir/Patient/")
    );
    // The accented spelling finds the same.
    let b = get(
        &app,
        &format!("/fhir/Patient?family={}&_count=200", enc(&family)),
    )
    .await;
    assert!(b.json()["total"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn crowds_are_found_together_in_every_source() {
    use childgraph_simulators::Crowd;
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let population = Arc::new(Population::generate(&PopulationConfig {
        children: 500,
        crowds: vec![
            Crowd {
                family_name: "Crowder".into(),
                date_of_birth: day("2016-05-05"),
                size: 10,
            },
            Crowd {
                family_name: "Manyfold".into(),
                date_of_birth: day("2020-02-02"),
                size: 50,
            },
        ],
        ..PopulationConfig::default()
    }));
    let faults = || Arc::new(FaultState::new(Faults::default()));
    let health = router(SimulatorKind::Health, population.clone(), faults());
    let crowder = get(
        &health,
        "/fhir/Patient?family=Crowder&birthdate=2016-05-05&_count=100",
    )
    .await
    .json();
    assert_eq!(crowder["total"], 10);
    let crowder_ids = ids(&crowder);
    assert_eq!(crowder_ids.len(), 10);
    let given: std::collections::HashSet<&str> = crowder["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["name"][0]["given"][0].as_str().unwrap())
        .collect();
    assert_eq!(given.len(), 10);
    let manyfold = get(
        &health,
        "/fhir/Patient?family=manyfold&birthdate=2020-02-02&_count=100",
    )
    .await
    .json();
    assert_eq!(manyfold["total"], 50);

    let school = router(SimulatorKind::School, population.clone(), faults());
    let pupils = roster(
        &school,
        "users",
        "familyName='Manyfold' AND roles.role='student'",
    )
    .await;
    assert_eq!(pupils.headers["x-total-count"], "50");

    let early_years = router(SimulatorKind::EarlyYears, population.clone(), faults());
    let none = get(
        &early_years,
        "/api/v1/children?family_name=crowder&date_of_birth=2016-05-05",
    )
    .await
    .json();
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    let some = get(
        &early_years,
        "/api/v1/children?family_name=manyfold&date_of_birth=2020-02-02",
    )
    .await
    .json();
    let expected = population
        .early_years
        .iter()
        .filter(|r| &*r.family == "Manyfold")
        .count();
    assert!(expected > 0);
    assert_eq!(some["items"].as_array().unwrap().len(), expected);
}

#[tokio::test]
async fn fhir_birthdate_prefixes_and_precision() {
    let (app, _) = app(SimulatorKind::Health);
    let p = population();
    let amelia = cast::AMELIA.health_id.unwrap();
    let a = get(&app, "/fhir/Patient?birthdate=2019-06-14&_count=100")
        .await
        .json();
    assert!(ids(&a).contains(&amelia.to_owned()));
    let b = get(&app, "/fhir/Patient?birthdate=eq2019-06-14&_count=100")
        .await
        .json();
    assert_eq!(a["total"], b["total"]);

    let in_2010 = p
        .health
        .iter()
        .filter(|r| r.birth_date.format("%Y").to_string() == "2010")
        .count();
    let year = get(&app, "/fhir/Patient?birthdate=2010").await.json();
    assert_eq!(year["total"], in_2010);
    let range = get(
        &app,
        "/fhir/Patient?birthdate=ge2010-01-01&birthdate=lt2011-01",
    )
    .await
    .json();
    assert_eq!(range["total"], in_2010);
    let gt = get(
        &app,
        "/fhir/Patient?birthdate=gt2009-12&birthdate=le2010-12-31",
    )
    .await
    .json();
    assert_eq!(gt["total"], in_2010);
    let ne = get(&app, "/fhir/Patient?birthdate=ne2010").await.json();
    assert_eq!(ne["total"], p.health.len() - in_2010);
    let bad = get(&app, "/fhir/Patient?birthdate=2010-13").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn fhir_identifier_id_list_and_patient_content() {
    let (app, _) = app(SimulatorKind::Health);
    let leo_id = cast::LEO.health_id.unwrap();
    let leo = get(&app, &format!("/fhir/Patient/{leo_id}")).await.json();
    assert_eq!(leo["meta"]["security"][0]["code"], "R");
    assert_eq!(
        leo["identifier"][0]["system"],
        "https://fhir.nhs.uk/Id/nhs-number"
    );
    let nhs = leo["identifier"][0]["value"].as_str().unwrap().to_owned();

    for query in [
        format!(
            "identifier={}",
            enc(&format!("https://fhir.nhs.uk/Id/nhs-number|{nhs}"))
        ),
        format!("identifier={nhs}"),
    ] {
        let found = get(&app, &format!("/fhir/Patient?{query}&_count=100"))
            .await
            .json();
        assert_eq!(ids(&found), vec![leo_id.to_owned()], "{query}");
    }
    let no_system = get(&app, &format!("/fhir/Patient?identifier=%7C{nhs}"))
        .await
        .json();
    assert_eq!(no_system["total"], 0);

    let amelia_id = cast::AMELIA.health_id.unwrap();
    let both = get(
        &app,
        &format!("/fhir/Patient?_id={amelia_id},{leo_id},nope&_count=100"),
    )
    .await
    .json();
    assert_eq!(both["total"], 2);
    let amelia = get(&app, &format!("/fhir/Patient/{amelia_id}"))
        .await
        .json();
    assert_eq!(amelia["name"][0]["use"], "official");
    assert_eq!(amelia["name"][0]["family"], "Hartley");
    assert_eq!(amelia["address"][0]["postalCode"], "HF1 2AB");
    assert_eq!(
        amelia["generalPractitioner"][0]["reference"],
        format!("Organization/{}", cast::GP_PRACTICE_ID)
    );
    assert!(amelia.get("meta").is_none());

    let by_postcode = get(
        &app,
        "/fhir/Patient?address-postalcode=hf12a&family=hartley",
    )
    .await
    .json();
    assert!(ids(&by_postcode).contains(&amelia_id.to_owned()));
    let given = get(&app, "/fhir/Patient?given=AMEL&birthdate=2019-06-14")
        .await
        .json();
    assert!(ids(&given).contains(&amelia_id.to_owned()));
    let exact = get(
        &app,
        "/fhir/Patient?given:exact=amelia&birthdate=2019-06-14",
    )
    .await
    .json();
    assert_eq!(exact["total"], 0);
    let exact = get(
        &app,
        "/fhir/Patient?given:exact=Amelia&birthdate=2019-06-14&gender=female",
    )
    .await
    .json();
    assert!(ids(&exact).contains(&amelia_id.to_owned()));

    let missing = get(&app, "/fhir/Patient/pat-00000000").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.json()["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn fhir_resources_are_written_with_their_resource_type_first() {
    let (app, _) = app(SimulatorKind::Health);
    let leo_id = cast::LEO.health_id.unwrap();
    let family = cast::LEO.family;
    let mut inner = 0;
    for uri in [
        format!("/fhir/Patient/{leo_id}"),
        format!("/fhir/Patient?family={}&_count=5", enc(family)),
        "/fhir/Nothing".to_owned(),
    ] {
        let answer = get(&app, &uri).await;
        let text = String::from_utf8(answer.body.clone()).expect("UTF-8");
        assert!(text.starts_with(r#"{"resourceType":"#), "{uri}: {text}");
        // Every resource inside, too: each `"resource":` is followed by its type.
        for (at, _) in text.match_indices(r#""resource":"#) {
            let rest = &text[at + r#""resource":"#.len()..];
            assert!(rest.starts_with(r#"{"resourceType":"#), "{uri}: {rest}");
            inner += 1;
        }
        assert!(answer.json().is_object());
    }
    assert!(inner > 0, "the search found Leo");
}

#[tokio::test]
async fn fhir_paging_follows_next_to_the_end() {
    let (app, _) = app(SimulatorKind::Health);
    let mut uri = "/fhir/Patient?birthdate=ge2015-01-01&_count=37".to_owned();
    let mut seen = Vec::new();
    let mut total = None;
    loop {
        let bundle = get(&app, &uri).await.json();
        total.get_or_insert(bundle["total"].as_u64().unwrap());
        seen.extend(ids(&bundle));
        let links = bundle["link"].as_array().unwrap();
        assert_eq!(links[0]["relation"], "self");
        match links.iter().find(|l| l["relation"] == "next") {
            Some(next) => {
                let url = next["url"].as_str().unwrap();
                uri = url.strip_prefix("http://sim.test").unwrap().to_owned();
                assert!(uri.contains("_offset="));
            }
            None => break,
        }
    }
    let total = total.unwrap() as usize;
    assert!(total > 37 * 3);
    assert_eq!(seen.len(), total);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total);
}

#[tokio::test]
async fn fhir_escapes_and_modifiers() {
    let (app, _) = app(SimulatorKind::Health);
    let or = get(&app, "/fhir/Patient?family=Smith,Jones").await.json();
    let smith = get(&app, "/fhir/Patient?family=Smith").await.json();
    let jones = get(&app, "/fhir/Patient?family=Jones").await.json();
    assert!(smith["total"].as_u64().unwrap() > 0);
    assert_eq!(
        or["total"].as_u64().unwrap(),
        smith["total"].as_u64().unwrap() + jones["total"].as_u64().unwrap()
    );
    // An escaped comma is part of the value, so nobody matches "Smith,Jones".
    let literal = get(
        &app,
        &format!("/fhir/Patient?family={}", enc("Smith\\,Jones")),
    )
    .await
    .json();
    assert_eq!(literal["total"], 0);
    // Repeated parameters are ANDed.
    let and = get(&app, "/fhir/Patient?family=Smith&family=Jones")
        .await
        .json();
    assert_eq!(and["total"], 0);

    let lone = get(&app, &format!("/fhir/Patient?family={}", enc("Smi\\th"))).await;
    assert_eq!(lone.status, StatusCode::BAD_REQUEST);
    let modifier = get(&app, "/fhir/Patient?family:contains=mit").await;
    assert_eq!(modifier.status, StatusCode::BAD_REQUEST);
    assert!(modifier.content_type().starts_with("application/fhir+json"));
    let outcome = modifier.json();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["severity"], "error");

    let unknown_param = get(&app, "/fhir/Patient?family=Smith&_foo=bar")
        .await
        .json();
    assert_eq!(unknown_param["total"], smith["total"]);
    let unknown_type = get(&app, "/fhir/Observation?patient=x").await;
    assert_eq!(unknown_type.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown_type.json()["resourceType"], "OperationOutcome");
}

#[tokio::test]
async fn fhir_related_resources_by_patient() {
    let (app, _) = app(SimulatorKind::Health);
    let amelia = cast::AMELIA.health_id.unwrap();
    let noah = cast::NOAH.health_id.unwrap();
    let leo = cast::LEO.health_id.unwrap();

    let carers = get(
        &app,
        &format!("/fhir/RelatedPerson?patient=Patient/{amelia}&_count=100"),
    )
    .await
    .json();
    assert_eq!(carers["total"], 2);
    let codes: Vec<&str> = carers["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["resource"]["relationship"][0]["coding"][0]["code"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(codes, vec!["MTH", "FTH"]);
    let rp_id = ids(&carers)[0].clone();
    let read = get(&app, &format!("/fhir/RelatedPerson/{rp_id}"))
        .await
        .json();
    assert_eq!(read["name"][0]["family"], "Hartley");

    let episodes = get(&app, &format!("/fhir/EpisodeOfCare?patient={amelia},{leo}"))
        .await
        .json();
    let entries = episodes["entry"].as_array().unwrap();
    let gp = entries
        .iter()
        .find(|e| {
            e["resource"]["patient"]["reference"] == format!("Patient/{amelia}")
                && e["resource"]["type"][0]["coding"][0]["code"] == "general-practice"
        })
        .unwrap();
    assert_eq!(
        gp["resource"]["careManager"]["reference"],
        format!("Practitioner/{}", cast::GP_ID)
    );
    let social = entries
        .iter()
        .find(|e| e["resource"]["type"][0]["coding"][0]["code"] == "social-care")
        .unwrap();
    assert_eq!(
        social["resource"]["careManager"]["reference"],
        format!("Practitioner/{}", cast::SOCIAL_WORKER_ID)
    );
    assert_eq!(
        social["resource"]["managingOrganization"]["reference"],
        format!("Organization/{}", cast::SOCIAL_CARE_TEAM_ID)
    );

    let mch = get(&app, &format!("/fhir/EpisodeOfCare?patient={noah}"))
        .await
        .json();
    let mch = mch["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["type"][0]["coding"][0]["code"] == "maternal-child-health")
        .unwrap()
        .clone();
    assert_eq!(
        mch["resource"]["careManager"]["reference"],
        format!("Practitioner/{}", cast::MCH_NURSE_ID)
    );
    assert_eq!(mch["resource"]["status"], "active");

    let visits = get(&app, &format!("/fhir/Encounter?subject=Patient/{noah}"))
        .await
        .json();
    let statuses: Vec<&str> = visits["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["status"].as_str().unwrap())
        .collect();
    // Noah is past his 3.5-year review, the last key-age visit, and missed none.
    assert_eq!(statuses.len(), 8);
    assert!(statuses.iter().all(|s| *s == "finished"));
    let by_patient = get(&app, &format!("/fhir/Encounter?patient={noah}"))
        .await
        .json();
    assert_eq!(by_patient["total"], visits["total"]);
    let first = &visits["entry"][0]["resource"];
    assert_eq!(
        first["type"][0]["coding"][0]["system"],
        "urn:childgraph:fhir:key-age-visit"
    );
    assert_eq!(
        first["participant"][0]["individual"]["reference"],
        format!("Practitioner/{}", cast::MCH_NURSE_ID)
    );

    let org = get(
        &app,
        &format!(
            "/fhir/Organization?_id={},{}",
            cast::GP_PRACTICE_ID,
            cast::MCH_CENTRE_ID
        ),
    )
    .await
    .json();
    assert_eq!(org["total"], 2);
    assert_eq!(org["entry"][0]["resource"]["name"], "Elm Tree Surgery");
    assert_eq!(
        org["entry"][0]["resource"]["type"][0]["coding"][0]["code"],
        "gp-practice"
    );
    let prac = get(&app, &format!("/fhir/Practitioner?_id={}", cast::GP_ID))
        .await
        .json();
    let name = &prac["entry"][0]["resource"]["name"][0];
    assert_eq!(name["prefix"][0], "Dr");
    assert_eq!(name["family"], "Whitfield");
    assert_eq!(
        prac["entry"][0]["resource"]["qualification"][0]["code"]["text"],
        "General practitioner"
    );
}

// ---------------------------------------------------------------------------------------------
// OneRoster

const OR: &str = "/ims/oneroster/rostering/v1p2";

async fn roster(app: &Router, path: &str, filter: &str) -> Answer {
    get(app, &format!("{OR}/{path}?filter={}", enc(filter))).await
}

#[tokio::test]
async fn oneroster_blocking_queries() {
    let (app, _) = app(SimulatorKind::School);
    let p = population();
    let amelia = cast::AMELIA.school_id.unwrap();
    let user = get(&app, &format!("{OR}/users/{amelia}")).await.json();
    let upn = user["user"]["identifier"].as_str().unwrap().to_owned();
    assert_eq!(user["user"]["familyName"], "Hartly");
    assert_eq!(user["user"]["roles"][0]["role"], "student");
    assert_eq!(
        user["user"]["roles"][0]["org"]["sourcedId"],
        cast::SCHOOL_ORG_ID
    );
    assert_eq!(user["user"]["enabledUser"], "true");

    let by_upn = roster(&app, "users", &format!("identifier='{upn}'")).await;
    assert_eq!(by_upn.headers["x-total-count"], "1");
    assert_eq!(by_upn.json()["users"][0]["sourcedId"], amelia);

    let by_name = roster(
        &app,
        "users",
        "familyName='Hartly' AND roles.role='student'",
    )
    .await
    .json();
    let users = by_name["users"].as_array().unwrap();
    assert!(users.iter().any(|u| u["sourcedId"] == amelia));
    assert!(users.iter().all(|u| u["roles"][0]["role"] == "student"));

    let by_birth = roster(&app, "demographics", "birthDate='2017-01-22'")
        .await
        .json();
    let twins: Vec<&str> = by_birth["demographics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["sourcedId"].as_str().unwrap())
        .collect();
    assert!(twins.contains(&cast::ISLA.school_id.unwrap()));
    assert!(twins.contains(&cast::AVA.school_id.unwrap()));
    assert_eq!(by_birth["demographics"][0]["sex"], "female");

    let isla = cast::ISLA.school_id.unwrap();
    let two = roster(
        &app,
        "users",
        &format!("sourcedId='{amelia}' OR sourcedId='{isla}'"),
    )
    .await;
    assert_eq!(two.headers["x-total-count"], "2");
    assert_eq!(two.json()["users"].as_array().unwrap().len(), 2);

    // AND binds tighter than OR: (Hartly AND teacher) OR Isla is only Isla.
    let mixed = roster(
        &app,
        "users",
        &format!("familyName='Hartly' AND roles.role='teacher' OR sourcedId='{isla}'"),
    )
    .await
    .json();
    assert_eq!(mixed["users"].as_array().unwrap().len(), 1);
    assert_eq!(mixed["users"][0]["sourcedId"], isla);

    // A doubled quote is a quote inside the value.
    let quoted = p
        .school
        .iter()
        .filter(|r| r.family.contains('\''))
        .map(|r| r.family.to_string())
        .next()
        .expect("a family name with an apostrophe");
    let expected = p.index_users_with_family(&quoted);
    let found = roster(
        &app,
        "users",
        &format!("familyName='{}'", quoted.replace('\'', "''")),
    )
    .await;
    assert_eq!(found.status, StatusCode::OK);
    assert_eq!(
        found.headers["x-total-count"].to_str().unwrap(),
        expected.to_string()
    );
    assert!(
        found.json()["users"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["familyName"] == quoted.as_str())
    );
}

trait CountFamily {
    fn index_users_with_family(&self, family: &str) -> usize;
}

impl CountFamily for Population {
    fn index_users_with_family(&self, family: &str) -> usize {
        let students = self.school.iter().filter(|r| &*r.family == family).count();
        let teachers = self
            .orgs
            .teachers
            .iter()
            .filter(|t| &*t.family == family)
            .count();
        let parents = self
            .parents
            .iter()
            .filter(|(f, c)| &*self.families[*f as usize].carers[*c as usize].family == family)
            .count();
        students + teachers + parents
    }
}

#[tokio::test]
async fn oneroster_enrollments_classes_orgs_and_parents() {
    let (app, _) = app(SimulatorKind::School);
    let amelia = cast::AMELIA.school_id.unwrap();
    let enrollments = roster(&app, "enrollments", &format!("user.sourcedId='{amelia}'"))
        .await
        .json();
    let e = &enrollments["enrollments"][0];
    assert_eq!(e["role"], "student");
    assert_eq!(e["school"]["sourcedId"], cast::SCHOOL_ORG_ID);
    let class_id = e["class"]["sourcedId"].as_str().unwrap().to_owned();
    let class = roster(&app, "classes", &format!("sourcedId='{class_id}'"))
        .await
        .json();
    assert!(
        class["classes"][0]["title"]
            .as_str()
            .unwrap()
            .starts_with("Year 2 ")
    );
    let class_one = get(&app, &format!("{OR}/classes/{class_id}")).await.json();
    assert_eq!(class_one["class"]["sourcedId"], class_id.as_str());

    let teacher = roster(
        &app,
        "enrollments",
        &format!(
            "user.sourcedId='{}' OR user.sourcedId='{amelia}'",
            cast::TEACHER_ID
        ),
    )
    .await
    .json();
    let t = teacher["enrollments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["role"] == "teacher")
        .unwrap()
        .clone();
    assert_eq!(t["primary"], "true");
    assert_eq!(t["class"]["sourcedId"], class_id.as_str());
    let priya = get(&app, &format!("{OR}/teachers/{}", cast::TEACHER_ID))
        .await
        .json();
    assert_eq!(priya["user"]["givenName"], "Priya");
    assert_eq!(priya["user"]["familyName"], "Shah");
    assert_eq!(priya["user"]["roles"][0]["role"], "teacher");

    let org = get(&app, &format!("{OR}/orgs/{}", cast::SCHOOL_ORG_ID))
        .await
        .json();
    assert_eq!(org["org"]["name"], "Riverside Primary School");
    assert_eq!(org["org"]["type"], "school");
    assert!(org["org"]["metadata"]["phone"].is_string());
    assert!(org["org"]["metadata"]["address"]["postcode"].is_string());
    let schools = roster(
        &app,
        "schools",
        &format!("sourcedId='{}'", cast::SCHOOL_ORG_ID),
    )
    .await
    .json();
    assert_eq!(schools["orgs"].as_array().unwrap().len(), 1);

    let user = get(&app, &format!("{OR}/users/{amelia}")).await.json();
    let agents = user["user"]["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 2);
    let parent_id = agents[0]["sourcedId"].as_str().unwrap();
    let parent = get(&app, &format!("{OR}/users/{parent_id}")).await.json();
    assert_eq!(parent["user"]["givenName"], "Emma");
    assert_eq!(parent["user"]["metadata"]["relationship"], "mother");
    assert_eq!(parent["user"]["roles"][0]["role"], "parent");
    assert!(parent["user"]["email"].is_string() && parent["user"]["phone"].is_string());
    assert_eq!(parent["user"]["agents"][0]["sourcedId"], amelia);
    let by_agent = roster(&app, "users", &format!("agents.sourcedId='{amelia}'")).await;
    assert_eq!(by_agent.headers["x-total-count"], "2");
}

#[tokio::test]
async fn oneroster_fields_paging_sorting_and_errors() {
    let (app, _) = app(SimulatorKind::School);
    let amelia = cast::AMELIA.school_id.unwrap();
    let selected = get(
        &app,
        &format!(
            "{OR}/users?filter={}&fields=sourcedId,givenName",
            enc(&format!("sourcedId='{amelia}'"))
        ),
    )
    .await
    .json();
    let keys: Vec<&String> = selected["users"][0].as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 2);
    // Whole objects are served from their kept text, selections from the object: both say the same.
    let whole = roster(&app, "users", &format!("sourcedId='{amelia}'"))
        .await
        .json();
    let one = get(&app, &format!("{OR}/users/{amelia}")).await.json();
    assert_eq!(whole["users"][0], one["user"]);
    assert_eq!(
        whole["users"][0]["givenName"],
        selected["users"][0]["givenName"]
    );
    assert!(one["user"]["roles"].is_array(), "{one:#}");

    let bad_fields = get(&app, &format!("{OR}/users?fields=sourcedId,shoeSize")).await;
    assert_eq!(bad_fields.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        bad_fields.json()["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"],
        "invalid_selection_field"
    );
    let bad_filter = roster(&app, "users", "shoeSize='9'").await;
    assert_eq!(bad_filter.status, StatusCode::BAD_REQUEST);
    let info = bad_filter.json();
    assert_eq!(info["imsx_codeMajor"], "failure");
    assert_eq!(
        info["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"],
        "invalid_filter_field"
    );
    let unknown = get(&app, &format!("{OR}/users/nobody")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.json()["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"],
        "unknownobject"
    );

    let page = get(&app, &format!("{OR}/users?limit=10&offset=5")).await;
    assert_eq!(page.json()["users"].as_array().unwrap().len(), 10);
    let total: usize = page.headers["x-total-count"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let p = population();
    assert_eq!(
        total,
        p.orgs.teachers.len() + p.school.len() + p.parents.len()
    );
    let link = page.headers[header::LINK].to_str().unwrap();
    assert!(
        link.contains("offset=15") && link.ends_with("rel=\"next\""),
        "{link}"
    );

    let sorted = get(&app, &format!("{OR}/orgs?sort=name&orderBy=desc"))
        .await
        .json();
    let names: Vec<&str> = sorted["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    let mut expected = names.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(names, expected);

    let contains = roster(&app, "orgs", "name~'riverside'").await.json();
    assert!(
        contains["orgs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["sourcedId"] == cast::SCHOOL_ORG_ID)
    );
    let range = roster(
        &app,
        "demographics",
        "birthDate>='2017-01-22' AND birthDate<='2017-01-22'",
    )
    .await;
    let exact = roster(&app, "demographics", "birthDate='2017-01-22'").await;
    assert_eq!(
        range.headers["x-total-count"],
        exact.headers["x-total-count"]
    );
}

// ---------------------------------------------------------------------------------------------
// Early years

#[tokio::test]
async fn early_years_search_batch_enrolments_settings() {
    let (app, _) = app(SimulatorKind::EarlyYears);
    let amelia = cast::AMELIA.early_years_id.unwrap();
    let noah = cast::NOAH.early_years_id.unwrap();
    let found = get(
        &app,
        "/api/v1/children?family_name=hart&date_of_birth=2019-06-14",
    )
    .await
    .json();
    let items = found["items"].as_array().unwrap();
    let a = items
        .iter()
        .find(|c| c["id"] == amelia)
        .expect("Amelia found");
    assert_eq!(a["last_name"], "Hartley");
    assert_eq!(a["carers"][0]["name"], "Emma Hartley");
    assert_eq!(a["carers"][0]["relationship"], "mother");
    assert_eq!(a["address"]["postcode"], "HF1 2AB");
    assert!(a["nhs_number"].is_string());
    assert_eq!(found["limit"], 50);
    assert_eq!(found["offset"], 0);

    let by_birth = get(
        &app,
        "/api/v1/children?date_of_birth=2021-11-03&given_name=NO",
    )
    .await
    .json();
    assert!(
        by_birth["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["id"] == noah)
    );

    let paged = get(&app, "/api/v1/children?family_name=s&limit=3")
        .await
        .json();
    if paged["total"].as_u64().unwrap() > 3 {
        assert!(paged["next"].as_str().unwrap().contains("offset=3"));
    }

    for bad in [
        "/api/v1/children?given_name=Amelia",
        "/api/v1/children?date_of_birth=2019-13-01",
        "/api/v1/children?family_name=x&limit=0",
        "/api/v1/children/batch",
    ] {
        let answer = get(&app, bad).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(answer.content_type(), "application/problem+json");
        assert_eq!(answer.json()["status"], 400);
    }
    let too_many: Vec<String> = (0..101).map(|i| format!("x{i}")).collect();
    let answer = get(
        &app,
        &format!("/api/v1/children/batch?ids={}", too_many.join(",")),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);

    let batch = get(
        &app,
        &format!("/api/v1/children/batch?ids={amelia},{noah},unknown"),
    )
    .await
    .json();
    assert_eq!(batch["items"].as_array().unwrap().len(), 2);
    let one = get(&app, &format!("/api/v1/children/{noah}")).await.json();
    assert_eq!(one["first_name"], "Noah");
    assert_eq!(
        get(&app, "/api/v1/children/nobody").await.status,
        StatusCode::NOT_FOUND
    );

    let enrolments = get(
        &app,
        &format!("/api/v1/enrolments?child_ids={amelia},{noah}"),
    )
    .await
    .json();
    let items = enrolments["items"].as_array().unwrap();
    let ended = items.iter().find(|e| e["child_id"] == amelia).unwrap();
    assert_eq!(ended["status"], "ended");
    assert_eq!(ended["start_date"], "2023-01-09");
    assert_eq!(ended["end_date"], "2024-07-19");
    assert_eq!(ended["setting_id"], cast::KINDERGARTEN_ID);
    let active = items.iter().find(|e| e["child_id"] == noah).unwrap();
    assert_eq!(active["status"], "active");
    assert_eq!(active["key_worker"]["id"], cast::KEY_WORKER_ID);
    assert_eq!(active["key_worker"]["name"], "Sam Taylor");

    let settings = get(
        &app,
        &format!("/api/v1/settings?ids={},set-99999", cast::KINDERGARTEN_ID),
    )
    .await
    .json();
    assert_eq!(settings["items"].as_array().unwrap().len(), 1);
    assert_eq!(settings["items"][0]["name"], "Acorn Kindergarten");
    assert_eq!(settings["items"][0]["type"], "kindergarten");
    let setting = get(&app, &format!("/api/v1/settings/{}", cast::KINDERGARTEN_ID))
        .await
        .json();
    assert!(setting["phone"].is_string());
    assert_eq!(
        get(&app, "/api/v1/settings/set-99999").await.status,
        StatusCode::NOT_FOUND
    );
}

// ---------------------------------------------------------------------------------------------
// Faults

#[tokio::test]
async fn faults_errors_malformed_clear_and_stats() {
    for (kind, uri) in [
        (
            SimulatorKind::Health,
            "/fhir/Patient?family=Smith".to_owned(),
        ),
        (SimulatorKind::School, format!("{OR}/orgs")),
        (
            SimulatorKind::EarlyYears,
            "/api/v1/settings?ids=set-00000".to_owned(),
        ),
    ] {
        let (app, faults) = app(kind);
        let set = send(&app, "POST", "/_sim/faults", r#"{"error_rate": 1.0}"#).await;
        assert_eq!(set.status, StatusCode::OK);
        let failed = get(&app, &uri).await;
        assert!(failed.status.is_server_error());
        let body = failed.json();
        match kind {
            SimulatorKind::Health => assert_eq!(body["resourceType"], "OperationOutcome"),
            SimulatorKind::School => assert_eq!(body["imsx_codeMajor"], "failure"),
            SimulatorKind::EarlyYears => {
                assert_eq!(failed.content_type(), "application/problem+json");
                assert_eq!(body["status"], 500);
            }
        }

        send(&app, "POST", "/_sim/faults", r#"{"malformed": true}"#).await;
        let broken = get(&app, &uri).await;
        assert_eq!(broken.status, StatusCode::OK);
        assert!(serde_json::from_slice::<Value>(&broken.body).is_err());

        let bad = send(&app, "POST", "/_sim/faults", r#"{"error_rate": 2}"#).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        let bad = send(&app, "POST", "/_sim/faults", r#"{"latency": 5}"#).await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(bad.json()["error"].as_str().unwrap().contains("latency"));
        let bad = send(&app, "POST", "/_sim/faults", "not json").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert!(
            faults.get().malformed,
            "a refused update keeps the faults in force"
        );

        let cleared = send(&app, "POST", "/_sim/faults", "{}").await;
        assert_eq!(cleared.status, StatusCode::OK);
        assert_eq!(faults.get(), Faults::default());
        let ok = get(&app, &uri).await;
        assert_eq!(ok.status, StatusCode::OK);
        ok.json();

        let stats = get(&app, "/_sim/stats").await.json();
        assert_eq!(stats["requests"], 3);
        assert_eq!(faults.requests(), 3);
    }
}

#[tokio::test]
async fn every_answer_waits_at_least_its_latency() {
    let (app, _) = app(SimulatorKind::Health);
    let uri = "/fhir/Patient?family=Smith";
    // With jitter as without, the latency is the least an answer waits.
    for faults in [
        r#"{"latency_ms": 25, "jitter_ms": 3}"#,
        r#"{"latency_ms": 25}"#,
    ] {
        let set = send(&app, "POST", "/_sim/faults", faults).await;
        assert_eq!(set.status, StatusCode::OK);
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let answer = get(&app, uri).await;
            let took = started.elapsed();
            assert_eq!(answer.status, StatusCode::OK);
            assert!(
                took >= std::time::Duration::from_millis(25),
                "{faults}: {took:?}"
            );
        }
    }
    // Several requests at once each wait their own latency, counted from their own arrival.
    let started = std::time::Instant::now();
    let answers = tokio::join!(get(&app, uri), get(&app, uri), get(&app, uri));
    assert!(
        [answers.0, answers.1, answers.2]
            .iter()
            .all(|a| a.status == StatusCode::OK)
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(25));
    let set = send(&app, "POST", "/_sim/faults", r#"{"latency_ms": 0}"#).await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(get(&app, uri).await.status, StatusCode::OK);
}

#[tokio::test]
async fn latency_delays_and_hang_ends_at_shutdown() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = childgraph_simulators::spawn(
        SimulatorKind::EarlyYears,
        population(),
        listener,
        Faults {
            hang: true,
            ..Faults::default()
        },
        async move {
            let _ = stopped.await;
        },
    )
    .await
    .unwrap();
    assert_eq!(handle.base_url().path(), "/api/v1");
    assert_eq!(
        handle.root_url().as_str(),
        format!("http://{}/", handle.addr)
    );

    let mut stream = tokio::net::TcpStream::connect(handle.addr).await.unwrap();
    stream
        .write_all(b"GET /api/v1/settings?ids=set-00000 HTTP/1.1\r\nhost: sim\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    // Wait until the simulator holds the request, then shut down: the held request must end.
    while handle.requests() == 0 {
        tokio::task::yield_now().await;
    }
    stop.send(()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
}

#[tokio::test]
async fn fhir_revinclude_and_include_iterate() {
    let (app, _) = app(SimulatorKind::Health);
    let amelia = cast::AMELIA.health_id.unwrap();
    let uri = format!(
        "/fhir/Patient?_id={amelia}&_revinclude=RelatedPerson:patient&_revinclude=EpisodeOfCare:patient\
         &_include:iterate=EpisodeOfCare:organization&_include:iterate=EpisodeOfCare:care-manager&_count=100"
    );
    let answer = get(&app, &uri).await;
    assert_eq!(answer.status, 200);
    let bundle = answer.json();
    assert_eq!(bundle["total"], 1, "included resources are not counted");
    let entries = bundle["entry"].as_array().unwrap();
    let of = |mode: &str, ty: &str| -> Vec<&Value> {
        entries
            .iter()
            .filter(|e| e["search"]["mode"] == mode && e["resource"]["resourceType"] == ty)
            .collect()
    };
    assert_eq!(of("match", "Patient").len(), 1);
    assert_eq!(of("include", "RelatedPerson").len(), 2);
    let episodes = of("include", "EpisodeOfCare");
    assert!(!episodes.is_empty());
    // Every organisation and care manager an episode names came along, once.
    for episode in &episodes {
        for (element, ty) in [
            ("managingOrganization", "Organization"),
            ("careManager", "Practitioner"),
        ] {
            if let Some(reference) = episode["resource"][element]["reference"].as_str() {
                let id = reference.strip_prefix(&format!("{ty}/")).unwrap();
                let found = of("include", ty)
                    .iter()
                    .filter(|e| e["resource"]["id"] == id)
                    .count();
                assert_eq!(found, 1, "{reference}");
            }
        }
    }
    // The self link says what was applied, so a client can tell.
    let self_link = bundle["link"][0]["url"].as_str().unwrap();
    assert!(
        self_link.contains("_revinclude=EpisodeOfCare%3Apatient"),
        "{self_link}"
    );
    assert!(
        self_link.contains("_include%3Aiterate=EpisodeOfCare%3Aorganization"),
        "{self_link}"
    );

    // Without :iterate, an include must start from the searched type; unknown ones are refused, not ignored.
    for bad in [
        "_include=EpisodeOfCare:organization",
        "_revinclude=Observation:patient",
        "_include:recurse=EpisodeOfCare:organization",
    ] {
        let answer = get(&app, &format!("/fhir/Patient?_id={amelia}&{bad}")).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(answer.json()["issue"][0]["code"], "invalid", "{bad}");
    }
    let answer = get(
        &app,
        &format!("/fhir/EpisodeOfCare?patient={amelia}&_revinclude=RelatedPerson:patient"),
    )
    .await;
    assert_eq!(answer.status, 400);
}
