//! The property that matters most: for any roles, any child's situation and any shape of query (aliases, fragments,
//! `__typename`, nesting, `child` or `searchChildren`), no value of a withheld category appears anywhere in the
//! response.
//!
//! The values to look for are the children's source data: every value a user who sees everything is shown, each
//! with the categories on its path (a carer's address is both `carers` and `location`), and the patients' addresses
//! and NHS numbers read straight from the health simulator. Cases (one to three roles; shielded or not, overridden
//! or not, past the age limit or not, of the user's own organisation or another) are drawn from a fixed seed, so a
//! failure repeats; it prints the case.

use std::collections::{BTreeSet, HashMap};

use childgraph::store::{Account, OrganisationRecord, ShieldOverride};
use childgraph_policies::{Decision, Policy, Relation, Situation};
use childgraph_schema::{Field, RecordRef, SourceName};
use childgraph_tests::TestGateway;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Every field the test may select, as (GraphQL type, field, type of its value when it is an object).
const TREE: &[(&str, &str, Option<&str>)] = &[
    ("Child", "id", None),
    ("Child", "shielded", None),
    ("Child", "name", Some("PersonName")),
    ("Child", "dateOfBirth", None),
    ("Child", "gender", None),
    ("Child", "identifiers", Some("ChildIdentifier")),
    ("Child", "address", Some("Address")),
    ("Child", "carers", Some("Carer")),
    ("Child", "services", Some("Service")),
    ("Child", "participation", Some("Participation")),
    ("Child", "flags", Some("Flag")),
    ("Child", "sources", Some("SourceInfo")),
    ("PersonName", "given", None),
    ("PersonName", "family", None),
    ("ChildIdentifier", "kind", None),
    ("ChildIdentifier", "value", None),
    ("Address", "lines", None),
    ("Address", "postcode", None),
    ("Carer", "name", None),
    ("Carer", "relationship", None),
    ("Carer", "phone", None),
    ("Carer", "email", None),
    ("Carer", "address", Some("Address")),
    ("Service", "kind", None),
    ("Service", "source", None),
    ("Service", "status", None),
    ("Service", "start", None),
    ("Service", "organisation", Some("Organisation")),
    ("Service", "practitioner", Some("Practitioner")),
    ("Participation", "kind", None),
    ("Participation", "description", None),
    ("Participation", "status", None),
    ("Participation", "date", None),
    ("Participation", "organisation", Some("Organisation")),
    ("Organisation", "kind", None),
    ("Organisation", "name", None),
    ("Organisation", "phone", None),
    ("Organisation", "email", None),
    ("Organisation", "address", Some("Address")),
    ("Practitioner", "name", None),
    ("Practitioner", "role", None),
    ("Practitioner", "phone", None),
    ("Practitioner", "email", None),
    ("Flag", "kind", None),
    ("Flag", "note", None),
    ("SourceInfo", "source", None),
    ("SourceInfo", "status", None),
];

/// The fields whose values are a child's own data, as opposed to enum values and dates.
const FREE_TEXT: &[&str] = &[
    "given",
    "family",
    "value",
    "lines",
    "postcode",
    "name",
    "relationship",
    "phone",
    "email",
    "description",
    "note",
    "role",
];

fn fields_of(
    ty: &str,
) -> impl Iterator<Item = &'static (&'static str, &'static str, Option<&'static str>)> {
    TREE.iter().filter(move |(t, _, _)| *t == ty)
}

