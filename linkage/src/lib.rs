//! Identity linkage: which source records belong to the same child, and how well a child matches the search criteria.
//!
//! Records link by the Fellegi-Sunter model of `model`, under safety rules that come first: identifiers decide, and
//! twins (a family name, a date of birth and an address in common, but not a given name) stay apart.
//! Pure functions over plain data; no IO.

use childgraph_schema::{PersonRecord, SearchCriteria, SourceName};
use strsim::jaro_winkler;

pub mod evaluate;
pub mod model;
pub mod names;

use model::Parameters;
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

/// The least match probability at which two records from different sources are taken to be the same child.
pub const LINK_THRESHOLD: f64 = 0.5;

/// The probability that two records are the same child.
///
/// Safety rules come before the model: records from one source are never the same child (a source holds one record per
/// child); a valid identifier both records carry decides (the same NHS number or UPN links, a different one never does);
/// and records whose given names plainly differ are never linked on the other fields alone, which is what keeps twins
/// apart, who share a family name, a date of birth and an address.
pub fn match_probability(a: &PersonRecord, b: &PersonRecord, parameters: &Parameters) -> f64 {
    match_probability_with(a, b, parameters, &model::NoFrequencies)
}

/// As [`match_probability`], with an exact match on a name weighed by how common the name is.
pub fn match_probability_with(
    a: &PersonRecord,
    b: &PersonRecord,
    parameters: &Parameters,
    frequencies: &impl model::NameFrequency,
) -> f64 {
    if a.source == b.source {
        return 0.0;
    }
    let levels = model::compare(a, b);
    if let Some(decided) = identifiers_decide(&levels) {
        return decided;
    }
    if names_rule_out(&levels) {
        return 0.0;
    }
    Parameters::probability(parameters.weight(a, b, &levels, frequencies))
}

/// A valid identifier both records carry decides: the same links, a different one never does.
fn identifiers_decide(levels: &model::Levels) -> Option<f64> {
    let (nhs, upn) = (levels[5], levels[6]);
    [nhs, upn]
        .into_iter()
        .find(|&level| level != 0)
        .map(|level| if level == 1 { 1.0 } else { 0.0 })
}

/// Given names that plainly differ rule a link out, whatever else agrees: twins share everything else.
pub(crate) fn names_rule_out(levels: &model::Levels) -> bool {
    levels[0] == GIVEN_NAMES_DIFFER
}

/// The least probability at which two records are a possible match: not linked, but a shield on one covers the other.
pub const POSSIBLE_THRESHOLD: f64 = 0.1;

/// The probability that two records are the same child, for shielding: a source may hold a duplicate of a child, and
/// names that differ do not rule a pair out. Only a different valid identifier does.
pub fn possible_probability(a: &PersonRecord, b: &PersonRecord, parameters: &Parameters) -> f64 {
    possible_probability_with(a, b, parameters, &model::NoFrequencies)
}

/// As [`possible_probability`], with an exact match on a name weighed by how common the name is.
pub fn possible_probability_with(
    a: &PersonRecord,
    b: &PersonRecord,
    parameters: &Parameters,
    frequencies: &impl model::NameFrequency,
) -> f64 {
    let levels = model::compare(a, b);
    if let Some(decided) = identifiers_decide(&levels) {
        return decided;
    }
    Parameters::probability(parameters.weight(a, b, &levels, frequencies))
}

/// The given-name level "different" in [`model::Comparison::GivenName`]'s levels.
const GIVEN_NAMES_DIFFER: u8 = 6;

/// The model and thresholds records are linked with: the configured defaults, or parameters estimated by
/// `childgraph linkage evaluate` and set in the gateway's config.
#[derive(Debug, Clone, PartialEq)]
pub struct Linker {
    pub parameters: Parameters,
    /// The least match probability at which two records from different sources are one child.
    pub link_threshold: f64,
    /// The least probability at which two records are a possible match: not linked, but a shield on one covers the
    /// other.
    pub possible_threshold: f64,
    /// How common names are, for the term-frequency adjustment; empty (no adjustment) unless configured.
    pub frequencies: std::sync::Arc<evaluate::Frequencies>,
}

impl Default for Linker {
    fn default() -> Self {
        Self {
            parameters: Parameters::default(),
            link_threshold: LINK_THRESHOLD,
            possible_threshold: POSSIBLE_THRESHOLD,
            frequencies: Default::default(),
        }
    }
}

