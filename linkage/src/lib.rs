//! Identity linkage: which source records belong to the same child, and how well a child matches the search criteria.
//!
//! This is the first, deterministic version: records link on a shared valid identifier, or on the same date of birth with
//! the same given name (allowing nicknames) and a family name within a small edit distance.
//! Twins share a date of birth and a family name but not a given name, so they stay apart.
//! Pure functions over plain data; no IO.

use childgraph_schema::{PersonRecord, SearchCriteria, SourceName};
use strsim::jaro_winkler;

pub mod evaluate;
pub mod model;
mod names;

use names::{are_nicknames, normalise};

/// Family names at least this similar (Jaro-Winkler) count as the same name misspelt.
const FAMILY_NAME_SIMILARITY: f64 = 0.88;
/// Given names at least this similar count as the same name misspelt.
const GIVEN_NAME_SIMILARITY: f64 = 0.92;

/// A set of records, at most one per source, that belong to one child.
#[derive(Debug, Clone)]
pub struct Cluster {
    pub records: Vec<PersonRecord>,
}

impl Cluster {
    /// The record from a given source, if the cluster has one.
    pub fn record(&self, source: SourceName) -> Option<&PersonRecord> {
        self.records.iter().find(|r| r.source == source)
    }
}

/// Whether two given names name the same person: equal, a known nickname of each other, or a small misspelling.
pub fn given_names_agree(a: &str, b: &str) -> bool {
    let (a, b) = (normalise(a), normalise(b));
    if a == b {
        return true;
    }
    if are_nicknames(&a, &b) {
        return true;
    }
    jaro_winkler(&a, &b) >= GIVEN_NAME_SIMILARITY
}

/// Whether two family names are the same name, allowing a small misspelling.
pub fn family_names_agree(a: &str, b: &str) -> bool {
    jaro_winkler(&normalise(a), &normalise(b)) >= FAMILY_NAME_SIMILARITY
}

fn any_given_agrees(a: &PersonRecord, b: &PersonRecord) -> bool {
    a.given_names
        .iter()
        .any(|x| b.given_names.iter().any(|y| given_names_agree(x, y)))
}

/// Whether two records from different sources belong to the same child.
pub fn records_match(a: &PersonRecord, b: &PersonRecord) -> bool {
    if a.source == b.source {
        return false;
    }
    if let (Some(x), Some(y)) = (&a.nhs_number, &b.nhs_number) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (&a.upn, &b.upn) {
        return x == y;
    }
    let same_birth = a.date_of_birth.is_some() && a.date_of_birth == b.date_of_birth;
    let families = match (&a.family_name, &b.family_name) {
        (Some(x), Some(y)) => family_names_agree(x, y),
        _ => false,
    };
    same_birth && families && any_given_agrees(a, b)
}

/// Groups records into children, at most one record per source in each.
/// Records are considered in the order given, so the result is deterministic for the same input.
pub fn cluster(records: Vec<PersonRecord>) -> Vec<Cluster> {
    let mut clusters: Vec<Cluster> = Vec::new();
    for record in records {
        let home = clusters.iter_mut().find(|c| {
            c.record(record.source).is_none() && c.records.iter().any(|r| records_match(r, &record))
        });
        match home {
            Some(c) => c.records.push(record),
            None => clusters.push(Cluster {
                records: vec![record],
            }),
        }
    }
    clusters
}

