//! Unit tests of the generator: determinism, the age rules, noise rates, identifiers, twins, the cast and the export.

use std::collections::{HashMap, HashSet};

use childgraph_schema::{NhsNumber, SourceName, Upn};
use chrono::{Datelike, NaiveDate};

use super::ids::{early_years_id, health_id, school_id};
use super::*;
use crate::cast;

fn config(children: usize, seed: u64) -> PopulationConfig {
    PopulationConfig {
        children,
        seed,
        ..PopulationConfig::default()
    }
}

fn summary(p: &Population) -> Vec<String> {
    p.health
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {:?}",
                r.id, r.given, r.family, r.birth_date, r.nhs_number
            )
        })
        .chain(
            p.school
                .iter()
                .map(|r| format!("{} {} {} {}", r.id, r.given, r.family, r.upn)),
        )
        .chain(
            p.early_years
                .iter()
                .map(|r| format!("{} {} {} {}", r.id, r.given, r.family, r.birth_date)),
        )
        .collect()
}

#[test]
fn same_seed_same_population_and_different_seed_differs() {
    let a = Population::generate(&config(400, 7));
    let b = Population::generate(&config(400, 7));
    let c = Population::generate(&config(400, 8));
    assert_eq!(summary(&a), summary(&b));
    assert_ne!(summary(&a), summary(&c));
    assert_eq!(a.children.len(), 400 + cast::MEMBERS.len());
    assert_eq!(a.health.len(), a.children.len());
}

#[test]
fn sources_follow_age() {
    let p = Population::generate(&config(3000, 1));
    let age = |child: u32| age_on(p.children[child as usize].birth_date, p.as_of);
    for r in &p.school {
        let a = age(r.child);
        assert!((5..=18).contains(&a), "pupil aged {a}");
    }
    for r in &p.early_years {
        let a = age(r.child);
        assert!(a <= 6, "early-years child aged {a}");
        if a >= 5 {
            assert_eq!(r.enrolment.status, EnrolmentStatus::Ended);
        }
    }
    for r in &p.health {
        let a = age(r.child);
        assert!((0..=18).contains(&a));
        assert_eq!(
            r.mch.is_some(),
            a < 6 || p.children[r.child as usize].number == 0
        );
    }
    let under_five = p
        .children
        .iter()
        .filter(|c| age_on(c.birth_date, p.as_of) < 5)
        .count();
    let enrolled_under_five = p.early_years.iter().filter(|r| age(r.child) < 5).count();
    assert!(enrolled_under_five as f64 > 0.8 * under_five as f64);
    let school_age = p
        .children
        .iter()
        .filter(|c| age_on(c.birth_date, p.as_of) >= 5)
        .count();
    assert_eq!(p.school.len(), school_age);
}

#[test]
fn noise_rates_are_roughly_as_configured() {
    let noise = NoiseConfig {
        typo: 0.0,
        nickname: 0.0,
        dob_swap: 0.2,
        missing_identifier: 0.1,
        house_move: 0.15,
        name_change: 0.1,
        twins: 0.1,
    };
    let p = Population::generate(&PopulationConfig {
        children: 5000,
        seed: 3,
        noise,
        include_cast: false,
        ..PopulationConfig::default()
    });
    let n = p.health.len() as f64;
    let rate = |count: usize, of: f64| count as f64 / of;
    let missing = p.health.iter().filter(|r| r.nhs_number.is_none()).count();
    assert!(
        (rate(missing, n) - 0.1).abs() < 0.02,
        "missing {}",
        rate(missing, n)
    );
    let moved = p.health.iter().filter(|r| r.previous_address).count();
    assert!(
        (rate(moved, n) - 0.15).abs() < 0.02,
        "moved {}",
        rate(moved, n)
    );
    let renamed = p
        .health
        .iter()
        .filter(|r| *r.family != *p.children[r.child as usize].family)
        .count();
    assert!(
        (rate(renamed, n) - 0.1).abs() < 0.03,
        "renamed {}",
        rate(renamed, n)
    );

    let eligible: Vec<_> = p
        .health
        .iter()
        .filter(|r| {
            let d = p.children[r.child as usize].birth_date;
            d.day() <= 12 && d.day() != d.month()
        })
        .collect();
    let swapped = eligible
        .iter()
        .filter(|r| r.birth_date != p.children[r.child as usize].birth_date)
        .count();
    let swap_rate = rate(swapped, eligible.len() as f64);
    assert!((swap_rate - 0.2).abs() < 0.04, "swapped {swap_rate}");
    for r in &p.health {
        let truth = p.children[r.child as usize].birth_date;
        if r.birth_date != truth {
            assert_eq!(
                (r.birth_date.day(), r.birth_date.month()),
                (truth.month(), truth.day())
            );
        }
    }

    let twin_families = p
        .families
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let kids: Vec<_> = p
                .children
                .iter()
                .filter(|c| c.family_index == *i as u32)
                .collect();
            kids.len() >= 2 && kids[0].birth_date == kids[1].birth_date
        })
        .count();
    let twin_rate = rate(twin_families, p.families.len() as f64);
    assert!((twin_rate - 0.1).abs() < 0.03, "twins {twin_rate}");
}

