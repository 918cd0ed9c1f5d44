//! The health simulator: a FHIR R4 server (JSON) for Patient, RelatedPerson, Organization, Practitioner, EpisodeOfCare and Encounter, as `connectors/PROFILES.md` profiles it.
//!
//! Searches honour FHIR's rules where the profile relies on them: comma is OR, a repeated parameter is AND, `\,` `\$` `\|` `\\` are escapes,
//! unknown parameters are ignored and unsupported modifiers refused with 400. Paging uses `_offset`, which the `next` link carries.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use childgraph_schema::identifiers::NHS_NUMBER_SYSTEM;
use childgraph_schema::{ServiceKind, Sex};
use chrono::{Days, Months, NaiveDate};
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::population::{HealthRecord, KEY_AGE_VISITS, Organisation, Population, Staff};
use crate::text::fold;

const MEDIA_TYPE: &str = "application/fhir+json";
const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const ROLE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
const ACT_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const ORG_KIND_SYSTEM: &str = "urn:childgraph:fhir:organisation-kind";
const SERVICE_TYPE_SYSTEM: &str = "urn:childgraph:fhir:service-type";
const VISIT_SYSTEM: &str = "urn:childgraph:fhir:key-age-visit";
const DEFAULT_COUNT: usize = 50;
const MAX_COUNT: usize = 200;

/// The FHIR routes, under `/fhir`.
pub fn router(population: Arc<Population>) -> Router {
    Router::new()
        .route("/fhir/{resource_type}", get(search))
        .route("/fhir/{resource_type}/{id}", get(read))
        .with_state(Arc::new(Health {
            population,
            rendered: RwLock::default(),
        }))
}

/// The health source: the population, and each resource as rendered the first time it was served. Neither changes,
/// so a resource is rendered and written out once, and a bundle is written around the kept text.
struct Health {
    population: Arc<Population>,
    rendered: RwLock<HashMap<Resource, Arc<Rendered>>>,
}

/// A resource as served: its type, id and body, and the body written out, `resourceType` first.
struct Rendered {
    ty: ResourceType,
    id: String,
    body: Value,
    text: Box<RawValue>,
}

impl Health {
    fn render(&self, resource: Resource) -> Arc<Rendered> {
        let kept = self
            .rendered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&resource)
            .cloned();
        if let Some(rendered) = kept {
            return rendered;
        }
        let (ty, id, body) = render(&self.population, resource);
        let text = serde_json::value::to_raw_value(&ResourceFirst(&body))
            .expect("a JSON value can be written out");
        let rendered = Arc::new(Rendered { ty, id, body, text });
        self.rendered
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(resource)
            .or_insert(rendered)
            .clone()
    }
}

/// A search's answer, written in the order FHIR servers write a Bundle's members.
#[derive(serde::Serialize)]
struct SearchSet<'a> {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    total: usize,
    link: Vec<Value>,
    entry: Vec<Entry<'a>>,
}

#[derive(serde::Serialize)]
struct Entry<'a> {
    #[serde(rename = "fullUrl")]
    full_url: String,
    resource: &'a RawValue,
    search: SearchMode,
}

#[derive(serde::Serialize)]
struct SearchMode {
    mode: &'static str,
}

/// An OperationOutcome with one issue, served as `application/fhir+json`.
pub(crate) fn outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    let body = json!({
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    });
    fhir_json(status, &body)
}

fn fhir_json(status: StatusCode, body: &Value) -> Response {
    fhir_text(
        status,
        serde_json::to_string(&ResourceFirst(body)).unwrap_or_default(),
    )
}

fn fhir_text(status: StatusCode, text: String) -> Response {
    (status, [(header::CONTENT_TYPE, MEDIA_TYPE)], text).into_response()
}

/// A JSON value written with each object's `resourceType` as its first member, as FHIR servers write resources and as
/// the specification's JSON examples show them; the other members follow in the value's order.
struct ResourceFirst<'a>(&'a Value);

impl serde::Serialize for ResourceFirst<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        match self.0 {
            Value::Object(members) => {
                let mut map = serializer.serialize_map(Some(members.len()))?;
                if let Some(kind) = members.get("resourceType") {
                    map.serialize_entry("resourceType", kind)?;
                }
                for (key, value) in members.iter().filter(|(k, _)| *k != "resourceType") {
                    map.serialize_entry(key, &ResourceFirst(value))?;
                }
                map.end()
            }
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&ResourceFirst(item))?;
                }
                seq.end()
            }
            other => other.serialize(serializer),
        }
    }
}

/// A refused search: the 400 and OperationOutcome it answers with.
#[derive(Debug)]
struct Refusal(String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        outcome(StatusCode::BAD_REQUEST, "invalid", &self.0)
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal(message.into())
}

fn not_found(message: &str) -> Response {
    outcome(StatusCode::NOT_FOUND, "not-found", message)
}

/// The resource types this server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResourceType {
    Patient,
    RelatedPerson,
    Organization,
    Practitioner,
    EpisodeOfCare,
    Encounter,
}

impl ResourceType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "Patient" => Self::Patient,
            "RelatedPerson" => Self::RelatedPerson,
            "Organization" => Self::Organization,
            "Practitioner" => Self::Practitioner,
            "EpisodeOfCare" => Self::EpisodeOfCare,
            "Encounter" => Self::Encounter,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "Patient",
            Self::RelatedPerson => "RelatedPerson",
            Self::Organization => "Organization",
            Self::Practitioner => "Practitioner",
            Self::EpisodeOfCare => "EpisodeOfCare",
            Self::Encounter => "Encounter",
        }
    }
}

