//! The school connector: 1EdTech OneRoster 1.2 rostering, as profiled in `connectors/PROFILES.md`.
//!
//! Lookups by id are OR-filters of at most `filter_max_predicates` predicates, because strict servers accept no more; longer lists are split across requests run concurrently.
//! Collections page with `limit` and `offset` until `X-Total-Count` is reached.

pub mod mapping;
pub mod objects;

use std::collections::{BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use childgraph_schema::{PersonRecord, RecordDetails, SearchCriteria, SourceName};
use futures::{StreamExt, TryStreamExt};
use url::Url;

use crate::connector::{Connector, Parts, SourceConfig, SourceStats};
use crate::error::ConnectorError;
use crate::http::{SourceClient, unique_chunks};
use objects::{
    Classes, Demographics, DemographicsList, Enrollments, Envelope, Orgs, StatusInfo, User, Users,
};

/// The page size asked for.
const PAGE: usize = 100;
/// The most objects one id-list lookup follows across pages. Searches by criteria use `max_search_results` instead.
const MAX_LOOKUP_OBJECTS: usize = 10_000;
/// How many filtered requests run at once. Splitting id lists makes many small requests, and a bound keeps one query from flooding the source.
const CONCURRENT_REQUESTS: usize = 8;

/// A filter value, single-quoted with any `'` inside doubled (`O''Brien`), the project's rule where OneRoster is silent.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    push_quoted(&mut out, value);
    out
}

/// `field='value'`. Field names are the connector's own constants, never input.
pub fn predicate(field: &str, value: &str) -> String {
    let mut out = String::with_capacity(field.len() + value.len() + 3);
    push_predicate(&mut out, field, value);
    out
}

fn push_quoted(out: &mut String, value: &str) {
    out.push('\'');
    for (i, part) in value.split('\'').enumerate() {
        if i > 0 {
            out.push_str("''");
        }
        out.push_str(part);
    }
    out.push('\'');
}

fn push_predicate(out: &mut String, field: &str, value: &str) {
    out.push_str(field);
    out.push('=');
    push_quoted(out, value);
}

/// OR-filters over `field` for these values, each of at most `max_predicates` predicates.
pub fn or_filters(field: &str, values: &[String], max_predicates: usize) -> Vec<String> {
    or_filters_where(field, values, max_predicates, None)
}

/// OR-filters over `field` for these values, each term also requiring `also` (`field='a' AND role='teacher' OR …`,
/// AND binding tighter than OR), each filter of at most `max_predicates` predicates. A value given twice is asked
/// for once.
pub fn or_filters_where(
    field: &str,
    values: &[String],
    max_predicates: usize,
    also: Option<(&str, &str)>,
) -> Vec<String> {
    let per_term = if also.is_some() { 2 } else { 1 };
    unique_chunks(values, max_predicates / per_term)
        .into_iter()
        .map(|chunk| {
            let mut filter = String::new();
            for (i, value) in chunk.iter().enumerate() {
                if i > 0 {
                    filter.push_str(" OR ");
                }
                push_predicate(&mut filter, field, value);
                if let Some((f, v)) = also {
                    filter.push_str(" AND ");
                    push_predicate(&mut filter, f, v);
                }
            }
            filter
        })
        .collect()
}

/// The school source, over OneRoster 1.2.
#[derive(Debug, Clone)]
pub struct OneRosterConnector {
    http: SourceClient,
    max_search_results: usize,
    filter_max_predicates: usize,
}

impl OneRosterConnector {
    /// A connector for the OneRoster service at `config.base_url` (ending in `/ims/oneroster/rostering/v1p2`),
    /// sending at most `filter_max_predicates` predicates in one filter (the profile's default is 2; 0 counts as 1).
    pub fn new(config: SourceConfig, filter_max_predicates: usize) -> Result<Self, ConnectorError> {
        Ok(Self {
            http: SourceClient::new(
                SourceName::School,
                &config,
                "application/json",
                status_info_code,
            )?,
            max_search_results: config.max_search_results,
            filter_max_predicates: filter_max_predicates.max(1),
        })
    }

