//! From the early-years API's payloads to childgraph's domain types.

use std::collections::HashMap;
use std::sync::Arc;

use childgraph_schema::{
    Address, Carer, Involvement, InvolvementStatus, NhsNumber, Organisation, OrganisationKind,
    Participation, ParticipationStatus, PersonRecord, Practitioner, RecordDetails, ServiceKind,
    Sex, SourceName,
};
use chrono::NaiveDate;

use super::payloads::{self, Child, Enrolment, Setting};

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn date(raw: Option<&str>) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(raw?, "%Y-%m-%d").ok()
}

fn address(a: Option<&payloads::Address>) -> Option<Address> {
    let a = a?;
    let lines: Vec<String> = [a.line1.as_deref(), a.line2.as_deref(), a.town.as_deref()]
        .into_iter()
        .filter_map(non_empty)
        .collect();
    let postcode = non_empty(a.postcode.as_deref());
    (!lines.is_empty() || postcode.is_some()).then_some(Address { lines, postcode })
}

/// The child as a person record.
pub fn person_record(child: &Child) -> Option<PersonRecord> {
    if child.id.is_empty() {
        return None;
    }
    let given_names = std::iter::once(child.first_name.as_str())
        .chain(child.middle_names.iter().map(String::as_str))
        .filter_map(|n| non_empty(Some(n)))
        .collect();
    Some(PersonRecord {
        source: SourceName::EarlyYears,
        id: child.id.clone(),
        given_names,
        family_name: non_empty(Some(&child.last_name)),
        date_of_birth: date(child.date_of_birth.as_deref()),
        sex: match child.sex.as_deref() {
            Some("female") => Some(Sex::Female),
            Some("male") => Some(Sex::Male),
            Some("other") => Some(Sex::Other),
            Some("unknown") => Some(Sex::Unknown),
            _ => None,
        },
        // A malformed NHS number is treated as absent, so that linkage never matches on it.
        nhs_number: child
            .nhs_number
            .as_deref()
            .and_then(|n| NhsNumber::parse(n).ok()),
        upn: None,
        address: address(child.address.as_ref()),
        restricted: false,
    })
}

pub fn carer(c: &payloads::Carer) -> Carer {
    Carer {
        name: c.name.trim().to_owned(),
        relationship: c.relationship.as_deref().map(|r| r.replace('_', " ")),
        phone: non_empty(c.phone.as_deref()),
        email: non_empty(c.email.as_deref()),
        address: address(c.address.as_ref()),
    }
}

/// The setting. The schema has one kind for early-years settings, so long day care and family day care count as kindergartens.
pub fn organisation(s: &Setting) -> Organisation {
    Organisation {
        id: s.id.clone(),
        name: s.name.trim().to_owned(),
        kind: OrganisationKind::Kindergarten,
        phone: non_empty(s.phone.as_deref()),
        email: non_empty(s.email.as_deref()),
        address: address(s.address.as_ref()),
    }
}

fn key_worker(k: &payloads::KeyWorker) -> Practitioner {
    Practitioner {
        id: k.id.clone(),
        name: k.name.trim().to_owned(),
        role: non_empty(k.role.as_deref()).or_else(|| Some("key worker".into())),
        phone: non_empty(k.phone.as_deref()),
        email: non_empty(k.email.as_deref()),
    }
}

/// The enrolment in words: "kindergarten, 15 hours a week".
pub fn description(e: &Enrolment) -> String {
    let programme = e
        .programme
        .as_deref()
        .map_or_else(|| "early years".to_owned(), |p| p.replace('_', " "));
    match e.hours_per_week {
        Some(hours) if hours.is_finite() && hours > 0.0 => {
            // Whole hours print without a decimal point; half hours keep it.
            let hours = format!("{hours}");
            format!("{programme}, {hours} hours a week")
        }
        _ => programme,
    }
}

/// Everything fetched for a set of children.
#[derive(Debug, Default)]
pub struct Fetched {
    pub children: Vec<Child>,
    pub enrolments: Vec<Enrolment>,
    pub settings: Vec<Setting>,
}

