//! The synthetic population: children, their families and the records three source systems hold about them, generated deterministically from a seed with configurable noise.
//!
//! Generation runs family by family, each family from its own RNG seeded by (seed, family number), so [`export`] can stream any size to CSV
//! and [`Population::generate`] builds the compact in-memory form the simulators serve. The generator knows the truth: every record carries the index of the true child it describes.

mod export;
mod generate;
mod ids;
mod index;
mod names;
mod orgs;

use std::collections::HashMap;

use childgraph_schema::{ServiceKind, Sex, SourceName};
use chrono::{Datelike, Days, Months, NaiveDate};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

pub use export::{ExportSummary, export};
pub use ids::child_key;
pub(crate) use ids::parent_id as parent_user_id;
pub use names::nicknames;
pub use orgs::{Class, OrgCounts, Organisation, Orgs, SettingKind, Staff};

pub(crate) use index::Indexes;

/// What to generate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PopulationConfig {
    /// Generated children, not counting the cast or the crowds.
    pub children: usize,
    pub seed: u64,
    /// The reference "today": ages, visits and enrolments are relative to it. Fixed by default so the default population never changes.
    pub as_of: NaiveDate,
    pub noise: NoiseConfig,
    /// Add the demo cast (see [`crate::cast`]).
    pub include_cast: bool,
    /// Groups of distinct children sharing a family name and a date of birth, added after the generated children. None by default.
    pub crowds: Vec<Crowd>,
}

/// A crowd: `size` distinct children with the same family name and date of birth, so that a search on those two returns all of them.
///
/// Each member is an only child in a household of their own (own carers, address and organisations), with a distinct given name from the generator's lists
/// (hyphenated pairs of them once the single names run out) and their own identifiers, and appears in the sources their age puts them in, like any generated child.
/// No source record of a member varies the given name, family name or date of birth, and no other generated record carries a family name starting with the crowd's
/// (accent- and case-insensitively) together with its date of birth, so a prefix search on the family name with the date of birth finds exactly the members.
/// No member's record is restricted at source: members are possible matches of one another, so one restriction would shield
/// them all, and a crowd is there to measure a search's whole fan-out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Crowd {
    pub family_name: String,
    pub date_of_birth: NaiveDate,
    pub size: usize,
}

impl Crowd {
    /// The most members one crowd may have.
    pub const MAX_SIZE: usize = 2000;
}

impl Default for PopulationConfig {
    fn default() -> Self {
        Self {
            children: 2000,
            seed: 42,
            as_of: NaiveDate::from_ymd_opt(2026, 3, 2).expect("valid date"),
            noise: NoiseConfig::default(),
            include_cast: true,
            crowds: Vec::new(),
        }
    }
}

impl PopulationConfig {
    /// The earliest date of birth a generated child can have: the day after the 19th birthday before [`Self::as_of`].
    pub fn earliest_birth(&self) -> NaiveDate {
        self.as_of
            .checked_sub_months(Months::new(19 * 12))
            .expect("date in range")
            + Days::new(1)
    }

    /// Checks the noise rates and the crowds, naming the first problem.
    ///
    /// A crowd needs a family name, a date of birth in the generated range (see [`Self::earliest_birth`]) up to [`Self::as_of`], and at most [`Crowd::MAX_SIZE`] members;
    /// no two crowds may share a family name and date of birth, and with the cast included, no cast member may fall in a crowd's search.
    pub fn validate(&self) -> Result<(), String> {
        self.noise.validate()?;
        let earliest = self.earliest_birth();
        let mut seen = std::collections::HashSet::new();
        for crowd in &self.crowds {
            let family = crate::text::fold(crowd.family_name.trim());
            let name = &crowd.family_name;
            let dob = crowd.date_of_birth;
            if family.is_empty() {
                return Err("a crowd needs a family name".to_owned());
            }
            if dob < earliest || dob > self.as_of {
                return Err(format!(
                    "crowd {name} {dob}: the date of birth must be between {earliest} and {}",
                    self.as_of
                ));
            }
            if crowd.size > Crowd::MAX_SIZE {
                return Err(format!(
                    "crowd {name} {dob}: at most {} members",
                    Crowd::MAX_SIZE
                ));
            }
            if !seen.insert((family.clone(), dob)) {
                return Err(format!(
                    "crowd {name} {dob}: two crowds share a family name and date of birth"
                ));
            }
            if self.include_cast
                && let Some(m) = crate::cast::MEMBERS.iter().find(|m| {
                    m.date_of_birth == dob.format("%Y-%m-%d").to_string()
                        && crate::text::fold(m.family).starts_with(&family)
                })
            {
                return Err(format!(
                    "crowd {name} {dob}: cast member {} {} would be found with it",
                    m.given, m.family
                ));
            }
        }
        Ok(())
    }
}

