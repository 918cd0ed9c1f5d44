//! The health connector: HL7 FHIR R4 REST, as profiled in `connectors/PROFILES.md`.
//!
//! Searches are `GET [base]/[Type]?…` answered by `searchset` Bundles whose `next` links are followed verbatim.
//! Id lists go at most 100 to a request, and independent requests run concurrently.

pub mod mapping;
pub mod resources;

use std::collections::{BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use childgraph_schema::{PersonRecord, RecordDetails, SearchCriteria, SourceName};
use futures::future::try_join_all;
use url::Url;

use crate::connector::{Connector, Parts, SourceConfig, SourceStats};
use crate::error::ConnectorError;
use crate::http::{SourceClient, unique_chunks};
use resources::{Bundle, OperationOutcome, Resource};

/// The most ids in one `_id` or `patient` list, and the page size asked for.
const BATCH: usize = 100;
/// The most resources one id-list search follows across pages. Searches by criteria use `max_search_results` instead.
const MAX_DETAIL_RESOURCES: usize = 10_000;
/// A bound on pages per search, so that a source whose `next` links never end cannot hold a request forever.
const MAX_PAGES: usize = 200;

/// Escapes a value for a FHIR search parameter: `\`, `,`, `$` and `|` are each preceded by `\`, so that they are searched for rather than read as syntax.
/// The result still has to be percent-encoded, which building the URL with `query_pairs_mut` does.
pub fn escape_search_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '$' | '|') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// A token search value `system|code`, each part escaped.
pub fn token(system: &str, code: &str) -> String {
    format!(
        "{}|{}",
        escape_search_value(system),
        escape_search_value(code)
    )
}

/// An OR-list of values, each escaped.
pub fn any_of<'a>(values: impl IntoIterator<Item = &'a str>) -> String {
    values
        .into_iter()
        .map(escape_search_value)
        .collect::<Vec<_>>()
        .join(",")
}

/// The health source, over FHIR R4.
#[derive(Debug, Clone)]
pub struct FhirConnector {
    http: SourceClient,
    max_search_results: usize,
}

impl FhirConnector {
    /// A connector for the FHIR server at `config.base_url` (ending in `/fhir`).
    pub fn new(config: SourceConfig) -> Result<Self, ConnectorError> {
        Ok(Self {
            http: SourceClient::new(
                SourceName::Health,
                &config,
                "application/fhir+json",
                operation_outcome_code,
            )?,
            max_search_results: config.max_search_results,
        })
    }

    /// The URL of a search on `resource_type` with these parameters and `_count=100`.
    pub fn search_url(&self, resource_type: &str, params: &[(&str, &str)]) -> Url {
        let mut url = self.http.endpoint(&[resource_type]);
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, value);
            }
            query.append_pair("_count", &BATCH.to_string());
        }
        url
    }

    /// Runs a search and follows its `next` links until there are none or `limit` matches are in hand.
    async fn search_all(
        &self,
        resource_type: &'static str,
        mut url: Url,
        limit: usize,
    ) -> Result<Searched, ConnectorError> {
        let mut found = Vec::new();
        let mut included = Vec::new();
        let mut applied = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .http
                .get_json::<Resource>(url.clone(), resource_type)
                .await?
                .body;
            let Resource::Bundle(bundle) = page else {
                return Err(self
                    .http
                    .malformed("a search answered something other than a bundle"));
            };
            let next = bundle.link("next").map(str::to_owned);
            if applied.is_none() {
                applied = Some(applied_parameters(&url, bundle.link("self")));
            }
            let before = found.len();
            let (matches, includes) = split_entries(bundle);
            found.extend(matches);
            included.extend(includes);
            if found.len() >= limit {
                found.truncate(limit);
                break;
            }
            // A page that adds nothing cannot be followed by one that does in a well-behaved source; stopping also breaks link loops.
            match next {
                Some(next) if found.len() > before => {
                    url = self.http.same_origin_link(&url, &next)?;
                }
                _ => break,
            }
        }
        Ok(Searched {
            matches: found,
            included,
            applied: applied.unwrap_or_default(),
        })
    }

    /// Searches `resource_type` for `param` in an OR-list of ids, at most 100 ids a request, the requests run concurrently.
    /// `include` names the `_include` parameters to send (`EpisodeOfCare:organization`).
    async fn by_ids(
        &self,
        resource_type: &'static str,
        param: &str,
        ids: &[String],
        include: &[&str],
    ) -> Result<Searched, ConnectorError> {
        let extra: Vec<(&str, &str)> = include.iter().map(|i| ("_include", *i)).collect();
        self.by_ids_with(resource_type, param, ids, &extra).await
    }

    /// Like `by_ids`, with these parameters added to every request.
    async fn by_ids_with(
        &self,
        resource_type: &'static str,
        param: &str,
        ids: &[String],
        extra: &[(&str, &str)],
    ) -> Result<Searched, ConnectorError> {
        let requests = unique_chunks(ids, BATCH).into_iter().map(|chunk| {
            let list = any_of(chunk.iter().copied());
            let mut params = vec![(param, list.as_str())];
            params.extend_from_slice(extra);
            let url = self.search_url(resource_type, &params);
            self.search_all(resource_type, url, MAX_DETAIL_RESOURCES)
        });
        let mut all = Searched::default();
        for (i, searched) in try_join_all(requests).await?.into_iter().enumerate() {
            all.matches.extend(searched.matches);
            all.included.extend(searched.included);
            // A parameter counts as applied only if every request applied it.
            if i == 0 {
                all.applied = searched.applied;
            } else {
                all.applied.retain(|p| searched.applied.contains(p));
            }
        }
        Ok(all)
    }

    async fn by_ids_if(
        &self,
        wanted: bool,
        resource_type: &'static str,
        param: &str,
        ids: &[String],
        include: &[&str],
    ) -> Result<Searched, ConnectorError> {
        if wanted && !ids.is_empty() {
            self.by_ids(resource_type, param, ids, include).await
        } else {
            Ok(Searched::default())
        }
    }
}

