//! Organisations and their practitioners, scaled to the population size and generated up front from the seed so families can be assigned to them while streaming.

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::names::{ADULTS, CLASS_TREES, FAMILIES, PLACE_WORDS, STREET_KINDS, STREETS, TOWNS};
use super::{Address, rng_for};
use crate::cast;

/// Classes per school: primary schools teach Reception to Year 6, secondary schools Year 7 to Year 13.
pub(crate) const CLASSES_PER_SCHOOL: u32 = 7;
pub(crate) const GPS_PER_PRACTICE: u32 = 3;
pub(crate) const NURSES_PER_CENTRE: u32 = 2;
pub(crate) const KEY_WORKERS_PER_SETTING: u32 = 3;
pub(crate) const SOCIAL_WORKERS_PER_TEAM: u32 = 4;

/// How many organisations of each kind a population of `children` needs. Computed before any family so generation can stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgCounts {
    /// Always even: even-numbered schools are primary, odd-numbered secondary.
    pub schools: u32,
    pub gp_practices: u32,
    pub mch_centres: u32,
    pub settings: u32,
    pub social_care_teams: u32,
    /// Services that run sensitive episodes of care (mental health, sexual health, substance misuse).
    pub other_services: u32,
}

impl OrgCounts {
    pub fn for_children(children: usize) -> Self {
        let n = children as f64;
        // Ages are spread evenly over 0 to 18, so these shares follow from the age bands.
        let school_age = n * 14.0 / 19.0;
        let under_six = n * 6.0 / 19.0;
        let at_least = |x: f64| (x.round() as u32).max(1);
        Self {
            schools: 2 * at_least(school_age / 500.0),
            gp_practices: at_least(n / 400.0),
            mch_centres: at_least(under_six / 300.0),
            settings: at_least(under_six / 60.0),
            social_care_teams: at_least(n / 2000.0),
            other_services: at_least(n / 10_000.0),
        }
    }
}

/// An organisation: school, GP practice, centre, setting, team or service.
#[derive(Debug, Clone)]
pub struct Organisation {
    pub id: Box<str>,
    /// ODS code for health organisations, URN for schools, Ofsted-style number for settings.
    pub code: Box<str>,
    pub name: Box<str>,
    pub phone: Box<str>,
    pub email: Box<str>,
    pub address: Address,
}

/// A member of staff with contact details.
#[derive(Debug, Clone)]
pub struct Staff {
    pub id: Box<str>,
    pub prefix: Option<&'static str>,
    pub given: Box<str>,
    pub family: Box<str>,
    pub phone: Box<str>,
    pub email: Box<str>,
}

impl Staff {
    pub fn full_name(&self) -> String {
        match self.prefix {
            Some(p) => format!("{p} {} {}", self.given, self.family),
            None => format!("{} {}", self.given, self.family),
        }
    }
}

/// The kind of an early-years setting, as the OpenAPI document names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettingKind {
    Kindergarten,
    LongDayCare,
    FamilyDayCare,
}

impl SettingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SettingKind::Kindergarten => "kindergarten",
            SettingKind::LongDayCare => "long_day_care",
            SettingKind::FamilyDayCare => "family_day_care",
        }
    }
}

/// A school class: one per year group per school, with its class teacher at the same index in `Orgs::teachers`.
#[derive(Debug, Clone)]
pub struct Class {
    pub id: Box<str>,
    pub school: u32,
    /// 0 is Reception, 1 to 13 are Years 1 to 13.
    pub year_group: u8,
    pub title: Box<str>,
}

/// Every organisation and practitioner, indexed by position. Staff of organisation `i` sit at `i * PER + slot`.
#[derive(Debug, Clone)]
pub struct Orgs {
    pub counts: OrgCounts,
    pub schools: Vec<Organisation>,
    pub classes: Vec<Class>,
    pub teachers: Vec<Staff>,
    pub gp_practices: Vec<Organisation>,
    pub gps: Vec<Staff>,
    pub mch_centres: Vec<Organisation>,
    pub mch_nurses: Vec<Staff>,
    pub settings: Vec<Organisation>,
    pub setting_kinds: Vec<SettingKind>,
    pub key_workers: Vec<Staff>,
    pub social_care_teams: Vec<Organisation>,
    pub social_workers: Vec<Staff>,
    pub other_services: Vec<Organisation>,
}

/// Distinct streams of the organisation generator.
const ORG_STREAM: u64 = u64::MAX - 1;

pub(crate) fn year_group_title(year_group: u8) -> String {
    if year_group == 0 {
        "Reception".to_owned()
    } else {
        format!("Year {year_group}")
    }
}

/// The class a pupil in `year_group` at `school` belongs to.
pub(crate) fn class_index(school: u32, year_group: u8) -> u32 {
    school * CLASSES_PER_SCHOOL + u32::from(year_group) % CLASSES_PER_SCHOOL
}