/// Per-record probabilities of each kind of disagreement between sources. Each source record draws its own noise.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NoiseConfig {
    /// A one-character edit in the given or family name.
    pub typo: f64,
    /// The record uses a nickname for the given name, where the name has one.
    pub nickname: f64,
    /// Day and month of the date of birth swapped, where the day is 12 or less and differs from the month.
    pub dob_swap: f64,
    /// The NHS number is missing from a record that would carry it.
    pub missing_identifier: f64,
    /// The record keeps the family's previous address.
    pub house_move: f64,
    /// The record has a different family name, as after a carer's change of name.
    pub name_change: f64,
    /// Share of families whose first birth is twins: same date of birth, carers and address, different given names and identifiers.
    pub twins: f64,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        Self {
            typo: 0.03,
            nickname: 0.05,
            dob_swap: 0.01,
            missing_identifier: 0.05,
            house_move: 0.05,
            name_change: 0.02,
            twins: 0.015,
        }
    }
}

impl NoiseConfig {
    pub fn low() -> Self {
        Self {
            typo: 0.01,
            nickname: 0.02,
            dob_swap: 0.003,
            missing_identifier: 0.02,
            house_move: 0.02,
            name_change: 0.005,
            twins: 0.015,
        }
    }

    pub fn high() -> Self {
        Self {
            typo: 0.10,
            nickname: 0.15,
            dob_swap: 0.04,
            missing_identifier: 0.15,
            house_move: 0.12,
            name_change: 0.06,
            twins: 0.03,
        }
    }

    /// No noise at all, and no twins.
    pub fn none() -> Self {
        Self {
            typo: 0.0,
            nickname: 0.0,
            dob_swap: 0.0,
            missing_identifier: 0.0,
            house_move: 0.0,
            name_change: 0.0,
            twins: 0.0,
        }
    }

    /// Checks every rate is a probability, naming the first that is not.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("typo", self.typo),
            ("nickname", self.nickname),
            ("dob_swap", self.dob_swap),
            ("missing_identifier", self.missing_identifier),
            ("house_move", self.house_move),
            ("name_change", self.name_change),
            ("twins", self.twins),
        ];
        match rates.iter().find(|(_, r)| !(0.0..=1.0).contains(r)) {
            Some((name, _)) => Err(format!("noise rate {name} must be between 0 and 1")),
            None => Ok(()),
        }
    }
}

/// A postal address: one street line, a town and a UK-style postcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub line1: Box<str>,
    pub town: Box<str>,
    pub postcode: Box<str>,
}

impl Address {
    /// The address on one line, without the postcode.
    pub fn one_line(&self) -> String {
        format!("{}, {}", self.line1, self.town)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relationship {
    Mother,
    Father,
    Guardian,
    Grandparent,
}

impl Relationship {
    /// In words, as OneRoster metadata and the early-years API give it.
    pub fn as_str(self) -> &'static str {
        match self {
            Relationship::Mother => "mother",
            Relationship::Father => "father",
            Relationship::Guardian => "guardian",
            Relationship::Grandparent => "grandparent",
        }
    }

    /// The v3-RoleCode code.
    pub fn role_code(self) -> &'static str {
        match self {
            Relationship::Mother => "MTH",
            Relationship::Father => "FTH",
            Relationship::Guardian => "GUARD",
            Relationship::Grandparent => "GRPRN",
        }
    }

