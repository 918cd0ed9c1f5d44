//! Family-by-family generation: the cast's hand-made families first, then random families, then the crowds' members, each family from its own RNG so any family can be produced without the others.
//!
//! Child numbers: the cast 0..16, generated children `16..16 + children`, crowd members from `16 + children` on, crowd by crowd in configuration order.
//! Family numbers: the cast 0..16, generated families from 16, crowd members' families right after the last generated family.
//! With no crowds the numbering, and so every id, is exactly what it was before crowds existed.

use childgraph_schema::{ServiceKind, Sex};
use chrono::{Datelike, Days, Months, NaiveDate};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::ids::{FIRST_GENERATED, early_years_id, health_id, nhs_number, school_id, upn};
use super::names::{ADULTS, BOYS, FAMILIES, GIRLS, STREET_KINDS, STREETS, TOWNS, nicknames};
use super::orgs::{
    GPS_PER_PRACTICE, KEY_WORKERS_PER_SETTING, NURSES_PER_CENTRE, OrgCounts, Orgs,
    SOCIAL_WORKERS_PER_TEAM, class_index,
};
use super::{
    Address, Carer, Crowd, EarlyYearsRecord, Enrolment, EnrolmentStatus, Family, HealthRecord, Mch,
    PopulationConfig, Programme, Relationship, SchoolRecord, Sensitive, SocialCare, TrueChild,
    academic_year_start, age_on, postcode, rng_for, year_group,
};
use crate::cast;
use crate::text::fold;

/// One family and its children's records, as generation yields them.
#[derive(Debug)]
pub(crate) struct FamilyDraft {
    pub family: Family,
    pub children: Vec<ChildDraft>,
}

#[derive(Debug)]
pub(crate) struct ChildDraft {
    pub child: TrueChild,
    pub health: HealthRecord,
    pub school: Option<SchoolRecord>,
    pub early_years: Option<EarlyYearsRecord>,
}

/// Everything fixed before the first family: counts, dates and the cast to avoid.
#[derive(Debug)]
pub(crate) struct Generator<'a> {
    config: &'a PopulationConfig,
    pub counts: OrgCounts,
    academic_start: NaiveDate,
    earliest_birth: NaiveDate,
    birth_span_days: u64,
    /// Folded given name, folded family name and date of birth of each cast member.
    cast_identities: Vec<(String, String, NaiveDate)>,
    /// The class Amelia is in, whose teacher is the cast's.
    cast_class: Option<u32>,
    /// Folded family name and date of birth of each crowd: nobody else's record may be found by a search on them.
    crowd_identities: Vec<(String, NaiveDate)>,
    /// The given names and sexes of each crowd's members, in member order.
    crowd_names: Vec<Vec<(Box<str>, Sex)>>,
}

/// RNG streams of crowd members: this bit, the crowd's index in the high half, the member's index in the low half (all ones: the crowd's names).
/// Generated families use streams below 2^63 and the organisations `u64::MAX - 1`, which no crowd reaches.
const CROWD_STREAM: u64 = 1 << 63;

fn crowd_stream(crowd: usize, member: u32) -> u64 {
    CROWD_STREAM | ((crowd as u64) << 32) | u64::from(member)
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    rng.r#gen::<f64>() < p
}