fn address(rng: &mut ChaCha8Rng) -> Address {
    let (town, area) = TOWNS.choose(rng).expect("towns");
    Address {
        line1: format!(
            "{} {} {}",
            rng.gen_range(1..120),
            STREETS.choose(rng).expect("streets"),
            STREET_KINDS.choose(rng).expect("kinds")
        )
        .into(),
        town: (*town).into(),
        postcode: super::postcode(rng, area).into(),
    }
}

pub(crate) fn phone(rng: &mut ChaCha8Rng) -> String {
    // Ofcom's drama range: numbers that are never allocated to real lines.
    format!("07700 900{:03}", rng.gen_range(0..1000))
}

pub(crate) fn landline(rng: &mut ChaCha8Rng) -> String {
    format!("0118 496 0{:03}", rng.gen_range(0..1000))
}

fn email_domain(name: &str) -> String {
    let slug: String = crate::text::fold(name)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .collect();
    format!("{slug}.example.org")
}

fn organisation(
    rng: &mut ChaCha8Rng,
    id: String,
    code: String,
    name: String,
    mailbox: &str,
) -> Organisation {
    let email = format!("{mailbox}@{}", email_domain(&name));
    Organisation {
        id: id.into(),
        code: code.into(),
        name: name.into(),
        phone: landline(rng).into(),
        email: email.into(),
        address: address(rng),
    }
}

fn staff(
    rng: &mut ChaCha8Rng,
    id: String,
    prefix: Option<&'static str>,
    org: &Organisation,
    fixed: Option<(&str, &str)>,
) -> Staff {
    let (given, family) = fixed.unwrap_or_else(|| {
        (
            ADULTS.choose(rng).expect("adults"),
            FAMILIES.choose(rng).expect("families"),
        )
    });
    let domain = org.email.split('@').nth(1).unwrap_or("example.org");
    let local: String = crate::text::fold(&format!("{given}.{family}"))
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    Staff {
        id: id.into(),
        prefix,
        given: given.into(),
        family: family.into(),
        phone: phone(rng).into(),
        email: format!("{local}@{domain}").into(),
    }
}

/// A place word for organisation `index` of a kind: distinct within the kind, numbered once the words run out.
fn place(index: u32) -> String {
    let word = PLACE_WORDS[index as usize % PLACE_WORDS.len()];
    let round = index as usize / PLACE_WORDS.len();
    if round == 0 {
        word.to_owned()
    } else {
        format!("{word} {}", round + 1)
    }
}