    pub fn role_display(self) -> &'static str {
        match self {
            Relationship::Mother => "mother",
            Relationship::Father => "father",
            Relationship::Guardian => "guardian",
            Relationship::Grandparent => "grandparent",
        }
    }

    /// The OneRoster role of a user with this relationship.
    pub fn oneroster_role(self) -> &'static str {
        match self {
            Relationship::Mother | Relationship::Father => "parent",
            Relationship::Guardian => "guardian",
            Relationship::Grandparent => "relative",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Carer {
    pub given: Box<str>,
    pub family: Box<str>,
    pub relationship: Relationship,
    pub phone: Box<str>,
    pub email: Box<str>,
}

impl Carer {
    pub fn full_name(&self) -> String {
        format!("{} {}", self.given, self.family)
    }
}

/// A household: carers and address shared by its children.
#[derive(Debug, Clone)]
pub struct Family {
    /// The family's number, from which parent user ids derive.
    pub number: u32,
    pub carers: Box<[Carer]>,
    pub address: Address,
    /// Where the family lived before; a record with house-move noise still has it.
    pub previous_address: Address,
    /// Indexes into [`Population::school`] of the family's pupils, the students its parents are agents of.
    pub school_records: Box<[u32]>,
}

/// The truth about a child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrueChild {
    /// The child's number; [`child_key`] of it is the key in truth files.
    pub number: u32,
    pub given: Box<str>,
    pub family: Box<str>,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub family_index: u32,
}

impl TrueChild {
    pub fn key(&self) -> String {
        child_key(self.number)
    }
}

/// Maternal and child health: the centre, the nurse, and which key-age visits were missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mch {
    pub centre: u32,
    /// Index into [`Orgs::mch_nurses`].
    pub nurse: u32,
    /// Bit `i` set: visit `i` of [`KEY_AGE_VISITS`] was missed.
    pub missed: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocialCare {
    pub team: u32,
    /// Index into [`Orgs::social_workers`].
    pub worker: u32,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sensitive {
    pub kind: ServiceKind,
    /// Index into [`Orgs::other_services`].
    pub service: u32,
    pub start: NaiveDate,
}

/// A child as the health system (FHIR) holds them.
#[derive(Debug, Clone)]
pub struct HealthRecord {
    pub id: Box<str>,
    /// Index into [`Population::children`]: the truth.
    pub child: u32,
    pub family_index: u32,
    pub given: Box<str>,
    pub family: Box<str>,
    /// A `usual` name the record carries besides the official one.
    pub usual_given: Option<Box<str>>,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub nhs_number: Option<Box<str>>,
    pub previous_address: bool,
    /// `meta.security` R.
    pub restricted: bool,
    pub gp_practice: u32,
    /// Index into [`Orgs::gps`].
    pub gp: u32,
    pub registered: NaiveDate,
    pub mch: Option<Mch>,
    pub social_care: Option<SocialCare>,
    pub sensitive: Option<Sensitive>,
}

/// A pupil as the school system (OneRoster) holds them.
#[derive(Debug, Clone)]
pub struct SchoolRecord {
    pub id: Box<str>,
    pub child: u32,
    pub family_index: u32,
    pub given: Box<str>,
    pub family: Box<str>,
    pub preferred: Option<Box<str>>,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub upn: Box<str>,
    pub school: u32,
    /// Index into [`Orgs::classes`].
    pub class: u32,
    pub begin: NaiveDate,
    /// Exclusive, as OneRoster's `endDate`.
    pub end: NaiveDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Programme {
    Kindergarten,
    LongDayCare,
    FamilyDayCare,
    FundedHours,
}

impl Programme {
    pub fn as_str(self) -> &'static str {
        match self {
            Programme::Kindergarten => "kindergarten",
            Programme::LongDayCare => "long_day_care",
            Programme::FamilyDayCare => "family_day_care",
            Programme::FundedHours => "funded_hours",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrolmentStatus {
    Active,
    Ended,
    Waitlisted,
}

impl EnrolmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EnrolmentStatus::Active => "active",
            EnrolmentStatus::Ended => "ended",
            EnrolmentStatus::Waitlisted => "waitlisted",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Enrolment {
    pub setting: u32,
    /// Index into [`Orgs::key_workers`].
    pub key_worker: u32,
    pub programme: Programme,
    pub hours_per_week: u8,
    pub status: EnrolmentStatus,
    pub start: NaiveDate,
    pub end: Option<NaiveDate>,
}

/// A child as the early-years register holds them.
#[derive(Debug, Clone)]
pub struct EarlyYearsRecord {
    pub id: Box<str>,
    pub child: u32,
    pub family_index: u32,
    pub given: Box<str>,
    pub family: Box<str>,
    pub preferred: Option<Box<str>>,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub nhs_number: Option<Box<str>>,
    pub previous_address: bool,
    pub enrolment: Enrolment,
}

/// Key-age visits: age in days, code and display.
pub const KEY_AGE_VISITS: [(u64, &str, &str); 8] = [
    (14, "2-week", "2-week new birth visit"),
    (56, "8-week", "8-week review"),
    (122, "4-month", "4-month review"),
    (243, "8-month", "8-month review"),
    (365, "12-month", "12-month review"),
    (548, "18-month", "18-month review"),
    (730, "2-year", "2-year review"),
    (1278, "3.5-year", "3.5-year review"),
];

/// Status of a key-age visit relative to the reference date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitStatus {
    Finished,
    Cancelled,
    Planned,
}

impl VisitStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            VisitStatus::Finished => "finished",
            VisitStatus::Cancelled => "cancelled",
            VisitStatus::Planned => "planned",
        }
    }
}

