//! The school simulator: a OneRoster 1.2 rostering server (users, students, teachers, orgs, schools, enrollments, classes, demographics), as `connectors/PROFILES.md` profiles it.
//!
//! Filters take any number of `field op 'value'` predicates joined by AND or OR; when both appear, AND binds tighter than OR
//! (`a AND b OR c` is `(a AND b) OR c`), as in SQL. Equality on indexed fields (`sourcedId`, `identifier`, `familyName`, `birthDate`,
//! `user.sourcedId`, `class.sourcedId`) in every OR branch is answered from indexes; other filters scan the collection.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use childgraph_schema::Sex;
use chrono::NaiveDate;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::population::Population;

/// The path the rostering service is served under.
pub const BASE_PATH: &str = "/ims/oneroster/rostering/v1p2";
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// The OneRoster routes, under [`BASE_PATH`].
pub fn router(population: Arc<Population>) -> Router {
    let mut router = Router::new();
    for c in Collection::ALL {
        let name = c.path();
        router = router
            .route(
                &format!("{BASE_PATH}/{name}"),
                get(move |s, h, q| list(c, s, h, q)),
            )
            .route(
                &format!("{BASE_PATH}/{name}/{{id}}"),
                get(move |s, p, q| one(c, s, p, q)),
            );
    }
    router.with_state(Arc::new(Roster::new(population)))
}

/// The population and each object as rendered, once: the population never changes, so neither does an object's
/// JSON, and a source answering many reads should not build it again for each.
struct Roster {
    population: Arc<Population>,
    /// Users, orgs, enrollments, classes and demographics by position; students, teachers and schools are views of
    /// users and orgs.
    rendered: [Vec<OnceLock<Kept>>; 5],
}

/// An object as rendered, and written out, so that an answer serving it whole copies its text.
struct Kept {
    value: Value,
    text: Box<RawValue>,
}

impl Kept {
    fn new(value: Value) -> Self {
        let text = serde_json::value::to_raw_value(&value).expect("a JSON value writes out");
        Self { value, text }
    }
}

impl Roster {
    fn new(population: Arc<Population>) -> Self {
        let p = &population;
        let slots = |c| (0..len(p, c)).map(|_| OnceLock::new()).collect();
        let rendered = [
            slots(Collection::Users),
            slots(Collection::Orgs),
            slots(Collection::Enrollments),
            slots(Collection::Classes),
            slots(Collection::Demographics),
        ];
        Self {
            population,
            rendered,
        }
    }

    /// The object at `pos` in `c`, rendered at its first read.
    fn object(&self, c: Collection, pos: u32) -> &Kept {
        let p = &self.population;
        let (slot, c, pos) = match c {
            Collection::Users => (0, Collection::Users, pos),
            Collection::Students => (0, Collection::Users, users(p).teachers + pos),
            Collection::Teachers => (0, Collection::Users, pos),
            Collection::Orgs | Collection::Schools => (1, Collection::Orgs, pos),
            Collection::Enrollments => (2, c, pos),
            Collection::Classes => (3, c, pos),
            Collection::Demographics => (4, c, pos),
        };
        self.rendered[slot][pos as usize].get_or_init(|| Kept::new(render(p, c, pos)))
    }
}

/// An `imsx_StatusInfo` error body with one code-minor field.
pub(crate) fn status_info(status: StatusCode, code_minor: &str, description: &str) -> Response {
    let body = json!({
        "imsx_codeMajor": "failure",
        "imsx_severity": "error",
        "imsx_description": description,
        "imsx_CodeMinor": {"imsx_codeMinorField": [{
            "imsx_codeMinorFieldName": "TargetEndSystem",
            "imsx_codeMinorFieldValue": code_minor,
        }]},
    });
    (status, axum::Json(body)).into_response()
}

/// A refused query: the 400 `imsx_StatusInfo` it answers with.
#[derive(Debug)]
struct Refusal {
    code_minor: &'static str,
    description: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        status_info(StatusCode::BAD_REQUEST, self.code_minor, &self.description)
    }
}