impl Orgs {
    /// Generates every organisation for `counts`. With the cast, the first of each kind is the cast's named organisation and its first staff member the cast's practitioner.
    pub(crate) fn generate(
        seed: u64,
        counts: OrgCounts,
        with_cast: bool,
        cast_class: Option<u32>,
    ) -> Self {
        let mut rng = rng_for(seed, ORG_STREAM);
        let cast_name = |i: u32, name: &str| (with_cast && i == 0).then(|| name.to_owned());

        let mut schools = Vec::new();
        let mut classes = Vec::new();
        let mut teachers = Vec::new();
        for i in 0..counts.schools {
            let primary = i % 2 == 0;
            let name = cast_name(i, cast::SCHOOL_NAME).unwrap_or_else(|| {
                let p = place(i);
                if primary {
                    format!("{p} Primary School")
                } else {
                    format!("{p} Academy")
                }
            });
            let org = organisation(
                &mut rng,
                format!("sch-{i:05}"),
                format!("{}", 100_000 + i),
                name,
                "office",
            );
            let tree = CLASS_TREES[i as usize % CLASS_TREES.len()];
            for slot in 0..CLASSES_PER_SCHOOL {
                let year_group = if primary { slot } else { slot + 7 } as u8;
                let class = class_index(i, year_group);
                classes.push(Class {
                    id: format!("cls-{i:05}-{year_group:02}").into(),
                    school: i,
                    year_group,
                    title: format!("{} {tree}", year_group_title(year_group)).into(),
                });
                let fixed = (Some(class) == cast_class).then_some(cast::TEACHER_NAME);
                teachers.push(staff(
                    &mut rng,
                    teacher_id(class, cast_class),
                    None,
                    &org,
                    fixed,
                ));
            }
            schools.push(org);
        }

        let mut gp_practices = Vec::new();
        let mut gps = Vec::new();
        for i in 0..counts.gp_practices {
            let name = cast_name(i, cast::GP_PRACTICE_NAME)
                .unwrap_or_else(|| format!("{} Surgery", place(i)));
            let org = organisation(
                &mut rng,
                format!("org-g{i:05}"),
                format!("G{:05}", 80_000 + i % 20_000),
                name,
                "reception",
            );
            for slot in 0..GPS_PER_PRACTICE {
                let fixed = (with_cast && i == 0 && slot == 0).then_some(cast::GP_NAME);
                gps.push(staff(
                    &mut rng,
                    format!("prac-g{i:05}-{slot}"),
                    Some("Dr"),
                    &org,
                    fixed,
                ));
            }
            gp_practices.push(org);
        }

        let mut mch_centres = Vec::new();
        let mut mch_nurses = Vec::new();
        for i in 0..counts.mch_centres {
            let name = cast_name(i, cast::MCH_CENTRE_NAME)
                .unwrap_or_else(|| format!("{} Maternal and Child Health Centre", place(i)));
            let org = organisation(
                &mut rng,
                format!("org-m{i:05}"),
                format!("M{:05}", 10_000 + i % 90_000),
                name,
                "mch",
            );
            for slot in 0..NURSES_PER_CENTRE {
                let fixed = (with_cast && i == 0 && slot == 0).then_some(cast::MCH_NURSE_NAME);
                mch_nurses.push(staff(
                    &mut rng,
                    format!("prac-m{i:05}-{slot}"),
                    None,
                    &org,
                    fixed,
                ));
            }
            mch_centres.push(org);
        }

        let mut settings = Vec::new();
        let mut setting_kinds = Vec::new();
        let mut key_workers = Vec::new();
        for i in 0..counts.settings {
            let kind = if with_cast && i == 0 {
                SettingKind::Kindergarten
            } else {
                match rng.gen_range(0..10) {
                    0..=4 => SettingKind::Kindergarten,
                    5..=8 => SettingKind::LongDayCare,
                    _ => SettingKind::FamilyDayCare,
                }
            };
            let name = cast_name(i, cast::KINDERGARTEN_NAME).unwrap_or_else(|| {
                let p = place(i);
                match kind {
                    SettingKind::Kindergarten => format!("{p} Kindergarten"),
                    SettingKind::LongDayCare => format!("{p} Day Nursery"),
                    SettingKind::FamilyDayCare => format!("{p} Family Childcare"),
                }
            });
            let org = organisation(
                &mut rng,
                format!("set-{i:05}"),
                format!("EY{:06}", 100_000 + i),
                name,
                "hello",
            );
            for slot in 0..KEY_WORKERS_PER_SETTING {
                let fixed = (with_cast && i == 0 && slot == 0).then_some(cast::KEY_WORKER_NAME);
                key_workers.push(staff(
                    &mut rng,
                    format!("kw-{i:05}-{slot}"),
                    None,
                    &org,
                    fixed,
                ));
            }
            settings.push(org);
            setting_kinds.push(kind);
        }

        let mut social_care_teams = Vec::new();
        let mut social_workers = Vec::new();
        const QUARTERS: [&str; 4] = ["North", "South", "East", "West"];
        for i in 0..counts.social_care_teams {
            let name = cast_name(i, cast::SOCIAL_CARE_TEAM_NAME).unwrap_or_else(|| {
                let q = QUARTERS[i as usize % 4];
                let round = i as usize / 4;
                if round == 0 {
                    format!("{q} Children's Social Care Team")
                } else {
                    format!("{q} {} Children's Social Care Team", round + 1)
                }
            });
            let org = organisation(
                &mut rng,
                format!("org-c{i:05}"),
                format!("SC{:04}", i % 10_000),
                name,
                "duty",
            );
            for slot in 0..SOCIAL_WORKERS_PER_TEAM {
                let fixed = (with_cast && i == 0 && slot == 0).then_some(cast::SOCIAL_WORKER_NAME);
                social_workers.push(staff(
                    &mut rng,
                    format!("prac-s{i:05}-{slot}"),
                    None,
                    &org,
                    fixed,
                ));
            }
            social_care_teams.push(org);
        }

        let mut other_services = Vec::new();
        for i in 0..counts.other_services {
            let name = format!("{} Young People's Health Service", place(i));
            other_services.push(organisation(
                &mut rng,
                format!("org-x{i:05}"),
                format!("X{:05}", 10_000 + i % 90_000),
                name,
                "enquiries",
            ));
        }

        Self {
            counts,
            schools,
            classes,
            teachers,
            gp_practices,
            gps,
            mch_centres,
            mch_nurses,
            settings,
            setting_kinds,
            key_workers,
            social_care_teams,
            social_workers,
            other_services,
        }
    }
}

/// The class teacher's OneRoster user id. The cast teacher's id is fixed whichever year group Amelia is in, so ids of class 0's teacher and hers are swapped.
pub(crate) fn teacher_id(class: u32, cast_class: Option<u32>) -> String {
    let numbered = match cast_class {
        Some(c) if class == c => 0,
        Some(c) if class == 0 => c,
        _ => class,
    };
    format!("tch-{numbered:06}")
}