/// Every field of a type, nested whole: the selection of the user who sees everything.
fn full_selection(ty: &str) -> String {
    fields_of(ty)
        .map(|(_, f, sub)| match sub {
            Some(sub) => format!("{f} {{ {} }}", full_selection(sub)),
            None => (*f).to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A random selection of a type's fields: some aliased, some in inline or named fragments, `__typename` here and
/// there, objects nested. Named fragments are collected in `fragments`.
fn random_selection(
    rng: &mut impl Rng,
    ty: &str,
    fragments: &mut Vec<String>,
    depth: usize,
) -> String {
    let mut parts = Vec::new();
    for (_, field, sub) in fields_of(ty) {
        if !rng.gen_bool(0.75) {
            continue;
        }
        let name = if rng.gen_bool(0.25) {
            format!("a{}: {field}", rng.gen_range(0..1000))
        } else {
            (*field).to_owned()
        };
        let part = match sub {
            Some(sub) => {
                let inner = random_selection(rng, sub, fragments, depth + 1);
                format!("{name} {{ __typename {inner} }}")
            }
            None => name,
        };
        parts.push(part);
    }
    if rng.gen_bool(0.2) {
        parts.push("__typename".to_owned());
    }
    let body = parts.join(" ");
    match rng.gen_range(0..4) {
        0 => format!("... on {ty} {{ {body} }}"),
        1 if depth < 2 => {
            let name = format!("F{}", fragments.len());
            fragments.push(format!("fragment {name} on {ty} {{ {body} }}"));
            format!("...{name}")
        }
        _ => body,
    }
}

/// The categories on the path to each string value of a full answer: a value is withheld when any of them is.
fn collect(
    policy: &Policy,
    ty: &str,
    value: &Value,
    path: &BTreeSet<String>,
    out: &mut Vec<(String, BTreeSet<String>)>,
) {
    let Some(object) = value.as_object() else {
        return;
    };
    for (field, v) in object {
        let mut path = path.clone();
        if let Some(f) = Field::from_path(&format!("{ty}.{field}")) {
            path.insert(policy.category(f).to_owned());
        }
        // A service of a sensitive kind is of its own category, whole.
        let kind = object.get("kind").and_then(Value::as_str);
        if (ty == "Service" || ty == "Participation")
            && kind.is_some_and(|k| {
                ["MENTAL_HEALTH", "SEXUAL_HEALTH", "SUBSTANCE_MISUSE"].contains(&k)
            })
        {
            path.insert("sensitive-services".to_owned());
        }
        let sub = TREE
            .iter()
            .find(|(t, f, _)| *t == ty && f == field)
            .and_then(|(_, _, sub)| *sub);
        let items: Vec<&Value> = match v {
            Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        for item in items {
            match (sub, item) {
                (Some(sub), _) => collect(policy, sub, item, &path, out),
                // Free text only: enum values (`kind`, `source`, `status`) and dates are shared by every child.
                (None, Value::String(s))
                    if FREE_TEXT.contains(&field.as_str())
                        && s.chars().count() >= 4
                        && !path.is_empty() =>
                {
                    out.push((s.clone(), path.clone()));
                }
                _ => {}
            }
        }
    }
}

struct Subject {
    id: String,
    criteria: Value,
    shielded: bool,
    /// Children that the Riverside account's school works with.
    at_riverside: bool,
    /// Past the age limit of the policy the cases run under.
    past_age: bool,
    values: Vec<(String, BTreeSet<String>)>,
}

/// The age from which a child is out of scope in the cases: the reference view is taken under the default policy,
/// then the policy file is changed so that the older subjects are past the age limit.
const AGE_LIMIT: u32 = 10;

#[tokio::test]
async fn no_withheld_value_reaches_the_response_by_any_path() {
    let dir = tempfile::tempdir().unwrap();
    let policy_file = dir.path().join("policy.yaml");
    std::fs::write(&policy_file, childgraph_policies::DEFAULT_POLICY).unwrap();
    let watched = policy_file.clone();
    let gateway = TestGateway::builder()
        .configure(move |o| {
            o.policy = Some(watched);
            o.policy_poll = std::time::Duration::from_millis(50);
        })
        .spawn()
        .await;
    let store = gateway.store().await;
    let policy = Policy::default_policy();
    let roles: Vec<String> = policy.roles().keys().cloned().collect();
    let no_source = OrganisationRecord {
        id: "org-elsewhere".to_owned(),
        name: "An office no source knows".to_owned(),
        source: None,
    };
    let riverside = OrganisationRecord {
        id: "org-riverside".to_owned(),
        name: childgraph_simulators::cast::SCHOOL_NAME.to_owned(),
        source: Some(RecordRef::new(
            SourceName::School,
            childgraph_simulators::cast::SCHOOL_ORG_ID,
        )),
    };
    store.upsert_organisation(&no_source).await.unwrap();
    let account = |user: &str, roles: Vec<String>, org: &OrganisationRecord| Account {
        user_id: user.to_owned(),
        display_name: user.to_owned(),
        organisation: org.clone(),
        roles,
        phone: None,
        email: None,
        active: true,
        authorisation: childgraph::store::Authorisation::seeded("authoriser"),
        client: None,
    };
    // The user who sees everything: every role, and an override of every shield.
    store
        .upsert_account(&account("oracle", roles.clone(), &no_source))
        .await
        .unwrap();

    // The subjects: the cast (shielded by the register, restricted at source, or neither) and a child with a
    // sensitive service.
    use childgraph_simulators::population::{Population, PopulationConfig};
    let population = Population::generate(&PopulationConfig {
        children: gateway.children(),
        seed: gateway.seed(),
        as_of: chrono::Utc::now().date_naive(),
        ..PopulationConfig::default()
    });
    let young = chrono::Utc::now().date_naive() - chrono::Months::new(12 * 17);
    let sensitive = population
        .health
        .iter()
        .find(|r| {
            r.sensitive.is_some() && !r.restricted && r.nhs_number.is_some() && r.birth_date > young
        })
        .expect("a child with a sensitive service");
    let born = |d: &str| chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
    let mut criteria = vec![
        (
            json!({"familyName": "Hartley", "dateOfBirth": "2019-06-14"}),
            true,
            born("2019-06-14"),
        ),
        (
            json!({"familyName": "Okafor", "dateOfBirth": "2021-11-03"}),
            false,
            born("2021-11-03"),
        ),
        (
            json!({"givenName": "Isla", "familyName": "Brennan", "dateOfBirth": "2017-01-22"}),
            true,
            born("2017-01-22"),
        ),
        (
            json!({"familyName": "Fernandes", "dateOfBirth": "2012-09-05"}),
            false,
            born("2012-09-05"),
        ),
        (
            json!({"familyName": "Kowalczyk", "dateOfBirth": "2023-03-08"}),
            false,
            born("2023-03-08"),
        ),
    ];
    criteria.push((
        json!({"nhsNumber": sensitive.nhs_number.as_ref().unwrap().to_string()}),
        false,
        sensitive.birth_date,
    ));
    let full_query = format!(
        "query($c: ChildSearchInput!) {{ searchChildren(criteria: $c, access: {{purpose: SAFEGUARDING}}) {{ matches {{ child {{ {} }} }} }} }}",
        full_selection("Child")
    );
    let now = chrono::Utc::now();
    let mut subjects = Vec::new();
    for (c, at_riverside, born) in criteria {
        let answer = gateway
            .query_vars("oracle", &full_query, json!({ "c": c }))
            .await;
        let child = answer.body["data"]["searchChildren"]["matches"][0]["child"].clone();
        let id = child["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{:#}", answer.body))
            .to_owned();
        let shielded = child["shielded"] == true;
        let child = if shielded {
            store
                .put_override(&ShieldOverride {
                    id: format!("ovr-oracle-{id}"),
                    child_id: id.clone(),
                    user_id: "oracle".to_owned(),
                    justification: "the property test's reference view".to_owned(),
                    created_at: now,
                    expires_at: now + chrono::Duration::hours(1),
                })
                .await
                .unwrap();
            let answer = gateway
                .query_vars("oracle", &full_query, json!({ "c": c }))
                .await;
            answer.body["data"]["searchChildren"]["matches"][0]["child"].clone()
        } else {
            child
        };
        let mut values = Vec::new();
        collect(&policy, "Child", &child, &BTreeSet::new(), &mut values);
        let today = chrono::Utc::now().date_naive();
        subjects.push(Subject {
            id,
            criteria: c,
            shielded,
            at_riverside,
            past_age: today.years_since(born).unwrap_or(0) >= AGE_LIMIT,
            values,
        });
    }
    // The health source's own record of each patient: where they live, and their NHS number.
    for subject in &mut subjects {
        let records = store.records_of(&subject.id).await.unwrap();
        for record in records.iter().filter(|r| r.source == SourceName::Health) {
            let url = format!(
                "{}/fhir/Patient/{}",
                gateway.source_root("health"),
                record.id
            );
            let patient: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
            for address in patient["address"].as_array().into_iter().flatten() {
                for line in address["line"].as_array().into_iter().flatten() {
                    let line = line.as_str().unwrap().to_owned();
                    subject
                        .values
                        .push((line, BTreeSet::from(["location".to_owned()])));
                }
                if let Some(p) = address["postalCode"].as_str() {
                    subject
                        .values
                        .push((p.to_owned(), BTreeSet::from(["location".to_owned()])));
                }
            }
            for identifier in patient["identifier"].as_array().into_iter().flatten() {
                if let Some(v) = identifier["value"].as_str() {
                    subject
                        .values
                        .push((v.to_owned(), BTreeSet::from(["identifiers".to_owned()])));
                }
            }
        }
        assert!(
            subject.values.iter().any(|(_, c)| c.contains("location")),
            "the reference view of {} has an address",
            subject.criteria
        );
    }
    assert!(subjects.iter().any(|s| {
        s.values
            .iter()
            .any(|(_, c)| c.contains("sensitive-services"))
    }));

    // Now the older subjects are past the age limit: the policy file changes, and the gateway puts it in force.
    let limited = childgraph_policies::DEFAULT_POLICY
        .replace("until_age: 18", &format!("until_age: {AGE_LIMIT}"))
        .replace(
            "at_school_until_age: 19",
            &format!("at_school_until_age: {AGE_LIMIT}"),
        );
    let policy = Policy::from_yaml(&limited).unwrap();
    std::fs::write(&policy_file, &limited).unwrap();
    let in_force = format!("childgraph_policy_info{{hash=\"{}\"}} 1", policy.hash());
    let mut reloaded = false;
    for _ in 0..100 {
        if gateway.metrics().await.contains(&in_force) {
            reloaded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reloaded, "the age-limited policy is in force");
    assert!(subjects.iter().any(|s| s.past_age) && subjects.iter().any(|s| !s.past_age));

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(20261128);
    let mut redactions = 0;
    for case in 0..400 {
        let how_many = rng.gen_range(1..=3);
        let mut picked: Vec<String> = roles.choose_multiple(&mut rng, how_many).cloned().collect();
        picked.sort();
        let subject = subjects.choose(&mut rng).unwrap();
        let at_riverside = rng.gen_bool(0.5);
        let org = if at_riverside { &riverside } else { &no_source };
        let user = format!("case-{case}");
        store
            .upsert_account(&account(&user, picked.clone(), org))
            .await
            .unwrap();
        let overridden = subject.shielded && rng.gen_bool(0.4);
        if overridden {
            store
                .put_override(&ShieldOverride {
                    id: format!("ovr-{user}"),
                    child_id: subject.id.clone(),
                    user_id: user.clone(),
                    justification: "a property test case".to_owned(),
                    created_at: now,
                    expires_at: now + chrono::Duration::hours(1),
                })
                .await
                .unwrap();
        }
        let situation = Situation {
            shielded: subject.shielded,
            overridden,
            relation: if at_riverside && subject.at_riverside {
                Relation::Own
            } else {
                Relation::Other
            },
            past_age: subject.past_age,
        };
        let grant = policy.grant(picked.iter().map(String::as_str));
        let categories: Vec<(String, bool)> = policy
            .categories()
            .enumerate()
            .map(|(i, (name, _))| {
                let index = u8::try_from(i).unwrap();
                (
                    name.to_owned(),
                    matches!(
                        policy.decide_category(grant, situation, index),
                        Decision::Visible
                    ),
                )
            })
            .collect();
        let visible: HashMap<&str, bool> =
            categories.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let shown = |path: &BTreeSet<String>| path.iter().all(|c| visible[c.as_str()]);

        let mut fragments = Vec::new();
        let selection = random_selection(&mut rng, "Child", &mut fragments, 0);
        let (query, variables) = if rng.gen_bool(0.5) {
            (
                format!(
                    "query($id: ID!) {{ one: child(id: $id, access: {{purpose: SAFEGUARDING}}) {{ {selection} }} }} {}",
                    fragments.join(" ")
                ),
                json!({ "id": subject.id }),
            )
        } else {
            (
                format!(
                    "query($c: ChildSearchInput!) {{ searchChildren(criteria: $c, access: {{purpose: SAFEGUARDING}}) {{ tooManyResults matches {{ score child {{ {selection} }} }} }} }} {}",
                    fragments.join(" ")
                ),
                json!({ "c": subject.criteria }),
            )
        };
        let answer = gateway.query_vars(&user, &query, variables).await;
        assert_eq!(answer.status, 200, "{:#}", answer.body);
        let text = answer.body.to_string();
        redactions += answer.errors_with("REDACTED").len();
        for (value, path) in &subject.values {
            if shown(path) {
                continue;
            }
            // A value that a visible field carries too (a setting's name under services and under participation) is
            // not a leak when shown there.
            if subject.values.iter().any(|(v, p)| v == value && shown(p)) {
                continue;
            }
            assert!(
                !text.contains(value.as_str()),
                "case {case}: roles {picked:?}, {situation:?}, child {}: withheld value {value:?} ({path:?}) in\n{query}\n{text}",
                subject.criteria
            );
        }
    }
    assert!(redactions > 0, "the cases withheld something");
    gateway.stop().await;
}