#[test]
fn typos_and_nicknames_change_names_slightly() {
    let p = Population::generate(&PopulationConfig {
        children: 3000,
        seed: 4,
        noise: NoiseConfig {
            typo: 0.3,
            nickname: 1.0,
            ..NoiseConfig::none()
        },
        include_cast: false,
        ..PopulationConfig::default()
    });
    let formal: HashMap<&str, Vec<&str>> =
        nicknames().iter().fold(HashMap::new(), |mut m, (f, n)| {
            m.entry(*f).or_default().push(*n);
            m
        });
    let mut typos = 0;
    for r in &p.health {
        let truth = &p.children[r.child as usize];
        if let Some(nicks) = formal.get(&*truth.given)
            && *r.given != *truth.given
            && nicks.contains(&&*r.given)
        {
            continue;
        }
        if *r.given != *truth.given || *r.family != *truth.family {
            typos += 1;
        }
    }
    let rate = typos as f64 / p.health.len() as f64;
    assert!((rate - 0.3).abs() < 0.05, "typo rate {rate}");
    assert!(nicknames().len() >= 40);
}

#[test]
fn identifiers_are_valid() {
    let p = Population::generate(&config(2000, 5));
    for r in &p.health {
        if let Some(n) = &r.nhs_number {
            assert!(NhsNumber::parse(n).is_ok(), "{n}");
        }
    }
    for r in &p.early_years {
        if let Some(n) = &r.nhs_number {
            assert!(NhsNumber::parse(n).is_ok(), "{n}");
        }
    }
    let mut upns = HashSet::new();
    for r in &p.school {
        assert!(Upn::parse(&r.upn).is_ok(), "{}", r.upn);
        assert!(upns.insert(r.upn.clone()));
    }
    let ids: HashSet<_> = p.health.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids.len(), p.health.len());
    for r in p.families.iter().flat_map(|f| f.carers.iter()) {
        assert!(r.phone.starts_with("07700 900"));
    }
    for f in &p.families {
        let pc = &f.address.postcode;
        let (outward, inward) = pc.split_once(' ').expect("postcode has a space");
        assert!(outward.len() >= 3 && outward.len() <= 4, "{pc}");
        assert_eq!(inward.len(), 3, "{pc}");
    }
}