/// The `_include` parameters this server supports: the source type, the search parameter, and the element of the
/// source resource that holds the reference, with the type it points to.
const INCLUDES: &[(ResourceType, &str, &str, ResourceType)] = &[
    (
        ResourceType::EpisodeOfCare,
        "organization",
        "/managingOrganization/reference",
        ResourceType::Organization,
    ),
    (
        ResourceType::EpisodeOfCare,
        "care-manager",
        "/careManager/reference",
        ResourceType::Practitioner,
    ),
    (
        ResourceType::Encounter,
        "service-provider",
        "/serviceProvider/reference",
        ResourceType::Organization,
    ),
    (
        ResourceType::Encounter,
        "practitioner",
        "/participant/0/individual/reference",
        ResourceType::Practitioner,
    ),
];

/// The `_revinclude` parameters this server supports on Patient searches: the type that refers to the patient, by its
/// `patient` search parameter.
const REVINCLUDES: &[(ResourceType, &str)] = &[
    (ResourceType::RelatedPerson, "patient"),
    (ResourceType::EpisodeOfCare, "patient"),
    (ResourceType::Encounter, "patient"),
];

/// What a search adds to its matches: resources that refer to them (`_revinclude`), and resources they refer to
/// (`_include`; with `:iterate`, also those that added resources refer to).
#[derive(Default)]
struct Additions {
    revincludes: Vec<ResourceType>,
    /// Each as the source type, the pointer to its reference, the type referred to, and whether it iterates.
    includes: Vec<(ResourceType, &'static str, ResourceType, bool)>,
}

/// The `_include` and `_revinclude` parameters of a search on `ty`. Any other, or another modifier, is refused: a
/// client must not believe it got resources it did not.
fn additions(
    ty: ResourceType,
    params: &[Param],
    paging: &mut Paging,
) -> Result<Additions, Refusal> {
    let mut out = Additions::default();
    for param in params {
        let name = param.name.as_str();
        if name != "_include" && name != "_revinclude" {
            continue;
        }
        let iterate = match param.modifier.as_deref() {
            None => false,
            Some("iterate") if name == "_include" => true,
            Some(m) => {
                return Err(invalid(format!(
                    "modifier :{m} is not supported on parameter {name}"
                )));
            }
        };
        let refused = || {
            invalid(format!(
                "{name}={} is not supported on {}",
                param.value,
                ty.as_str()
            ))
        };
        let (source, search_param) = param.value.split_once(':').ok_or_else(refused)?;
        if name == "_revinclude" {
            let found = REVINCLUDES
                .iter()
                .find(|(t, n)| t.as_str() == source && *n == search_param)
                .filter(|_| ty == ResourceType::Patient)
                .ok_or_else(refused)?;
            out.revincludes.push(found.0);
        } else {
            let &(source, _, pointer, target) = INCLUDES
                .iter()
                .find(|(t, n, _, _)| t.as_str() == source && *n == search_param)
                .filter(|(t, _, _, _)| iterate || *t == ty)
                .ok_or_else(refused)?;
            out.includes.push((source, pointer, target, iterate));
        }
        let key = match &param.modifier {
            Some(m) => format!("{name}:{m}"),
            None => name.to_owned(),
        };
        paging.applied.push((key, param.value.clone()));
    }
    Ok(out)
}

/// The server's own base (`http://host`), from the Host header, for `fullUrl` and links.
fn origin(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

// ---------------------------------------------------------------------------------------------
// Escapes and parameter values.

/// Splits `value` at every `sep` not escaped by a backslash, keeping escapes in the parts.
fn split_unescaped(value: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let last = parts.last_mut().expect("one part");
            last.push(c);
            if let Some(n) = chars.next() {
                last.push(n);
            }
        } else if c == sep {
            parts.push(String::new());
        } else {
            parts.last_mut().expect("one part").push(c);
        }
    }
    parts
}

/// Removes FHIR escapes; a backslash that escapes nothing is an error.
fn unescape(part: &str) -> Result<String, String> {
    let mut out = String::with_capacity(part.len());
    let mut chars = part.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ (',' | '$' | '|' | '\\')) => out.push(n),
                _ => return Err("a backslash in a search value must escape , $ | or \\".to_owned()),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

/// The OR-joined values of one parameter occurrence, unescaped.
fn or_values(value: &str) -> Result<Vec<String>, String> {
    split_unescaped(value, ',')
        .iter()
        .map(|p| unescape(p))
        .collect()
}

/// One search parameter occurrence as received.
struct Param {
    name: String,
    modifier: Option<String>,
    /// Still FHIR-escaped.
    value: String,
}

fn parse_params(query: Option<&str>) -> Vec<Param> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| {
            let (name, modifier) = match k.split_once(':') {
                Some((n, m)) => (n.to_owned(), Some(m.to_owned())),
                None => (k.into_owned(), None),
            };
            Param {
                name,
                modifier,
                value: v.into_owned(),
            }
        })
        .collect()
}

/// Paging and the parameters that were applied, for the self and next links.
struct Paging {
    count: usize,
    offset: usize,
    applied: Vec<(String, String)>,
}

fn paging(params: &[Param]) -> Result<Paging, Refusal> {
    let mut count = DEFAULT_COUNT;
    let mut offset = 0;
    for p in params {
        match p.name.as_str() {
            "_count" => {
                count = p
                    .value
                    .parse::<usize>()
                    .map_err(|_| invalid("_count must be a non-negative integer"))?
                    .min(MAX_COUNT);
            }
            "_offset" => {
                offset = p
                    .value
                    .parse()
                    .map_err(|_| invalid("_offset must be a non-negative integer"))?;
            }
            _ => {}
        }
    }
    Ok(Paging {
        count,
        offset,
        applied: Vec::new(),
    })
}