fn bad_request(code_minor: &'static str, description: impl Into<String>) -> Refusal {
    Refusal {
        code_minor,
        description: description.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Collection {
    Users,
    Students,
    Teachers,
    Orgs,
    Schools,
    Enrollments,
    Classes,
    Demographics,
}

const USER_FIELDS: &[&str] = &[
    "sourcedId",
    "status",
    "dateLastModified",
    "metadata",
    "enabledUser",
    "username",
    "userIds",
    "givenName",
    "familyName",
    "middleName",
    "preferredFirstName",
    "roles",
    "primaryOrg",
    "identifier",
    "email",
    "phone",
    "sms",
    "agents",
    "grades",
];
const ORG_FIELDS: &[&str] = &[
    "sourcedId",
    "status",
    "dateLastModified",
    "metadata",
    "name",
    "type",
    "identifier",
    "parent",
    "children",
];
const ENROLLMENT_FIELDS: &[&str] = &[
    "sourcedId",
    "status",
    "dateLastModified",
    "metadata",
    "user",
    "class",
    "school",
    "role",
    "primary",
    "beginDate",
    "endDate",
];
const CLASS_FIELDS: &[&str] = &[
    "sourcedId",
    "status",
    "dateLastModified",
    "metadata",
    "title",
    "classCode",
    "classType",
    "grades",
    "school",
];
const DEMOGRAPHICS_FIELDS: &[&str] = &[
    "sourcedId",
    "status",
    "dateLastModified",
    "metadata",
    "birthDate",
    "sex",
];

impl Collection {
    const ALL: [Collection; 8] = [
        Collection::Users,
        Collection::Students,
        Collection::Teachers,
        Collection::Orgs,
        Collection::Schools,
        Collection::Enrollments,
        Collection::Classes,
        Collection::Demographics,
    ];

    fn path(self) -> &'static str {
        match self {
            Collection::Users => "users",
            Collection::Students => "students",
            Collection::Teachers => "teachers",
            Collection::Orgs => "orgs",
            Collection::Schools => "schools",
            Collection::Enrollments => "enrollments",
            Collection::Classes => "classes",
            Collection::Demographics => "demographics",
        }
    }

    /// The envelope keys for a list and for one object.
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            Collection::Users | Collection::Students | Collection::Teachers => ("users", "user"),
            Collection::Orgs | Collection::Schools => ("orgs", "org"),
            Collection::Enrollments => ("enrollments", "enrollment"),
            Collection::Classes => ("classes", "class"),
            Collection::Demographics => ("demographics", "demographics"),
        }
    }

    fn fields(self) -> &'static [&'static str] {
        match self {
            Collection::Users | Collection::Students | Collection::Teachers => USER_FIELDS,
            Collection::Orgs | Collection::Schools => ORG_FIELDS,
            Collection::Enrollments => ENROLLMENT_FIELDS,
            Collection::Classes => CLASS_FIELDS,
            Collection::Demographics => DEMOGRAPHICS_FIELDS,
        }
    }
}

/// Sizes of the parts of the users collection, which lists teachers, then students, then parents.
struct Users {
    teachers: u32,
    students: u32,
    parents: u32,
}

fn users(p: &Population) -> Users {
    Users {
        teachers: p.orgs.teachers.len() as u32,
        students: p.school.len() as u32,
        parents: p.parents.len() as u32,
    }
}

fn len(p: &Population, c: Collection) -> u32 {
    let u = users(p);
    match c {
        Collection::Users => u.teachers + u.students + u.parents,
        Collection::Students | Collection::Demographics => u.students,
        Collection::Teachers => u.teachers,
        Collection::Orgs | Collection::Schools => p.orgs.schools.len() as u32,
        Collection::Enrollments => u.students + u.teachers,
        Collection::Classes => p.orgs.classes.len() as u32,
    }
}

/// A user position in the users collection → the position in `c`, if the user belongs to it.
fn from_user(p: &Population, c: Collection, user: u32) -> Option<u32> {
    let u = users(p);
    match c {
        Collection::Users => Some(user),
        Collection::Students | Collection::Demographics => (u.teachers..u.teachers + u.students)
            .contains(&user)
            .then(|| user - u.teachers),
        Collection::Teachers => (user < u.teachers).then_some(user),
        // Students' enrollments come first, then class teachers'.
        Collection::Enrollments => {
            if user < u.teachers {
                Some(u.students + user)
            } else if user < u.teachers + u.students {
                Some(user - u.teachers)
            } else {
                None
            }
        }
        _ => None,
    }
}