    /// The URL of one page of a filtered collection.
    pub fn collection_url(&self, collection: &str, filter: &str, offset: usize) -> Url {
        let mut url = self.http.endpoint(&[collection]);
        url.query_pairs_mut()
            .append_pair("filter", filter)
            .append_pair("limit", &PAGE.to_string())
            .append_pair("offset", &offset.to_string());
        url
    }

    /// Reads a filtered collection page by page until `X-Total-Count` is reached, a short page arrives, or `cap` objects are in hand.
    async fn list<E: Envelope>(
        &self,
        collection: &'static str,
        filter: String,
        cap: usize,
    ) -> Result<Vec<E::Item>, ConnectorError> {
        let mut items = Vec::new();
        let mut offset = 0;
        loop {
            let page = self
                .http
                .get_json::<E>(self.collection_url(collection, &filter, offset), collection)
                .await?;
            let got = page.body.into_items();
            let n = got.len();
            items.extend(got);
            offset += n;
            let done = match page.total_count {
                Some(total) => offset >= total,
                None => n < PAGE,
            };
            if done || n == 0 || items.len() >= cap {
                items.truncate(cap);
                return Ok(items);
            }
        }
    }

    /// Objects of `collection` whose `field` is one of `ids`, split into filters of at most `filter_max_predicates` predicates.
    async fn by_ids<E: Envelope>(
        &self,
        collection: &'static str,
        field: &str,
        ids: &[String],
    ) -> Result<Vec<E::Item>, ConnectorError> {
        self.by_ids_where::<E>(collection, field, ids, None).await
    }

    /// Like `by_ids`, with one more predicate every object must meet.
    async fn by_ids_where<E: Envelope>(
        &self,
        collection: &'static str,
        field: &str,
        ids: &[String],
        also: Option<(&str, &str)>,
    ) -> Result<Vec<E::Item>, ConnectorError> {
        // In a fixed order, so that the same set of ids is the same read whichever order the caller holds them in.
        let ids: Vec<String> = ids
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let filters = or_filters_where(field, &ids, self.filter_max_predicates, also);
        let pages: Vec<Vec<E::Item>> = futures::stream::iter(filters)
            .map(|filter| self.list::<E>(collection, filter, MAX_LOOKUP_OBJECTS))
            .buffer_unordered(CONCURRENT_REQUESTS)
            .try_collect()
            .await?;
        Ok(pages.into_iter().flatten().collect())
    }

    /// Students with these ids, with their demographics, as person records.
    async fn students_with_demographics(
        &self,
        users: Vec<User>,
        mut demographics: HashMap<String, Demographics>,
    ) -> Result<Vec<PersonRecord>, ConnectorError> {
        let missing: Vec<String> = users
            .iter()
            .filter(|u| !demographics.contains_key(&u.sourced_id))
            .map(|u| u.sourced_id.clone())
            .collect();
        if !missing.is_empty() {
            for d in self
                .by_ids::<DemographicsList>("demographics", "sourcedId", &missing)
                .await?
            {
                demographics.insert(d.sourced_id.clone(), d);
            }
        }
        let mut seen = HashSet::new();
        Ok(users
            .iter()
            .filter(|u| mapping::is_student(u) && seen.insert(u.sourced_id.clone()))
            .filter_map(|u| mapping::person_record(u, demographics.get(&u.sourced_id)))
            .collect())
    }
}

/// The codeMinor value of a OneRoster error (`invalid_filter_field`, `unknownobject`…).
fn status_info_code(body: &[u8]) -> Option<String> {
    let info: StatusInfo = serde_json::from_slice(body).ok()?;
    info.code_minor?.fields.into_iter().find_map(|f| f.value)
}

