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