fn reject_modifier(p: &Param) -> Result<(), Refusal> {
    match &p.modifier {
        Some(m) => Err(invalid(format!(
            "modifier :{m} is not supported on parameter {}",
            p.name
        ))),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// Patient criteria.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatePrefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
}

/// A date search value: prefix and the whole period its precision covers.
#[derive(Debug, Clone, Copy)]
struct DateQuery {
    prefix: DatePrefix,
    start: NaiveDate,
    end: NaiveDate,
}

impl DateQuery {
    fn parse(raw: &str) -> Result<Self, String> {
        let (prefix, rest) = match raw.get(..2) {
            Some(p) if p.bytes().all(|b| b.is_ascii_lowercase()) => {
                let prefix = match p {
                    "eq" => DatePrefix::Eq,
                    "ne" => DatePrefix::Ne,
                    "gt" => DatePrefix::Gt,
                    "lt" => DatePrefix::Lt,
                    "ge" => DatePrefix::Ge,
                    "le" => DatePrefix::Le,
                    _ => return Err(format!("date prefix {p} is not supported")),
                };
                (prefix, &raw[2..])
            }
            _ => (DatePrefix::Eq, raw),
        };
        let bad = || "a date must be YYYY, YYYY-MM or YYYY-MM-DD".to_owned();
        let parts: Vec<&str> = rest.split('-').collect();
        let number = |s: &str, len: usize| -> Result<u32, String> {
            if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
                s.parse().map_err(|_| bad())
            } else {
                Err(bad())
            }
        };
        let (start, end) = match parts.as_slice() {
            [y] => {
                let y = number(y, 4)? as i32;
                (
                    NaiveDate::from_ymd_opt(y, 1, 1).ok_or_else(bad)?,
                    NaiveDate::from_ymd_opt(y, 12, 31).ok_or_else(bad)?,
                )
            }
            [y, m] => {
                let start = NaiveDate::from_ymd_opt(number(y, 4)? as i32, number(m, 2)?, 1)
                    .ok_or_else(bad)?;
                (start, start + Months::new(1) - Days::new(1))
            }
            [y, m, d] => {
                let day =
                    NaiveDate::from_ymd_opt(number(y, 4)? as i32, number(m, 2)?, number(d, 2)?)
                        .ok_or_else(bad)?;
                (day, day)
            }
            _ => return Err(bad()),
        };
        Ok(Self { prefix, start, end })
    }

    fn matches(&self, d: NaiveDate) -> bool {
        match self.prefix {
            DatePrefix::Eq => self.start <= d && d <= self.end,
            DatePrefix::Ne => !(self.start <= d && d <= self.end),
            DatePrefix::Gt => d > self.end,
            DatePrefix::Lt => d < self.start,
            DatePrefix::Ge => d >= self.start,
            DatePrefix::Le => d <= self.end,
        }
    }

    fn range(&self) -> Option<(Bound<NaiveDate>, Bound<NaiveDate>)> {
        use Bound::*;
        Some(match self.prefix {
            DatePrefix::Eq => (Included(self.start), Included(self.end)),
            DatePrefix::Ne => return None,
            DatePrefix::Gt => (Excluded(self.end), Unbounded),
            DatePrefix::Lt => (Unbounded, Excluded(self.start)),
            DatePrefix::Ge => (Included(self.start), Unbounded),
            DatePrefix::Le => (Unbounded, Included(self.end)),
        })
    }
}

/// A token search value.
#[derive(Debug, Clone)]
enum Token {
    /// `code`: any system.
    Code(String),
    /// `|code`: no system.
    NoSystem(String),
    /// `system|`: any code in the system.
    System(String),
    /// `system|code`.
    SystemCode(String, String),
}

impl Token {
    fn parse(part: &str) -> Result<Self, String> {
        let pieces = split_unescaped(part, '|');
        match pieces.as_slice() {
            [code] => Ok(Token::Code(unescape(code)?)),
            [system, code] if system.is_empty() => Ok(Token::NoSystem(unescape(code)?)),
            [system, code] if code.is_empty() => Ok(Token::System(unescape(system)?)),
            [system, code] => Ok(Token::SystemCode(unescape(system)?, unescape(code)?)),
            _ => Err("a token has at most one unescaped |".to_owned()),
        }
    }

    /// Matches an identifier or coding with `system` and `value`.
    fn matches(&self, system: &str, value: &str) -> bool {
        match self {
            Token::Code(c) => c == value,
            Token::NoSystem(c) => system.is_empty() && c == value,
            Token::System(s) => s == system,
            Token::SystemCode(s, c) => s == system && c == value,
        }
    }
}

/// One Patient search parameter occurrence: its values are OR-joined.
enum Criterion {
    Family { exact: bool, values: Vec<String> },
    Given { exact: bool, values: Vec<String> },
    Birth(Vec<DateQuery>),
    Identifier(Vec<Token>),
    Postcode(Vec<String>),
    Gender(Vec<Token>),
    Id(Vec<String>),
}