#[async_trait]
impl Connector for OneRosterConnector {
    fn source(&self) -> SourceName {
        SourceName::School
    }

    fn stats(&self) -> SourceStats {
        self.http.stats()
    }

    /// Sends `users?filter=identifier='UPN'` when the criteria carry a UPN, `demographics?filter=birthDate='D'` when they carry a date of birth, and `users?filter=givenName~'G' AND familyName~'F'` with the first letters of each name when both are given, concurrently;
    /// then `users?filter=sourcedId='a' OR …` for the demographics found, and `demographics?filter=sourcedId='a' OR …` for UPN matches without them.
    async fn search(&self, criteria: &SearchCriteria) -> Result<Vec<PersonRecord>, ConnectorError> {
        let cap = self.max_search_results;
        let by_upn = async {
            match &criteria.upn {
                Some(upn) => {
                    self.list::<Users>("users", predicate("identifier", upn.as_str()), cap)
                        .await
                }
                None => Ok(Vec::new()),
            }
        };
        let by_birth = async {
            // The date, and the date with day and month swapped, in one filter.
            let dates: Vec<String> = crate::connector::birth_dates(criteria)
                .iter()
                .map(|d| d.format("%Y-%m-%d").to_string())
                .collect();
            if dates.is_empty() {
                return Ok(Vec::new());
            }
            let filter = dates
                .iter()
                .map(|d| predicate("birthDate", d))
                .collect::<Vec<_>>()
                .join(" OR ");
            self.list::<DemographicsList>("demographics", filter, cap)
                .await
        };
        let by_name = async {
            // OneRoster's `~` finds names containing a value; only those starting with it are kept, and only students.
            let Some((given, family)) = crate::connector::name_prefixes(criteria) else {
                return Ok(Vec::new());
            };
            let filter = format!(
                "givenName~{} AND familyName~{}",
                quote(&given),
                quote(&family)
            );
            let users = self.list::<Users>("users", filter, cap).await?;
            Ok(users
                .into_iter()
                .filter(|u| {
                    mapping::is_student(u)
                        && u.given_name
                            .as_deref()
                            .is_some_and(|g| crate::connector::starts_with_ignoring_case(g, &given))
                        && u.family_name.as_deref().is_some_and(|f| {
                            crate::connector::starts_with_ignoring_case(f, &family)
                        })
                })
                .collect::<Vec<_>>())
        };
        let (mut users, born, named) = futures::try_join!(by_upn, by_birth, by_name)?;
        users.extend(named);
        let known: HashSet<String> = users.iter().map(|u| u.sourced_id.clone()).collect();
        let to_fetch: Vec<String> = born
            .iter()
            .map(|d| d.sourced_id.clone())
            .filter(|id| !known.contains(id))
            .collect();
        let demographics: HashMap<String, Demographics> = born
            .into_iter()
            .map(|d| (d.sourced_id.clone(), d))
            .collect();
        if !to_fetch.is_empty() {
            users.extend(
                self.by_ids::<Users>("users", "sourcedId", &to_fetch)
                    .await?,
            );
        }
        let mut records = self.students_with_demographics(users, demographics).await?;
        records.truncate(cap);
        Ok(records)
    }