impl Linker {
    /// A linker with these parameters and thresholds; the possible band must lie below the link threshold.
    pub fn new(
        parameters: Parameters,
        link_threshold: f64,
        possible_threshold: f64,
    ) -> Result<Self, String> {
        if !(possible_threshold > 0.0
            && possible_threshold < link_threshold
            && link_threshold < 1.0)
        {
            return Err(format!(
                "the thresholds must satisfy 0 < possible ({possible_threshold}) < link ({link_threshold}) < 1"
            ));
        }
        Ok(Self {
            parameters,
            link_threshold,
            possible_threshold,
            frequencies: Default::default(),
        })
    }

    /// The same linker, weighing exact name matches by these names' frequencies.
    pub fn with_frequencies(mut self, frequencies: evaluate::Frequencies) -> Self {
        self.frequencies = std::sync::Arc::new(frequencies);
        self
    }

    /// The probability that two records are the same child, as [`match_probability`] with this linker's parameters
    /// and name frequencies.
    pub fn probability(&self, a: &PersonRecord, b: &PersonRecord) -> f64 {
        match_probability_with(a, b, &self.parameters, &*self.frequencies)
    }

    /// Whether two children are a possible match: a record of one is a possible match for a record of the other.
    pub fn possible_match(&self, a: &[PersonRecord], b: &[PersonRecord]) -> bool {
        a.iter().any(|x| {
            b.iter().any(|y| {
                possible_probability_with(x, y, &self.parameters, &*self.frequencies)
                    >= self.possible_threshold
            })
        })
    }