#[test]
fn twins_share_birth_carers_and_address_and_differ_in_name_and_ids() {
    let p = Population::generate(&PopulationConfig {
        children: 2000,
        seed: 9,
        noise: NoiseConfig {
            twins: 0.3,
            ..NoiseConfig::none()
        },
        include_cast: false,
        ..PopulationConfig::default()
    });
    let mut seen = 0;
    for (i, _) in p.families.iter().enumerate() {
        let kids: Vec<(usize, &TrueChild)> = p
            .children
            .iter()
            .enumerate()
            .filter(|(_, c)| c.family_index == i as u32)
            .collect();
        if kids.len() < 2 || kids[0].1.birth_date != kids[1].1.birth_date {
            continue;
        }
        seen += 1;
        let (a, b) = (kids[0], kids[1]);
        assert_ne!(a.1.given, b.1.given);
        let (ha, hb) = (&p.health[a.0], &p.health[b.0]);
        assert_eq!(ha.family_index, hb.family_index);
        assert_ne!(ha.id, hb.id);
        assert_ne!(ha.nhs_number, hb.nhs_number);
    }
    assert!(seen > 100, "only {seen} twin pairs");
}

fn cast_date(m: &cast::CastMember) -> NaiveDate {
    NaiveDate::parse_from_str(m.date_of_birth, "%Y-%m-%d").unwrap()
}