/// Sorts what was fetched into details per child, only the parts asked for. Every id asked for gets an entry.
pub fn details(
    ids: &[String],
    fetched: &Fetched,
    parts: crate::connector::Parts,
) -> HashMap<String, RecordDetails> {
    let mut out: HashMap<String, RecordDetails> = ids
        .iter()
        .map(|id| (id.clone(), RecordDetails::default()))
        .collect();
    if parts.carers {
        for child in &fetched.children {
            if let Some(entry) = out.get_mut(&child.id) {
                entry.carers = child.carers.iter().map(carer).collect();
            }
        }
    }
    let settings: HashMap<&str, Arc<Organisation>> = fetched
        .settings
        .iter()
        .map(|s| (s.id.as_str(), Arc::new(organisation(s))))
        .collect();
    for e in &fetched.enrolments {
        let Some(entry) = out.get_mut(&e.child_id) else {
            continue;
        };
        let setting = e
            .setting_id
            .as_deref()
            .and_then(|id| settings.get(id))
            .cloned();
        let start = date(e.start_date.as_deref());
        let end = date(e.end_date.as_deref());
        if parts.involvements {
            let status = match e.status.as_deref() {
                Some("active") => InvolvementStatus::Active,
                Some("ended") => InvolvementStatus::Finished,
                Some("waitlisted") => InvolvementStatus::Planned,
                _ => continue,
            };
            entry.involvements.push(Involvement {
                source: SourceName::EarlyYears,
                kind: ServiceKind::EarlyYears,
                organisation: setting.clone(),
                practitioner: e.key_worker.as_ref().map(key_worker),
                status,
                start,
                end,
            });
        }
        if parts.participation {
            let status = match e.status.as_deref() {
                Some("active") => ParticipationStatus::Enrolled,
                Some("ended") => ParticipationStatus::Left,
                Some("waitlisted") => ParticipationStatus::Planned,
                _ => continue,
            };
            entry.participation.push(Participation {
                source: SourceName::EarlyYears,
                kind: ServiceKind::EarlyYears,
                description: description(e),
                status,
                date: start,
                end,
                organisation: setting,
            });
        }
    }
    for entry in out.values_mut() {
        entry.participation.sort_by_key(|p| p.date);
        entry.involvements.sort_by_key(|i| i.start);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::Parts;
    use crate::early_years::payloads::{ChildList, EnrolmentList, SettingList};

    const CHILDREN: &str = r#"{"items":[{"id":"ch-1","first_name":"Amelia","middle_names":["Rose"],"last_name":"Hartley",
        "preferred_name":"Millie","date_of_birth":"2019-06-14","sex":"female","nhs_number":"943 476 5919",
        "address":{"line1":"1 Mill Lane","line2":null,"town":"Leeds","postcode":"LS1 4AP"},
        "carers":[{"name":"Sarah Hartley","relationship":"foster_carer","phone":"0113 496 0000","email":null,"address":null}],
        "updated_at":"2025-01-01T00:00:00Z","new_field":[1,2]}]}"#;

    fn fetched() -> Fetched {
        Fetched {
            children: serde_json::from_str::<ChildList>(CHILDREN).unwrap().items,
            enrolments: serde_json::from_str::<EnrolmentList>(
                r#"{"items":[
                {"id":"en-1","child_id":"ch-1","setting_id":"set-1","programme":"kindergarten","hours_per_week":15,
                 "status":"active","start_date":"2023-01-30","end_date":null,
                 "key_worker":{"id":"kw-1","name":"Grace Lee","role":null,"phone":"0113 496 0003","email":"grace@sunny.example"}},
                {"id":"en-0","child_id":"ch-1","setting_id":"set-1","programme":"long_day_care","hours_per_week":7.5,
                 "status":"ended","start_date":"2021-02-01","end_date":"2022-12-16","key_worker":null}]}"#,
            )
            .unwrap()
            .items,
            settings: serde_json::from_str::<SettingList>(
                r#"{"items":[{"id":"set-1","name":"Sunny Days Kindergarten","type":"kindergarten","phone":"0113 496 0004",
                "email":null,"address":{"line1":"3 Park Road","postcode":"LS2 1AA"}}]}"#,
            )
            .unwrap()
            .items,
        }
    }

    #[test]
    fn child_maps_to_person_record() {
        let record = person_record(&fetched().children[0]).unwrap();
        assert_eq!(record.given_names, ["Amelia", "Rose"]);
        assert_eq!(record.family_name.as_deref(), Some("Hartley"));
        assert_eq!(record.date_of_birth, NaiveDate::from_ymd_opt(2019, 6, 14));
        assert_eq!(record.sex, Some(Sex::Female));
        assert_eq!(record.nhs_number.unwrap().as_str(), "9434765919");
        assert_eq!(
            record.address.unwrap().lines,
            ["1 Mill Lane".to_string(), "Leeds".to_string()]
        );
    }

    #[test]
    fn details_only_hold_the_parts_asked_for() {
        let ids = vec!["ch-1".to_string(), "ch-2".to_string()];
        let all = details(&ids, &fetched(), Parts::ALL);
        assert_eq!(all["ch-2"], RecordDetails::default());
        let d = &all["ch-1"];
        assert_eq!(d.carers[0].relationship.as_deref(), Some("foster carer"));
        assert_eq!(d.carers[0].email, None);
        let descriptions: Vec<(&str, ParticipationStatus)> = d
            .participation
            .iter()
            .map(|p| (p.description.as_str(), p.status))
            .collect();
        assert_eq!(
            descriptions,
            [
                ("long day care, 7.5 hours a week", ParticipationStatus::Left),
                (
                    "kindergarten, 15 hours a week",
                    ParticipationStatus::Enrolled
                )
            ]
        );
        let current = &d.involvements[1];
        assert_eq!(current.kind, ServiceKind::EarlyYears);
        assert_eq!(current.status, InvolvementStatus::Active);
        let setting = current.organisation.as_ref().unwrap();
        assert_eq!(
            (setting.name.as_str(), setting.kind),
            ("Sunny Days Kindergarten", OrganisationKind::Kindergarten)
        );
        let worker = current.practitioner.as_ref().unwrap();
        assert_eq!(worker.name, "Grace Lee");
        assert_eq!(worker.role.as_deref(), Some("key worker"));
        assert_eq!(d.involvements[0].status, InvolvementStatus::Finished);

        let carers_only = details(
            &ids,
            &fetched(),
            Parts {
                carers: true,
                ..Parts::NONE
            },
        );
        assert!(carers_only["ch-1"].involvements.is_empty());
        assert!(carers_only["ch-1"].participation.is_empty());
        assert_eq!(carers_only["ch-1"].carers.len(), 1);
    }
}