    /// Spreads shields from child to child along possible matches: a child any of whose records is a possible match for a
    /// record of a shielded child is shielded too, and so on. `shielded[i]` is the status of `children[i]`.
    pub fn spread_shields(&self, children: &[&[PersonRecord]], shielded: &mut [bool]) {
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..children.len() {
                if !shielded[i] {
                    continue;
                }
                for j in 0..children.len() {
                    if !shielded[j] && self.possible_match(children[i], children[j]) {
                        shielded[j] = true;
                        changed = true;
                    }
                }
            }
        }
    }

    /// Groups records into children, at most one record per source in each.
    ///
    /// Every pair of records from different sources is scored; pairs at or above the link threshold are joined best first,
    /// unless that would put two records of one source in the same child. The result depends only on the records and
    /// their order, not on timing.
    pub fn cluster(&self, records: Vec<PersonRecord>) -> Vec<Cluster> {
        let parameters = &self.parameters;
        let n = records.len();
        // Only records that share a blocking key or an identifier are scored: a search can return hundreds.
        let mut by_key: std::collections::HashMap<String, Vec<usize>> =
            std::collections::HashMap::new();
        for (i, r) in records.iter().enumerate() {
            let mut keys = evaluate::blocking_keys(r);
            keys.extend(r.nhs_number.as_ref().map(|x| format!("nhs:{}", x.as_str())));
            keys.extend(r.upn.as_ref().map(|x| format!("upn:{}", x.as_str())));
            for key in keys {
                by_key.entry(key).or_default().push(i);
            }
        }
        let mut candidates: Vec<(usize, usize)> = by_key
            .values()
            .flat_map(|group| {
                group.iter().enumerate().flat_map(move |(k, &i)| {
                    group[k + 1..].iter().map(move |&j| (i.min(j), i.max(j)))
                })
            })
            .collect();
        candidates.sort_unstable();
        candidates.dedup();
        let mut pairs = Vec::new();
        for (i, j) in candidates {
            let p =
                match_probability_with(&records[i], &records[j], parameters, &*self.frequencies);
            if p >= self.link_threshold {
                pairs.push((p, i, j));
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        // Union-find over record indices, each root knowing the sources of its child.
        let mut parent: Vec<usize> = (0..n).collect();
        let mut sources: Vec<Vec<SourceName>> = records.iter().map(|r| vec![r.source]).collect();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        for (_, i, j) in pairs {
            let (ri, rj) = (root(&mut parent, i), root(&mut parent, j));
            if ri == rj || sources[ri].iter().any(|s| sources[rj].contains(s)) {
                continue;
            }
            let (keep, join) = if ri < rj { (ri, rj) } else { (rj, ri) };
            parent[join] = keep;
            let moved = std::mem::take(&mut sources[join]);
            sources[keep].extend(moved);
        }
        // Children in the order of their first record.
        let mut index_of_root: Vec<Option<usize>> = vec![None; n];
        let mut clusters: Vec<Cluster> = Vec::new();
        for (i, record) in records.into_iter().enumerate() {
            let r = root(&mut parent, i);
            match index_of_root[r] {
                Some(c) => clusters[c].records.push(record),
                None => {
                    index_of_root[r] = Some(clusters.len());
                    clusters.push(Cluster {
                        records: vec![record],
                    });
                }
            }
        }
        clusters
    }

    /// How well a cluster matches the criteria, in [0, 1]; `None` when it does not match them at all.
    ///
    /// A matching identifier is decisive, and so is a different one. Otherwise the family name must be near, the date of
    /// birth the same or with day and month swapped, and the given name, when searched for, must agree: a search never
    /// shows a child its criteria only loosely describe. The score is then the Fellegi-Sunter probability that the best of
    /// the cluster's records is the child described, with the linker's parameters: the criteria are compared with each
    /// record as if they were a record themselves.
    pub fn score(&self, criteria: &SearchCriteria, cluster: &Cluster) -> Option<f64> {
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
        // A child one of whose records carries a different identifier is another child.
        let differs = records.iter().any(|r| {
            matches!((&criteria.nhs_number, &r.nhs_number), (Some(a), Some(b)) if a != b)
                || matches!((&criteria.upn, &r.upn), (Some(a), Some(b)) if a != b)
        });
        if differs {
            return None;
        }
        let family = criteria.family_name.as_deref()?;
        let birth = criteria.date_of_birth?;
        let best_family = records
            .iter()
            .filter_map(|r| r.family_name.as_deref())
            .map(|f| jaro_winkler(&normalise(family), &normalise(f)))
            .fold(0.0, f64::max);
        // A record with the day and month the other way round is the same birth date mistyped: found, ranked lower.
        let birth_near = records.iter().any(|r| {
            r.date_of_birth
                .is_some_and(|d| d == birth || model::day_and_month_swapped(d, birth))
        });
        if best_family < FAMILY_NAME_SIMILARITY || !birth_near {
            return None;
        }
        if let Some(given) = criteria.given_name.as_deref()
            && !records
                .iter()
                .flat_map(|r| &r.given_names)
                .any(|g| given_names_agree(given, g))
        {
            return None;
        }
        let described = criteria_record(criteria);
        let parameters = &self.parameters;
        let best = records
            .iter()
            .map(|r| {
                let levels = model::compare(&described, r);
                Parameters::probability(parameters.weight(
                    &described,
                    r,
                    &levels,
                    &*self.frequencies,
                ))
            })
            .fold(0.0, f64::max);
        Some(best.clamp(0.0, 1.0))
    }
}

/// The criteria as a record, to compare with source records.
fn criteria_record(criteria: &SearchCriteria) -> PersonRecord {
    PersonRecord {
        source: SourceName::Health,
        id: String::new(),
        given_names: criteria.given_name.iter().cloned().collect(),
        family_name: criteria.family_name.clone(),
        date_of_birth: criteria.date_of_birth,
        sex: criteria.sex,
        nhs_number: criteria.nhs_number.clone(),
        upn: criteria.upn.clone(),
        address: criteria
            .postcode
            .as_ref()
            .map(|p| childgraph_schema::Address {
                lines: Vec::new(),
                postcode: Some(p.clone()),
            }),
        restricted: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(records: Vec<PersonRecord>) -> Vec<Cluster> {
        Linker::default().cluster(records)
    }

    fn score(criteria: &SearchCriteria, cluster: &Cluster) -> Option<f64> {
        Linker::default().score(criteria, cluster)
    }

    fn spread_shields(children: &[&[PersonRecord]], shielded: &mut [bool]) {
        Linker::default().spread_shields(children, shielded)
    }
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
    fn a_twin_missing_from_one_source_does_not_take_the_others_record() {
        let isla_h = record(SourceName::Health, "h1", "Isla", "Brennan", "2017-01-22");
        let ava_h = record(SourceName::Health, "h2", "Ava", "Brennan", "2017-01-22");
        let isla_s = record(SourceName::School, "s1", "Isla", "Brenan", "2017-01-22");
        for order in [
            vec![ava_h.clone(), isla_s.clone(), isla_h.clone()],
            vec![isla_s, ava_h, isla_h],
        ] {
            let clusters = cluster(order);
            let ava = clusters
                .iter()
                .find(|c| c.records.iter().any(|r| r.id == "h2"))
                .unwrap();
            assert_eq!(ava.records.len(), 1, "{clusters:?}");
        }
    }

    #[test]
    fn twins_with_names_a_letter_apart_each_keep_their_own_records() {
        // Mason and Jason agree as given names (a misspelling could make one of the other), so only the better
        // agreement can tell them apart: each school record must join the health record of its own name, whatever
        // order the records come in and whether the sister source holds one twin or both.
        let twin = |source, id: &str, given: &str| {
            let mut r = record(source, id, given, "Whitfield", "2018-03-09");
            r.address = Some(childgraph_schema::Address {
                lines: vec!["4 Mill Lane".into()],
                postcode: Some("HF3 2PL".into()),
            });
            r
        };
        let mason_h = twin(SourceName::Health, "h1", "Mason");
        let jason_h = twin(SourceName::Health, "h2", "Jason");
        let mason_s = twin(SourceName::School, "s1", "Mason");
        let jason_s = twin(SourceName::School, "s2", "Jason");
        let sets = [
            vec![jason_h.clone(), mason_h.clone(), mason_s.clone()],
            vec![mason_s.clone(), jason_h.clone(), mason_h.clone()],
            vec![
                jason_s.clone(),
                mason_s.clone(),
                jason_h.clone(),
                mason_h.clone(),
            ],
            vec![
                mason_h.clone(),
                jason_h.clone(),
                mason_s.clone(),
                jason_s.clone(),
            ],
            vec![mason_s, jason_s, mason_h, jason_h],
        ];
        for records in sets {
            for c in cluster(records.clone()) {
                let names: std::collections::HashSet<&str> = c
                    .records
                    .iter()
                    .map(|r| r.given_names[0].as_str())
                    .collect();
                assert_eq!(names.len(), 1, "{records:?} gave {c:?}");
            }
        }
    }

    #[test]
    fn an_exact_match_on_a_common_name_says_less_than_on_a_rare_one() {
        let table = evaluate::Frequencies::from_table([
            (true, "Smith".to_owned(), 0.02),
            (true, "Whitfield".to_owned(), 0.00002),
        ]);
        let linker = Linker::default().with_frequencies(table);
        let pair = |family: &str| {
            let mut a = record(SourceName::Health, "h1", "Sam", family, "2018-03-09");
            let mut b = record(SourceName::School, "s1", "Sam", family, "2018-03-09");
            a.address = None;
            b.address = None;
            (a, b)
        };
        let (common_a, common_b) = pair("Smith");
        let (rare_a, rare_b) = pair("Whitfield");
        let common = linker.probability(&common_a, &common_b);
        let rare = linker.probability(&rare_a, &rare_b);
        assert!(common < rare, "{common} against {rare}");
        // Without a table, the two weigh the same.
        let plain = Linker::default();
        assert_eq!(
            plain.probability(&common_a, &common_b),
            plain.probability(&rare_a, &rare_b)
        );
        // A search is scored the same way.
        let cluster = |a: PersonRecord| Cluster { records: vec![a] };
        let by = |family: &str| SearchCriteria {
            given_name: Some("Sam".into()),
            ..criteria(family, "2018-03-09")
        };
        let common = linker.score(&by("Smith"), &cluster(common_a)).unwrap();
        let rare = linker.score(&by("Whitfield"), &cluster(rare_a)).unwrap();
        assert!(common < rare, "{common} against {rare}");
    }

    #[test]
    fn a_date_with_day_and_month_swapped_links() {
        let a = record(SourceName::Health, "h1", "Noah", "Okafor", "2021-11-03");
        let b = record(SourceName::EarlyYears, "e1", "Noah", "Okafor", "2021-03-11");
        assert_eq!(cluster(vec![a, b]).len(), 1);
    }

    #[test]
    fn a_name_change_with_the_same_identifier_links_and_a_different_identifier_never_does() {
        let nhs = |n: &str| childgraph_schema::NhsNumber::parse(n).expect("valid");
        let mut a = record(SourceName::Health, "h1", "Leo", "Smith", "2022-02-02");
        let mut b = record(SourceName::EarlyYears, "e1", "Leo", "Jones", "2022-02-02");
        a.nhs_number = Some(nhs("9434765919"));
        b.nhs_number = Some(nhs("9434765919"));
        assert_eq!(cluster(vec![a.clone(), b.clone()]).len(), 1);
        // Everything else agreeing, a different valid NHS number is a different child.
        let mut c = a.clone();
        c.source = SourceName::EarlyYears;
        c.id = "e2".into();
        c.nhs_number = Some(nhs("9434765870"));
        assert_eq!(cluster(vec![a, c]).len(), 2);
    }

    #[test]
    fn a_search_finds_a_child_recorded_with_day_and_month_swapped_ranked_lower() {
        let exact = cluster(vec![record(
            SourceName::Health,
            "h1",
            "Noah",
            "Okafor",
            "2021-11-03",
        )]);
        let swapped = cluster(vec![record(
            SourceName::School,
            "s1",
            "Noah",
            "Okafor",
            "2021-03-11",
        )]);
        let c = criteria("Okafor", "2021-11-03");
        let (e, s) = (
            score(&c, &exact[0]).unwrap(),
            score(&c, &swapped[0]).unwrap(),
        );
        assert!(s < e, "{s} < {e}");
        assert_eq!(score(&criteria("Okafor", "2021-11-04"), &swapped[0]), None);
    }

    #[test]
    fn a_shield_covers_a_noisy_duplicate_and_a_twin_but_not_a_sibling() {
        let shielded_child = [record(
            SourceName::Health,
            "h1",
            "Noah",
            "Okafor",
            "2021-11-03",
        )];
        // A duplicate in the same source, family name misspelt and day and month swapped: never linked, still covered.
        let duplicate = [record(
            SourceName::Health,
            "h2",
            "Noah",
            "Okafr",
            "2021-03-11",
        )];
        let twin = [record(
            SourceName::Health,
            "h3",
            "Zara",
            "Okafor",
            "2021-11-03",
        )];
        let sibling = [record(
            SourceName::Health,
            "h4",
            "Ada",
            "Okafor",
            "2018-05-20",
        )];
        let stranger = [record(
            SourceName::Health,
            "h5",
            "Noah",
            "Smith",
            "2015-01-30",
        )];
        let children: Vec<&[PersonRecord]> =
            vec![&shielded_child, &duplicate, &twin, &sibling, &stranger];
        let mut shielded = vec![true, false, false, false, false];
        spread_shields(&children, &mut shielded);
        assert_eq!(shielded, [true, true, true, false, false]);
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
    fn matches_rank_by_how_well_they_agree_with_the_criteria() {
        let one = |given: &str, family: &str, dob: &str| {
            cluster(vec![record(SourceName::Health, "h", given, family, dob)]).remove(0)
        };
        let mut c = criteria("Hartley", "2019-06-04");
        c.given_name = Some("Amelia".into());
        let exact = score(&c, &one("Amelia", "Hartley", "2019-06-04")).expect("exact");
        let nickname = score(&c, &one("Millie", "Hartley", "2019-06-04")).expect("nickname");
        let misspelt = score(&c, &one("Amelia", "Hartly", "2019-06-04")).expect("misspelt");
        let swapped = score(&c, &one("Amelia", "Hartly", "2019-04-06")).expect("swapped");
        assert!(exact > 0.99, "{exact}");
        assert!(
            exact > nickname && nickname > swapped && misspelt > swapped,
            "{exact} {nickname} {misspelt} {swapped}"
        );
        assert!(swapped > 0.5, "{swapped}");
        // A sibling and a twin are not the child searched for, however close.
        assert_eq!(score(&c, &one("Amelia", "Hartley", "2018-06-04")), None);
        assert_eq!(score(&c, &one("Zara", "Hartley", "2019-06-04")), None);
    }

    #[test]
    fn a_different_identifier_rules_a_match_out_and_the_same_one_decides() {
        let nhs = |n: &str| childgraph_schema::NhsNumber::parse(n).expect("valid NHS number");
        let mut r = record(SourceName::Health, "h1", "Amelia", "Hartley", "2019-06-14");
        r.nhs_number = Some(nhs("9434765919"));
        let child = cluster(vec![r]).remove(0);
        let mut c = criteria("Hartley", "2019-06-14");
        assert!(score(&c, &child).is_some());
        c.nhs_number = Some(nhs("9434765870"));
        assert_eq!(score(&c, &child), None);
        c.nhs_number = Some(nhs("9434765919"));
        c.family_name = Some("Smith".into());
        assert_eq!(score(&c, &child), Some(1.0));
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