fn patient_criteria(params: &[Param], paging: &mut Paging) -> Result<Vec<Criterion>, Refusal> {
    let mut criteria = Vec::new();
    for p in params {
        let values = || or_values(&p.value).map_err(invalid);
        let criterion = match p.name.as_str() {
            "family" | "given" => {
                let exact = match p.modifier.as_deref() {
                    None => false,
                    Some("exact") => true,
                    Some(m) => {
                        return Err(invalid(format!(
                            "modifier :{m} is not supported on parameter {}",
                            p.name
                        )));
                    }
                };
                if p.name == "family" {
                    Criterion::Family {
                        exact,
                        values: values()?,
                    }
                } else {
                    Criterion::Given {
                        exact,
                        values: values()?,
                    }
                }
            }
            "birthdate" => {
                reject_modifier(p)?;
                Criterion::Birth(
                    values()?
                        .iter()
                        .map(|v| DateQuery::parse(v))
                        .collect::<Result<_, _>>()
                        .map_err(invalid)?,
                )
            }
            "identifier" | "gender" => {
                reject_modifier(p)?;
                let tokens = split_unescaped(&p.value, ',')
                    .iter()
                    .map(|part| Token::parse(part))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(invalid)?;
                if p.name == "identifier" {
                    Criterion::Identifier(tokens)
                } else {
                    Criterion::Gender(tokens)
                }
            }
            "address-postalcode" => {
                reject_modifier(p)?;
                Criterion::Postcode(values()?)
            }
            "_id" => {
                reject_modifier(p)?;
                Criterion::Id(values()?)
            }
            _ => continue,
        };
        let name = match &p.modifier {
            Some(m) => format!("{}:{m}", p.name),
            None => p.name.clone(),
        };
        paging.applied.push((name, p.value.clone()));
        criteria.push(criterion);
    }
    Ok(criteria)
}

fn gender_code(sex: Sex) -> &'static str {
    match sex {
        Sex::Female => "female",
        Sex::Male => "male",
        Sex::Other => "other",
        Sex::Unknown => "unknown",
    }
}

fn postcode_key(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase()
}

fn string_matches(field: &str, query: &str, exact: bool) -> bool {
    if exact {
        field == query
    } else {
        fold(field).starts_with(&fold(query))
    }
}

fn patient_matches(p: &Population, r: &HealthRecord, c: &Criterion) -> bool {
    match c {
        Criterion::Family { exact, values } => {
            values.iter().any(|v| string_matches(&r.family, v, *exact))
        }
        Criterion::Given { exact, values } => values.iter().any(|v| {
            string_matches(&r.given, v, *exact)
                || r.usual_given
                    .as_deref()
                    .is_some_and(|u| string_matches(u, v, *exact))
        }),
        Criterion::Birth(dates) => dates.iter().any(|d| d.matches(r.birth_date)),
        Criterion::Identifier(tokens) => r
            .nhs_number
            .as_deref()
            .is_some_and(|n| tokens.iter().any(|t| t.matches(NHS_NUMBER_SYSTEM, n))),
        Criterion::Postcode(values) => {
            let pc = postcode_key(&p.address_of(r.family_index, r.previous_address).postcode);
            values.iter().any(|v| pc.starts_with(&postcode_key(v)))
        }
        Criterion::Gender(tokens) => tokens.iter().any(|t| match t {
            Token::Code(c) | Token::SystemCode(_, c) => c == gender_code(r.sex),
            _ => false,
        }),
        Criterion::Id(ids) => ids.iter().any(|id| **id == *r.id),
    }
}

fn prefix_range(map: &BTreeMap<Box<str>, Vec<u32>>, prefix: &str, out: &mut Vec<u32>) {
    for (key, records) in map.range::<str, _>((Bound::Included(prefix), Bound::Unbounded)) {
        if !key.starts_with(prefix) {
            break;
        }
        out.extend_from_slice(records);
    }
}

/// Records that may match `c`, from an index, or `None` when `c` has no index and needs a scan.
fn patient_candidates(p: &Population, c: &Criterion) -> Option<Vec<u32>> {
    let ix = &p.index;
    let mut out = Vec::new();
    match c {
        Criterion::Family { values, .. } => {
            for v in values {
                prefix_range(&ix.health_family, &fold(v), &mut out);
            }
        }
        Criterion::Given { values, .. } => {
            for v in values {
                prefix_range(&ix.health_given, &fold(v), &mut out);
            }
        }
        Criterion::Birth(dates) => {
            for d in dates {
                for (_, records) in ix.health_birth.range(d.range()?) {
                    out.extend_from_slice(records);
                }
            }
        }
        Criterion::Identifier(tokens) => {
            for t in tokens {
                match t {
                    Token::Code(v) => {
                        out.extend(ix.health_nhs.get(v.as_str()).into_iter().flatten());
                    }
                    Token::SystemCode(s, v) if s == NHS_NUMBER_SYSTEM => {
                        out.extend(ix.health_nhs.get(v.as_str()).into_iter().flatten());
                    }
                    Token::System(s) if s == NHS_NUMBER_SYSTEM => return None,
                    _ => {}
                }
            }
        }
        Criterion::Postcode(values) => {
            for v in values {
                prefix_range(&ix.health_postcode, &postcode_key(v), &mut out);
            }
        }
        Criterion::Gender(_) => return None,
        Criterion::Id(ids) => {
            out.extend(ids.iter().filter_map(|id| ix.health_by_id.get(id.as_str())));
        }
    }
    Some(out)
}

