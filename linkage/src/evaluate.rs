//! Linking one list of records to another, as `childgraph linkage evaluate` does: blocking, estimating the model's
//! parameters from the data, scoring, a one-to-one assignment, and the quality of the result against a known truth.
//!
//! Pure: the caller reads the files and keeps the time.

use std::collections::{HashMap, HashSet};

use childgraph_schema::PersonRecord;
use chrono::Datelike;
use rand::{Rng, SeedableRng};

use crate::model::{Comparison, Levels, NameFrequency, Parameters, compare};
use crate::names::normalise;

/// How many random pairs the u probabilities are estimated from: nearly all of them are different children.
const U_SAMPLE: usize = 200_000;
/// Below this many random pairs with both sides present, a comparison's u is not estimated: the starting values stand.
const MIN_PAIRS_FOR_U: f64 = 1000.0;
/// Rounds of expectation-maximisation for the m probabilities.
const EM_ROUNDS: usize = 12;
/// Added to every count, so that a level never seen still has a small probability.
const SMOOTHING: f64 = 1.0;
/// The starting m probabilities count as this many true pairs seen. With few true pairs among the candidates (two
/// sources that share few children), the data alone would let the model drift towards siblings, who agree on family
/// name, address and often year of birth; with many, the data outweighs the start.
const M_PRIOR_PAIRS: f64 = 1000.0;
/// Below this many pairs that the strict rule calls the same child, m is not estimated: the starting values stand.
const MIN_PAIRS_FOR_M: usize = 500;
/// The share of true pairs the strict rule that sets the prior is taken to find.
const STRICT_RULE_RECALL: f64 = 0.8;

/// The share of records carrying each name, over both lists, or as a table the gateway is configured with.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Frequencies {
    family: HashMap<String, f64>,
    given: HashMap<String, f64>,
}

impl Frequencies {
    /// A table of shares: `(family, name, share)` where `family` says which kind of name. Names are normalised as
    /// records' are compared.
    pub fn from_table(rows: impl IntoIterator<Item = (bool, String, f64)>) -> Self {
        let mut table = Self::default();
        for (family, name, share) in rows {
            let names = if family {
                &mut table.family
            } else {
                &mut table.given
            };
            names.insert(normalise(&name), share);
        }
        table
    }

    /// The table's rows, family names first, each kind by name: `(family, name, share)`.
    pub fn rows(&self) -> Vec<(bool, &str, f64)> {
        let mut rows: Vec<(bool, &str, f64)> = self
            .family
            .iter()
            .map(|(n, &s)| (true, n.as_str(), s))
            .chain(self.given.iter().map(|(n, &s)| (false, n.as_str(), s)))
            .collect();
        rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
        rows
    }

    /// The same, keeping only names at least `min_share` of records carry: a common name's share adjusts scores,
    /// and a rare name, which could point to one child, is left out of a table that is written down.
    pub fn common(&self, min_share: f64) -> Self {
        let keep = |names: &HashMap<String, f64>| -> HashMap<String, f64> {
            names
                .iter()
                .filter(|(_, s)| **s >= min_share)
                .map(|(n, s)| (n.clone(), *s))
                .collect()
        };
        Self {
            family: keep(&self.family),
            given: keep(&self.given),
        }
    }

    pub fn of<'a>(records: impl IntoIterator<Item = &'a PersonRecord>) -> Self {
        let mut family: HashMap<String, f64> = HashMap::new();
        let mut given: HashMap<String, f64> = HashMap::new();
        let mut total = 0.0;
        for r in records {
            total += 1.0;
            if let Some(f) = &r.family_name {
                *family.entry(normalise(f)).or_default() += 1.0;
            }
            for g in &r.given_names {
                *given.entry(normalise(g)).or_default() += 1.0;
            }
        }
        if total > 0.0 {
            family.values_mut().for_each(|v| *v /= total);
            given.values_mut().for_each(|v| *v /= total);
        }
        Self { family, given }
    }
}

impl NameFrequency for Frequencies {
    fn family(&self, name: &str) -> Option<f64> {
        self.family.get(name).copied()
    }
    fn given(&self, name: &str) -> Option<f64> {
        self.given.get(name).copied()
    }
}

/// The blocking keys of a record: two records are compared if they share at least one.
///
/// - the date of birth with day and month in order, so an exact date and a day-and-month swap share it;
/// - the first three letters of the family name with the year of birth, for a mistyped date;
/// - the first three letters of the given and of the family name, for a mistyped year.
pub fn blocking_keys(r: &PersonRecord) -> Vec<String> {
    let mut keys = Vec::with_capacity(3);
    let family = r.family_name.as_deref().map(|f| prefix(&normalise(f), 3));
    if let Some(d) = r.date_of_birth {
        let (lo, hi) = if d.month() <= d.day() {
            (d.month(), d.day())
        } else {
            (d.day(), d.month())
        };
        keys.push(format!("d:{}-{lo}-{hi}", d.year()));
        if let Some(f) = &family {
            keys.push(format!("f:{f}:{}", d.year()));
        }
    }
    if let (Some(f), Some(g)) = (&family, r.given_names.first()) {
        keys.push(format!("n:{}:{f}", prefix(&normalise(g), 3)));
    }
    keys
}