fn pick<'t>(rng: &mut ChaCha8Rng, list: &'t [&'t str]) -> &'t str {
    list.choose(rng).expect("non-empty table")
}

fn date(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("cast dates are valid")
}

fn random_date_between(rng: &mut ChaCha8Rng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
    let span = (to - from).num_days().max(0) as u64;
    from + Days::new(rng.gen_range(0..=span))
}

fn email_for(given: &str, family: &str, n: u32) -> String {
    let local: String = fold(&format!("{given}.{family}"))
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    format!("{local}{n}@example.com")
}

fn random_address(rng: &mut ChaCha8Rng) -> Address {
    let (town, area) = TOWNS.choose(rng).expect("towns");
    Address {
        line1: format!(
            "{} {} {}",
            rng.gen_range(1..200),
            pick(rng, STREETS),
            pick(rng, STREET_KINDS)
        )
        .into(),
        town: (*town).into(),
        postcode: postcode(rng, area).into(),
    }
}

/// A one-character edit: substitution, deletion, insertion or transposition, never of the first letter.
fn typo(rng: &mut ChaCha8Rng, s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let letter = |rng: &mut ChaCha8Rng| (b'a' + rng.gen_range(0..26u8)) as char;
    if chars.len() < 3 {
        chars.push(letter(rng));
        return chars.into_iter().collect();
    }
    let pos = rng.gen_range(1..chars.len());
    match rng.gen_range(0..4) {
        0 => {
            let mut c = letter(rng);
            while c == chars[pos].to_ascii_lowercase() {
                c = letter(rng);
            }
            chars[pos] = c;
        }
        1 => {
            chars.remove(pos);
        }
        2 => {
            let c = letter(rng);
            chars.insert(pos, c);
        }
        _ => {
            if pos + 1 < chars.len() && chars[pos] != chars[pos + 1] {
                chars.swap(pos, pos + 1);
            } else {
                chars.remove(pos);
            }
        }
    }
    chars.into_iter().collect()
}

fn nickname_of(rng: &mut ChaCha8Rng, given: &str) -> Option<&'static str> {
    let options: Vec<&'static str> = nicknames()
        .iter()
        .filter(|(formal, _)| *formal == given)
        .map(|(_, nick)| *nick)
        .collect();
    options.choose(rng).copied()
}

/// The person fields of one source record after that record's own noise.
struct Noised {
    given: Box<str>,
    family: Box<str>,
    birth_date: NaiveDate,
    previous_address: bool,
    drop_identifier: bool,
}

impl<'a> Generator<'a> {
    pub fn new(config: &'a PopulationConfig) -> Self {
        let as_of = config.as_of;
        let earliest_birth = config.earliest_birth();
        let academic_start = academic_year_start(as_of);
        let cast_identities = cast::MEMBERS
            .iter()
            .map(|m| (fold(m.given), fold(m.family), date(m.date_of_birth)))
            .collect();
        let cast_class = config.include_cast.then(|| {
            class_index(
                0,
                year_group(date(cast::AMELIA.date_of_birth), academic_start),
            )
        });
        let mut generator = Self {
            config,
            counts: OrgCounts::for_children(config.children),
            academic_start,
            earliest_birth,
            birth_span_days: (as_of - earliest_birth).num_days() as u64,
            cast_identities,
            cast_class,
            crowd_identities: config
                .crowds
                .iter()
                .map(|c| (fold(&c.family_name), c.date_of_birth))
                .collect(),
            crowd_names: Vec::new(),
        };
        generator.crowd_names = config
            .crowds
            .iter()
            .enumerate()
            .map(|(i, c)| generator.crowd_names(i, c))
            .collect();
        generator
    }

    pub fn orgs(&self) -> Orgs {
        Orgs::generate(
            self.config.seed,
            self.counts,
            self.config.include_cast,
            self.cast_class,
        )
    }

