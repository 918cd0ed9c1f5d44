//! The early-years connector: the register's bespoke REST API, described by `connectors/openapi/early-years.yaml`.
//!
//! Searches follow the `next` links of `ChildPage`; lookups by id send at most 100 comma-separated ids a request, the requests run concurrently.

pub mod mapping;
pub mod payloads;

use std::collections::{BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use childgraph_schema::{PersonRecord, RecordDetails, SearchCriteria, SourceName};
use futures::future::try_join_all;
use url::Url;

use crate::connector::{Connector, Parts, SourceConfig, SourceStats};
use crate::error::ConnectorError;
use crate::http::{SourceClient, unique_chunks};
use payloads::{Child, ChildList, ChildPage, EnrolmentList, Problem, SettingList};

/// The most ids the API takes in one request.
const BATCH: usize = 100;
/// A bound on pages per search, so that a source whose `next` links never end cannot hold a request forever.
const MAX_PAGES: usize = 200;

/// The early-years source, over its REST API.
#[derive(Debug, Clone)]
pub struct EarlyYearsConnector {
    http: SourceClient,
    max_search_results: usize,
}

impl EarlyYearsConnector {
    /// A connector for the early-years API at `config.base_url` (ending in `/api/v1`).
    pub fn new(config: SourceConfig) -> Result<Self, ConnectorError> {
        Ok(Self {
            http: SourceClient::new(
                SourceName::EarlyYears,
                &config,
                "application/json",
                problem_code,
            )?,
            max_search_results: config.max_search_results,
        })
    }

    /// `children?name=value&…`, each value percent-encoded.
    pub fn search_url(&self, params: &[(&str, &str)]) -> Url {
        let mut url = self.http.endpoint(&["children"]);
        url.query_pairs_mut().extend_pairs(params);
        url
    }

    /// `path?param=a,b,…`. Ids holding a comma cannot be sent in a comma-separated list, and the register issues none, so they are left out.
    pub fn ids_url(&self, segments: &[&str], param: &str, ids: &[&str]) -> Url {
        let list = ids
            .iter()
            .copied()
            .filter(|id| !id.contains(','))
            .collect::<Vec<_>>()
            .join(",");
        let mut url = self.http.endpoint(segments);
        url.query_pairs_mut().append_pair(param, &list);
        url
    }

    async fn search_all(&self, mut url: Url) -> Result<Vec<Child>, ConnectorError> {
        let mut found = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: ChildPage = self.http.get_json(url.clone(), "children").await?.body;
            let n = page.items.len();
            found.extend(page.items);
            if found.len() >= self.max_search_results {
                found.truncate(self.max_search_results);
                break;
            }
            match page.next.filter(|next| !next.is_empty()) {
                Some(next) if n > 0 => url = self.http.same_origin_link(&url, &next)?,
                _ => break,
            }
        }
        Ok(found)
    }

    /// Children by id, at most 100 a request, concurrently.
    async fn children(&self, ids: &[String]) -> Result<Vec<Child>, ConnectorError> {
        let requests = unique_chunks(ids, BATCH)
            .into_iter()
            .map(|chunk| async move {
                let url = self.ids_url(&["children", "batch"], "ids", &chunk);
                Ok::<_, ConnectorError>(
                    self.http
                        .get_json::<ChildList>(url, "children/batch")
                        .await?
                        .body
                        .items,
                )
            });
        Ok(try_join_all(requests)
            .await?
            .into_iter()
            .flatten()
            .collect())
    }
}

/// The problem `type`'s last path segment (`…/problems/invalid-date` gives `invalid-date`), else its HTTP status.
fn problem_code(body: &[u8]) -> Option<String> {
    let problem: Problem = serde_json::from_slice(body).ok()?;
    problem
        .kind
        .as_deref()
        .and_then(|t| t.trim_end_matches('/').rsplit('/').next())
        .filter(|t| !t.is_empty() && *t != "about:blank")
        .map(str::to_owned)
}

fn records_from(children: Vec<Child>) -> Vec<PersonRecord> {
    let mut seen = HashSet::new();
    children
        .iter()
        .filter(|c| seen.insert(c.id.clone()))
        .filter_map(mapping::person_record)
        .collect()
}

#[async_trait]
impl Connector for EarlyYearsConnector {
    fn source(&self) -> SourceName {
        SourceName::EarlyYears
    }

    fn stats(&self) -> SourceStats {
        self.http.stats()
    }

