//! Search indexes over the population, built once after generation so the simulators answer indexed searches without scanning a million records.

use std::collections::{BTreeMap, HashMap};

use chrono::NaiveDate;

use super::Population;
use crate::text::fold;

/// Record positions by search key. Values are indexes into the population's record vectors (or, for OneRoster users, positions in the users collection).
#[derive(Debug, Default)]
pub(crate) struct Indexes {
    pub health_by_id: HashMap<Box<str>, u32>,
    /// Folded family name → health records: a prefix search is a range.
    pub health_family: BTreeMap<Box<str>, Vec<u32>>,
    /// Folded given names (official and usual) → health records.
    pub health_given: BTreeMap<Box<str>, Vec<u32>>,
    pub health_birth: BTreeMap<NaiveDate, Vec<u32>>,
    pub health_nhs: HashMap<Box<str>, Vec<u32>>,
    /// Postcode without spaces, upper case → health records.
    pub health_postcode: BTreeMap<Box<str>, Vec<u32>>,

    pub school_by_id: HashMap<Box<str>, u32>,
    /// Every OneRoster user (teachers, students, parents) by sourcedId → position in the users collection.
    pub users_by_id: HashMap<Box<str>, u32>,
    pub users_by_family: HashMap<Box<str>, Vec<u32>>,
    pub school_upn: HashMap<Box<str>, Vec<u32>>,
    pub school_birth: HashMap<NaiveDate, Vec<u32>>,
    /// Pupils (school record indexes) of each class, by class index.
    pub class_pupils: Vec<Vec<u32>>,

    pub early_years_by_id: HashMap<Box<str>, u32>,
    /// Lower-cased family name → early-years records.
    pub early_years_family: BTreeMap<Box<str>, Vec<u32>>,
    pub early_years_birth: HashMap<NaiveDate, Vec<u32>>,
}

/// Postcode as the index keys it: no spaces, upper case.
pub(crate) fn postcode_key(raw: &str) -> String {
    raw.chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase()
}

fn push<K: Ord>(map: &mut BTreeMap<K, Vec<u32>>, key: K, value: u32) {
    map.entry(key).or_default().push(value);
}

fn push_hash<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<u32>>, key: K, value: u32) {
    map.entry(key).or_default().push(value);
}

impl Indexes {
    pub fn build(p: &Population) -> Self {
        let mut ix = Indexes::default();
        for (i, r) in p.health.iter().enumerate() {
            let i = i as u32;
            ix.health_by_id.insert(r.id.clone(), i);
            push(&mut ix.health_family, fold(&r.family).into(), i);
            push(&mut ix.health_given, fold(&r.given).into(), i);
            if let Some(u) = &r.usual_given
                && fold(u) != fold(&r.given)
            {
                push(&mut ix.health_given, fold(u).into(), i);
            }
            push(&mut ix.health_birth, r.birth_date, i);
            if let Some(n) = &r.nhs_number {
                push_hash(&mut ix.health_nhs, n.clone(), i);
            }
            let address = p.address_of(r.family_index, r.previous_address);
            push(
                &mut ix.health_postcode,
                postcode_key(&address.postcode).into(),
                i,
            );
        }

        // Users are numbered teachers first, then students, then parents, as the users collection lists them.
        let teachers = p.orgs.teachers.len() as u32;
        let students = p.school.len() as u32;
        for (i, t) in p.orgs.teachers.iter().enumerate() {
            ix.users_by_id.insert(t.id.clone(), i as u32);
            push_hash(&mut ix.users_by_family, t.family.clone(), i as u32);
        }
        ix.class_pupils = vec![Vec::new(); p.orgs.classes.len()];
        for (i, r) in p.school.iter().enumerate() {
            let i = i as u32;
            ix.class_pupils[r.class as usize].push(i);
            ix.school_by_id.insert(r.id.clone(), i);
            ix.users_by_id.insert(r.id.clone(), teachers + i);
            push_hash(&mut ix.users_by_family, r.family.clone(), teachers + i);
            push_hash(&mut ix.school_upn, r.upn.clone(), i);
            push_hash(&mut ix.school_birth, r.birth_date, i);
        }
        for (i, &(family, carer)) in p.parents.iter().enumerate() {
            let position = teachers + students + i as u32;
            let f = &p.families[family as usize];
            let c = &f.carers[carer as usize];
            ix.users_by_id.insert(
                super::ids::parent_id(f.number, carer.into()).into(),
                position,
            );
            push_hash(&mut ix.users_by_family, c.family.clone(), position);
        }

        for (i, r) in p.early_years.iter().enumerate() {
            let i = i as u32;
            ix.early_years_by_id.insert(r.id.clone(), i);
            push(
                &mut ix.early_years_family,
                r.family.to_lowercase().into(),
                i,
            );
            push_hash(&mut ix.early_years_birth, r.birth_date, i);
        }
        ix
    }
}