fn prefix(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// The pairs (left index, right index) that share a blocking key, each once.
pub fn candidate_pairs(left: &[PersonRecord], right: &[PersonRecord]) -> Vec<(u32, u32)> {
    let mut by_key: HashMap<String, Vec<u32>> = HashMap::new();
    for (j, r) in right.iter().enumerate() {
        for key in blocking_keys(r) {
            by_key.entry(key).or_default().push(j as u32);
        }
    }
    let mut pairs = Vec::new();
    let mut seen = HashSet::new();
    for (i, l) in left.iter().enumerate() {
        seen.clear();
        for key in blocking_keys(l) {
            for &j in by_key.get(&key).into_iter().flatten() {
                if seen.insert(j) {
                    pairs.push((i as u32, j));
                }
            }
        }
    }
    pairs
}

/// Estimates the parameters from the data: u from random pairs of records, then m and the prior by
/// expectation-maximisation over the candidate pairs, starting from `start`.
pub fn estimate(
    left: &[PersonRecord],
    right: &[PersonRecord],
    candidates: &[(u32, u32, Levels)],
    start: &Parameters,
    seed: u64,
) -> Parameters {
    let mut params = start.clone();
    if left.is_empty() || right.is_empty() {
        return params;
    }
    // u: how often each level occurs between random records, nearly all of them different children.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut counts = zeroed(start);
    for _ in 0..U_SAMPLE {
        let a = &left[rng.gen_range(0..left.len())];
        let b = &right[rng.gen_range(0..right.len())];
        for (c, &level) in compare(a, b).iter().enumerate() {
            counts[c][usize::from(level)] += 1.0;
        }
    }
    // A comparison seldom possible between the two lists (one of them has no postcodes, say) keeps its starting u.
    for (c, u) in normalised(&counts).into_iter().enumerate() {
        if counts[c][1..].iter().sum::<f64>() >= MIN_PAIRS_FOR_U {
            params.u[c] = u;
        }
    }

    // The prior: the probability that two records drawn at random are the same child, as u is the probability of a
    // level between two records drawn at random. It is the number of pairs that a strict rule calls the same child
    // (given name, family name and date of birth all agreeing, allowing a nickname, a near spelling and a
    // day-and-month swap), taking the rule to find four in five of them, over all pairs. Not the share among the
    // candidates: blocking gathers pairs that agree on names, so that share would count a namesake born the same year
    // as the same child. Held fixed: estimated with m, it drifts towards siblings.
    let strict = candidates
        .iter()
        .filter(|(_, _, l)| matches!(l[0], 1..=3) && matches!(l[1], 1 | 2) && matches!(l[2], 1 | 2))
        .count();
    let all_pairs = left.len() as f64 * right.len() as f64;
    params.prior = (strict as f64 / STRICT_RULE_RECALL / all_pairs).clamp(1e-9, 0.5);

    // m: expectation-maximisation with u and the prior fixed, when there are enough likely matches to learn from.
    let frequencies = crate::model::NoFrequencies;
    let rounds = if strict >= MIN_PAIRS_FOR_M {
        EM_ROUNDS
    } else {
        0
    };
    for _ in 0..rounds {
        let mut counts: Vec<Vec<f64>> = start
            .m
            .iter()
            .map(|levels| levels.iter().map(|m| m * M_PRIOR_PAIRS).collect())
            .collect();
        for (i, j, levels) in candidates {
            let w = params.weight(
                &left[*i as usize],
                &right[*j as usize],
                levels,
                &frequencies,
            );
            let p = Parameters::probability(w);
            for (c, &level) in levels.iter().enumerate() {
                counts[c][usize::from(level)] += p;
            }
        }
        params.m = normalised(&counts);
    }
    params
}

fn zeroed(shape: &Parameters) -> Vec<Vec<f64>> {
    shape
        .m
        .iter()
        .map(|levels| vec![0.0; levels.len()])
        .collect()
}

/// Each comparison's counts as probabilities over its non-missing levels, smoothed; level 0 stays 1.
fn normalised(counts: &[Vec<f64>]) -> Vec<Vec<f64>> {
    counts
        .iter()
        .map(|levels| {
            let total: f64 = levels[1..].iter().map(|n| n + SMOOTHING).sum();
            std::iter::once(1.0)
                .chain(levels[1..].iter().map(|n| (n + SMOOTHING) / total))
                .collect()
        })
        .collect()
}

/// Links left records to right ones, each at most once: the candidate pairs at or above `threshold`, best first.
/// Returns (left index, right index, probability).
pub fn link(
    left: &[PersonRecord],
    right: &[PersonRecord],
    candidates: &[(u32, u32, Levels)],
    params: &Parameters,
    frequencies: &impl NameFrequency,
    threshold: f64,
) -> Vec<(u32, u32, f64)> {
    let mut scored: Vec<(u32, u32, f64)> = candidates
        .iter()
        .filter_map(|(i, j, levels)| {
            // The gateway's safety rule: given names that plainly differ never link on the other fields alone.
            if crate::names_rule_out(levels) {
                return None;
            }
            let w = params.weight(&left[*i as usize], &right[*j as usize], levels, frequencies);
            let p = Parameters::probability(w);
            (p >= threshold).then_some((*i, *j, p))
        })
        .collect();
    scored.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)).then(a.1.cmp(&b.1)));
    let mut used_left = HashSet::new();
    let mut used_right = HashSet::new();
    scored
        .into_iter()
        .filter(|(i, j, _)| {
            if used_left.contains(i) || used_right.contains(j) {
                return false;
            }
            used_left.insert(*i);
            used_right.insert(*j);
            true
        })
        .collect()
}

