//! The Fellegi-Sunter model: each pair of records is compared field by field, each comparison falls in one level, and
//! each level carries the probability of seeing it between records of the same child (m) and of different children
//! (u). A pair's match weight is the sum of log2(m/u) over its comparisons, plus the prior odds of a match.
//!
//! Level 0 of every comparison is "one side is missing": it carries no evidence either way.

use childgraph_schema::{PersonRecord, Sex};
use chrono::Datelike;
use strsim::jaro_winkler;

use crate::names::{are_nicknames, normalise};

/// The comparisons, in the order of [`Levels`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    GivenName,
    FamilyName,
    DateOfBirth,
    Sex,
    Postcode,
    NhsNumber,
    Upn,
}

impl Comparison {
    pub const ALL: [Comparison; 7] = [
        Comparison::GivenName,
        Comparison::FamilyName,
        Comparison::DateOfBirth,
        Comparison::Sex,
        Comparison::Postcode,
        Comparison::NhsNumber,
        Comparison::Upn,
    ];

    /// The names of the levels, from 0 (missing) up.
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            Comparison::GivenName => &[
                "missing",
                "exact",
                "nickname",
                "jaro-winkler >= 0.92",
                "jaro-winkler >= 0.80",
                "swapped with family name",
                "different",
            ],
            Comparison::FamilyName => &[
                "missing",
                "exact",
                "jaro-winkler >= 0.92",
                "jaro-winkler >= 0.80",
                "swapped with given name",
                "different",
            ],
            Comparison::DateOfBirth => &[
                "missing",
                "exact",
                "day and month swapped",
                "one digit differs",
                "same year",
                "different",
            ],
            Comparison::Sex => &["missing", "same", "different"],
            Comparison::Postcode => &["missing", "exact", "same sector", "different"],
            Comparison::NhsNumber | Comparison::Upn => &["missing", "same", "different"],
        }
    }

    /// The comparison of this name, as [`Comparison::name`] gives it.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Comparison::GivenName => "given_name",
            Comparison::FamilyName => "family_name",
            Comparison::DateOfBirth => "date_of_birth",
            Comparison::Sex => "sex",
            Comparison::Postcode => "postcode",
            Comparison::NhsNumber => "nhs_number",
            Comparison::Upn => "upn",
        }
    }
}

/// The level of each comparison for one pair, indexed as [`Comparison::ALL`].
pub type Levels = [u8; 7];

/// Compares two records on every field.
pub fn compare(a: &PersonRecord, b: &PersonRecord) -> Levels {
    [
        given_level(a, b),
        family_level(a, b),
        birth_level(a, b),
        sex_level(a.sex, b.sex),
        postcode_level(a, b),
        same_or_not(
            a.nhs_number.as_ref().map(|n| n.as_str()),
            b.nhs_number.as_ref().map(|n| n.as_str()),
        ),
        same_or_not(
            a.upn.as_ref().map(|u| u.as_str()),
            b.upn.as_ref().map(|u| u.as_str()),
        ),
    ]
}

fn given_level(a: &PersonRecord, b: &PersonRecord) -> u8 {
    if a.given_names.is_empty() || b.given_names.is_empty() {
        return 0;
    }
    let mut best = 6;
    for x in a.given_names.iter().map(|g| normalise(g)) {
        for y in b.given_names.iter().map(|g| normalise(g)) {
            let level = if x == y {
                1
            } else if are_nicknames(&x, &y) {
                2
            } else {
                let jw = jaro_winkler(&x, &y);
                if jw >= 0.92 {
                    3
                } else if jw >= 0.80 {
                    4
                } else {
                    6
                }
            };
            best = best.min(level);
        }
    }
    if best == 6 && swapped(a, b) {
        return 5;
    }
    best
}

fn family_level(a: &PersonRecord, b: &PersonRecord) -> u8 {
    let (Some(x), Some(y)) = (&a.family_name, &b.family_name) else {
        return 0;
    };
    let (x, y) = (normalise(x), normalise(y));
    if x == y {
        return 1;
    }
    let jw = jaro_winkler(&x, &y);
    if jw >= 0.92 {
        2
    } else if jw >= 0.80 {
        3
    } else if swapped(a, b) {
        4
    } else {
        5
    }
}

/// Whether one record has the given and family names the other way round.
fn swapped(a: &PersonRecord, b: &PersonRecord) -> bool {
    let (Some(fa), Some(fb)) = (&a.family_name, &b.family_name) else {
        return false;
    };
    let (fa, fb) = (normalise(fa), normalise(fb));
    a.given_names.iter().any(|g| normalise(g) == fb)
        && b.given_names.iter().any(|g| normalise(g) == fa)
}