    /// With a date of birth: `children?family_name=F&date_of_birth=D` when there is a family name, `children?date_of_birth=D`
    /// for the date and for the date with day and month swapped, and `children?given_name=G&family_name=F` with the first
    /// letters of each name when both are given; concurrently, each following `next`.
    /// The narrower search finds the name matches even when the wider one is cut off at `max_search_results`.
    /// Without a date of birth the API has nothing to search by, and no request is sent.
    async fn search(&self, criteria: &SearchCriteria) -> Result<Vec<PersonRecord>, ConnectorError> {
        let dates: Vec<String> = crate::connector::birth_dates(criteria)
            .iter()
            .map(|d| d.format("%Y-%m-%d").to_string())
            .collect();
        let Some(date) = dates.first() else {
            return Ok(Vec::new());
        };
        let mut urls = Vec::new();
        if let Some(family_name) = &criteria.family_name {
            urls.push(self.search_url(&[("family_name", family_name), ("date_of_birth", date)]));
        }
        // Every child born on the date, or on the date with day and month swapped.
        for date in &dates {
            urls.push(self.search_url(&[("date_of_birth", date)]));
        }
        // The API matches the start of names, ignoring case.
        if let Some((given, family)) = crate::connector::name_prefixes(criteria) {
            urls.push(self.search_url(&[("given_name", &given), ("family_name", &family)]));
        }
        let found = try_join_all(urls.into_iter().map(|url| self.search_all(url))).await?;
        let mut records = records_from(found.into_iter().flatten().collect());
        records.truncate(self.max_search_results);
        Ok(records)
    }

    /// Sends `children/batch?ids=a,b,…` per 100 ids.
    async fn records(&self, ids: &[String]) -> Result<Vec<PersonRecord>, ConnectorError> {
        let asked: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let children = self.children(ids).await?;
        Ok(records_from(
            children
                .into_iter()
                .filter(|c| asked.contains(c.id.as_str()))
                .collect(),
        ))
    }

    /// For carers, `children/batch?ids=…` (carers come inline); for involvements or participation, `enrolments?child_ids=…` then `settings?ids=…`; per 100 ids, concurrently.
    async fn details(
        &self,
        ids: &[String],
        parts: Parts,
    ) -> Result<HashMap<String, RecordDetails>, ConnectorError> {
        let children = async {
            if parts.carers {
                self.children(ids).await
            } else {
                Ok(Vec::new())
            }
        };
        let enrolments = async {
            if !(parts.involvements || parts.participation) {
                return Ok((Vec::new(), Vec::new()));
            }
            let requests = unique_chunks(ids, BATCH)
                .into_iter()
                .map(|chunk| async move {
                    let url = self.ids_url(&["enrolments"], "child_ids", &chunk);
                    Ok::<_, ConnectorError>(
                        self.http
                            .get_json::<EnrolmentList>(url, "enrolments")
                            .await?
                            .body
                            .items,
                    )
                });
            let enrolments: Vec<_> = try_join_all(requests)
                .await?
                .into_iter()
                .flatten()
                .collect();
            let setting_ids: Vec<String> = enrolments
                .iter()
                .filter_map(|e: &payloads::Enrolment| e.setting_id.clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let requests = unique_chunks(&setting_ids, BATCH)
                .into_iter()
                .map(|chunk| async move {
                    let url = self.ids_url(&["settings"], "ids", &chunk);
                    Ok::<_, ConnectorError>(
                        self.http
                            .get_json::<SettingList>(url, "settings")
                            .await?
                            .body
                            .items,
                    )
                });
            let settings = try_join_all(requests)
                .await?
                .into_iter()
                .flatten()
                .collect();
            Ok::<_, ConnectorError>((enrolments, settings))
        };
        let (children, (enrolments, settings)) = futures::try_join!(children, enrolments)?;
        let fetched = mapping::Fetched {
            children,
            enrolments,
            settings,
        };
        Ok(mapping::details(ids, &fetched, parts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector() -> EarlyYearsConnector {
        EarlyYearsConnector::new(SourceConfig::new(
            Url::parse("http://ey.test/api/v1").unwrap(),
        ))
        .unwrap()
    }

    #[test]
    fn hostile_names_stay_one_parameter_and_decode_intact() {
        let c = connector();
        let mut hostile = crate::hostile_input::hostile_strings();
        // A query-string separator with another parameter, and percent signs and a fragment marker.
        hostile.extend(["a&date_of_birth=2000-01-01", "a+b%20c#d"].map(String::from));
        for name in hostile {
            let url = c.search_url(&[("family_name", &name), ("date_of_birth", "2019-06-14")]);
            assert_eq!(url.path(), "/api/v1/children");
            assert_eq!(url.fragment(), None);
            let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            assert_eq!(
                pairs,
                [
                    ("family_name".to_string(), name.clone()),
                    ("date_of_birth".into(), "2019-06-14".into())
                ]
            );
            assert_eq!(url.query().unwrap().matches('&').count(), 1);
        }
    }

    #[test]
    fn id_lists_are_comma_separated() {
        let c = connector();
        let url = c.ids_url(&["children", "batch"], "ids", &["a", "b,c", "d"]);
        assert_eq!(url.path(), "/api/v1/children/batch");
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(pairs, [("ids".to_string(), "a,d".to_string())]);
    }

    #[test]
    fn problem_codes_come_from_the_type() {
        assert_eq!(
            problem_code(br#"{"type":"https://ey.example/problems/invalid-date","title":"Bad","status":400}"#).as_deref(),
            Some("invalid-date")
        );
        assert_eq!(problem_code(br#"{"title":"Bad","status":400}"#), None);
        assert_eq!(problem_code(b"not json"), None);
    }
}