/// A key-age visit of a child: index into [`KEY_AGE_VISITS`], date and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Visit {
    pub index: usize,
    pub date: NaiveDate,
    pub status: VisitStatus,
}

impl HealthRecord {
    /// Key-age visits so far, and the next one booked, for a child under maternal and child health.
    pub fn visits(&self, as_of: NaiveDate) -> Vec<Visit> {
        let Some(mch) = self.mch else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (index, (days, _, _)) in KEY_AGE_VISITS.iter().enumerate() {
            let date = self.birth_date + Days::new(*days);
            if date <= as_of {
                let status = if mch.missed & (1 << index) != 0 {
                    VisitStatus::Cancelled
                } else {
                    VisitStatus::Finished
                };
                out.push(Visit {
                    index,
                    date,
                    status,
                });
            } else {
                out.push(Visit {
                    index,
                    date,
                    status: VisitStatus::Planned,
                });
                break;
            }
        }
        out
    }
}

/// Whole years from `birth` to `on`.
pub fn age_on(birth: NaiveDate, on: NaiveDate) -> i32 {
    let mut age = on.year() - birth.year();
    if (on.month(), on.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

/// The first of September that starts the school year containing `on`.
pub fn academic_year_start(on: NaiveDate) -> NaiveDate {
    let year = if on.month() >= 9 {
        on.year()
    } else {
        on.year() - 1
    };
    NaiveDate::from_ymd_opt(year, 9, 1).expect("valid date")
}

/// The school year group (0 = Reception) of a child born on `birth` in the school year starting `academic_start`, capped at Year 13.
pub fn year_group(birth: NaiveDate, academic_start: NaiveDate) -> u8 {
    (age_on(birth, academic_start) - 4).clamp(0, 13) as u8
}

/// An RNG for one stream of the generator: a family, or the organisations.
pub(crate) fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&stream.to_le_bytes());
    ChaCha8Rng::from_seed(bytes)
}