/// Whether two different dates are one date with its day and month the other way round.
pub fn day_and_month_swapped(x: chrono::NaiveDate, y: chrono::NaiveDate) -> bool {
    x != y && x.year() == y.year() && x.month() == y.day() && x.day() == y.month()
}

fn birth_level(a: &PersonRecord, b: &PersonRecord) -> u8 {
    let (Some(x), Some(y)) = (a.date_of_birth, b.date_of_birth) else {
        return 0;
    };
    if x == y {
        return 1;
    }
    if day_and_month_swapped(x, y) {
        return 2;
    }
    let (sx, sy) = (
        x.format("%Y%m%d").to_string(),
        y.format("%Y%m%d").to_string(),
    );
    let differing = sx.bytes().zip(sy.bytes()).filter(|(p, q)| p != q).count();
    if differing == 1 {
        3
    } else if x.year() == y.year() {
        4
    } else {
        5
    }
}

fn sex_level(a: Option<Sex>, b: Option<Sex>) -> u8 {
    let known = |s: Option<Sex>| s.filter(|s| *s != Sex::Unknown);
    same_or_not(known(a), known(b))
}

fn postcode_of(r: &PersonRecord) -> Option<String> {
    let p = r.address.as_ref()?.postcode.as_deref()?;
    let p: String = p
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_uppercase)
        .collect();
    (p.len() >= 5).then_some(p)
}

fn postcode_level(a: &PersonRecord, b: &PersonRecord) -> u8 {
    let (Some(x), Some(y)) = (postcode_of(a), postcode_of(b)) else {
        return 0;
    };
    if x == y {
        return 1;
    }
    // The sector is the outward code and the first character of the inward code: all but the last two characters.
    if x[..x.len() - 2] == y[..y.len() - 2] {
        2
    } else {
        3
    }
}

fn same_or_not<T: PartialEq>(a: Option<T>, b: Option<T>) -> u8 {
    match (a, b) {
        (Some(x), Some(y)) => {
            if x == y {
                1
            } else {
                2
            }
        }
        _ => 0,
    }
}

/// The m and u probabilities of every level of every comparison, and the prior probability of a match.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameters {
    /// Probability that two records compared are the same child, before looking at them.
    pub prior: f64,
    /// `m[c][level]`: probability of the level between records of the same child.
    pub m: Vec<Vec<f64>>,
    /// `u[c][level]`: probability of the level between records of different children.
    pub u: Vec<Vec<f64>>,
}

/// The smallest probability a level is given, so that no single comparison is ever infinitely decisive.
const FLOOR: f64 = 1e-6;

impl Default for Parameters {
    /// Values from linkage practice for children's records; [`crate::evaluate`] estimates better ones from the data.
    fn default() -> Self {
        // Level 0 (missing) is not used: its weight is always 0.
        let m = vec![
            vec![1.0, 0.88, 0.05, 0.045, 0.02, 0.003, 0.002],
            vec![1.0, 0.88, 0.05, 0.02, 0.01, 0.04],
            vec![1.0, 0.95, 0.025, 0.02, 0.00499, 0.00001],
            vec![1.0, 0.98, 0.02],
            vec![1.0, 0.85, 0.05, 0.10],
            vec![1.0, 0.999, 0.001],
            vec![1.0, 0.999, 0.001],
        ];
        let u = vec![
            vec![1.0, 0.01, 0.002, 0.003, 0.02, 0.0005, 0.9645],
            vec![1.0, 0.002, 0.002, 0.01, 0.0001, 0.9859],
            vec![1.0, 0.0002, 0.0002, 0.002, 0.05, 0.9476],
            vec![1.0, 0.5, 0.5],
            vec![1.0, 0.0005, 0.005, 0.9945],
            vec![1.0, 0.000001, 0.999999],
            vec![1.0, 0.000001, 0.999999],
        ];
        Self { prior: 1e-4, m, u }
    }
}

/// How common a name is, for the term-frequency adjustment: an exact match on a common name says less than one on a
/// name of average frequency.
pub trait NameFrequency {
    /// The share of records with this (normalised) family name, if known.
    fn family(&self, name: &str) -> Option<f64>;
    /// The share of records with this (normalised) given name, if known.
    fn given(&self, name: &str) -> Option<f64>;
}

/// No term-frequency adjustment.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFrequencies;

impl NameFrequency for NoFrequencies {
    fn family(&self, _: &str) -> Option<f64> {
        None
    }
    fn given(&self, _: &str) -> Option<f64> {
        None
    }
}