/// How well a cluster matches the criteria, in [0, 1]; `None` when it does not match them at all.
///
/// A matching identifier is decisive. Otherwise the family name and date of birth must agree, and the given name,
/// sex and postcode raise or lower the score.
pub fn score(criteria: &SearchCriteria, cluster: &Cluster) -> Option<f64> {
    let records = &cluster.records;
    let nhs = criteria
        .nhs_number
        .as_ref()
        .map(|n| records.iter().any(|r| r.nhs_number.as_ref() == Some(n)));
    let upn = criteria
        .upn
        .as_ref()
        .map(|u| records.iter().any(|r| r.upn.as_ref() == Some(u)));
    if nhs == Some(true) || upn == Some(true) {
        return Some(1.0);
    }
    let family = criteria.family_name.as_deref()?;
    let birth = criteria.date_of_birth?;
    let best_family = records
        .iter()
        .filter_map(|r| r.family_name.as_deref())
        .map(|f| jaro_winkler(&normalise(family), &normalise(f)))
        .fold(0.0, f64::max);
    if best_family < FAMILY_NAME_SIMILARITY
        || !records.iter().any(|r| r.date_of_birth == Some(birth))
    {
        return None;
    }
    let mut points = 0.5 + 0.3 * best_family;
    let mut possible = 0.8;
    if let Some(given) = criteria.given_name.as_deref() {
        possible += 0.12;
        if records
            .iter()
            .flat_map(|r| &r.given_names)
            .any(|g| given_names_agree(given, g))
        {
            points += 0.12;
        } else {
            return None;
        }
    }
    if let Some(sex) = criteria.sex {
        possible += 0.04;
        if records.iter().any(|r| r.sex == Some(sex)) {
            points += 0.04;
        }
    }
    if let Some(postcode) = criteria.postcode.as_deref() {
        possible += 0.04;
        if records
            .iter()
            .any(|r| r.address.as_ref().and_then(|a| a.postcode.as_deref()) == Some(postcode))
        {
            points += 0.04;
        }
    }
    Some((points / possible).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn record(source: SourceName, id: &str, given: &str, family: &str, dob: &str) -> PersonRecord {
        PersonRecord {
            source,
            id: id.into(),
            given_names: vec![given.into()],
            family_name: Some(family.into()),
            date_of_birth: NaiveDate::parse_from_str(dob, "%Y-%m-%d").ok(),
            sex: None,
            nhs_number: None,
            upn: None,
            address: None,
            restricted: false,
        }
    }

    fn criteria(family: &str, dob: &str) -> SearchCriteria {
        SearchCriteria {
            family_name: Some(family.into()),
            date_of_birth: NaiveDate::parse_from_str(dob, "%Y-%m-%d").ok(),
            ..Default::default()
        }
    }

    #[test]
    fn misspelt_family_name_links() {
        let a = record(SourceName::Health, "h1", "Amelia", "Hartley", "2019-06-14");
        let b = record(SourceName::School, "s1", "Amelia", "Hartly", "2019-06-14");
        let c = record(
            SourceName::EarlyYears,
            "e1",
            "Millie",
            "Hartley",
            "2019-06-14",
        );
        let clusters = cluster(vec![a, b, c]);
        assert_eq!(clusters.len(), 1);
        assert_eq!(clusters[0].records.len(), 3);
        assert!(score(&criteria("Hartley", "2019-06-14"), &clusters[0]).is_some_and(|s| s > 0.9));
    }

    #[test]
    fn twins_stay_apart() {
        let isla_h = record(SourceName::Health, "h1", "Isla", "Brennan", "2017-01-22");
        let ava_h = record(SourceName::Health, "h2", "Ava", "Brennan", "2017-01-22");
        let isla_s = record(SourceName::School, "s1", "Isla", "Brennan", "2017-01-22");
        let ava_s = record(SourceName::School, "s2", "Ava", "Brennan", "2017-01-22");
        let clusters = cluster(vec![isla_h, ava_h, isla_s, ava_s]);
        assert_eq!(clusters.len(), 2);
        for c in &clusters {
            assert_eq!(c.records.len(), 2);
            assert_eq!(c.records[0].given_names, c.records[1].given_names);
        }
    }

    #[test]
    fn one_record_per_source() {
        let a = record(SourceName::Health, "h1", "Noah", "Okafor", "2021-11-03");
        let b = record(SourceName::Health, "h2", "Noah", "Okafor", "2021-11-03");
        let clusters = cluster(vec![a, b]);
        assert_eq!(clusters.len(), 2);
    }

    #[test]
    fn different_family_name_does_not_match_criteria() {
        let a = record(SourceName::Health, "h1", "Amelia", "Smith", "2019-06-14");
        let clusters = cluster(vec![a]);
        assert_eq!(
            score(&criteria("Hartley", "2019-06-14"), &clusters[0]),
            None
        );
    }

    #[test]
    fn score_stays_in_unit_interval() {
        let a = record(SourceName::Health, "h1", "Amelia", "Hartley", "2019-06-14");
        let clusters = cluster(vec![a]);
        let mut c = criteria("Hartley", "2019-06-14");
        c.given_name = Some("Amelia".into());
        c.postcode = Some("HF1 2AB".into());
        let s = score(&c, &clusters[0]).expect("matches");
        assert!((0.0..=1.0).contains(&s));
    }
}