/// The quality of a linkage against the truth.
#[derive(Debug, Clone, PartialEq)]
pub struct Quality {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub linked: usize,
    pub true_links: usize,
    pub correct: usize,
}

/// Compares linked pairs of ids with the true pairs.
pub fn quality(linked: &[(String, String)], truth: &HashSet<(String, String)>) -> Quality {
    let correct = linked.iter().filter(|p| truth.contains(*p)).count();
    let precision = if linked.is_empty() {
        1.0
    } else {
        correct as f64 / linked.len() as f64
    };
    let recall = if truth.is_empty() {
        1.0
    } else {
        correct as f64 / truth.len() as f64
    };
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Quality {
        precision,
        recall,
        f1,
        linked: linked.len(),
        true_links: truth.len(),
        correct,
    }
}

/// Everything one evaluation did.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub quality: Quality,
    /// The linked pairs of ids, with their match probability.
    pub links: Vec<(String, String, f64)>,
    pub pairs_compared: usize,
    pub parameters: Parameters,
}

/// Blocks, estimates the parameters, links and measures: the whole of `linkage evaluate` but the files.
pub fn evaluate(
    left: &[PersonRecord],
    right: &[PersonRecord],
    truth: &HashSet<(String, String)>,
    threshold: f64,
    seed: u64,
) -> Evaluation {
    evaluate_with(left, right, truth, threshold, seed, None)
}

/// As [`evaluate`]; with a linker given, its parameters and name frequencies are used as they are, as the gateway
/// links, in place of those estimated from the two lists.
pub fn evaluate_with(
    left: &[PersonRecord],
    right: &[PersonRecord],
    truth: &HashSet<(String, String)>,
    threshold: f64,
    seed: u64,
    linker: Option<&crate::Linker>,
) -> Evaluation {
    let candidates: Vec<(u32, u32, Levels)> = candidate_pairs(left, right)
        .into_iter()
        .map(|(i, j)| (i, j, compare(&left[i as usize], &right[j as usize])))
        .collect();
    let (parameters, frequencies) = match linker {
        Some(linker) => (linker.parameters.clone(), (*linker.frequencies).clone()),
        None => (
            estimate(left, right, &candidates, &Parameters::default(), seed),
            Frequencies::of(left.iter().chain(right)),
        ),
    };
    let links = link(
        left,
        right,
        &candidates,
        &parameters,
        &frequencies,
        threshold,
    );
    let links: Vec<(String, String, f64)> = links
        .iter()
        .map(|(i, j, p)| {
            (
                left[*i as usize].id.clone(),
                right[*j as usize].id.clone(),
                *p,
            )
        })
        .collect();
    let linked: Vec<(String, String)> = links
        .iter()
        .map(|(l, r, _)| (l.clone(), r.clone()))
        .collect();
    Evaluation {
        quality: quality(&linked, truth),
        links,
        pairs_compared: candidates.len(),
        parameters,
    }
}