fn position_of(p: &Population, c: Collection, id: &str) -> Option<u32> {
    match c {
        Collection::Orgs | Collection::Schools => p
            .orgs
            .schools
            .iter()
            .position(|o| &*o.id == id)
            .map(|i| i as u32),
        Collection::Classes => p
            .orgs
            .classes
            .iter()
            .position(|k| &*k.id == id)
            .map(|i| i as u32),
        Collection::Enrollments => {
            let user = p.index.users_by_id.get(id.strip_prefix("enr-")?)?;
            from_user(p, c, *user)
        }
        _ => from_user(p, c, *p.index.users_by_id.get(id)?),
    }
}

/// Candidates for an equality predicate on an indexed field, or `None` when the field has no index.
fn index_lookup(p: &Population, c: Collection, field: &str, value: &str) -> Option<Vec<u32>> {
    let ix = &p.index;
    let u = users(p);
    let users_to = |positions: &mut dyn Iterator<Item = u32>| -> Vec<u32> {
        positions.filter_map(|user| from_user(p, c, user)).collect()
    };
    match (c, field) {
        (_, "sourcedId") => Some(position_of(p, c, value).into_iter().collect()),
        (Collection::Orgs | Collection::Schools | Collection::Classes, _) => None,
        (Collection::Users | Collection::Students, "identifier") => Some(users_to(
            &mut ix
                .school_upn
                .get(value)
                .into_iter()
                .flatten()
                .map(|&i| u.teachers + i),
        )),
        (Collection::Users | Collection::Students | Collection::Teachers, "familyName") => Some(
            users_to(&mut ix.users_by_family.get(value).into_iter().flatten().copied()),
        ),
        (Collection::Demographics, "birthDate") => {
            let date = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok()?;
            Some(ix.school_birth.get(&date).cloned().unwrap_or_default())
        }
        (Collection::Enrollments, "class.sourcedId") => Some(class_enrollments(p, value, None)),
        (Collection::Enrollments, "user.sourcedId") => Some(users_to(
            &mut ix.users_by_id.get(value).into_iter().copied(),
        )),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering.

fn guid(kind: &str, collection: &str, id: &str) -> Value {
    json!({"href": format!("{BASE_PATH}/{collection}/{id}"), "sourcedId": id, "type": kind})
}

fn grade(year_group: u8) -> String {
    if year_group == 0 {
        "KG".to_owned()
    } else {
        format!("{year_group:02}")
    }
}

fn modified(p: &Population) -> String {
    format!(
        "{}T00:00:00Z",
        crate::population::academic_year_start(p.as_of).format("%Y-%m-%d")
    )
}

fn base(p: &Population, id: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("sourcedId".into(), json!(id));
    m.insert("status".into(), json!("active"));
    m.insert("dateLastModified".into(), json!(modified(p)));
    m.insert("metadata".into(), json!({}));
    m
}

fn render(p: &Population, c: Collection, pos: u32) -> Value {
    match c {
        Collection::Users => render_user(p, pos),
        Collection::Students => render_user(p, users(p).teachers + pos),
        Collection::Teachers => render_user(p, pos),
        Collection::Orgs | Collection::Schools => {
            let o = &p.orgs.schools[pos as usize];
            let mut m = base(p, &o.id);
            m.insert(
                "metadata".into(),
                json!({
                    "phone": o.phone,
                    "email": o.email,
                    "address": {"lines": [o.address.line1, o.address.town], "postcode": o.address.postcode},
                }),
            );
            m.insert("name".into(), json!(o.name));
            m.insert("type".into(), json!("school"));
            m.insert("identifier".into(), json!(o.code));
            Value::Object(m)
        }
        Collection::Classes => {
            let k = &p.orgs.classes[pos as usize];
            let school = &p.orgs.schools[k.school as usize];
            let mut m = base(p, &k.id);
            m.insert("title".into(), json!(k.title));
            m.insert(
                "classCode".into(),
                json!(k.title.split_whitespace().collect::<Vec<_>>().join("-")),
            );
            m.insert("classType".into(), json!("homeroom"));
            m.insert("grades".into(), json!([grade(k.year_group)]));
            m.insert("school".into(), guid("org", "orgs", &school.id));
            Value::Object(m)
        }
        Collection::Enrollments => {
            let u = users(p);
            if pos < u.students {
                let r = &p.school[pos as usize];
                let class = &p.orgs.classes[r.class as usize];
                let mut m = base(p, &format!("enr-{}", r.id));
                m.insert("user".into(), guid("user", "users", &r.id));
                m.insert("class".into(), guid("class", "classes", &class.id));
                m.insert(
                    "school".into(),
                    guid("org", "orgs", &p.orgs.schools[r.school as usize].id),
                );
                m.insert("role".into(), json!("student"));
                m.insert(
                    "beginDate".into(),
                    json!(r.begin.format("%Y-%m-%d").to_string()),
                );
                m.insert(
                    "endDate".into(),
                    json!(r.end.format("%Y-%m-%d").to_string()),
                );
                Value::Object(m)
            } else {
                let t = (pos - u.students) as usize;
                let teacher = &p.orgs.teachers[t];
                let class = &p.orgs.classes[t];
                let start = crate::population::academic_year_start(p.as_of);
                let mut m = base(p, &format!("enr-{}", teacher.id));
                m.insert("user".into(), guid("user", "users", &teacher.id));
                m.insert("class".into(), guid("class", "classes", &class.id));
                m.insert(
                    "school".into(),
                    guid("org", "orgs", &p.orgs.schools[class.school as usize].id),
                );
                m.insert("role".into(), json!("teacher"));
                m.insert("primary".into(), json!("true"));
                m.insert(
                    "beginDate".into(),
                    json!(start.format("%Y-%m-%d").to_string()),
                );
                m.insert(
                    "endDate".into(),
                    json!(
                        (start + chrono::Months::new(12))
                            .format("%Y-%m-%d")
                            .to_string()
                    ),
                );
                Value::Object(m)
            }
        }
        Collection::Demographics => {
            let r = &p.school[pos as usize];
            let mut m = base(p, &r.id);
            m.insert(
                "birthDate".into(),
                json!(r.birth_date.format("%Y-%m-%d").to_string()),
            );
            let sex = match r.sex {
                Sex::Female => "female",
                Sex::Male => "male",
                Sex::Other => "other",
                Sex::Unknown => "unspecified",
            };
            m.insert("sex".into(), json!(sex));
            Value::Object(m)
        }
    }
}

fn role(role: &str, org: &str) -> Value {
    json!({"roleType": "primary", "role": role, "org": guid("org", "orgs", org)})
}

fn render_user(p: &Population, user: u32) -> Value {
    let u = users(p);
    if user < u.teachers {
        let t = &p.orgs.teachers[user as usize];
        let school = &p.orgs.schools[p.orgs.classes[user as usize].school as usize];
        let mut m = base(p, &t.id);
        m.insert("enabledUser".into(), json!("true"));
        m.insert("givenName".into(), json!(t.given));
        m.insert("familyName".into(), json!(t.family));
        m.insert("roles".into(), json!([role("teacher", &school.id)]));
        m.insert("primaryOrg".into(), guid("org", "orgs", &school.id));
        m.insert("email".into(), json!(t.email));
        m.insert("phone".into(), json!(t.phone));
        return Value::Object(m);
    }
    if user < u.teachers + u.students {
        let r = &p.school[(user - u.teachers) as usize];
        let school = &p.orgs.schools[r.school as usize];
        let family = &p.families[r.family_index as usize];
        let mut m = base(p, &r.id);
        m.insert("enabledUser".into(), json!("true"));
        m.insert(
            "userIds".into(),
            json!([{"type": "UPN", "identifier": r.upn}]),
        );
        m.insert("givenName".into(), json!(r.given));
        m.insert("familyName".into(), json!(r.family));
        if let Some(pref) = &r.preferred {
            m.insert("preferredFirstName".into(), json!(pref));
        }
        m.insert("roles".into(), json!([role("student", &school.id)]));
        m.insert("primaryOrg".into(), guid("org", "orgs", &school.id));
        m.insert("identifier".into(), json!(r.upn));
        let agents: Vec<Value> = (0..family.carers.len())
            .map(|c| {
                guid(
                    "user",
                    "users",
                    &crate::population::parent_user_id(family.number, c),
                )
            })
            .collect();
        m.insert("agents".into(), json!(agents));
        m.insert(
            "grades".into(),
            json!([grade(p.orgs.classes[r.class as usize].year_group)]),
        );
        return Value::Object(m);
    }
    let (f, c) = p.parents[(user - u.teachers - u.students) as usize];
    let family = &p.families[f as usize];
    let carer = &family.carers[c as usize];
    let first_pupil = &p.school[family.school_records[0] as usize];
    let school = &p.orgs.schools[first_pupil.school as usize];
    let mut m = base(
        p,
        &crate::population::parent_user_id(family.number, c.into()),
    );
    m.insert(
        "metadata".into(),
        json!({"relationship": carer.relationship.as_str()}),
    );
    m.insert("enabledUser".into(), json!("true"));
    m.insert("givenName".into(), json!(carer.given));
    m.insert("familyName".into(), json!(carer.family));
    m.insert(
        "roles".into(),
        json!([role(carer.relationship.oneroster_role(), &school.id)]),
    );
    m.insert("email".into(), json!(carer.email));
    m.insert("phone".into(), json!(carer.phone));
    let agents: Vec<Value> = family
        .school_records
        .iter()
        .map(|&s| guid("user", "users", &p.school[s as usize].id))
        .collect();
    m.insert("agents".into(), json!(agents));
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------------
// Filters.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Contains,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Predicate {
    field: String,
    op: Op,
    value: String,
}

/// A parsed filter: OR of AND-clauses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    any_of: Vec<Vec<Predicate>>,
}

fn parse_filter(s: &str) -> Result<Filter, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    let mut any_of = vec![Vec::new()];
    loop {
        skip_ws(&mut i);
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() && !"=!<>~".contains(chars[i]) {
            i += 1;
        }
        let field: String = chars[start..i].iter().collect();
        if field.is_empty() {
            return Err("a filter predicate must start with a field name".to_owned());
        }
        skip_ws(&mut i);
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let (op, width) = match two.as_str() {
            "!=" => (Op::Ne, 2),
            ">=" => (Op::Ge, 2),
            "<=" => (Op::Le, 2),
            _ => match chars.get(i) {
                Some('=') => (Op::Eq, 1),
                Some('>') => (Op::Gt, 1),
                Some('<') => (Op::Lt, 1),
                Some('~') => (Op::Contains, 1),
                _ => {
                    return Err(format!(
                        "filter field {field} must be followed by an operator"
                    ));
                }
            },
        };
        i += width;
        skip_ws(&mut i);
        if chars.get(i) != Some(&'\'') {
            return Err("filter values must be single-quoted".to_owned());
        }
        i += 1;
        let mut value = String::new();
        loop {
            match chars.get(i) {
                None => return Err("a filter value is missing its closing quote".to_owned()),
                Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                    value.push('\'');
                    i += 2;
                }
                Some('\'') => {
                    i += 1;
                    break;
                }
                Some(&c) => {
                    value.push(c);
                    i += 1;
                }
            }
        }
        any_of
            .last_mut()
            .expect("one clause")
            .push(Predicate { field, op, value });
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        let word_start = i;
        while i < chars.len() && chars[i].is_ascii_alphabetic() {
            i += 1;
        }
        let word: String = chars[word_start..i].iter().collect();
        match word.to_ascii_uppercase().as_str() {
            "AND" => {}
            "OR" => any_of.push(Vec::new()),
            _ => return Err("filter predicates must be joined by AND or OR".to_owned()),
        }
    }
    Ok(Filter { any_of })
}