#[test]
fn cast_is_present_as_documented() {
    let p = Population::generate(&config(3000, 42));
    assert_eq!(
        p.child_key_of(SourceName::EarlyYears, cast::MAYA_EARLY_YEARS_ID)
            .as_deref(),
        Some(cast::MAYA.key)
    );
    let duplicate = &p.early_years[p.index.early_years_by_id[cast::MAYA_EARLY_YEARS_ID] as usize];
    assert_eq!(&*duplicate.family, cast::MAYA_EARLY_YEARS_FAMILY);
    assert_eq!(
        duplicate.birth_date.to_string(),
        cast::MAYA_EARLY_YEARS_DATE_OF_BIRTH
    );
    assert_eq!(duplicate.nhs_number, None);
    for (i, m) in cast::MEMBERS.iter().enumerate() {
        let child = &p.children[i];
        assert_eq!(child.key(), m.key);
        assert_eq!(m.health_id.map(str::to_owned), Some(health_id(i as u32)));
        if let Some(id) = m.school_id {
            assert_eq!(id, school_id(i as u32));
            assert_eq!(
                p.child_key_of(SourceName::School, id).as_deref(),
                Some(m.key)
            );
        }
        if let Some(id) = m.early_years_id {
            assert_eq!(id, early_years_id(i as u32));
            assert_eq!(
                p.child_key_of(SourceName::EarlyYears, id).as_deref(),
                Some(m.key)
            );
        }
        // Nobody else shares the cast member's name and date of birth.
        let same = p
            .children
            .iter()
            .filter(|c| {
                crate::text::fold(&c.given) == crate::text::fold(m.given)
                    && crate::text::fold(&c.family) == crate::text::fold(m.family)
                    && c.birth_date == cast_date(m)
            })
            .count();
        assert_eq!(same, 1, "{}", m.given);
    }
    let find = |id: &str| {
        let i = p.index.health_by_id[id];
        &p.health[i as usize]
    };

    let amelia = find(cast::AMELIA.health_id.unwrap());
    assert_eq!(
        &*p.orgs.gp_practices[amelia.gp_practice as usize].id,
        cast::GP_PRACTICE_ID
    );
    assert_eq!(&*p.orgs.gp_practices[0].name, "Elm Tree Surgery");
    assert_eq!(&*p.orgs.gps[amelia.gp as usize].id, cast::GP_ID);
    assert_eq!(
        p.orgs.gps[amelia.gp as usize].full_name(),
        "Dr Tom Whitfield"
    );
    assert!(NhsNumber::parse(amelia.nhs_number.as_deref().unwrap()).is_ok());
    let home = p.address_of(amelia.family_index, false);
    assert_eq!(
        (&*home.line1, &*home.postcode),
        ("14 Orchard Road", "HF1 2AB")
    );
    let carers = &p.families[amelia.family_index as usize].carers;
    assert_eq!(carers[0].full_name(), "Emma Hartley");
    assert_eq!(carers[1].full_name(), "James Hartley");
    let visits = amelia.visits(p.as_of);
    assert!(visits.len() >= 3 && visits.iter().all(|v| v.status == VisitStatus::Finished));

    let amelia_school = &p.school[p.index.school_by_id[cast::AMELIA.school_id.unwrap()] as usize];
    assert_eq!(&*amelia_school.family, "Hartly");
    assert!(Upn::parse(&amelia_school.upn).is_ok());
    assert_eq!(
        &*p.orgs.schools[amelia_school.school as usize].id,
        cast::SCHOOL_ORG_ID
    );
    assert_eq!(&*p.orgs.schools[0].name, "Riverside Primary School");
    let class = amelia_school.class as usize;
    assert!(p.orgs.classes[class].title.starts_with("Year 2 "));
    assert_eq!(&*p.orgs.teachers[class].id, cast::TEACHER_ID);
    assert_eq!(p.orgs.teachers[class].full_name(), "Priya Shah");

    let amelia_ey =
        &p.early_years[p.index.early_years_by_id[cast::AMELIA.early_years_id.unwrap()] as usize];
    assert_eq!(amelia_ey.enrolment.status, EnrolmentStatus::Ended);
    assert_eq!(
        &*p.orgs.settings[amelia_ey.enrolment.setting as usize].id,
        cast::KINDERGARTEN_ID
    );
    assert_eq!(&*p.orgs.settings[0].name, "Acorn Kindergarten");
    assert!(amelia_ey.nhs_number.is_some());
    assert!(!amelia_ey.previous_address);

    let noah = find(cast::NOAH.health_id.unwrap());
    let mch = noah.mch.unwrap();
    assert_eq!(
        &*p.orgs.mch_centres[mch.centre as usize].id,
        cast::MCH_CENTRE_ID
    );
    assert_eq!(
        &*p.orgs.mch_nurses[mch.nurse as usize].id,
        cast::MCH_NURSE_ID
    );
    assert_eq!(
        p.orgs.mch_nurses[mch.nurse as usize].full_name(),
        "Grace Mensah"
    );
    let noah_ey =
        &p.early_years[p.index.early_years_by_id[cast::NOAH.early_years_id.unwrap()] as usize];
    assert_eq!(noah_ey.enrolment.status, EnrolmentStatus::Active);
    assert_eq!(
        &*p.orgs.key_workers[noah_ey.enrolment.key_worker as usize].id,
        cast::KEY_WORKER_ID
    );
    assert_eq!(
        p.orgs.key_workers[noah_ey.enrolment.key_worker as usize].full_name(),
        "Sam Taylor"
    );
    assert_eq!(
        p.families[noah.family_index as usize].carers[0].full_name(),
        "Chioma Okafor"
    );

    let isla = find(cast::ISLA.health_id.unwrap());
    let ava = find(cast::AVA.health_id.unwrap());
    assert_eq!(isla.birth_date, ava.birth_date);
    assert_eq!(isla.family_index, ava.family_index);
    assert_ne!(isla.nhs_number, ava.nhs_number);
    assert!(
        p.index
            .school_by_id
            .contains_key(cast::ISLA.school_id.unwrap())
    );
    assert!(
        p.index
            .school_by_id
            .contains_key(cast::AVA.school_id.unwrap())
    );

    let leo = find(cast::LEO.health_id.unwrap());
    assert!(leo.restricted);
    let sc = leo.social_care.unwrap();
    assert_eq!(
        &*p.orgs.social_care_teams[sc.team as usize].id,
        cast::SOCIAL_CARE_TEAM_ID
    );
    assert_eq!(
        &*p.orgs.social_care_teams[0].name,
        "North Children's Social Care Team"
    );
    assert_eq!(
        &*p.orgs.social_workers[sc.worker as usize].id,
        cast::SOCIAL_WORKER_ID
    );
    assert_eq!(
        p.orgs.social_workers[sc.worker as usize].full_name(),
        "Jordan Reid"
    );
}