fn search_patients(p: &Population, criteria: &[Criterion]) -> Vec<u32> {
    let mut candidates: Option<Vec<u32>> = None;
    for c in criteria {
        if let Some(found) = patient_candidates(p, c)
            && candidates
                .as_ref()
                .is_none_or(|best| found.len() < best.len())
        {
            candidates = Some(found);
        }
    }
    let mut candidates =
        candidates.unwrap_or_else(|| (0..p.health.len() as u32).collect::<Vec<_>>());
    candidates.sort_unstable();
    candidates.dedup();
    candidates.retain(|&i| {
        let r = &p.health[i as usize];
        criteria.iter().all(|c| patient_matches(p, r, c))
    });
    candidates
}

// ---------------------------------------------------------------------------------------------
// The other resources, addressed by kind and position.

/// A resource this server can render, addressed compactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Resource {
    Patient(u32),
    /// Patient record and carer position.
    RelatedPerson(u32, u8),
    /// Organisation kind letter and index.
    Organization(u8, u32),
    /// Organisation kind letter and staff index.
    Practitioner(u8, u32),
    /// Patient record and episode kind (1 general practice, 2 maternal and child health, 3 social care, 4 sensitive).
    EpisodeOfCare(u32, u8),
    /// Patient record and key-age visit index.
    Encounter(u32, u8),
}

/// Splits "prefix-hex-n" into the patient id it derives from and the number.
fn patient_scoped(id: &str, prefix: &str) -> Option<(String, u32)> {
    let rest = id.strip_prefix(prefix)?;
    let (hex, n) = rest.rsplit_once('-')?;
    Some((format!("pat-{hex}"), n.parse().ok()?))
}

fn scoped_suffix(r: &HealthRecord) -> &str {
    r.id.strip_prefix("pat-").unwrap_or(&r.id)
}

fn organisations(p: &Population, kind: u8) -> &[Organisation] {
    match kind {
        b'g' => &p.orgs.gp_practices,
        b'm' => &p.orgs.mch_centres,
        b'c' => &p.orgs.social_care_teams,
        _ => &p.orgs.other_services,
    }
}

fn staff(p: &Population, kind: u8) -> &[Staff] {
    match kind {
        b'g' => &p.orgs.gps,
        b'm' => &p.orgs.mch_nurses,
        _ => &p.orgs.social_workers,
    }
}

fn episodes(r: &HealthRecord) -> Vec<u8> {
    let mut out = vec![1];
    if r.mch.is_some() {
        out.push(2);
    }
    if r.social_care.is_some() {
        out.push(3);
    }
    if r.sensitive.is_some() {
        out.push(4);
    }
    out
}

/// Resolves an id of `ty` to the resource, if it exists.
fn resolve(p: &Population, ty: ResourceType, id: &str) -> Option<Resource> {
    let patient = |pid: &str| p.index.health_by_id.get(pid).copied();
    match ty {
        ResourceType::Patient => patient(id).map(Resource::Patient),
        ResourceType::RelatedPerson => {
            let (pid, n) = patient_scoped(id, "rp-")?;
            let i = patient(&pid)?;
            let r = &p.health[i as usize];
            let carers = p.families[r.family_index as usize].carers.len() as u32;
            (1..=carers)
                .contains(&n)
                .then(|| Resource::RelatedPerson(i, (n - 1) as u8))
        }
        ResourceType::EpisodeOfCare => {
            let (pid, n) = patient_scoped(id, "eoc-")?;
            let i = patient(&pid)?;
            episodes(&p.health[i as usize])
                .contains(&(n as u8))
                .then_some(Resource::EpisodeOfCare(i, n as u8))
        }
        ResourceType::Encounter => {
            let (pid, n) = patient_scoped(id, "enc-")?;
            let i = patient(&pid)?;
            let visits = p.health[i as usize].visits(p.as_of);
            (n >= 1 && visits.iter().any(|v| v.index + 1 == n as usize))
                .then(|| Resource::Encounter(i, (n - 1) as u8))
        }
        ResourceType::Organization => {
            let rest = id.strip_prefix("org-")?;
            let kind = *rest.as_bytes().first()?;
            let index: u32 = rest.get(1..)?.parse().ok()?;
            let orgs = organisations(p, kind);
            (matches!(kind, b'g' | b'm' | b'c' | b'x')
                && orgs.get(index as usize).is_some_and(|o| &*o.id == id))
            .then_some(Resource::Organization(kind, index))
        }
        ResourceType::Practitioner => {
            let rest = id.strip_prefix("prac-")?;
            let kind = *rest.as_bytes().first()?;
            if !matches!(kind, b'g' | b'm' | b's') {
                return None;
            }
            let kind = if kind == b's' { b'c' } else { kind };
            let position = staff(p, kind).iter().position(|s| &*s.id == id)?;
            Some(Resource::Practitioner(kind, position as u32))
        }
    }
}

fn patient_resources(p: &Population, ty: ResourceType, i: u32) -> Vec<Resource> {
    let r = &p.health[i as usize];
    match ty {
        ResourceType::RelatedPerson => (0..p.families[r.family_index as usize].carers.len())
            .map(|c| Resource::RelatedPerson(i, c as u8))
            .collect(),
        ResourceType::EpisodeOfCare => episodes(r)
            .into_iter()
            .map(|e| Resource::EpisodeOfCare(i, e))
            .collect(),
        ResourceType::Encounter => r
            .visits(p.as_of)
            .iter()
            .map(|v| Resource::Encounter(i, v.index as u8))
            .collect(),
        _ => Vec::new(),
    }
}

/// The patient id in a reference value: `Patient/ID`, an absolute URL ending in it, or a bare `ID`.
fn patient_reference(value: &str) -> &str {
    match value.rfind("Patient/") {
        Some(at) => &value[at + "Patient/".len()..],
        None => value,
    }
}