/// The organisations and practitioners that details refer to and that are not in hand yet.
struct Referenced {
    organisations: BTreeSet<String>,
    practitioners: BTreeSet<String>,
}

impl Referenced {
    /// Keeps `r` if it is one still wanted, once.
    fn keep(&mut self, r: Resource, fetched: &mut mapping::Fetched) {
        match r {
            Resource::Organization(o)
                if o.id
                    .as_ref()
                    .is_some_and(|id| self.organisations.remove(id)) =>
            {
                fetched.organisations.push(o)
            }
            Resource::Practitioner(p)
                if p.id
                    .as_ref()
                    .is_some_and(|id| self.practitioners.remove(id)) =>
            {
                fetched.practitioners.push(p)
            }
            _ => {}
        }
    }
}

/// A search's resources: those that matched, and those the server added for `_include` and `_revinclude`.
#[derive(Debug, Default)]
struct Searched {
    matches: Vec<Resource>,
    included: Vec<Resource>,
    /// The inclusions (`_include`, `_revinclude`) the server says it applied, from the `self` link of the first page:
    /// in FHIR R4 that link is the server's statement of what it searched on. Only they are asked about.
    applied: Vec<(String, String)>,
}

impl Searched {
    fn applied(&self, name: &str, value: &str) -> bool {
        self.applied.iter().any(|(n, v)| n == name && v == value)
    }
}

/// Whether a reference points at one of the patients asked about.
fn refers_to(reference: Option<&resources::Reference>, asked: &HashSet<&str>) -> bool {
    reference
        .and_then(|r| r.id_of("Patient"))
        .is_some_and(|id| asked.contains(id))
}

/// The inclusion parameters (`_include`, `_revinclude`) of a page's `self` link, each decoded.
///
/// Only the link's query is read, as resolving the link against the page would give it (RFC 3986, 5.2.2): the link's
/// own query when it has one, the page's when the link is empty or only a fragment, and none when it has a path but no
/// query. Only the inclusions are decoded: a self link repeats every parameter of the search, ids and all.
fn applied_parameters(page: &Url, self_link: Option<&str>) -> Vec<(String, String)> {
    let Some(link) = self_link else {
        return Vec::new();
    };
    let link = link.split_once('#').map_or(link, |(before, _)| before);
    let query = match link.split_once('?') {
        Some((_, query)) => query,
        None if link.is_empty() => page.query().unwrap_or(""),
        None => "",
    };
    query
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
            // A name written with escapes is decoded to be sure; a plain one is compared as it is.
            matches!(name, "_include" | "_revinclude") || name.contains(['%', '+'])
        })
        .flat_map(|pair| url::form_urlencoded::parse(pair.as_bytes()))
        .filter(|(name, _)| matches!(&**name, "_include" | "_revinclude"))
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect()
}