    /// Every family in order: the cast's, then generated ones until the configured number of children is reached, then one per crowd member.
    pub fn families(&self) -> impl Iterator<Item = FamilyDraft> + '_ {
        let mut cast = if self.config.include_cast {
            self.cast_families()
        } else {
            Vec::new()
        }
        .into_iter();
        let mut crowd_members = self
            .config
            .crowds
            .iter()
            .enumerate()
            .flat_map(|(i, c)| (0..c.size as u32).map(move |j| (i, j)));
        let mut family_index = 0u32;
        let mut child_index = 0u32;
        let mut generated_children = 0usize;
        let mut generated_families = 0u64;
        let mut crowd_children = 0u32;
        std::iter::from_fn(move || {
            let remaining = self.config.children - generated_children;
            let draft = if let Some(draft) = cast.next() {
                draft
            } else if remaining > 0 {
                let draft = self.generated_family(
                    generated_families,
                    family_index,
                    FIRST_GENERATED + generated_children as u32,
                    remaining,
                );
                generated_families += 1;
                generated_children += draft.children.len();
                draft
            } else if let Some((crowd, member)) = crowd_members.next() {
                // Numbered after every generated child and family, so generated ids do not depend on the crowds.
                let draft = self.crowd_family(
                    crowd,
                    member,
                    FIRST_GENERATED + generated_families as u32 + crowd_children,
                    FIRST_GENERATED + self.config.children as u32 + crowd_children,
                );
                crowd_children += 1;
                draft
            } else {
                return None;
            };
            let mut draft = draft;
            for c in &mut draft.children {
                c.child.family_index = family_index;
                c.health.child = child_index;
                c.health.family_index = family_index;
                if let Some(s) = &mut c.school {
                    s.child = child_index;
                    s.family_index = family_index;
                }
                if let Some(e) = &mut c.early_years {
                    e.child = child_index;
                    e.family_index = family_index;
                }
                child_index += 1;
            }
            family_index += 1;
            Some(draft)
        })
    }

    fn noise(&self, rng: &mut ChaCha8Rng, child: &TrueChild, previous_family: &str) -> Noised {
        let n = &self.config.noise;
        let mut given: String = child.given.to_string();
        let mut family: String = child.family.to_string();
        if chance(rng, n.nickname)
            && let Some(nick) = nickname_of(rng, &given)
        {
            given = nick.to_owned();
        }
        if chance(rng, n.name_change) {
            family = previous_family.to_owned();
        }
        if chance(rng, n.typo) {
            if rng.gen_bool(0.5) {
                given = typo(rng, &given);
            } else {
                family = typo(rng, &family);
            }
        }
        let mut birth_date = child.birth_date;
        if chance(rng, n.dob_swap) {
            let (d, m) = (birth_date.day(), birth_date.month());
            if d <= 12 && d != m {
                birth_date = NaiveDate::from_ymd_opt(birth_date.year(), d, m).unwrap_or(birth_date);
            }
        }
        Noised {
            given: given.into(),
            family: family.into(),
            birth_date,
            previous_address: chance(rng, n.house_move),
            drop_identifier: chance(rng, n.missing_identifier),
        }
    }

    /// Whether a search on some crowd's family name (as a prefix, folded) and date of birth finds a record with these.
    fn in_crowd_search(&self, family: &str, birth: NaiveDate) -> bool {
        if !self.crowd_identities.iter().any(|(_, d)| *d == birth) {
            return false;
        }
        let family = fold(family);
        self.crowd_identities
            .iter()
            .any(|(f, d)| *d == birth && family.starts_with(f.as_str()))
    }

    /// Moves a generated child's date of birth to the nearest day, within the generated range, that keeps them out of every crowd's search.
    fn outside_crowds(&self, family: &str, birth: NaiveDate) -> NaiveDate {
        if !self.in_crowd_search(family, birth) {
            return birth;
        }
        let as_of = self.config.as_of;
        (1..=self.birth_span_days)
            .flat_map(|d| {
                [
                    birth.checked_add_days(Days::new(d)),
                    birth.checked_sub_days(Days::new(d)),
                ]
            })
            .flatten()
            .filter(|d| (self.earliest_birth..=as_of).contains(d))
            .find(|d| !self.in_crowd_search(family, *d))
            .unwrap_or(birth)
    }

    /// A record's noise, kept off the identities crowds are searched by: a crowd member's records carry their true names and date of birth,
    /// and anyone else's record that noise would put in a crowd's search keeps the true family name and date of birth instead.
    fn settle(&self, mut noised: Noised, child: &TrueChild, crowd_member: bool) -> Noised {
        if crowd_member {
            noised.given = child.given.clone();
            noised.family = child.family.clone();
            noised.birth_date = child.birth_date;
        } else if self.in_crowd_search(&noised.family, noised.birth_date) {
            noised.family = child.family.clone();
            noised.birth_date = child.birth_date;
        }
        noised
    }

    fn is_cast_identity(&self, given: &str, family: &str, birth: NaiveDate) -> bool {
        let (g, f) = (fold(given), fold(family));
        self.cast_identities
            .iter()
            .any(|(cg, cf, cb)| *cg == g && *cf == f && *cb == birth)
    }

    fn carers(&self, rng: &mut ChaCha8Rng, family_name: &str) -> Vec<Carer> {
        let carer = |rng: &mut ChaCha8Rng, relationship, own_name: bool| {
            let given = pick(rng, ADULTS);
            let family = if own_name {
                pick(rng, FAMILIES)
            } else {
                family_name
            };
            Carer {
                given: given.into(),
                family: family.into(),
                relationship,
                phone: super::orgs::phone(rng).into(),
                email: email_for(given, family, rng.gen_range(1..100)).into(),
            }
        };
        match rng.gen_range(0..100) {
            0..65 => {
                let own = chance(rng, 0.15);
                vec![
                    carer(rng, Relationship::Mother, own),
                    carer(rng, Relationship::Father, false),
                ]
            }
            65..85 => vec![carer(rng, Relationship::Mother, false)],
            85..92 => vec![carer(rng, Relationship::Father, false)],
            92..97 => {
                let own = chance(rng, 0.5);
                vec![carer(rng, Relationship::Grandparent, own)]
            }
            _ => vec![carer(rng, Relationship::Guardian, true)],
        }
    }

    fn generated_family(
        &self,
        number: u64,
        family_index: u32,
        first_child_number: u32,
        remaining: usize,
    ) -> FamilyDraft {
        let mut rng = rng_for(self.config.seed, number);
        let rng = &mut rng;
        let twins = chance(rng, self.config.noise.twins);
        let mut kids = match rng.gen_range(0..100) {
            0..45 => 1,
            45..85 => 2,
            _ => 3,
        };
        if twins {
            kids = kids.max(2);
        }
        let kids = kids.min(remaining);
        let family_name = pick(rng, FAMILIES);
        let Household {
            carers,
            address,
            previous_address,
            ctx,
        } = self.household(rng, family_name, false);

        let mut children: Vec<ChildDraft> = Vec::with_capacity(kids);
        for j in 0..kids {
            let sex = if rng.gen_bool(0.5) {
                Sex::Female
            } else {
                Sex::Male
            };
            let birth_date = if twins && j == 1 {
                children[0].child.birth_date
            } else {
                let birth =
                    self.earliest_birth + Days::new(rng.gen_range(0..=self.birth_span_days));
                self.outside_crowds(family_name, birth)
            };
            let names = if sex == Sex::Female { GIRLS } else { BOYS };
            let mut given = pick(rng, names);
            // Twins differ in given name, and nobody generated may share a cast member's name and date of birth.
            while (twins && j == 1 && fold(given) == fold(&children[0].child.given))
                || self.is_cast_identity(given, family_name, birth_date)
            {
                given = pick(rng, names);
            }
            let child = TrueChild {
                number: first_child_number + j as u32,
                given: given.into(),
                family: family_name.into(),
                birth_date,
                sex,
                family_index,
            };
            children.push(self.child_records(rng, child, &ctx));
        }
        FamilyDraft {
            family: Family {
                number: FIRST_GENERATED + number as u32,
                carers: carers.into_boxed_slice(),
                address,
                previous_address,
                school_records: Box::new([]),
            },
            children,
        }
    }

    /// Carers, addresses and organisations of a new household with this family name, drawn in the order generated families always drew them.
    fn household(&self, rng: &mut ChaCha8Rng, family_name: &str, crowd: bool) -> Household {
        let carers = self.carers(rng, family_name);
        let address = random_address(rng);
        let previous_address = random_address(rng);
        let previous_family = carers
            .iter()
            .map(|c| &*c.family)
            .find(|f| *f != family_name)
            .unwrap_or_else(|| pick(rng, FAMILIES))
            .to_owned();
        let ctx = FamilyContext {
            gp_practice: rng.gen_range(0..self.counts.gp_practices),
            mch_centre: rng.gen_range(0..self.counts.mch_centres),
            setting: rng.gen_range(0..self.counts.settings),
            primary: 2 * rng.gen_range(0..self.counts.schools / 2),
            secondary: 2 * rng.gen_range(0..self.counts.schools / 2) + 1,
            team: rng.gen_range(0..self.counts.social_care_teams),
            previous_family,
            crowd,
        };
        Household {
            carers,
            address,
            previous_address,
            ctx,
        }
    }

    /// Distinct given names for a crowd's members, with their sexes: the generator's single names in a shuffled order, then hyphenated pairs of them.
    /// None, with the crowd's family name and date of birth, is a cast member's identity.
    fn crowd_names(&self, index: usize, crowd: &Crowd) -> Vec<(Box<str>, Sex)> {
        let mut rng = rng_for(self.config.seed, crowd_stream(index, u32::MAX));
        let mut singles: Vec<(&str, Sex)> = GIRLS
            .iter()
            .map(|g| (*g, Sex::Female))
            .chain(BOYS.iter().map(|b| (*b, Sex::Male)))
            .collect();
        singles.shuffle(&mut rng);
        let n = singles.len();
        let pool = &singles;
        let pairs = (1..n).flat_map(move |offset| {
            let singles = pool;
            (0..n).filter_map(move |i| {
                let (a, sa) = singles[i];
                let (b, sb) = singles[(i + offset) % n];
                (sa == sb).then(|| (format!("{a}-{b}"), sa))
            })
        });
        let names: Vec<(Box<str>, Sex)> = singles
            .iter()
            .map(|(g, s)| (g.to_string(), *s))
            .chain(pairs)
            .filter(|(g, _)| !self.is_cast_identity(g, &crowd.family_name, crowd.date_of_birth))
            .take(crowd.size)
            .map(|(g, s)| (g.into(), s))
            .collect();
        assert_eq!(
            names.len(),
            crowd.size,
            "crowd {} {} is larger than the distinct given names available",
            crowd.family_name,
            crowd.date_of_birth
        );
        names
    }

    /// One crowd member, an only child in a household of their own.
    fn crowd_family(
        &self,
        crowd_index: usize,
        member: u32,
        family_number: u32,
        child_number: u32,
    ) -> FamilyDraft {
        let crowd = &self.config.crowds[crowd_index];
        let mut rng = rng_for(self.config.seed, crowd_stream(crowd_index, member));
        let rng = &mut rng;
        let Household {
            carers,
            address,
            previous_address,
            ctx,
        } = self.household(rng, &crowd.family_name, true);
        let (given, sex) = self.crowd_names[crowd_index][member as usize].clone();
        let child = TrueChild {
            number: child_number,
            given,
            family: crowd.family_name.as_str().into(),
            birth_date: crowd.date_of_birth,
            sex,
            family_index: 0,
        };
        // No member's record is restricted at source: members are possible matches of one another, so one restriction
        // would shield them all, and a crowd is there to measure a search's whole fan-out.
        let records = self.child_records(rng, child, &ctx);
        FamilyDraft {
            family: Family {
                number: family_number,
                carers: carers.into_boxed_slice(),
                address,
                previous_address,
                school_records: Box::new([]),
            },
            children: vec![ChildDraft {
                health: HealthRecord {
                    restricted: false,
                    ..records.health
                },
                ..records
            }],
        }
    }

    fn child_records(
        &self,
        rng: &mut ChaCha8Rng,
        child: TrueChild,
        ctx: &FamilyContext,
    ) -> ChildDraft {
        let as_of = self.config.as_of;
        let age = age_on(child.birth_date, as_of);

        let noised = self.settle(
            self.noise(rng, &child, &ctx.previous_family),
            &child,
            ctx.crowd,
        );
        let mch = (age < 6).then(|| {
            let mut missed = 0u8;
            for bit in 0..8 {
                if chance(rng, 0.08) {
                    missed |= 1 << bit;
                }
            }
            Mch {
                centre: ctx.mch_centre,
                nurse: ctx.mch_centre * NURSES_PER_CENTRE + rng.gen_range(0..NURSES_PER_CENTRE),
                missed,
            }
        });
        let social_care = chance(rng, 0.03).then(|| {
            let start = random_date_between(rng, child.birth_date, as_of);
            let end = chance(rng, 0.3).then(|| random_date_between(rng, start, as_of));
            SocialCare {
                team: ctx.team,
                worker: ctx.team * SOCIAL_WORKERS_PER_TEAM
                    + rng.gen_range(0..SOCIAL_WORKERS_PER_TEAM),
                start,
                end,
            }
        });
        // About 1% of all children: the 12-and-overs are some 7 in 19 of them.
        let sensitive = (age >= 12 && chance(rng, 0.027)).then(|| {
            let kind = if age >= 13 {
                *[
                    ServiceKind::MentalHealth,
                    ServiceKind::SexualHealth,
                    ServiceKind::SubstanceMisuse,
                ]
                .choose(rng)
                .expect("kinds")
            } else {
                ServiceKind::MentalHealth
            };
            let twelfth = child.birth_date + Months::new(12 * 12);
            Sensitive {
                kind,
                service: rng.gen_range(0..self.counts.other_services),
                start: random_date_between(rng, twelfth.min(as_of), as_of),
            }
        });
        let usual_given = chance(rng, 0.05)
            .then(|| nickname_of(rng, &child.given))
            .flatten()
            .map(Box::from);
        let health = HealthRecord {
            id: health_id(child.number).into(),
            child: 0,
            family_index: 0,
            given: noised.given,
            family: noised.family,
            usual_given,
            birth_date: noised.birth_date,
            sex: child.sex,
            nhs_number: (!noised.drop_identifier).then(|| nhs_number(child.number).into()),
            previous_address: noised.previous_address,
            restricted: chance(rng, 0.005),
            gp_practice: ctx.gp_practice,
            gp: ctx.gp_practice * GPS_PER_PRACTICE + rng.gen_range(0..GPS_PER_PRACTICE),
            registered: (child.birth_date + Days::new(rng.gen_range(7..42))).min(as_of),
            mch,
            social_care,
            sensitive,
        };

        let school = (age >= 5).then(|| {
            let noised = self.settle(
                self.noise(rng, &child, &ctx.previous_family),
                &child,
                ctx.crowd,
            );
            let yg = year_group(child.birth_date, self.academic_start);
            let school = if yg <= 6 { ctx.primary } else { ctx.secondary };
            let preferred = chance(rng, 0.15)
                .then(|| nickname_of(rng, &child.given))
                .flatten()
                .map(Box::from);
            SchoolRecord {
                id: school_id(child.number).into(),
                child: 0,
                family_index: 0,
                given: noised.given,
                family: noised.family,
                preferred,
                birth_date: noised.birth_date,
                sex: child.sex,
                upn: upn(child.number, self.academic_start.year() - i32::from(yg)).into(),
                school,
                class: class_index(school, yg),
                begin: self.academic_start,
                end: self.academic_start + Months::new(12),
            }
        });

        let in_early_years = if age < 5 {
            chance(rng, 0.92)
        } else if age <= 6 {
            chance(rng, 0.3)
        } else {
            false
        };
        let early_years = in_early_years.then(|| {
            let noised = self.settle(
                self.noise(rng, &child, &ctx.previous_family),
                &child,
                ctx.crowd,
            );
            let enrolment = self.enrolment(rng, &child, ctx.setting, age);
            EarlyYearsRecord {
                id: early_years_id(child.number).into(),
                child: 0,
                family_index: 0,
                given: noised.given,
                family: noised.family,
                preferred: None,
                birth_date: noised.birth_date,
                sex: child.sex,
                nhs_number: (chance(rng, 0.6) && !noised.drop_identifier)
                    .then(|| nhs_number(child.number).into()),
                previous_address: noised.previous_address,
                enrolment,
            }
        });

        ChildDraft {
            child,
            health,
            school,
            early_years,
        }
    }

    fn enrolment(
        &self,
        rng: &mut ChaCha8Rng,
        child: &TrueChild,
        setting: u32,
        age: i32,
    ) -> Enrolment {
        let as_of = self.config.as_of;
        let (programme, hours) = if age < 3 {
            match rng.gen_range(0..10) {
                0..6 => (Programme::LongDayCare, rng.gen_range(20..=50)),
                6..8 => (Programme::FamilyDayCare, rng.gen_range(10..=40)),
                _ => (Programme::FundedHours, 15),
            }
        } else {
            match rng.gen_range(0..10) {
                0..5 => (
                    Programme::Kindergarten,
                    *[15, 20, 30].choose(rng).expect("hours"),
                ),
                5..8 => (
                    Programme::FundedHours,
                    *[15, 30].choose(rng).expect("hours"),
                ),
                _ => (Programme::LongDayCare, rng.gen_range(20..=50)),
            }
        };
        let start = child.birth_date + Months::new(rng.gen_range(6..30));
        let key_worker =
            setting * KEY_WORKERS_PER_SETTING + rng.gen_range(0..KEY_WORKERS_PER_SETTING);
        let (status, start, end) = if age >= 5 {
            // Left in the July before starting Reception, the September after turning four.
            let reception_year =
                academic_year_start(child.birth_date + Months::new(4 * 12)).year() + 1;
            let end = NaiveDate::from_ymd_opt(reception_year, 7, 19)
                .expect("valid date")
                .min(as_of);
            (EnrolmentStatus::Ended, start.min(end), Some(end))
        } else if start > as_of {
            (EnrolmentStatus::Waitlisted, start, None)
        } else {
            (EnrolmentStatus::Active, start, None)
        };
        Enrolment {
            setting,
            key_worker,
            programme,
            hours_per_week: hours,
            status,
            start,
            end,
        }
    }
}