fn search_others(
    p: &Population,
    ty: ResourceType,
    params: &[Param],
    paging: &mut Paging,
) -> Result<Vec<Resource>, Refusal> {
    // Each applied parameter narrows the set: repeated parameters are ANDed.
    let mut sets: Vec<Vec<Resource>> = Vec::new();
    let patient_scoped_type = matches!(
        ty,
        ResourceType::RelatedPerson | ResourceType::EpisodeOfCare | ResourceType::Encounter
    );
    for param in params {
        let applies = match param.name.as_str() {
            "_id" => true,
            "patient" => patient_scoped_type,
            "subject" => ty == ResourceType::Encounter,
            _ => false,
        };
        if !applies {
            continue;
        }
        reject_modifier(param)?;
        let values = or_values(&param.value).map_err(invalid)?;
        let mut set = Vec::new();
        for v in &values {
            if param.name == "_id" {
                set.extend(resolve(p, ty, v));
            } else if let Some(&i) = p.index.health_by_id.get(patient_reference(v)) {
                set.extend(patient_resources(p, ty, i));
            }
        }
        paging
            .applied
            .push((param.name.clone(), param.value.clone()));
        sets.push(set);
    }
    let mut result = match sets.pop() {
        Some(mut first) => {
            first.retain(|r| sets.iter().all(|s| s.contains(r)));
            first
        }
        None => all_resources(p, ty),
    };
    result.sort_unstable();
    result.dedup();
    Ok(result)
}