impl Parameters {
    /// The match weight (log2 odds) of a pair: the prior plus each comparison's log2(m/u), with the exact-name levels'
    /// u taken from the name's frequency when known.
    pub fn weight(
        &self,
        a: &PersonRecord,
        b: &PersonRecord,
        levels: &Levels,
        frequencies: &impl NameFrequency,
    ) -> f64 {
        let mut w = (self.prior / (1.0 - self.prior)).log2();
        for (c, &level) in levels.iter().enumerate() {
            if level == 0 {
                continue;
            }
            let level = usize::from(level);
            let m = self.m[c][level].max(FLOOR);
            let mut u = self.u[c][level].max(FLOOR);
            if level == 1 {
                let tf = match Comparison::ALL[c] {
                    Comparison::FamilyName => a
                        .family_name
                        .as_deref()
                        .and_then(|f| frequencies.family(&normalise(f))),
                    Comparison::GivenName => a
                        .given_names
                        .iter()
                        .map(|g| normalise(g))
                        .find(|g| b.given_names.iter().any(|h| normalise(h) == *g))
                        .and_then(|g| frequencies.given(&g)),
                    _ => None,
                };
                // Only a common name is discounted: agreeing on it says less than agreeing on a name of average
                // frequency. A rare name is not given extra weight, which would let two rare names outweigh a date of
                // birth years apart.
                if let Some(tf) = tf {
                    u = u.max(tf);
                }
            }
            w += (m / u).log2();
        }
        w
    }

