//! The early-years simulator: the bespoke register API of `connectors/openapi/early-years.yaml` (children, enrolments, settings), with RFC 9457 problem details for errors.

use std::collections::HashMap;
use std::ops::Bound;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use childgraph_schema::Sex;
use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::population::{Address, EarlyYearsRecord, Population};

/// The path the API is served under.
pub const BASE_PATH: &str = "/api/v1";
const MAX_IDS: usize = 100;
const MAX_TEXT: usize = 200;
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;

/// The early-years routes, under [`BASE_PATH`].
pub fn router(population: Arc<Population>) -> Router {
    Router::new()
        .route("/api/v1/children", get(search))
        .route("/api/v1/children/batch", get(batch))
        .route("/api/v1/children/{id}", get(child))
        .route("/api/v1/enrolments", get(enrolments))
        .route("/api/v1/settings", get(settings))
        .route("/api/v1/settings/{id}", get(setting))
        .with_state(population)
}

/// An RFC 9457 problem details response.
pub(crate) fn problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn bad_request(detail: impl Into<String>) -> Response {
    problem(StatusCode::BAD_REQUEST, &detail.into())
}

/// A refused query: the 400 problem it answers with.
#[derive(Debug)]
struct Refusal(String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        bad_request(self.0)
    }
}