/// Every scalar reached by a dotted path; arrays at any level contribute each element.
fn leaves<'v>(v: &'v Value, path: &[&str], out: &mut Vec<&'v Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|item| leaves(item, path, out)),
        _ if path.is_empty() => out.push(v),
        Value::Object(m) => {
            if let Some(child) = m.get(path[0]) {
                leaves(child, &path[1..], out);
            }
        }
        _ => {}
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(std::cmp::Ordering::Equal),
        _ => a.cmp(b),
    }
}

/// Whether any scalar at `path` (dotted, reaching into arrays) meets `test`.
fn any_scalar(v: &Value, path: &str, test: &mut dyn FnMut(&str) -> bool) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|item| any_scalar(item, path, test)),
        _ if path.is_empty() => match v {
            Value::String(s) => test(s),
            Value::Number(_) | Value::Bool(_) => scalar(v).is_some_and(|s| test(&s)),
            _ => false,
        },
        Value::Object(m) => {
            let (head, rest) = path.split_once('.').unwrap_or((path, ""));
            m.get(head)
                .is_some_and(|child| any_scalar(child, rest, test))
        }
        _ => false,
    }
}

impl Predicate {
    fn matches(&self, object: &Value) -> bool {
        use std::cmp::Ordering::*;
        let value = self.value.as_str();
        let any = |test: &mut dyn FnMut(&str) -> bool| any_scalar(object, &self.field, test);
        match self.op {
            Op::Eq => any(&mut |v| v == value),
            Op::Ne => !any(&mut |v| v == value),
            Op::Gt => any(&mut |v| compare(v, value) == Greater),
            Op::Ge => any(&mut |v| compare(v, value) != Less),
            Op::Lt => any(&mut |v| compare(v, value) == Less),
            Op::Le => any(&mut |v| compare(v, value) != Greater),
            Op::Contains => {
                let needle = value.to_lowercase();
                any(&mut |v| v.to_lowercase().contains(&needle))
            }
        }
    }
}