fn all_resources(p: &Population, ty: ResourceType) -> Vec<Resource> {
    match ty {
        ResourceType::Patient => (0..p.health.len() as u32).map(Resource::Patient).collect(),
        ResourceType::Organization => [b'g', b'm', b'c', b'x']
            .into_iter()
            .flat_map(|k| {
                (0..organisations(p, k).len() as u32).map(move |i| Resource::Organization(k, i))
            })
            .collect(),
        ResourceType::Practitioner => [b'g', b'm', b'c']
            .into_iter()
            .flat_map(|k| (0..staff(p, k).len() as u32).map(move |i| Resource::Practitioner(k, i)))
            .collect(),
        _ => (0..p.health.len() as u32)
            .flat_map(|i| patient_resources(p, ty, i))
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering.

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn reference(ty: &str, id: &str, display: Option<&str>) -> Value {
    match display {
        Some(d) => json!({"reference": format!("{ty}/{id}"), "display": d}),
        None => json!({"reference": format!("{ty}/{id}")}),
    }
}

fn fhir_address(a: &crate::population::Address) -> Value {
    json!({"use": "home", "line": [a.line1], "city": a.town, "postalCode": a.postcode, "country": "GB"})
}

fn org_address(a: &crate::population::Address) -> Value {
    json!({"use": "work", "line": [a.line1], "city": a.town, "postalCode": a.postcode, "country": "GB"})
}

fn telecom(phone: &str, email: &str, usage: &str) -> Value {
    json!([
        {"system": "phone", "value": phone, "use": usage},
        {"system": "email", "value": email, "use": usage},
    ])
}

fn service_coding(kind: ServiceKind) -> Value {
    let (code, display) = match kind {
        ServiceKind::GeneralPractice => ("general-practice", "General practice"),
        ServiceKind::MaternalChildHealth => ("maternal-child-health", "Maternal and child health"),
        ServiceKind::SocialCare => ("social-care", "Social care"),
        ServiceKind::MentalHealth => ("mental-health", "Mental health"),
        ServiceKind::SexualHealth => ("sexual-health", "Sexual health"),
        ServiceKind::SubstanceMisuse => ("substance-misuse", "Substance misuse"),
        ServiceKind::School | ServiceKind::EarlyYears => ("other", "Other"),
    };
    json!([{"coding": [{"system": SERVICE_TYPE_SYSTEM, "code": code, "display": display}]}])
}

fn render(p: &Population, resource: Resource) -> (ResourceType, String, Value) {
    match resource {
        Resource::Patient(i) => {
            let r = &p.health[i as usize];
            (
                ResourceType::Patient,
                r.id.to_string(),
                render_patient(p, r),
            )
        }
        Resource::RelatedPerson(i, c) => {
            let r = &p.health[i as usize];
            let carer = &p.families[r.family_index as usize].carers[c as usize];
            let id = format!("rp-{}-{}", scoped_suffix(r), c + 1);
            let body = json!({
                "resourceType": "RelatedPerson",
                "id": id,
                "active": true,
                "patient": reference("Patient", &r.id, None),
                "relationship": [{"coding": [{
                    "system": ROLE_SYSTEM,
                    "code": carer.relationship.role_code(),
                    "display": carer.relationship.role_display(),
                }]}],
                "name": [{"use": "official", "family": carer.family, "given": [carer.given], "text": carer.full_name()}],
                "telecom": telecom(&carer.phone, &carer.email, "home"),
                "address": [fhir_address(p.address_of(r.family_index, r.previous_address))],
            });
            (ResourceType::RelatedPerson, id, body)
        }
        Resource::Organization(kind, index) => {
            let o = &organisations(p, kind)[index as usize];
            let (code, display) = match kind {
                b'g' => ("gp-practice", "GP practice"),
                b'm' => ("maternal-child-health", "Maternal and child health"),
                b'c' => ("social-care", "Social care"),
                _ => ("other", "Other"),
            };
            let body = json!({
                "resourceType": "Organization",
                "id": o.id,
                "active": true,
                "identifier": [{"system": ODS_SYSTEM, "value": o.code}],
                "type": [{"coding": [{"system": ORG_KIND_SYSTEM, "code": code, "display": display}]}],
                "name": o.name,
                "telecom": telecom(&o.phone, &o.email, "work"),
                "address": [org_address(&o.address)],
            });
            (ResourceType::Organization, o.id.to_string(), body)
        }
        Resource::Practitioner(kind, index) => {
            let s = &staff(p, kind)[index as usize];
            let what = match kind {
                b'g' => "General practitioner",
                b'm' => "Maternal and child health nurse",
                _ => "Social worker",
            };
            let mut name = json!({"use": "official", "family": s.family, "given": [s.given], "text": s.full_name()});
            if let Some(prefix) = s.prefix {
                name["prefix"] = json!([prefix]);
            }
            let body = json!({
                "resourceType": "Practitioner",
                "id": s.id,
                "active": true,
                "name": [name],
                "telecom": telecom(&s.phone, &s.email, "work"),
                "qualification": [{"code": {"text": what}}],
            });
            (ResourceType::Practitioner, s.id.to_string(), body)
        }
        Resource::EpisodeOfCare(i, n) => {
            let r = &p.health[i as usize];
            let id = format!("eoc-{}-{n}", scoped_suffix(r));
            (
                ResourceType::EpisodeOfCare,
                id.clone(),
                render_episode(p, r, n, &id),
            )
        }
        Resource::Encounter(i, v) => {
            let r = &p.health[i as usize];
            let id = format!("enc-{}-{}", scoped_suffix(r), v + 1);
            (
                ResourceType::Encounter,
                id.clone(),
                render_encounter(p, r, v, &id),
            )
        }
    }
}

fn render_patient(p: &Population, r: &HealthRecord) -> Value {
    let mut names = vec![json!({"use": "official", "family": r.family, "given": [r.given]})];
    if let Some(u) = &r.usual_given {
        names.push(json!({"use": "usual", "given": [u]}));
    }
    let practice = &p.orgs.gp_practices[r.gp_practice as usize];
    let mut body = json!({
        "resourceType": "Patient",
        "id": r.id,
        "active": true,
        "name": names,
        "gender": gender_code(r.sex),
        "birthDate": date(r.birth_date),
        "address": [fhir_address(p.address_of(r.family_index, r.previous_address))],
        "generalPractitioner": [reference("Organization", &practice.id, Some(&practice.name))],
    });
    if let Some(n) = &r.nhs_number {
        body["identifier"] = json!([{"system": NHS_NUMBER_SYSTEM, "value": n}]);
    }
    if r.restricted {
        body["meta"] = json!({"security": [{"system": CONFIDENTIALITY_SYSTEM, "code": "R", "display": "restricted"}]});
    }
    body
}

fn render_episode(p: &Population, r: &HealthRecord, n: u8, id: &str) -> Value {
    let patient = reference("Patient", &r.id, None);
    let org = |o: &Organisation| reference("Organization", &o.id, Some(&o.name));
    let person = |s: &Staff| reference("Practitioner", &s.id, Some(&s.full_name()));
    let (status, kind, managing, manager, start, end) = match n {
        1 => {
            let practice = &p.orgs.gp_practices[r.gp_practice as usize];
            let gp = &p.orgs.gps[r.gp as usize];
            (
                "active",
                ServiceKind::GeneralPractice,
                org(practice),
                Some(person(gp)),
                r.registered,
                None,
            )
        }
        2 => {
            let mch = r
                .mch
                .expect("episode 2 exists only with maternal and child health");
            let sixth = r.birth_date + Months::new(72);
            let end = (sixth <= p.as_of).then_some(sixth);
            let status = if end.is_some() { "finished" } else { "active" };
            let start = (r.birth_date + Days::new(10)).min(p.as_of);
            (
                status,
                ServiceKind::MaternalChildHealth,
                org(&p.orgs.mch_centres[mch.centre as usize]),
                Some(person(&p.orgs.mch_nurses[mch.nurse as usize])),
                start,
                end,
            )
        }
        3 => {
            let sc = r
                .social_care
                .expect("episode 3 exists only with social care");
            (
                if sc.end.is_some() {
                    "finished"
                } else {
                    "active"
                },
                ServiceKind::SocialCare,
                org(&p.orgs.social_care_teams[sc.team as usize]),
                Some(person(&p.orgs.social_workers[sc.worker as usize])),
                sc.start,
                sc.end,
            )
        }
        _ => {
            let s = r
                .sensitive
                .expect("episode 4 exists only with a sensitive service");
            (
                "active",
                s.kind,
                org(&p.orgs.other_services[s.service as usize]),
                None,
                s.start,
                None,
            )
        }
    };
    let mut period = json!({"start": date(start)});
    if let Some(end) = end {
        period["end"] = json!(date(end));
    }
    let mut body = json!({
        "resourceType": "EpisodeOfCare",
        "id": id,
        "status": status,
        "type": service_coding(kind),
        "patient": patient,
        "managingOrganization": managing,
        "period": period,
    });
    if let Some(m) = manager {
        body["careManager"] = m;
    }
    body
}

fn render_encounter(p: &Population, r: &HealthRecord, v: u8, id: &str) -> Value {
    let mch = r
        .mch
        .expect("encounters exist only with maternal and child health");
    let visit = r
        .visits(p.as_of)
        .into_iter()
        .find(|x| x.index == v as usize)
        .expect("resolved visits exist");
    let (_, code, display) = KEY_AGE_VISITS[v as usize];
    // The first two visits happen at home; later reviews at the centre.
    let (class, class_display) = if v < 2 {
        ("HH", "home health")
    } else {
        ("AMB", "ambulatory")
    };
    let nurse = &p.orgs.mch_nurses[mch.nurse as usize];
    let centre = &p.orgs.mch_centres[mch.centre as usize];
    json!({
        "resourceType": "Encounter",
        "id": id,
        "status": visit.status.as_str(),
        "class": {"system": ACT_CODE_SYSTEM, "code": class, "display": class_display},
        "type": [{"coding": [{"system": VISIT_SYSTEM, "code": code, "display": display}]}],
        "subject": reference("Patient", &r.id, None),
        "episodeOfCare": [reference("EpisodeOfCare", &format!("eoc-{}-2", scoped_suffix(r)), None)],
        "participant": [{"individual": reference("Practitioner", &nurse.id, Some(&nurse.full_name()))}],
        "serviceProvider": reference("Organization", &centre.id, Some(&centre.name)),
        "period": {"start": date(visit.date)},
    })
}

// ---------------------------------------------------------------------------------------------
// Handlers.

fn link(
    origin: &str,
    ty: ResourceType,
    applied: &[(String, String)],
    count: usize,
    offset: Option<usize>,
) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in applied {
        query.append_pair(k, v);
    }
    query.append_pair("_count", &count.to_string());
    if let Some(o) = offset {
        query.append_pair("_offset", &o.to_string());
    }
    format!("{origin}/fhir/{}?{}", ty.as_str(), query.finish())
}

async fn search(
    State(health): State<Arc<Health>>,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(ty) = ResourceType::parse(&resource_type) else {
        return not_found(&format!("resource type {resource_type} is not supported"));
    };
    let p = &*health.population;
    let params = parse_params(query.as_deref());
    let mut paging = match paging(&params) {
        Ok(pg) => pg,
        Err(e) => return e.into_response(),
    };
    let matches: Vec<Resource> = if ty == ResourceType::Patient {
        let criteria = match patient_criteria(&params, &mut paging) {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        };
        if criteria.is_empty() {
            all_resources(p, ty)
        } else {
            search_patients(p, &criteria)
                .into_iter()
                .map(Resource::Patient)
                .collect()
        }
    } else {
        match search_others(p, ty, &params, &mut paging) {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        }
    };
    let additions = match additions(ty, &params, &mut paging) {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let origin = origin(&headers);
    let total = matches.len();
    let page_end = (paging.offset + paging.count).min(total);
    let page = matches.get(paging.offset..page_end).unwrap_or(&[]);
    // Resources added to the page, in order, each once; and those still to be looked at for `_include`.
    let mut served: Vec<(Arc<Rendered>, &'static str)> = Vec::with_capacity(page.len());
    let mut added: Vec<Resource> = Vec::new();
    let mut pending: Vec<(Arc<Rendered>, bool)> = Vec::new();
    for &res in page {
        let rendered = health.render(res);
        served.push((rendered.clone(), "match"));
        if let Resource::Patient(i) = res {
            for &revinclude in &additions.revincludes {
                for referring in patient_resources(p, revinclude, i) {
                    if !added.contains(&referring) {
                        added.push(referring);
                        pending.push((health.render(referring), true));
                    }
                }
            }
        }
        pending.push((rendered, false));
    }
    let mut extra = Vec::new();
    while let Some((rendered, is_added)) = pending.pop() {
        for &(source, pointer, target, iterate) in &additions.includes {
            if source != rendered.ty || (is_added && !iterate) {
                continue;
            }
            let referred = rendered
                .body
                .pointer(pointer)
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix(target.as_str()))
                .and_then(|r| r.strip_prefix('/'))
                .and_then(|id| resolve(p, target, id));
            if let Some(referred) = referred
                && !added.contains(&referred)
            {
                added.push(referred);
                pending.push((health.render(referred), true));
            }
        }
        if is_added {
            extra.push(rendered);
        }
    }
    served.extend(extra.into_iter().map(|r| (r, "include")));
    let self_offset = (paging.offset > 0).then_some(paging.offset);
    let mut links = vec![json!({
        "relation": "self",
        "url": link(&origin, ty, &paging.applied, paging.count, self_offset),
    })];
    if page_end < total && paging.count > 0 {
        links.push(json!({
            "relation": "next",
            "url": link(&origin, ty, &paging.applied, paging.count, Some(page_end)),
        }));
    }
    let bundle = SearchSet {
        resource_type: "Bundle",
        kind: "searchset",
        total,
        link: links,
        entry: served
            .iter()
            .map(|(r, mode)| Entry {
                full_url: format!("{origin}/fhir/{}/{}", r.ty.as_str(), r.id),
                resource: &r.text,
                search: SearchMode { mode },
            })
            .collect(),
    };
    fhir_text(
        StatusCode::OK,
        serde_json::to_string(&bundle).unwrap_or_default(),
    )
}

async fn read(
    State(health): State<Arc<Health>>,
    Path((resource_type, id)): Path<(String, String)>,
) -> Response {
    let Some(ty) = ResourceType::parse(&resource_type) else {
        return not_found(&format!("resource type {resource_type} is not supported"));
    };
    match resolve(&health.population, ty, &id) {
        Some(res) => fhir_text(StatusCode::OK, health.render(res).text.get().to_owned()),
        None => not_found(&format!("{resource_type}/{id} is not known")),
    }
}