#[test]
fn export_writes_headers_and_the_same_truth() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(300, 11);
    let summary = export(&cfg, dir.path()).unwrap();
    let p = Population::generate(&cfg);
    assert_eq!(summary.children, p.children.len());
    assert_eq!(summary.health, p.health.len());
    assert_eq!(summary.school, p.school.len());
    assert_eq!(summary.early_years, p.early_years.len());

    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    for name in ["health.csv", "school.csv", "early_years.csv"] {
        let text = read(name);
        assert_eq!(
            text.lines().next().unwrap(),
            "id,given_name,family_name,date_of_birth,sex,postcode,address"
        );
    }
    assert_eq!(read("health.csv").lines().count(), p.health.len() + 1);
    assert!(read("health.csv").contains("\"14 Orchard Road, Hartfield\""));

    let truth = read("truth.csv");
    assert_eq!(truth.lines().next().unwrap(), "source,record_id,child");
    let from_file: HashSet<String> = truth.lines().skip(1).map(str::to_owned).collect();
    let in_memory: HashSet<String> = p
        .truth()
        .map(|(s, id, key)| format!("{},{id},{key}", s.as_str()))
        .collect();
    assert_eq!(from_file, in_memory);

    let pairs = read("truth_health_school.csv");
    assert_eq!(pairs.lines().next().unwrap(), "left_id,right_id");
    assert_eq!(pairs.lines().count(), p.school.len() + 1);
    let by_child: HashMap<u32, &str> = p.health.iter().map(|r| (r.child, &*r.id)).collect();
    for r in &p.school {
        assert!(pairs.contains(&format!("{},{}\n", by_child[&r.child], r.id)));
    }
    for name in [
        "truth_health_early_years.csv",
        "truth_school_early_years.csv",
    ] {
        assert_eq!(read(name).lines().next().unwrap(), "left_id,right_id");
    }
    let amelia_pair = format!(
        "{},{}",
        cast::AMELIA.school_id.unwrap(),
        cast::AMELIA.early_years_id.unwrap()
    );
    assert!(read("truth_school_early_years.csv").contains(&amelia_pair));
}