impl Filter {
    fn matches(&self, object: &Value) -> bool {
        self.any_of
            .iter()
            .any(|clause| clause.iter().all(|p| p.matches(object)))
    }

    /// Candidates from indexes when every OR branch has an indexed equality, else `None`.
    fn candidates(&self, p: &Population, c: Collection) -> Option<Vec<u32>> {
        let mut out = Vec::new();
        for clause in &self.any_of {
            let eq = |field: &str| {
                clause
                    .iter()
                    .find(|pr| pr.op == Op::Eq && pr.field == field)
                    .map(|pr| pr.value.as_str())
            };
            // A class's enrollments of one role, as the gateway asks for its teachers, without reading its pupils'.
            let found = match (c, eq("class.sourcedId"), eq("role")) {
                (Collection::Enrollments, Some(class), Some(role)) => {
                    class_enrollments(p, class, Some(role))
                }
                _ => clause
                    .iter()
                    .filter(|pr| pr.op == Op::Eq)
                    .find_map(|pr| index_lookup(p, c, &pr.field, &pr.value))?,
            };
            out.extend(found);
        }
        Some(out)
    }
}

fn top_field(field: &str) -> &str {
    field.split('.').next().unwrap_or(field)
}

/// A class's enrollments with the given role, or all of them: its pupils', then its one teacher's.
fn class_enrollments(p: &Population, class: &str, role: Option<&str>) -> Vec<u32> {
    let Some(class) = position_of(p, Collection::Classes, class) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    if role.is_none_or(|r| r == "student") {
        found.extend_from_slice(&p.index.class_pupils[class as usize]);
    }
    if role.is_none_or(|r| r == "teacher") {
        found.push(users(p).students + class);
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Handlers.

struct ListQuery {
    filter: Option<Filter>,
    limit: usize,
    offset: usize,
    sort: Option<String>,
    descending: bool,
    fields: Option<Vec<String>>,
}

fn parse_list_query(c: Collection, raw: Option<&str>) -> Result<ListQuery, Refusal> {
    let mut q = ListQuery {
        filter: None,
        limit: DEFAULT_LIMIT,
        offset: 0,
        sort: None,
        descending: false,
        fields: None,
    };
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match &*k {
            "filter" => {
                let filter =
                    parse_filter(&v).map_err(|e| bad_request("invalid_filter_field", e))?;
                for clause in &filter.any_of {
                    for pr in clause {
                        if !c.fields().contains(&top_field(&pr.field)) {
                            return Err(bad_request(
                                "invalid_filter_field",
                                format!("unknown filter field {}", pr.field),
                            ));
                        }
                    }
                }
                q.filter = Some(filter);
            }
            "limit" => {
                let limit: usize = v
                    .parse()
                    .map_err(|_| bad_request("invaliddata", "limit must be a positive integer"))?;
                if limit == 0 {
                    return Err(bad_request(
                        "invaliddata",
                        "limit must be a positive integer",
                    ));
                }
                q.limit = limit.min(MAX_LIMIT);
            }
            "offset" => {
                q.offset = v.parse().map_err(|_| {
                    bad_request("invaliddata", "offset must be a non-negative integer")
                })?;
            }
            "sort" => {
                if !c.fields().contains(&top_field(&v)) {
                    return Err(bad_request(
                        "invalid_sort_field",
                        format!("unknown sort field {v}"),
                    ));
                }
                q.sort = Some(v.into_owned());
            }
            "orderBy" => match &*v {
                "asc" => q.descending = false,
                "desc" => q.descending = true,
                _ => return Err(bad_request("invaliddata", "orderBy must be asc or desc")),
            },
            "fields" => q.fields = Some(parse_fields(c, &v)?),
            _ => {}
        }
    }
    Ok(q)
}

fn parse_fields(c: Collection, raw: &str) -> Result<Vec<String>, Refusal> {
    let fields: Vec<String> = raw
        .split(',')
        .map(|f| f.trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    if let Some(unknown) = fields.iter().find(|f| !c.fields().contains(&f.as_str())) {
        return Err(bad_request(
            "invalid_selection_field",
            format!("unknown selection field {unknown}"),
        ));
    }
    Ok(fields)
}

/// The object with only the selected fields, or the whole object when no fields are selected.
fn select<'v>(object: &'v Value, fields: Option<&[String]>) -> Cow<'v, Value> {
    match (fields, object) {
        (Some(fields), Value::Object(m)) => Cow::Owned(Value::Object(
            m.iter()
                .filter(|(k, _)| fields.iter().any(|f| f == *k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )),
        (_, object) => Cow::Borrowed(object),
    }
}

fn sort_key(object: &Value, field: &str) -> String {
    let path: Vec<&str> = field.split('.').collect();
    let mut found = Vec::new();
    leaves(object, &path, &mut found);
    found.into_iter().find_map(scalar).unwrap_or_default()
}

async fn list(
    c: Collection,
    State(roster): State<Arc<Roster>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = match parse_list_query(c, raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return e.into_response(),
    };
    let p = &roster.population;
    let positions: Vec<u32> = match q.filter.as_ref().and_then(|f| f.candidates(p, c)) {
        Some(mut found) => {
            found.sort_unstable();
            found.dedup();
            found
        }
        None => (0..len(p, c)).collect(),
    };
    // Without a filter or sort, only the page needs rendering.
    let (total, page): (usize, Vec<&Kept>) = if q.filter.is_none() && q.sort.is_none() {
        let page = positions
            .iter()
            .skip(q.offset)
            .take(q.limit)
            .map(|&pos| roster.object(c, pos))
            .collect();
        (positions.len(), page)
    } else {
        let mut matched: Vec<&Kept> = positions
            .iter()
            .map(|&pos| roster.object(c, pos))
            .filter(|o| q.filter.as_ref().is_none_or(|f| f.matches(&o.value)))
            .collect();
        if let Some(field) = &q.sort {
            matched.sort_by_cached_key(|o| sort_key(&o.value, field));
            if q.descending {
                matched.reverse();
            }
        }
        let total = matched.len();
        (
            total,
            matched.into_iter().skip(q.offset).take(q.limit).collect(),
        )
    };
    let mut response = match q.fields.as_deref() {
        // Whole objects are served as they were written out.
        None => {
            let items: Vec<&RawValue> = page.into_iter().map(|o| &*o.text).collect();
            axum::Json(BTreeMap::from([(c.keys().0, items)])).into_response()
        }
        Some(fields) => {
            let items: Vec<Cow<Value>> = page
                .into_iter()
                .map(|o| select(&o.value, Some(fields)))
                .collect();
            axum::Json(BTreeMap::from([(c.keys().0, items)])).into_response()
        }
    };
    let h = response.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total as u64));
    if q.offset + q.limit < total {
        let path = format!("{BASE_PATH}/{}", c.path());
        let url = crate::paging::next_page_url(&headers, &path, raw.as_deref(), q.offset, q.limit);
        let link = format!("<{url}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert(header::LINK, v);
        }
    }
    response
}