fn query_map(raw: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(raw.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn date(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

fn address(a: &Address) -> Value {
    json!({"line1": a.line1, "line2": null, "town": a.town, "postcode": a.postcode})
}

fn render_child(p: &Population, r: &EarlyYearsRecord) -> Value {
    let family = &p.families[r.family_index as usize];
    let home = p.address_of(r.family_index, r.previous_address);
    let carers: Vec<Value> = family
        .carers
        .iter()
        .map(|c| {
            json!({
                "name": c.full_name(),
                "relationship": c.relationship.as_str(),
                "phone": c.phone,
                "email": c.email,
                "address": address(home),
            })
        })
        .collect();
    let sex = match r.sex {
        Sex::Female => "female",
        Sex::Male => "male",
        Sex::Other => "other",
        Sex::Unknown => "unknown",
    };
    let e = &r.enrolment;
    let updated = e.end.unwrap_or(e.start).min(p.as_of);
    json!({
        "id": r.id,
        "first_name": r.given,
        "middle_names": [],
        "last_name": r.family,
        "preferred_name": r.preferred,
        "date_of_birth": date(r.birth_date),
        "sex": sex,
        "nhs_number": r.nhs_number,
        "address": address(home),
        "carers": carers,
        "updated_at": format!("{}T09:00:00Z", date(updated)),
    })
}

fn render_enrolment(p: &Population, r: &EarlyYearsRecord) -> Value {
    let e = &r.enrolment;
    let worker = &p.orgs.key_workers[e.key_worker as usize];
    let suffix = r.id.strip_prefix("chd-").unwrap_or(&r.id);
    json!({
        "id": format!("enr-{suffix}-1"),
        "child_id": r.id,
        "setting_id": p.orgs.settings[e.setting as usize].id,
        "programme": e.programme.as_str(),
        "hours_per_week": e.hours_per_week,
        "status": e.status.as_str(),
        "start_date": date(e.start),
        "end_date": e.end.map(date),
        "key_worker": {
            "id": worker.id,
            "name": worker.full_name(),
            "role": "Key worker",
            "phone": worker.phone,
            "email": worker.email,
        },
    })
}

fn render_setting(p: &Population, i: usize) -> Value {
    let o = &p.orgs.settings[i];
    json!({
        "id": o.id,
        "name": o.name,
        "type": p.orgs.setting_kinds[i].as_str(),
        "phone": o.phone,
        "email": o.email,
        "address": address(&o.address),
    })
}

fn parse_usize(q: &HashMap<String, String>, name: &str, default: usize) -> Result<usize, Refusal> {
    match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| Refusal(format!("{name} must be a non-negative integer"))),
    }
}

async fn search(
    State(p): State<Arc<Population>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let q = query_map(raw.as_deref());
    let family = q.get("family_name").filter(|v| !v.is_empty());
    let given = q.get("given_name").filter(|v| !v.is_empty());
    let birth = match q.get("date_of_birth").filter(|v| !v.is_empty()) {
        Some(v) => match NaiveDate::parse_from_str(v, "%Y-%m-%d") {
            Ok(d) if v.len() == 10 => Some(d),
            _ => return bad_request("date_of_birth must be a date, YYYY-MM-DD"),
        },
        None => None,
    };
    if family.is_none() && birth.is_none() {
        return bad_request("at least one of family_name and date_of_birth is required");
    }
    if [family, given]
        .iter()
        .flatten()
        .any(|v| v.chars().count() > MAX_TEXT)
    {
        return bad_request("family_name and given_name are at most 200 characters");
    }
    let limit = match parse_usize(&q, "limit", DEFAULT_LIMIT) {
        Ok(l) if (1..=MAX_LIMIT).contains(&l) => l,
        Ok(_) => return bad_request("limit must be between 1 and 200"),
        Err(e) => return e.into_response(),
    };
    let offset = match parse_usize(&q, "offset", 0) {
        Ok(o) => o,
        Err(e) => return e.into_response(),
    };

    let family = family.map(|f| f.to_lowercase());
    let given = given.map(|g| g.to_lowercase());
    let mut found: Vec<u32> = match (&family, birth) {
        (Some(f), _) => p
            .index
            .early_years_family
            .range::<str, _>((Bound::Included(f.as_str()), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(f.as_str()))
            .flat_map(|(_, v)| v.iter().copied())
            .collect(),
        (None, Some(d)) => p
            .index
            .early_years_birth
            .get(&d)
            .cloned()
            .unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    found.sort_unstable();
    found.retain(|&i| {
        let r = &p.early_years[i as usize];
        birth.is_none_or(|d| r.birth_date == d)
            && given
                .as_ref()
                .is_none_or(|g| r.given.to_lowercase().starts_with(g.as_str()))
    });
    let total = found.len();
    let items: Vec<Value> = found
        .iter()
        .skip(offset)
        .take(limit)
        .map(|&i| render_child(&p, &p.early_years[i as usize]))
        .collect();
    let next = (offset + limit < total).then(|| {
        let path = format!("{BASE_PATH}/children");
        crate::paging::next_page_url(&headers, &path, raw.as_deref(), offset, limit)
    });
    axum::Json(json!({
        "items": items,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next": next,
    }))
    .into_response()
}

/// The comma-separated ids of a required parameter, at most 100.
fn id_list(raw: Option<&str>, name: &str) -> Result<Vec<String>, Refusal> {
    let q = query_map(raw);
    let Some(value) = q.get(name) else {
        return Err(Refusal(format!("{name} is required")));
    };
    let ids: Vec<String> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    if ids.len() > MAX_IDS {
        return Err(Refusal(format!("{name} holds at most 100 ids")));
    }
    Ok(ids)
}

fn records<'p>(p: &'p Population, ids: &[String]) -> Vec<&'p EarlyYearsRecord> {
    ids.iter()
        .filter_map(|id| p.index.early_years_by_id.get(id.as_str()))
        .map(|&i| &p.early_years[i as usize])
        .collect()
}

async fn batch(State(p): State<Arc<Population>>, RawQuery(raw): RawQuery) -> Response {
    match id_list(raw.as_deref(), "ids") {
        Ok(ids) => {
            let items: Vec<Value> = records(&p, &ids)
                .into_iter()
                .map(|r| render_child(&p, r))
                .collect();
            axum::Json(json!({ "items": items })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn child(State(p): State<Arc<Population>>, Path(id): Path<String>) -> Response {
    match p.index.early_years_by_id.get(id.as_str()) {
        Some(&i) => axum::Json(render_child(&p, &p.early_years[i as usize])).into_response(),
        None => problem(StatusCode::NOT_FOUND, "no child with this id"),
    }
}

async fn enrolments(State(p): State<Arc<Population>>, RawQuery(raw): RawQuery) -> Response {
    match id_list(raw.as_deref(), "child_ids") {
        Ok(ids) => {
            let items: Vec<Value> = records(&p, &ids)
                .into_iter()
                .map(|r| render_enrolment(&p, r))
                .collect();
            axum::Json(json!({ "items": items })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn setting_index(p: &Population, id: &str) -> Option<usize> {
    let i: usize = id.strip_prefix("set-")?.parse().ok()?;
    p.orgs
        .settings
        .get(i)
        .is_some_and(|o| &*o.id == id)
        .then_some(i)
}

async fn settings(State(p): State<Arc<Population>>, RawQuery(raw): RawQuery) -> Response {
    match id_list(raw.as_deref(), "ids") {
        Ok(ids) => {
            let items: Vec<Value> = ids
                .iter()
                .filter_map(|id| setting_index(&p, id))
                .map(|i| render_setting(&p, i))
                .collect();
            axum::Json(json!({ "items": items })).into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn setting(State(p): State<Arc<Population>>, Path(id): Path<String>) -> Response {
    match setting_index(&p, &id) {
        Some(i) => axum::Json(render_setting(&p, i)).into_response(),
        None => problem(StatusCode::NOT_FOUND, "no setting with this id"),
    }
}