/// A bundle's resources, as (matches, included). An entry without a search mode is a match; an `outcome` entry is neither.
fn split_entries(bundle: Bundle) -> (Vec<Resource>, Vec<Resource>) {
    let mut matches = Vec::new();
    let mut included = Vec::new();
    for e in bundle.entry {
        let mode = e.search.as_ref().and_then(|s| s.mode.as_deref());
        match (mode, e.resource) {
            (None | Some("match"), Some(r)) => matches.push(r),
            (Some("include"), Some(r)) => included.push(r),
            _ => {}
        }
    }
    (matches, included)
}

/// The issue code of a FHIR error body (`invalid`, `not-found`, `too-costly`…).
fn operation_outcome_code(body: &[u8]) -> Option<String> {
    let outcome: OperationOutcome = serde_json::from_slice(body).ok()?;
    outcome.issue.into_iter().find_map(|i| i.code)
}

fn patients(resources: Vec<Resource>) -> Vec<PersonRecord> {
    resources
        .into_iter()
        .filter_map(|r| match r {
            Resource::Patient(p) => mapping::person_record(&p),
            _ => None,
        })
        .collect()
}

/// Keeps the first record with each id.
fn union_by_id(records: impl IntoIterator<Item = PersonRecord>) -> Vec<PersonRecord> {
    let mut seen = HashSet::new();
    records
        .into_iter()
        .filter(|r| seen.insert(r.id.clone()))
        .collect()
}

#[async_trait]
impl Connector for FhirConnector {
    fn source(&self) -> SourceName {
        SourceName::Health
    }

    fn stats(&self) -> SourceStats {
        self.http.stats()
    }

    /// Sends `Patient?identifier=…nhs-number|N` when the criteria carry an NHS number, `Patient?birthdate=D` when they carry a date of birth (and again for the date with day and month swapped), and `Patient?given=G&family=F` with the first letters of each name when both are given, concurrently.
    async fn search(&self, criteria: &SearchCriteria) -> Result<Vec<PersonRecord>, ConnectorError> {
        let mut blocks = Vec::new();
        if let Some(nhs_number) = &criteria.nhs_number {
            let value = token(
                childgraph_schema::identifiers::NHS_NUMBER_SYSTEM,
                nhs_number.as_str(),
            );
            blocks.push(self.search_url("Patient", &[("identifier", &value)]));
        }
        for date in crate::connector::birth_dates(criteria) {
            let value = date.format("%Y-%m-%d").to_string();
            blocks.push(self.search_url("Patient", &[("birthdate", &value)]));
        }
        // FHIR string parameters match the start of a name, ignoring case and accents.
        if let Some((given, family)) = crate::connector::name_prefixes(criteria) {
            blocks.push(self.search_url(
                "Patient",
                &[
                    ("given", &escape_search_value(&given)),
                    ("family", &escape_search_value(&family)),
                ],
            ));
        }
        let searches = blocks
            .into_iter()
            .map(|url| self.search_all("Patient", url, self.max_search_results));
        let found = try_join_all(searches).await?;
        let mut records = union_by_id(found.into_iter().flat_map(|s| patients(s.matches)));
        records.truncate(self.max_search_results);
        Ok(records)
    }