async fn one(
    c: Collection,
    State(roster): State<Arc<Roster>>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let mut fields = None;
    for (k, v) in url::form_urlencoded::parse(raw.as_deref().unwrap_or("").as_bytes()) {
        if k == "fields" {
            match parse_fields(c, &v) {
                Ok(f) => fields = Some(f),
                Err(e) => return e.into_response(),
            }
        }
    }
    match position_of(&roster.population, c, &id) {
        Some(pos) => {
            let kept = roster.object(c, pos);
            match fields.as_deref() {
                None => axum::Json(BTreeMap::from([(c.keys().1, &*kept.text)])).into_response(),
                Some(fields) => {
                    let object = select(&kept.value, Some(fields));
                    axum::Json(BTreeMap::from([(c.keys().1, object)])).into_response()
                }
            }
        }
        None => status_info(
            StatusCode::NOT_FOUND,
            "unknownobject",
            &format!("no {} with sourcedId {id}", c.keys().1),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_or_with_doubled_quotes() {
        let f = parse_filter("familyName='O''Brien' AND roles.role='student' OR sourcedId = 'x'")
            .unwrap();
        assert_eq!(f.any_of.len(), 2);
        assert_eq!(f.any_of[0][0].value, "O'Brien");
        assert_eq!(f.any_of[0][1].field, "roles.role");
        assert_eq!(f.any_of[1][0].value, "x");
        assert!(parse_filter("familyName='unterminated").is_err());
        assert!(parse_filter("familyName='a' XOR b='c'").is_err());
        let f = parse_filter("birthDate>='2019-01-01'").unwrap();
        assert_eq!(f.any_of[0][0].op, Op::Ge);
    }

    #[test]
    fn indexed_candidates_find_what_a_full_scan_finds() {
        let config = crate::population::PopulationConfig {
            children: 200,
            ..Default::default()
        };
        let roster = Roster::new(Arc::new(Population::generate(&config)));
        let p = &roster.population;
        let class = |i: u32| p.orgs.classes[i as usize].id.clone();
        let found = |c: Collection, filter: &str, scan: bool| -> Vec<u32> {
            let f = parse_filter(filter).unwrap();
            let positions = match f.candidates(p, c) {
                Some(mut found) if !scan => {
                    found.sort_unstable();
                    found.dedup();
                    found
                }
                _ => (0..len(p, c)).collect(),
            };
            positions
                .into_iter()
                .filter(|&pos| f.matches(&roster.object(c, pos).value))
                .collect()
        };
        for (i, role) in [(0, "teacher"), (1, "student"), (2, "aide"), (3, "teacher")] {
            for filter in [
                format!("class.sourcedId='{}' AND role='{role}'", class(i)),
                format!("role='{role}' AND class.sourcedId='{}'", class(i)),
                format!(
                    "class.sourcedId='{}' AND role='{role}' OR class.sourcedId='{}'",
                    class(i),
                    class(i + 1)
                ),
            ] {
                let indexed = found(Collection::Enrollments, &filter, false);
                assert_eq!(
                    indexed,
                    found(Collection::Enrollments, &filter, true),
                    "{filter}"
                );
                if role == "aide" && !filter.contains(" OR ") {
                    assert!(indexed.is_empty(), "{filter}");
                }
            }
        }
        // A class's teachers are one enrollment, found without reading its pupils'.
        let teachers = parse_filter(&format!(
            "class.sourcedId='{}' AND role='teacher'",
            class(0)
        ))
        .unwrap()
        .candidates(p, Collection::Enrollments)
        .unwrap();
        assert_eq!(teachers.len(), 1);
    }

    #[test]
    fn predicates_reach_into_arrays() {
        let user =
            json!({"roles": [{"role": "parent"}, {"role": "student", "org": {"sourcedId": "s1"}}]});
        let pr = |s: &str| parse_filter(s).unwrap();
        assert!(pr("roles.role='student'").matches(&user));
        assert!(pr("roles.org.sourcedId='s1'").matches(&user));
        assert!(!pr("roles.role='teacher'").matches(&user));
        assert!(pr("roles.role~'STUD'").matches(&user));
        assert!(pr("roles.role!='teacher'").matches(&user));
    }
}