/// Organisations and names a family's children share.
struct FamilyContext {
    gp_practice: u32,
    mch_centre: u32,
    setting: u32,
    /// An even (primary) and an odd (secondary) school.
    primary: u32,
    secondary: u32,
    team: u32,
    previous_family: String,
    /// The household of a crowd member, whose records keep their names and date of birth.
    crowd: bool,
}

struct Household {
    carers: Vec<Carer>,
    address: Address,
    previous_address: Address,
    ctx: FamilyContext,
}

fn cast_carer(given: &str, family: &str, relationship: Relationship, n: u32) -> Carer {
    Carer {
        given: given.into(),
        family: family.into(),
        relationship,
        phone: format!("07700 900{n:03}").into(),
        email: email_for(given, family, n).into(),
    }
}

fn cast_address(line1: &str, town: &str, postcode: &str) -> Address {
    Address {
        line1: line1.into(),
        town: town.into(),
        postcode: postcode.into(),
    }
}

/// The cast's maternal and child health: the first centre's first nurse, no visit missed.
const CAST_MCH: Mch = Mch {
    centre: 0,
    nurse: 0,
    missed: 0,
};

/// A cast child's 15 hours a week at the first kindergarten, with its first key worker.
fn cast_kindergarten(status: EnrolmentStatus, start: &str, end: Option<&str>) -> Enrolment {
    Enrolment {
        setting: 0,
        key_worker: 0,
        programme: Programme::Kindergarten,
        hours_per_week: 15,
        status,
        start: date(start),
        end: end.map(date),
    }
}