    /// Sends `Patient?_id=a,b,…` per 100 ids.
    async fn records(&self, ids: &[String]) -> Result<Vec<PersonRecord>, ConnectorError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let asked: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let found = self.by_ids("Patient", "_id", ids, &[]).await?;
        Ok(union_by_id(
            patients(found.matches)
                .into_iter()
                .filter(|r| asked.contains(r.id.as_str())),
        ))
    }

    /// Sends, per 100 ids, one `Patient?_id=…` with a `_revinclude` for each part asked for (`RelatedPerson:patient` for
    /// carers, `EpisodeOfCare:patient` for involvements, `Encounter:patient` for participation) and `_include:iterate` of
    /// the organisations and practitioners those refer to.
    /// A server whose `self` link shows it did not apply a `_revinclude` is asked again the plain way for that part:
    /// `RelatedPerson?patient=…`, `EpisodeOfCare?patient=…&_include=…`, `Encounter?patient=…&_include=…`, concurrently.
    /// Referenced organisations and practitioners still missing are read by `_id`, one round later.
    async fn details(
        &self,
        ids: &[String],
        parts: Parts,
    ) -> Result<HashMap<String, RecordDetails>, ConnectorError> {
        if ids.is_empty() || parts.is_empty() {
            return Ok(mapping::details(ids, &mapping::Fetched::default()));
        }
        let wanted: Vec<(bool, &str, &[&str])> = vec![
            (parts.carers, "RelatedPerson", &[]),
            (
                parts.involvements,
                "EpisodeOfCare",
                &["EpisodeOfCare:organization", "EpisodeOfCare:care-manager"],
            ),
            (
                parts.participation,
                "Encounter",
                &["Encounter:service-provider"],
            ),
        ];
        let mut params: Vec<(&str, String)> = Vec::new();
        for &(on, resource_type, includes) in &wanted {
            if on {
                params.push(("_revinclude", format!("{resource_type}:patient")));
                params.extend(
                    includes
                        .iter()
                        .map(|i| ("_include:iterate", (*i).to_owned())),
                );
            }
        }
        let params: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let together = self.by_ids_with("Patient", "_id", ids, &params).await?;
        let missed = |resource_type: &str| {
            !together.applied("_revinclude", &format!("{resource_type}:patient"))
        };
        let (related, episodes, encounters) = futures::try_join!(
            self.by_ids_if(
                parts.carers && missed("RelatedPerson"),
                "RelatedPerson",
                "patient",
                ids,
                wanted[0].2
            ),
            self.by_ids_if(
                parts.involvements && missed("EpisodeOfCare"),
                "EpisodeOfCare",
                "patient",
                ids,
                wanted[1].2
            ),
            self.by_ids_if(
                parts.participation && missed("Encounter"),
                "Encounter",
                "patient",
                ids,
                wanted[2].2
            ),
        )?;
        let asked: HashSet<&str> = ids.iter().map(String::as_str).collect();
        let mut together = together;
        // What the one search added, then what each plain search found; a resource is kept for a patient asked about only.
        let mut found: Vec<Resource> = std::mem::take(&mut together.included);
        let mut included = Vec::new();
        for searched in [related, episodes, encounters] {
            found.extend(searched.matches);
            included.extend(searched.included);
        }
        let mut fetched = mapping::Fetched::default();
        for r in found {
            match r {
                Resource::RelatedPerson(p) if refers_to(p.patient.as_ref(), &asked) => {
                    fetched.related_people.push(p)
                }
                Resource::EpisodeOfCare(e) if refers_to(e.patient.as_ref(), &asked) => {
                    fetched.episodes.push(e)
                }
                Resource::Encounter(e)
                    if refers_to(e.subject.as_ref(), &asked) && mapping::is_key_age_visit(&e) =>
                {
                    fetched.encounters.push(e)
                }
                other => included.push(other),
            }
        }

        // Sorted sets keep request URLs stable from one call to the next, which makes them easier to cache and to test.
        let mut organisation_ids = BTreeSet::new();
        let mut practitioner_ids = BTreeSet::new();
        for episode in &fetched.episodes {
            organisation_ids.extend(
                episode
                    .managing_organization
                    .as_ref()
                    .and_then(|r| r.id_of("Organization"))
                    .map(str::to_owned),
            );
            practitioner_ids.extend(
                episode
                    .care_manager
                    .as_ref()
                    .and_then(|r| r.id_of("Practitioner"))
                    .map(str::to_owned),
            );
        }
        for encounter in &fetched.encounters {
            organisation_ids.extend(
                encounter
                    .service_provider
                    .as_ref()
                    .and_then(|r| r.id_of("Organization"))
                    .map(str::to_owned),
            );
        }
        // Only referenced resources are kept, whatever else a server included.
        let mut wanted = Referenced {
            organisations: organisation_ids,
            practitioners: practitioner_ids,
        };
        for r in included {
            wanted.keep(r, &mut fetched);
        }
        let organisation_ids: Vec<String> = wanted.organisations.iter().cloned().collect();
        let practitioner_ids: Vec<String> = wanted.practitioners.iter().cloned().collect();
        let (organisations, practitioners) = futures::try_join!(
            self.by_ids_if(true, "Organization", "_id", &organisation_ids, &[]),
            self.by_ids_if(true, "Practitioner", "_id", &practitioner_ids, &[]),
        )?;
        for r in organisations
            .matches
            .into_iter()
            .chain(practitioners.matches)
        {
            wanted.keep(r, &mut fetched);
        }
        Ok(mapping::details(ids, &fetched))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_inclusions_applied_are_read_from_the_self_link_as_resolved_against_the_page() {
        let page =
            Url::parse("http://fhir.test/fhir/Patient?_id=a&_revinclude=Encounter%3Apatient")
                .unwrap();
        let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        };
        // An absolute link, and a relative one, with their values decoded and other parameters left out.
        assert_eq!(
            applied_parameters(
                &page,
                Some(
                    "http://fhir.test/fhir/Patient?_id=a%2Cb&_revinclude=EpisodeOfCare%3Apatient&_include=Patient:organization&_count=50"
                )
            ),
            pairs(&[
                ("_revinclude", "EpisodeOfCare:patient"),
                ("_include", "Patient:organization")
            ])
        );
        assert_eq!(
            applied_parameters(&page, Some("Patient?_revinclude=Encounter:patient#top")),
            pairs(&[("_revinclude", "Encounter:patient")])
        );
        // A name written with escapes is still the name.
        assert_eq!(
            applied_parameters(&page, Some("Patient?%5Frevinclude=Encounter:patient")),
            pairs(&[("_revinclude", "Encounter:patient")])
        );
        // A link that is only a fragment is the page itself; one with a path but no query applied nothing.
        assert_eq!(
            applied_parameters(&page, Some("#x")),
            pairs(&[("_revinclude", "Encounter:patient")])
        );
        assert_eq!(applied_parameters(&page, Some("Patient")), pairs(&[]));
        assert_eq!(applied_parameters(&page, None), pairs(&[]));
        // The same as resolving the link against the page with the url crate and reading its query.
        for link in [
            "Patient?_revinclude=A:b&_include=C:d",
            "#f",
            "",
            "/fhir/Patient",
            "?_include=X%3Ay",
        ] {
            let joined: Vec<(String, String)> = page
                .join(link)
                .unwrap()
                .query_pairs()
                .filter(|(n, _)| n == "_include" || n == "_revinclude")
                .map(|(n, v)| (n.into_owned(), v.into_owned()))
                .collect();
            assert_eq!(applied_parameters(&page, Some(link)), joined, "{link}");
        }
    }

    fn connector() -> FhirConnector {
        FhirConnector::new(SourceConfig::new(
            Url::parse("http://fhir.test/fhir").unwrap(),
        ))
        .unwrap()
    }

    fn hostile() -> Vec<String> {
        let mut strings = crate::hostile_input::hostile_strings();
        strings.extend(["100% #1 ?q=/"].map(String::from));
        strings
    }

    /// Undoes FHIR escaping, the way a server reads a value.
    fn unescape(escaped: &str) -> String {
        let mut out = String::new();
        let mut chars = escaped.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                out.extend(chars.next());
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn escaping_precedes_each_special_character_with_a_backslash() {
        assert_eq!(escape_search_value(r"a\b,c$d|e"), r"a\\b\,c\$d\|e");
        assert_eq!(escape_search_value("O'Brien"), "O'Brien");
        assert_eq!(any_of(["a,b", "c"]), r"a\,b,c");
        assert_eq!(
            token("https://fhir.nhs.uk/Id/nhs-number", "9434765919"),
            "https://fhir.nhs.uk/Id/nhs-number|9434765919"
        );
    }

    #[test]
    fn hostile_values_reach_the_server_intact_as_one_parameter() {
        let c = connector();
        for value in hostile() {
            let url = c.search_url("Patient", &[("family", &escape_search_value(&value))]);
            assert_eq!(url.path(), "/fhir/Patient");
            let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            assert_eq!(pairs.len(), 2, "one value must stay one parameter");
            assert_eq!(pairs[0].0, "family");
            assert_eq!(unescape(&pairs[0].1), value);
            assert_eq!(pairs[1], ("_count".into(), "100".into()));
            let query = url.query().unwrap();
            assert!(
                !query.contains(['\'', ' ', '|', ',', '\\', '#']),
                "unencoded: {query:.80}"
            );
        }
    }

    #[test]
    fn escaped_values_are_not_split_into_alternatives() {
        // A server splits an OR-list at unescaped commas only.
        let list = any_of(["a,b", "c\\", "d"]);
        let mut parts = Vec::new();
        let mut current = String::new();
        let mut chars = list.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    current.push(c);
                    current.extend(chars.next());
                }
                ',' => parts.push(std::mem::take(&mut current)),
                _ => current.push(c),
            }
        }
        parts.push(current);
        let parts: Vec<String> = parts.iter().map(|p| unescape(p)).collect();
        assert_eq!(parts, ["a,b", "c\\", "d"]);
    }

    #[test]
    fn nhs_number_search_is_the_profiled_request() {
        let c = connector();
        let url = c.search_url(
            "Patient",
            &[(
                "identifier",
                &token("https://fhir.nhs.uk/Id/nhs-number", "9434765919"),
            )],
        );
        let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                (
                    "identifier".to_string(),
                    "https://fhir.nhs.uk/Id/nhs-number|9434765919".to_string()
                ),
                ("_count".into(), "100".into())
            ]
        );
    }
}