#[test]
fn noise_config_rejects_unknown_fields_and_bad_rates() {
    assert!(serde_json::from_str::<NoiseConfig>(r#"{"typos": 0.1}"#).is_err());
    let n: NoiseConfig = serde_json::from_str(r#"{"typo": 0.2}"#).unwrap();
    assert_eq!(n.typo, 0.2);
    assert_eq!(n.nickname, NoiseConfig::default().nickname);
    assert!(
        NoiseConfig {
            typo: 1.5,
            ..NoiseConfig::low()
        }
        .validate()
        .is_err()
    );
    assert!(NoiseConfig::high().validate().is_ok());
}

#[test]
fn key_age_visits_end_with_the_next_booked_one() {
    let p = Population::generate(&config(2000, 12));
    let mut babies = 0;
    let mut missed = 0;
    for r in p
        .health
        .iter()
        .filter(|r| age_on(r.birth_date, p.as_of) < 3)
    {
        let visits = r.visits(p.as_of);
        let last = visits.last().expect("a baby has a visit booked or done");
        assert_eq!(last.status, VisitStatus::Planned);
        assert!(last.date > p.as_of);
        assert!(visits[..visits.len() - 1].iter().all(|v| v.date <= p.as_of));
        missed += visits
            .iter()
            .filter(|v| v.status == VisitStatus::Cancelled)
            .count();
        babies += 1;
    }
    assert!(babies > 100);
    assert!(missed > 0);
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn crowd(family_name: &str, date_of_birth: &str, size: usize) -> Crowd {
    Crowd {
        family_name: family_name.to_owned(),
        date_of_birth: day(date_of_birth),
        size,
    }
}

fn with_crowds(children: usize, seed: u64, crowds: Vec<Crowd>) -> PopulationConfig {
    PopulationConfig {
        crowds,
        ..config(children, seed)
    }
}

fn two_crowds() -> Vec<Crowd> {
    vec![
        crowd("Crowder", "2016-05-05", 10),
        crowd("Manyfold", "2020-02-02", 50),
    ]
}

/// Positions of the records a search on a family-name prefix and a date of birth finds, as the simulators match them.
fn found<'p, T>(
    records: &'p [T],
    family: &str,
    birth: NaiveDate,
    fields: impl Fn(&T) -> (&str, NaiveDate) + 'p,
) -> Vec<&'p T> {
    let prefix = crate::text::fold(family);
    records
        .iter()
        .filter(|r| {
            let (f, b) = fields(r);
            b == birth && crate::text::fold(f).starts_with(&prefix)
        })
        .collect()
}

#[test]
fn crowds_are_distinct_children_sharing_family_name_and_birth() {
    let cfg = with_crowds(2000, 42, two_crowds());
    assert!(cfg.validate().is_ok());
    let p = Population::generate(&cfg);
    assert_eq!(p.children.len(), 2000 + cast::MEMBERS.len() + 60);
    let cast_keys: HashSet<&str> = cast::MEMBERS.iter().map(|m| m.key).collect();
    let mut all_keys = HashSet::new();
    for (c, size, pupils) in [(&cfg.crowds[0], 10, 10), (&cfg.crowds[1], 50, 50)] {
        // 2016-05-05 is 9 on 2026-03-02: health and school. 2020-02-02 is 6: health, school, and early years for some, with ended enrolments.
        let age = age_on(c.date_of_birth, p.as_of);
        let health = found(&p.health, &c.family_name, c.date_of_birth, |r| {
            (&r.family, r.birth_date)
        });
        let school = found(&p.school, &c.family_name, c.date_of_birth, |r| {
            (&r.family, r.birth_date)
        });
        let early = found(&p.early_years, &c.family_name, c.date_of_birth, |r| {
            (&r.family, r.birth_date)
        });
        assert_eq!(health.len(), size, "{c:?}");
        assert!(health.iter().all(|r| !r.restricted), "{c:?}");
        assert_eq!(school.len(), pupils, "{c:?}");
        if age > 6 {
            assert!(early.is_empty());
        } else {
            assert_eq!(age, 6);
            assert!(!early.is_empty() && early.len() < size, "{}", early.len());
            assert!(
                early
                    .iter()
                    .all(|r| r.enrolment.status == EnrolmentStatus::Ended)
            );
        }
        assert!(health.iter().all(|r| r.mch.is_none() == (age >= 6)));

        let children: HashSet<u32> = health.iter().map(|r| r.child).collect();
        assert_eq!(children.len(), size);
        for r in &school {
            assert!(children.contains(&r.child));
            assert_eq!(r.given, p.children[r.child as usize].given);
        }
        for r in &early {
            assert!(children.contains(&r.child));
        }
        let given: HashSet<String> = health.iter().map(|r| crate::text::fold(&r.given)).collect();
        assert_eq!(given.len(), size, "given names are distinct");
        let nhs: Vec<&str> = health
            .iter()
            .filter_map(|r| r.nhs_number.as_deref())
            .collect();
        assert!(nhs.len() > size / 2);
        assert_eq!(nhs.iter().collect::<HashSet<_>>().len(), nhs.len());
        let upns: HashSet<&str> = school.iter().map(|r| &*r.upn).collect();
        assert_eq!(upns.len(), pupils);
        let families: HashSet<u32> = health.iter().map(|r| r.family_index).collect();
        assert_eq!(families.len(), size, "each in a household of their own");
        for r in &health {
            let child = &p.children[r.child as usize];
            assert_eq!(&*child.family, c.family_name);
            assert_eq!(child.birth_date, c.date_of_birth);
            assert_eq!(r.given, child.given);
            assert!(
                child.number >= 16 + 2000,
                "numbered after the generated children"
            );
            let family = &p.families[r.family_index as usize];
            assert!(!family.carers.is_empty());
            assert!(
                p.health
                    .iter()
                    .filter(|o| o.family_index == r.family_index)
                    .count()
                    == 1,
                "an only child, not a twin"
            );
            assert!(all_keys.insert(child.key()));
            assert!(!cast_keys.contains(child.key().as_str()));
        }
    }
    let truth: Vec<String> = p.truth().map(|(_, _, key)| key).collect();
    assert_eq!(
        truth.len(),
        p.health.len() + p.school.len() + p.early_years.len()
    );
    let keys: HashSet<String> = p.children.iter().map(TrueChild::key).collect();
    assert_eq!(keys.len(), p.children.len());
    let family_numbers: HashSet<u32> = p.families.iter().map(|f| f.number).collect();
    assert_eq!(family_numbers.len(), p.families.len());
    let ids: HashSet<&str> = p
        .health
        .iter()
        .map(|r| &*r.id)
        .chain(p.school.iter().map(|r| &*r.id))
        .chain(p.early_years.iter().map(|r| &*r.id))
        .collect();
    assert_eq!(
        ids.len(),
        p.health.len() + p.school.len() + p.early_years.len()
    );
}

#[test]
fn crowds_leave_everyone_else_as_it_was() {
    let plain = Population::generate(&config(1500, 9));
    let cfg = with_crowds(1500, 9, two_crowds());
    let crowded = Population::generate(&cfg);
    assert_eq!(summary(&crowded), summary(&Population::generate(&cfg)));
    let prefix = |p: &Population| {
        (
            p.health
                .iter()
                .take(plain.health.len())
                .map(|r| {
                    (
                        r.id.clone(),
                        r.given.clone(),
                        r.family.clone(),
                        r.birth_date,
                        r.nhs_number.clone(),
                    )
                })
                .collect::<Vec<_>>(),
            p.school
                .iter()
                .take(plain.school.len())
                .map(|r| (r.id.clone(), r.upn.clone(), r.class))
                .collect::<Vec<_>>(),
            p.early_years
                .iter()
                .take(plain.early_years.len())
                .map(|r| (r.id.clone(), r.enrolment))
                .collect::<Vec<_>>(),
            p.families
                .iter()
                .take(plain.families.len())
                .map(|f| (f.number, f.address.clone()))
                .collect::<Vec<_>>(),
        )
    };
    assert_eq!(prefix(&plain), prefix(&crowded));
    assert_eq!(plain.orgs.classes.len(), crowded.orgs.classes.len());
    for m in cast::MEMBERS {
        assert_eq!(
            crowded
                .child_key_of(SourceName::Health, m.health_id.unwrap())
                .as_deref(),
            Some(m.key)
        );
    }
}

#[test]
fn nobody_else_falls_into_a_crowds_search() {
    // Take a generated child's own family name and date of birth as the crowd's: that child moves a day away.
    let plain = Population::generate(&config(3000, 4));
    let victim = plain
        .children
        .iter()
        .find(|c| c.number >= 16 && age_on(c.birth_date, plain.as_of) == 5)
        .unwrap();
    let c = Crowd {
        family_name: victim.family.to_string(),
        date_of_birth: victim.birth_date,
        size: 3,
    };
    let cfg = with_crowds(3000, 4, vec![c.clone()]);
    assert!(cfg.validate().is_ok());
    let p = Population::generate(&cfg);
    let moved = p
        .children
        .iter()
        .find(|x| x.number == victim.number)
        .unwrap();
    assert_eq!(moved.given, victim.given);
    assert_ne!(moved.birth_date, victim.birth_date);
    assert!((moved.birth_date - victim.birth_date).num_days().abs() <= 2);
    let h = found(&p.health, &c.family_name, c.date_of_birth, |r| {
        (&r.family, r.birth_date)
    });
    assert_eq!(h.len(), 3);
    let s = found(&p.school, &c.family_name, c.date_of_birth, |r| {
        (&r.family, r.birth_date)
    });
    assert_eq!(s.len(), 3);
    let e = found(&p.early_years, &c.family_name, c.date_of_birth, |r| {
        (&r.family, r.birth_date)
    });
    assert!(e.len() <= 3);
    assert!(
        h.iter()
            .all(|r| p.children[r.child as usize].number >= 16 + 3000)
    );
}

#[test]
fn large_crowds_run_out_of_single_names_into_pairs() {
    let p = Population::generate(&with_crowds(
        50,
        3,
        vec![crowd("Legion", "2010-10-10", 300)],
    ));
    let members: Vec<&TrueChild> = p
        .children
        .iter()
        .filter(|c| &*c.family == "Legion")
        .collect();
    assert_eq!(members.len(), 300);
    let names: HashSet<String> = members
        .iter()
        .map(|c| crate::text::fold(&c.given))
        .collect();
    assert_eq!(names.len(), 300);
    assert!(members.iter().any(|c| c.given.contains('-')));
}

#[test]
fn crowd_config_is_checked() {
    let cfg: PopulationConfig = serde_json::from_str(
        r#"{"children": 10, "crowds": [{"family_name": "Crowder", "date_of_birth": "2016-05-05", "size": 10}]}"#,
    )
    .unwrap();
    assert_eq!(cfg.crowds, vec![crowd("Crowder", "2016-05-05", 10)]);
    assert!(PopulationConfig::default().crowds.is_empty());
    assert!(
        serde_json::from_str::<Crowd>(
            r#"{"family_name": "A", "date_of_birth": "2016-05-05", "size": 1, "twins": true}"#
        )
        .is_err()
    );
    let back: Crowd =
        serde_json::from_value(serde_json::to_value(crowd("A", "2016-05-05", 2)).unwrap()).unwrap();
    assert_eq!(back, crowd("A", "2016-05-05", 2));
    let bad = |crowds: Vec<Crowd>| with_crowds(10, 1, crowds).validate().unwrap_err();
    assert!(bad(vec![crowd(" ", "2016-05-05", 2)]).contains("family name"));
    assert!(bad(vec![crowd("A", "2030-01-01", 2)]).contains("between"));
    assert!(bad(vec![crowd("A", "2000-01-01", 2)]).contains("between"));
    assert!(bad(vec![crowd("A", "2016-05-05", Crowd::MAX_SIZE + 1)]).contains("at most"));
    assert!(
        bad(vec![
            crowd("A", "2016-05-05", 2),
            crowd("a", "2016-05-05", 3)
        ])
        .contains("share")
    );
    assert!(bad(vec![crowd("Brenn", "2017-01-22", 2)]).contains("cast member"));
    assert!(
        PopulationConfig {
            include_cast: false,
            ..with_crowds(10, 1, vec![crowd("Brennan", "2017-01-22", 2)])
        }
        .validate()
        .is_ok()
    );
}

#[test]
fn export_writes_crowds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = with_crowds(200, 11, two_crowds());
    let summary = export(&cfg, dir.path()).unwrap();
    let p = Population::generate(&cfg);
    assert_eq!(summary.children, p.children.len());
    assert_eq!(summary.health, p.health.len());
    assert_eq!(summary.school, p.school.len());
    assert_eq!(summary.early_years, p.early_years.len());
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let count = |text: &str, needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    assert_eq!(count(&read("health.csv"), ",Crowder,2016-05-05,"), 10);
    assert_eq!(count(&read("health.csv"), ",Manyfold,2020-02-02,"), 50);
    assert_eq!(count(&read("school.csv"), ",Crowder,2016-05-05,"), 10);
    assert_eq!(count(&read("school.csv"), ",Manyfold,2020-02-02,"), 50);
    let from_file: HashSet<String> = read("truth.csv")
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect();
    let in_memory: HashSet<String> = p
        .truth()
        .map(|(s, id, key)| format!("{},{id},{key}", s.as_str()))
        .collect();
    assert_eq!(from_file, in_memory);
    assert!(
        with_crowds(10, 1, vec![crowd("A", "2030-01-01", 2)])
            .validate()
            .is_err()
    );
    assert!(
        export(
            &with_crowds(10, 1, vec![crowd("A", "2030-01-01", 2)]),
            dir.path()
        )
        .is_err()
    );
}