/// The parameters as a table, one line per level: comparison, level, m, u, log2(m/u).
pub fn describe(parameters: &Parameters) -> Vec<String> {
    let mut lines = vec![format!("prior {:.6}", parameters.prior)];
    for (c, comparison) in Comparison::ALL.iter().enumerate() {
        for (level, name) in comparison.levels().iter().enumerate().skip(1) {
            let (m, u) = (parameters.m[c][level], parameters.u[c][level]);
            lines.push(format!(
                "{:<14} {:<26} m {:.4}  u {:.6}  weight {:+.2}",
                comparison.name(),
                name,
                m,
                u,
                (m.max(1e-6) / u.max(1e-6)).log2()
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use childgraph_schema::{Sex, SourceName};
    use chrono::NaiveDate;

    fn record(id: &str, given: &str, family: &str, dob: &str) -> PersonRecord {
        PersonRecord {
            source: SourceName::Health,
            id: id.into(),
            given_names: vec![given.into()],
            family_name: Some(family.into()),
            date_of_birth: NaiveDate::parse_from_str(dob, "%Y-%m-%d").ok(),
            sex: Some(Sex::Female),
            nhs_number: None,
            upn: None,
            address: None,
            restricted: false,
        }
    }

    #[test]
    fn a_swapped_date_and_a_misspelt_name_share_a_block() {
        let a = record("a", "Amelia", "Hartley", "2019-06-04");
        let b = record("b", "Amelia", "Hartly", "2019-04-06");
        let c = record("c", "Amelia", "Hartley", "2018-06-04");
        assert_eq!(candidate_pairs(std::slice::from_ref(&a), &[b]), [(0, 0)]);
        // A mistyped year still meets the name block.
        assert_eq!(candidate_pairs(&[a], &[c]), [(0, 0)]);
    }

    #[test]
    fn twins_are_linked_each_to_their_own_record() {
        let left = vec![
            record("h-isla", "Isla", "Brennan", "2017-01-22"),
            record("h-ava", "Ava", "Brennan", "2017-01-22"),
        ];
        let right = vec![
            record("s-ava", "Ava", "Brennan", "2017-01-22"),
            record("s-isla", "Isla", "Brenan", "2017-01-22"),
        ];
        let candidates: Vec<_> = candidate_pairs(&left, &right)
            .into_iter()
            .map(|(i, j)| (i, j, compare(&left[i as usize], &right[j as usize])))
            .collect();
        let links = link(
            &left,
            &right,
            &candidates,
            &Parameters::default(),
            &Frequencies::of(left.iter().chain(&right)),
            0.5,
        );
        let mut named: Vec<(&str, &str)> = links
            .iter()
            .map(|(i, j, _)| {
                (
                    left[*i as usize].id.as_str(),
                    right[*j as usize].id.as_str(),
                )
            })
            .collect();
        named.sort();
        assert_eq!(named, [("h-ava", "s-ava"), ("h-isla", "s-isla")]);
    }

    #[test]
    fn a_namesake_born_the_same_year_is_not_linked_when_the_lists_share_few_children() {
        // 400 children on the left; the right holds 20 of them and a namesake of one more, born the same year. Few
        // shared children make the share of matches among the candidates high; the prior must still be that of two
        // records drawn at random.
        let given = [
            "Theodore", "Amelia", "Noah", "Isla", "Oscar", "Freya", "Arthur", "Ivy",
        ];
        let family = [
            "Hartley",
            "Okafor",
            "Brennan",
            "Nowak",
            "Patel",
            "Lindqvist",
            "Adeyemi",
            "Moreau",
            "Fischer",
            "Kowalski",
        ];
        let mut left = Vec::new();
        for i in 0..400usize {
            let dob = format!(
                "{}-{:02}-{:02}",
                2010 + i % 12,
                1 + i % 12,
                1 + (i * 7) % 28
            );
            left.push(record(
                &format!("l{i}"),
                given[i % given.len()],
                family[(i / given.len()) % family.len()],
                &dob,
            ));
        }
        let mut right: Vec<PersonRecord> = left[..20]
            .iter()
            .map(|r| PersonRecord {
                id: format!("r{}", r.id),
                ..r.clone()
            })
            .collect();
        let namesake = &left[100];
        let born = namesake.date_of_birth.expect("dob");
        let mut other = namesake.clone();
        other.id = "namesake".into();
        other.date_of_birth = born.with_month(if born.month() == 6 { 9 } else { 6 });
        other.date_of_birth = other.date_of_birth.and_then(|d| d.with_day(27));
        right.push(other);
        let truth: HashSet<(String, String)> = left[..20]
            .iter()
            .map(|r| (r.id.clone(), format!("r{}", r.id)))
            .collect();
        let evaluation = evaluate(&left, &right, &truth, 0.5, 1);
        assert!(
            evaluation.links.iter().all(|(_, r, _)| r != "namesake"),
            "{:?}",
            evaluation.links
        );
        assert_eq!(evaluation.quality.correct, 20);
    }

    #[test]
    fn quality_counts_correct_links() {
        let truth: HashSet<(String, String)> = [("a", "x"), ("b", "y")]
            .map(|(l, r)| (l.to_owned(), r.to_owned()))
            .into();
        let q = quality(
            &[("a".into(), "x".into()), ("b".into(), "z".into())],
            &truth,
        );
        assert_eq!((q.correct, q.precision, q.recall), (1, 0.5, 0.5));
    }
}