    /// Parameters from a prior and the m and u of every level of every comparison (level 0, missing, left out), as
    /// (comparison name, level name, m, u). Every level must be given once, each m and u must lie in (0, 1], and each
    /// comparison's m and u must each sum to 1.
    pub fn from_levels(
        prior: f64,
        levels: impl IntoIterator<Item = (String, String, f64, f64)>,
    ) -> Result<Self, String> {
        if !(prior > 0.0 && prior < 1.0) {
            return Err(format!(
                "prior: {prior} is not a probability between 0 and 1"
            ));
        }
        let shape = Self::default();
        let mut m: Vec<Vec<Option<f64>>> = shape.m.iter().map(|l| vec![None; l.len()]).collect();
        let mut u = m.clone();
        for (comparison, level, pm, pu) in levels {
            let c = Comparison::from_name(&comparison).ok_or_else(|| {
                format!(
                    "{comparison}: not a comparison (expected one of {})",
                    Comparison::ALL.map(Comparison::name).join(", ")
                )
            })?;
            let index = Comparison::ALL.iter().position(|x| *x == c).unwrap_or(0);
            let names = c.levels();
            let l = names
                .iter()
                .skip(1)
                .position(|n| *n == level)
                .map(|i| i + 1)
                .ok_or_else(|| {
                    format!(
                        "{comparison}.{level}: not a level (expected one of {})",
                        names[1..].join(", ")
                    )
                })?;
            for (name, p) in [("m", pm), ("u", pu)] {
                if !(p > 0.0 && p <= 1.0) {
                    return Err(format!(
                        "{comparison}.{level}.{name}: {p} is not a probability above 0 and at most 1"
                    ));
                }
            }
            if m[index][l].replace(pm).is_some() {
                return Err(format!("{comparison}.{level}: given twice"));
            }
            u[index][l] = Some(pu);
        }
        let mut out = Self {
            prior,
            m: shape.m.clone(),
            u: shape.u.clone(),
        };
        for (index, c) in Comparison::ALL.iter().enumerate() {
            for (name, given, target) in [
                ("m", &m[index], &mut out.m[index]),
                ("u", &u[index], &mut out.u[index]),
            ] {
                for l in 1..given.len() {
                    target[l] = given[l]
                        .ok_or_else(|| format!("{}.{}: missing", c.name(), c.levels()[l]))?;
                }
                let sum: f64 = target[1..].iter().sum();
                if (sum - 1.0).abs() > 1e-3 {
                    return Err(format!(
                        "{}: the levels' {name} sum to {sum:.4}, not 1",
                        c.name()
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The m and u of every level of every comparison but level 0, as (comparison, level name, m, u).
    pub fn levels(&self) -> Vec<(Comparison, &'static str, f64, f64)> {
        Comparison::ALL
            .iter()
            .enumerate()
            .flat_map(|(c, comparison)| {
                comparison
                    .levels()
                    .iter()
                    .enumerate()
                    .skip(1)
                    .map(move |(l, name)| (*comparison, *name, self.m[c][l], self.u[c][l]))
            })
            .collect()
    }

    /// The probability that a pair is the same child, from its match weight.
    pub fn probability(weight: f64) -> f64 {
        let odds = weight.exp2();
        if odds.is_infinite() {
            1.0
        } else {
            odds / (1.0 + odds)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use childgraph_schema::{Address, SourceName};
    use chrono::NaiveDate;

    fn record(given: &str, family: &str, dob: &str) -> PersonRecord {
        PersonRecord {
            source: SourceName::Health,
            id: "x".into(),
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
    fn levels_of_each_comparison() {
        let a = record("Amelia", "Hartley", "2019-06-14");
        assert_eq!(
            compare(&a, &record("Amelia", "Hartley", "2019-06-14"))[..3],
            [1, 1, 1]
        );
        assert_eq!(
            compare(&a, &record("Millie", "Hartly", "2019-06-14"))[..3],
            [2, 2, 1]
        );
        assert_eq!(
            compare(&a, &record("Hartley", "Amelia", "2019-06-14"))[..2],
            [5, 4]
        );
        let swapped = compare(
            &record("A", "B", "2019-03-04"),
            &record("A", "B", "2019-04-03"),
        );
        assert_eq!(swapped[2], 2);
        assert_eq!(
            compare(&a, &record("Amelia", "Hartley", "2019-06-15"))[2],
            3
        );
        assert_eq!(
            compare(&a, &record("Amelia", "Hartley", "2019-01-30"))[2],
            4
        );
        let mut b = record("Amelia", "Hartley", "2019-06-14");
        b.date_of_birth = None;
        b.sex = Some(Sex::Male);
        assert_eq!(compare(&a, &b)[2..4], [0, 2]);
        let with_postcode = |p: &str| {
            let mut r = record("Amelia", "Hartley", "2019-06-14");
            r.address = Some(Address {
                lines: vec![],
                postcode: Some(p.into()),
            });
            r
        };
        assert_eq!(
            compare(&with_postcode("HF1 2AB"), &with_postcode("hf12ab"))[4],
            1
        );
        assert_eq!(
            compare(&with_postcode("HF1 2AB"), &with_postcode("HF1 2ZZ"))[4],
            2
        );
        assert_eq!(
            compare(&with_postcode("HF1 2AB"), &with_postcode("HF3 4QT"))[4],
            3
        );
    }

    #[test]
    fn parameters_round_trip_through_their_levels_and_bad_ones_are_named() {
        let p = Parameters::default();
        let levels = || {
            p.levels()
                .into_iter()
                .map(|(c, l, m, u)| (c.name().to_owned(), l.to_owned(), m, u))
        };
        assert_eq!(Parameters::from_levels(p.prior, levels()), Ok(p.clone()));
        let missing = Parameters::from_levels(p.prior, levels().skip(1)).unwrap_err();
        assert_eq!(missing, "given_name.exact: missing");
        let unknown = Parameters::from_levels(
            p.prior,
            levels().chain([("shoe_size".into(), "same".into(), 0.5, 0.5)]),
        )
        .unwrap_err();
        assert!(
            unknown.starts_with("shoe_size: not a comparison"),
            "{unknown}"
        );
        let bad = Parameters::from_levels(
            p.prior,
            levels().map(|(c, l, m, u)| {
                if l == "exact" {
                    (c, l, 1.5, u)
                } else {
                    (c, l, m, u)
                }
            }),
        )
        .unwrap_err();
        assert!(bad.starts_with("given_name.exact.m: 1.5"), "{bad}");
        let unnormalised = Parameters::from_levels(
            p.prior,
            levels().map(|(c, l, m, u)| {
                if c == "sex" {
                    (c, l, 0.9, u)
                } else {
                    (c, l, m, u)
                }
            }),
        )
        .unwrap_err();
        assert!(
            unnormalised.starts_with("sex: the levels' m sum to 1.8"),
            "{unnormalised}"
        );
        assert!(Parameters::from_levels(1.0, levels()).is_err());
    }

    #[test]
    fn agreement_weighs_for_and_disagreement_against() {
        let p = Parameters::default();
        let a = record("Amelia", "Hartley", "2019-06-14");
        let same = record("Amelia", "Hartley", "2019-06-14");
        let twin = record("Ava", "Hartley", "2019-06-14");
        let w_same = p.weight(&a, &same, &compare(&a, &same), &NoFrequencies);
        let w_twin = p.weight(&a, &twin, &compare(&a, &twin), &NoFrequencies);
        assert!(Parameters::probability(w_same) > 0.99);
        assert!(Parameters::probability(w_twin) < 0.5);
    }
}