/// A well-formed synthetic postcode in `area`: "HF1 2AB".
pub(crate) fn postcode(rng: &mut ChaCha8Rng, area: &str) -> String {
    use rand::Rng;
    // The inward code's letters never include C, I, K, M, O or V.
    const INWARD: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";
    let a = INWARD[rng.gen_range(0..INWARD.len())] as char;
    let b = INWARD[rng.gen_range(0..INWARD.len())] as char;
    format!(
        "{area}{} {}{a}{b}",
        rng.gen_range(1..20),
        rng.gen_range(1..10)
    )
}

/// The synthetic population in memory, with the indexes the simulators search.
#[derive(Debug)]
pub struct Population {
    pub as_of: NaiveDate,
    pub orgs: Orgs,
    pub families: Vec<Family>,
    pub children: Vec<TrueChild>,
    pub health: Vec<HealthRecord>,
    pub school: Vec<SchoolRecord>,
    pub early_years: Vec<EarlyYearsRecord>,
    /// Parent and guardian users: (family index, carer position), for families with pupils.
    pub parents: Vec<(u32, u8)>,
    pub(crate) index: Indexes,
}

impl Population {
    /// Generates the whole population in memory and indexes it.
    pub fn generate(config: &PopulationConfig) -> Population {
        let generator = generate::Generator::new(config);
        let mut families = Vec::new();
        let mut children = Vec::new();
        let mut health = Vec::new();
        let mut school = Vec::new();
        let mut early_years = Vec::new();
        let mut parents = Vec::new();
        for draft in generator.families() {
            let mut family = draft.family;
            let mut pupils = Vec::new();
            for child in draft.children {
                children.push(child.child);
                health.push(child.health);
                if let Some(s) = child.school {
                    pupils.push(school.len() as u32);
                    school.push(s);
                }
                if let Some(e) = child.early_years {
                    early_years.push(e);
                }
            }
            if !pupils.is_empty() {
                let index = families.len() as u32;
                parents.extend((0..family.carers.len()).map(|c| (index, c as u8)));
            }
            family.school_records = pupils.into_boxed_slice();
            families.push(family);
        }
        let mut population = Population {
            as_of: config.as_of,
            orgs: generator.orgs(),
            families,
            children,
            health,
            school,
            early_years,
            parents,
            index: Indexes::default(),
        };
        population.index = Indexes::build(&population);
        population
    }

    /// The address a record shows: the family's, or its previous one under house-move noise.
    pub fn address_of(&self, family_index: u32, previous: bool) -> &Address {
        let family = &self.families[family_index as usize];
        if previous {
            &family.previous_address
        } else {
            &family.address
        }
    }

    /// The truth: every source record with the key of the child it belongs to.
    pub fn truth(&self) -> impl Iterator<Item = (SourceName, &str, String)> + '_ {
        let key = |child: u32| self.children[child as usize].key();
        let h = self
            .health
            .iter()
            .map(move |r| (SourceName::Health, &*r.id, key(r.child)));
        let s = self
            .school
            .iter()
            .map(move |r| (SourceName::School, &*r.id, key(r.child)));
        let e = self
            .early_years
            .iter()
            .map(move |r| (SourceName::EarlyYears, &*r.id, key(r.child)));
        h.chain(s).chain(e)
    }

    /// The key of the true child a record belongs to.
    pub fn child_key_of(&self, source: SourceName, record_id: &str) -> Option<String> {
        let child = match source {
            SourceName::Health => self
                .index
                .health_by_id
                .get(record_id)
                .map(|&i| self.health[i as usize].child),
            SourceName::School => self
                .index
                .school_by_id
                .get(record_id)
                .map(|&i| self.school[i as usize].child),
            SourceName::EarlyYears => self
                .index
                .early_years_by_id
                .get(record_id)
                .map(|&i| self.early_years[i as usize].child),
        }?;
        Some(self.children[child as usize].key())
    }

    /// Record counts per source, for logs and summaries.
    pub fn counts(&self) -> HashMap<SourceName, usize> {
        HashMap::from([
            (SourceName::Health, self.health.len()),
            (SourceName::School, self.school.len()),
            (SourceName::EarlyYears, self.early_years.len()),
        ])
    }
}

#[cfg(test)]
mod tests;