impl Generator<'_> {
    fn cast_child(&self, number: u32, member: &cast::CastMember, sex: Sex) -> TrueChild {
        TrueChild {
            number,
            given: member.given.into(),
            family: member.family.into(),
            birth_date: date(member.date_of_birth),
            sex,
            family_index: 0,
        }
    }

    fn cast_health(&self, child: &TrueChild, gp: u32) -> HealthRecord {
        HealthRecord {
            id: health_id(child.number).into(),
            child: 0,
            family_index: 0,
            given: child.given.clone(),
            family: child.family.clone(),
            usual_given: None,
            birth_date: child.birth_date,
            sex: child.sex,
            nhs_number: Some(nhs_number(child.number).into()),
            previous_address: false,
            restricted: false,
            gp_practice: 0,
            gp,
            registered: child.birth_date + Days::new(14),
            mch: None,
            social_care: None,
            sensitive: None,
        }
    }

    fn cast_school(&self, child: &TrueChild, school: u32) -> SchoolRecord {
        let yg = year_group(child.birth_date, self.academic_start);
        SchoolRecord {
            id: school_id(child.number).into(),
            child: 0,
            family_index: 0,
            given: child.given.clone(),
            family: child.family.clone(),
            preferred: None,
            birth_date: child.birth_date,
            sex: child.sex,
            upn: upn(child.number, self.academic_start.year() - i32::from(yg)).into(),
            school,
            class: class_index(school, yg),
            begin: self.academic_start,
            end: self.academic_start + Months::new(12),
        }
    }

    fn cast_early_years(&self, child: &TrueChild, enrolment: Enrolment) -> EarlyYearsRecord {
        EarlyYearsRecord {
            id: early_years_id(child.number).into(),
            child: 0,
            family_index: 0,
            given: child.given.clone(),
            family: child.family.clone(),
            preferred: None,
            birth_date: child.birth_date,
            sex: child.sex,
            nhs_number: Some(nhs_number(child.number).into()),
            previous_address: false,
            enrolment,
        }
    }

    /// The cast's families, exactly as documented in [`crate::cast`], without noise except the school's misspelling of Hartley
    /// and Maya's early-years record.
    fn cast_families(&self) -> Vec<FamilyDraft> {
        let family = |number: u32, carers: Vec<Carer>, address: Address| Family {
            number,
            carers: carers.into_boxed_slice(),
            previous_address: address.clone(),
            address,
            school_records: Box::new([]),
        };

        let amelia = self.cast_child(0, &cast::AMELIA, Sex::Female);
        let mut amelia_health = self.cast_health(&amelia, 0);
        amelia_health.mch = Some(CAST_MCH);
        let mut amelia_school = self.cast_school(&amelia, 0);
        amelia_school.family = cast::AMELIA_SCHOOL_FAMILY.into();
        let amelia_early_years = self.cast_early_years(
            &amelia,
            cast_kindergarten(EnrolmentStatus::Ended, "2023-01-09", Some("2024-07-19")),
        );
        let hartley = FamilyDraft {
            family: family(
                0,
                vec![
                    cast_carer("Emma", "Hartley", Relationship::Mother, 101),
                    cast_carer("James", "Hartley", Relationship::Father, 102),
                ],
                cast_address("14 Orchard Road", "Hartfield", "HF1 2AB"),
            ),
            children: vec![ChildDraft {
                child: amelia,
                health: amelia_health,
                school: Some(amelia_school),
                early_years: Some(amelia_early_years),
            }],
        };

        let noah = self.cast_child(1, &cast::NOAH, Sex::Male);
        let mut noah_health = self.cast_health(&noah, 1);
        noah_health.mch = Some(CAST_MCH);
        let noah_early_years = self.cast_early_years(
            &noah,
            cast_kindergarten(EnrolmentStatus::Active, "2023-09-04", None),
        );
        let okafor = FamilyDraft {
            family: family(
                1,
                vec![cast_carer("Chioma", "Okafor", Relationship::Mother, 111)],
                cast_address("7 Willow Close", "Hartfield", "HF3 4QT"),
            ),
            children: vec![ChildDraft {
                child: noah,
                health: noah_health,
                school: None,
                early_years: Some(noah_early_years),
            }],
        };

        let twins = [(2, &cast::ISLA), (3, &cast::AVA)].map(|(number, member)| {
            let child = self.cast_child(number, member, Sex::Female);
            ChildDraft {
                health: self.cast_health(&child, 2),
                school: Some(self.cast_school(&child, 0)),
                early_years: None,
                child,
            }
        });
        let brennan = FamilyDraft {
            family: family(
                2,
                vec![
                    cast_carer("Siobhan", "Brennan", Relationship::Mother, 121),
                    cast_carer("Declan", "Brennan", Relationship::Father, 122),
                ],
                cast_address("22 Meadow Lane", "Northbridge", "NB2 7LP"),
            ),
            children: twins.into(),
        };

        let leo = self.cast_child(4, &cast::LEO, Sex::Male);
        let mut leo_health = self.cast_health(&leo, 0);
        leo_health.restricted = true;
        leo_health.social_care = Some(SocialCare {
            team: 0,
            worker: 0,
            start: date("2024-02-12"),
            end: None,
        });
        let fernandes = FamilyDraft {
            family: family(
                3,
                vec![
                    cast_carer("Marisa", "Fernandes", Relationship::Mother, 131),
                    cast_carer("Paulo", "Fernandes", Relationship::Father, 132),
                ],
                cast_address("3 Station Road", "Castleton", "CT5 1DX"),
            ),
            children: vec![ChildDraft {
                school: Some(self.cast_school(&leo, 1)),
                health: leo_health,
                early_years: None,
                child: leo,
            }],
        };

        let maya = self.cast_child(5, &cast::MAYA, Sex::Female);
        let mut maya_health = self.cast_health(&maya, 1);
        maya_health.mch = Some(CAST_MCH);
        let mut maya_early_years = self.cast_early_years(
            &maya,
            cast_kindergarten(EnrolmentStatus::Active, "2024-09-02", None),
        );
        maya_early_years.family = cast::MAYA_EARLY_YEARS_FAMILY.into();
        maya_early_years.birth_date = date(cast::MAYA_EARLY_YEARS_DATE_OF_BIRTH);
        maya_early_years.nhs_number = None;
        let kowalczyk = FamilyDraft {
            family: family(
                4,
                vec![cast_carer("Anna", "Kowalczyk", Relationship::Mother, 141)],
                cast_address("9 Linden Court", "Hartfield", "HF2 3RW"),
            ),
            children: vec![ChildDraft {
                child: maya,
                health: maya_health,
                school: None,
                early_years: Some(maya_early_years),
            }],
        };

        vec![hartley, okafor, brennan, fernandes, kowalczyk]
    }
}