    /// Sends `users?filter=sourcedId='a' OR …` and `demographics?filter=sourcedId='a' OR …`, concurrently.
    async fn records(&self, ids: &[String]) -> Result<Vec<PersonRecord>, ConnectorError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (users, demographics) = futures::try_join!(
            self.by_ids::<Users>("users", "sourcedId", ids),
            self.by_ids::<DemographicsList>("demographics", "sourcedId", ids),
        )?;
        let asked: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let users: Vec<User> = users
            .into_iter()
            .filter(|u| asked.contains(u.sourced_id.as_str()))
            .collect();
        let demographics = demographics
            .into_iter()
            .map(|d| (d.sourced_id.clone(), d))
            .collect();
        self.students_with_demographics(users, demographics).await
    }

    /// For carers: `users?filter=sourcedId=…` for the students (the same read as [`Self::records`], so answered again
    /// from the request's own reads), for their agents.
    /// For involvements or participation: `enrollments?filter=user.sourcedId=…`, then `classes?filter=sourcedId=…` and
    /// `orgs?filter=sourcedId=…`; for involvements also `enrollments?filter=class.sourcedId=… AND role='teacher'` for the
    /// class teachers.
    /// Then one `users?filter=sourcedId=…` for the agents and the teachers together.
    /// The carer and enrolment chains run concurrently, as do the requests within each step.
    async fn details(
        &self,
        ids: &[String],
        parts: Parts,
    ) -> Result<HashMap<String, RecordDetails>, ConnectorError> {
        let today = chrono::Utc::now().date_naive();
        if ids.is_empty() || parts.is_empty() {
            return Ok(mapping::details(ids, &mapping::Fetched::default(), today));
        }
        let students = async {
            if parts.carers {
                self.by_ids::<Users>("users", "sourcedId", ids).await
            } else {
                Ok(Vec::new())
            }
        };
        let enrolments = async {
            let mut out = mapping::Fetched::default();
            if !(parts.involvements || parts.participation) {
                return Ok(out);
            }
            out.enrollments = self
                .by_ids::<Enrollments>("enrollments", "user.sourcedId", ids)
                .await?;
            let mut class_ids = BTreeSet::new();
            let mut school_ids = BTreeSet::new();
            for e in out
                .enrollments
                .iter()
                .filter(|e| mapping::is_student_enrollment(e))
            {
                class_ids.extend(e.class.as_ref().map(|c| c.sourced_id.clone()));
                school_ids.extend(e.school.as_ref().map(|s| s.sourced_id.clone()));
            }
            let class_ids: Vec<String> = class_ids.into_iter().collect();
            let school_ids: Vec<String> = school_ids.into_iter().collect();
            let teacher_enrollments = async {
                if parts.involvements && !class_ids.is_empty() {
                    // Only the teachers' enrolments: a class's pupils would be other children's data, and 30 times the bytes.
                    self.by_ids_where::<Enrollments>(
                        "enrollments",
                        "class.sourcedId",
                        &class_ids,
                        Some(("role", "teacher")),
                    )
                    .await
                } else {
                    Ok(Vec::new())
                }
            };
            let (classes, orgs, teacher_enrollments) = futures::try_join!(
                self.by_ids::<Classes>("classes", "sourcedId", &class_ids),
                self.by_ids::<Orgs>("orgs", "sourcedId", &school_ids),
                teacher_enrollments,
            )?;
            out.classes = classes;
            out.orgs = orgs;
            out.teacher_enrollments = teacher_enrollments;
            Ok::<_, ConnectorError>(out)
        };
        let (students, enrolled) = futures::try_join!(students, enrolments)?;
        let agent_ids: BTreeSet<String> = students
            .iter()
            .flat_map(|s| s.agents.iter().map(|a| a.sourced_id.clone()))
            .collect();
        let teacher_ids: BTreeSet<String> = mapping::class_teachers(&enrolled.teacher_enrollments)
            .into_values()
            .collect();
        let people: Vec<String> = agent_ids.union(&teacher_ids).cloned().collect();
        let (mut agents, mut teachers) = (Vec::new(), Vec::new());
        for user in self.by_ids::<Users>("users", "sourcedId", &people).await? {
            if teacher_ids.contains(&user.sourced_id) {
                teachers.push(user.clone());
            }
            if agent_ids.contains(&user.sourced_id) {
                agents.push(user);
            }
        }
        let fetched = mapping::Fetched {
            students,
            agents,
            teachers,
            ..enrolled
        };
        Ok(mapping::details(ids, &fetched, today))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(max: usize) -> OneRosterConnector {
        let base = Url::parse("http://school.test/ims/oneroster/rostering/v1p2").unwrap();
        OneRosterConnector::new(SourceConfig::new(base), max).unwrap()
    }

    /// Parses a filter the way a OneRoster server does: predicates `field='value'` joined by ` OR `, a doubled quote inside a value standing for one.
    fn parse_or_filter(filter: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut rest = filter;
        loop {
            let eq = rest.find("='").expect("a predicate");
            let field = rest[..eq].to_string();
            let mut value = String::new();
            let mut chars = rest[eq + 2..].char_indices();
            let end;
            loop {
                let (i, c) = chars.next().expect("a closing quote");
                if c == '\'' {
                    if rest[eq + 2 + i + 1..].starts_with('\'') {
                        value.push('\'');
                        chars.next();
                        continue;
                    }
                    end = eq + 2 + i + 1;
                    break;
                }
                value.push(c);
            }
            out.push((field, value));
            rest = &rest[end..];
            match rest.strip_prefix(" OR ") {
                Some(r) => rest = r,
                None => {
                    assert!(rest.is_empty(), "trailing text: {rest:.40}");
                    return out;
                }
            }
        }
    }

    fn hostile() -> Vec<String> {
        let mut strings = crate::hostile_input::hostile_strings();
        strings.extend(["''", "a' AND sourcedId='b"].map(String::from));
        strings
    }

    #[test]
    fn quotes_are_doubled() {
        assert_eq!(predicate("familyName", "O'Brien"), "familyName='O''Brien'");
        assert_eq!(quote("' OR '1'='1"), "''' OR ''1''=''1'");
    }

    #[test]
    fn hostile_values_stay_one_predicate_in_one_parameter() {
        let c = connector(2);
        for value in hostile() {
            let url = c.collection_url("users", &predicate("familyName", &value), 0);
            let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            assert_eq!(pairs.len(), 3);
            assert_eq!(pairs[0].0, "filter");
            assert_eq!(
                parse_or_filter(&pairs[0].1),
                [("familyName".to_string(), value.clone())]
            );
            assert_eq!(pairs[1], ("limit".into(), "100".into()));
            assert_eq!(pairs[2], ("offset".into(), "0".into()));
            // Only the two separators between parameters are left unencoded.
            let query = url.query().unwrap();
            assert_eq!(query.matches('&').count(), 2);
            assert!(!query.contains(['\'', ' ']));
        }
    }

    #[test]
    fn id_lists_are_split_by_the_predicate_limit() {
        let ids: Vec<String> = ["a", "b", "c", "O'Brien", "e"].map(String::from).to_vec();
        let filters = or_filters("sourcedId", &ids, 2);
        assert_eq!(
            filters,
            [
                "sourcedId='a' OR sourcedId='b'",
                "sourcedId='c' OR sourcedId='O''Brien'",
                "sourcedId='e'"
            ]
        );
        for f in &filters {
            assert!(parse_or_filter(f).len() <= 2);
        }
        assert_eq!(or_filters("sourcedId", &ids, 0).len(), 5);
        assert_eq!(or_filters("sourcedId", &ids, 10).len(), 1);
        assert!(or_filters("sourcedId", &[], 2).is_empty());
    }

    #[test]
    fn a_value_given_twice_is_asked_for_once_and_every_term_carries_the_extra_predicate() {
        let ids: Vec<String> = ["c1", "c2", "c1"].map(String::from).to_vec();
        let teacher = Some(("role", "teacher"));
        assert_eq!(
            or_filters_where("class.sourcedId", &ids, 4, teacher),
            ["class.sourcedId='c1' AND role='teacher' OR class.sourcedId='c2' AND role='teacher'"]
        );
        // Two predicates a term: a limit of 2 leaves one term a filter.
        assert_eq!(
            or_filters_where("class.sourcedId", &ids, 2, teacher),
            [
                "class.sourcedId='c1' AND role='teacher'",
                "class.sourcedId='c2' AND role='teacher'"
            ]
        );
    }
}
