//! From FHIR resources to childgraph's domain types, following the health profile in `connectors/PROFILES.md`.

use std::collections::HashMap;
use std::sync::Arc;

use childgraph_schema::{
    Address, Carer, Involvement, InvolvementStatus, NhsNumber, Organisation, OrganisationKind,
    Participation, ParticipationStatus, PersonRecord, Practitioner, RecordDetails, ServiceKind,
    Sex, SourceName,
};

use super::resources::{
    self, CONFIDENTIALITY_SYSTEM, Encounter, EpisodeOfCare, HumanName, KEY_AGE_VISIT_SYSTEM,
    ORGANISATION_KIND_SYSTEM, ROLE_CODE_SYSTEM, RelatedPerson, SERVICE_TYPE_SYSTEM, contact,
    full_date,
};

/// The Patient as a person record, or `None` if it has no id to refer to it by.
pub fn person_record(patient: &resources::Patient) -> Option<PersonRecord> {
    let id = patient.id.clone().filter(|id| !id.is_empty())?;
    let name = main_name(&patient.name);
    Some(PersonRecord {
        source: SourceName::Health,
        id,
        given_names: name.map(given_names).unwrap_or_default(),
        family_name: name.and_then(|n| non_empty(n.family.as_deref())),
        date_of_birth: patient.birth_date.as_deref().and_then(full_date),
        sex: patient.gender.as_deref().and_then(sex),
        // A malformed NHS number is treated as absent: linkage must not match on it, and the rest of the record is still useful.
        nhs_number: patient
            .identifier
            .iter()
            .filter(|i| {
                i.system.as_deref() == Some(childgraph_schema::identifiers::NHS_NUMBER_SYSTEM)
            })
            .find_map(|i| NhsNumber::parse(i.value.as_deref()?).ok()),
        upn: None,
        address: current_address(&patient.address),
        restricted: is_restricted(patient.meta.as_ref()),
    })
}

/// Restricted at source: a `meta.security` label R or V in the v3 confidentiality system.
pub fn is_restricted(meta: Option<&resources::Meta>) -> bool {
    meta.is_some_and(|m| {
        m.security.iter().any(|c| {
            c.system.as_deref() == Some(CONFIDENTIALITY_SYSTEM)
                && matches!(c.code.as_deref(), Some("R" | "V"))
        })
    })
}

/// The official name, else the first name that is neither old nor a maiden name.
fn main_name(names: &[HumanName]) -> Option<&HumanName> {
    names
        .iter()
        .find(|n| n.use_.as_deref() == Some("official"))
        .or_else(|| {
            names.iter().find(|n| {
                !matches!(
                    n.use_.as_deref(),
                    Some("old" | "maiden" | "nickname" | "anonymous")
                )
            })
        })
        .or_else(|| names.first())
}

fn given_names(name: &HumanName) -> Vec<String> {
    name.given
        .iter()
        .filter_map(|g| non_empty(Some(g)))
        .collect()
}

fn sex(gender: &str) -> Option<Sex> {
    match gender {
        "female" => Some(Sex::Female),
        "male" => Some(Sex::Male),
        "other" => Some(Sex::Other),
        "unknown" => Some(Sex::Unknown),
        _ => None,
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The first address not marked old: the profile puts the current one first, and R4 allows history after it.
fn current_address(addresses: &[resources::Address]) -> Option<Address> {
    addresses
        .iter()
        .find(|a| a.use_.as_deref() != Some("old"))
        .or_else(|| addresses.first())
        .and_then(address)
}

fn address(a: &resources::Address) -> Option<Address> {
    let mut lines: Vec<String> = a.line.iter().filter_map(|l| non_empty(Some(l))).collect();
    lines.extend(non_empty(a.city.as_deref()));
    if lines.is_empty() {
        lines.extend(non_empty(a.text.as_deref()));
    }
    let postcode = non_empty(a.postal_code.as_deref());
    (!lines.is_empty() || postcode.is_some()).then_some(Address { lines, postcode })
}

/// The carer a RelatedPerson describes.
pub fn carer(person: &RelatedPerson) -> Carer {
    let name = person
        .name
        .iter()
        .find(|n| n.use_.as_deref() == Some("official"))
        .or_else(|| person.name.first())
        .and_then(HumanName::display)
        .unwrap_or_default();
    Carer {
        name,
        relationship: person.relationship.iter().find_map(|r| {
            let coded = r
                .coding_in(ROLE_CODE_SYSTEM)
                .and_then(|c| role_code_words(c.code.as_deref()?));
            coded.map(str::to_owned).or_else(|| non_empty(r.words()))
        }),
        phone: contact(&person.telecom, "phone"),
        email: contact(&person.telecom, "email"),
        address: current_address(&person.address),
    }
}

fn role_code_words(code: &str) -> Option<&'static str> {
    Some(match code {
        "MTH" => "mother",
        "FTH" => "father",
        "PRN" => "parent",
        "GUARD" => "guardian",
        "GRPRN" => "grandparent",
        "SIB" => "sibling",
        _ => return None,
    })
}

/// The organisation, or `None` if it has no id.
pub fn organisation(org: &resources::Organization) -> Option<Organisation> {
    let id = org.id.clone().filter(|id| !id.is_empty())?;
    let kind = org
        .kind
        .iter()
        .find_map(|t| t.coding_in(ORGANISATION_KIND_SYSTEM)?.code.as_deref())
        .map_or(OrganisationKind::Other, |code| match code {
            "gp-practice" => OrganisationKind::GpPractice,
            "maternal-child-health" => OrganisationKind::MaternalChildHealth,
            "social-care" => OrganisationKind::SocialCare,
            _ => OrganisationKind::Other,
        });
    Some(Organisation {
        id,
        name: non_empty(org.name.as_deref()).unwrap_or_default(),
        kind,
        phone: contact(&org.telecom, "phone"),
        email: contact(&org.telecom, "email"),
        address: current_address(&org.address),
    })
}

/// The practitioner, or `None` if it has no id.
pub fn practitioner(p: &resources::Practitioner) -> Option<Practitioner> {
    let id = p.id.clone().filter(|id| !id.is_empty())?;
    Some(Practitioner {
        id,
        name: p
            .name
            .iter()
            .find(|n| n.use_.as_deref() == Some("official"))
            .or_else(|| p.name.first())
            .and_then(HumanName::display)
            .unwrap_or_default(),
        role: p
            .qualification
            .iter()
            .find_map(|q| non_empty(q.code.as_ref()?.words())),
        phone: contact(&p.telecom, "phone"),
        email: contact(&p.telecom, "email"),
    })
}

/// The service an EpisodeOfCare records. Episodes of a type outside childgraph's service types, or entered in error, are left out:
/// a service the connector cannot classify could be a sensitive one, and must not be shown as something else.
pub fn involvement(
    episode: &EpisodeOfCare,
    organisations: &HashMap<String, Arc<Organisation>>,
    practitioners: &HashMap<String, Practitioner>,
) -> Option<Involvement> {
    let kind = episode
        .kind
        .iter()
        .find_map(|t| t.coding_in(SERVICE_TYPE_SYSTEM)?.code.as_deref())
        .and_then(service_kind)?;
    let status = match episode.status.as_deref()? {
        "planned" | "waitlist" => InvolvementStatus::Planned,
        "active" | "onhold" => InvolvementStatus::Active,
        "finished" | "cancelled" => InvolvementStatus::Finished,
        _ => return None,
    };
    let period = episode.period.clone().unwrap_or_default();
    Some(Involvement {
        source: SourceName::Health,
        kind,
        organisation: episode
            .managing_organization
            .as_ref()
            .and_then(|r| organisations.get(r.id_of("Organization")?))
            .cloned(),
        practitioner: episode
            .care_manager
            .as_ref()
            .and_then(|r| practitioners.get(r.id_of("Practitioner")?))
            .cloned(),
        status,
        start: period.start_date(),
        end: period.end_date(),
    })
}

fn service_kind(code: &str) -> Option<ServiceKind> {
    Some(match code {
        "general-practice" => ServiceKind::GeneralPractice,
        "maternal-child-health" => ServiceKind::MaternalChildHealth,
        "social-care" => ServiceKind::SocialCare,
        "mental-health" => ServiceKind::MentalHealth,
        "sexual-health" => ServiceKind::SexualHealth,
        "substance-misuse" => ServiceKind::SubstanceMisuse,
        _ => return None,
    })
}

/// Whether an Encounter is a key-age visit, the only encounters the connector reports.
/// Other encounters (a clinic visit, say) could reveal a sensitive service, so they are never mapped.
pub fn is_key_age_visit(encounter: &Encounter) -> bool {
    encounter
        .kind
        .iter()
        .any(|t| t.coding_in(KEY_AGE_VISIT_SYSTEM).is_some())
}

/// The key-age visit an Encounter records, as participation in maternal and child health.
pub fn participation(
    encounter: &Encounter,
    organisations: &HashMap<String, Arc<Organisation>>,
) -> Option<Participation> {
    let visit = encounter
        .kind
        .iter()
        .find(|t| t.coding_in(KEY_AGE_VISIT_SYSTEM).is_some())?;
    let coding = visit.coding_in(KEY_AGE_VISIT_SYSTEM)?;
    let description = non_empty(coding.display.as_deref())
        .or_else(|| non_empty(visit.text.as_deref()))
        .or_else(|| non_empty(coding.code.as_deref()))?;
    let status = match encounter.status.as_deref()? {
        "planned" => ParticipationStatus::Planned,
        "arrived" | "triaged" | "in-progress" | "onleave" | "finished" => {
            ParticipationStatus::Attended
        }
        "cancelled" => ParticipationStatus::Missed,
        _ => return None,
    };
    let period = encounter.period.clone().unwrap_or_default();
    Some(Participation {
        source: SourceName::Health,
        kind: ServiceKind::MaternalChildHealth,
        description,
        status,
        date: period.start_date(),
        end: period.end_date(),
        organisation: encounter
            .service_provider
            .as_ref()
            .and_then(|r| organisations.get(r.id_of("Organization")?))
            .cloned(),
    })
}

/// Everything fetched for a set of patients, before it is sorted by patient.
#[derive(Debug, Default)]
pub struct Fetched {
    pub related_people: Vec<RelatedPerson>,
    pub episodes: Vec<EpisodeOfCare>,
    pub encounters: Vec<Encounter>,
    pub organisations: Vec<resources::Organization>,
    pub practitioners: Vec<resources::Practitioner>,
}

/// Sorts what was fetched into details per patient. Every id asked for gets an entry; resources about other patients are dropped.
pub fn details(ids: &[String], fetched: &Fetched) -> HashMap<String, RecordDetails> {
    let mut out: HashMap<String, RecordDetails> = ids
        .iter()
        .map(|id| (id.clone(), RecordDetails::default()))
        .collect();
    let organisations: HashMap<String, Arc<Organisation>> = fetched
        .organisations
        .iter()
        .filter_map(organisation)
        .map(|o| (o.id.clone(), Arc::new(o)))
        .collect();
    let practitioners: HashMap<String, Practitioner> = fetched
        .practitioners
        .iter()
        .filter_map(practitioner)
        .map(|p| (p.id.clone(), p))
        .collect();
    for person in &fetched.related_people {
        let patient = person.patient.as_ref().and_then(|r| r.id_of("Patient"));
        if let Some(entry) = patient.and_then(|p| out.get_mut(p)) {
            entry.carers.push(carer(person));
        }
    }
    for episode in &fetched.episodes {
        let patient = episode.patient.as_ref().and_then(|r| r.id_of("Patient"));
        if let Some(entry) = patient.and_then(|p| out.get_mut(p))
            && let Some(involvement) = involvement(episode, &organisations, &practitioners)
        {
            entry.involvements.push(involvement);
        }
    }
    for encounter in &fetched.encounters {
        let patient = encounter.subject.as_ref().and_then(|r| r.id_of("Patient"));
        if let Some(entry) = patient.and_then(|p| out.get_mut(p))
            && let Some(participation) = participation(encounter, &organisations)
        {
            entry.participation.push(participation);
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
    use chrono::NaiveDate;

    use super::*;

    fn parse<T: serde::de::DeserializeOwned>(json: &str) -> T {
        serde_json::from_str(json).unwrap()
    }

    const PATIENT: &str = r#"{
        "resourceType": "Patient", "id": "pat-1",
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
        "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9434765919"}],
        "name": [{"use": "official", "family": "Hartley", "given": ["Amelia", "Rose"]}, {"use": "nickname", "given": ["Millie"]}],
        "gender": "female", "birthDate": "2019-06-14",
        "address": [{"line": ["1 Mill Lane"], "city": "Leeds", "postalCode": "LS1 4AP"}],
        "generalPractitioner": [{"reference": "Organization/gp-1"}]
    }"#;

    #[test]
    fn patient_maps_to_person_record() {
        let record = person_record(&parse(PATIENT)).unwrap();
        assert_eq!(record.id, "pat-1");
        assert_eq!(record.given_names, ["Amelia", "Rose"]);
        assert_eq!(record.family_name.as_deref(), Some("Hartley"));
        assert_eq!(record.date_of_birth, NaiveDate::from_ymd_opt(2019, 6, 14));
        assert_eq!(record.sex, Some(Sex::Female));
        assert_eq!(record.nhs_number.unwrap().as_str(), "9434765919");
        assert_eq!(
            record.address,
            Some(Address {
                lines: vec!["1 Mill Lane".into(), "Leeds".into()],
                postcode: Some("LS1 4AP".into())
            })
        );
        assert!(record.restricted);
    }

    #[test]
    fn restriction_needs_r_or_v_in_the_confidentiality_system() {
        let meta = |system: &str, code: &str| -> resources::Meta {
            parse(&format!(
                r#"{{"security":[{{"system":"{system}","code":"{code}"}}]}}"#
            ))
        };
        assert!(is_restricted(Some(&meta(CONFIDENTIALITY_SYSTEM, "V"))));
        assert!(!is_restricted(Some(&meta(CONFIDENTIALITY_SYSTEM, "N"))));
        assert!(!is_restricted(Some(&meta("urn:other", "R"))));
        assert!(!is_restricted(None));
    }

    #[test]
    fn partial_birth_dates_and_bad_nhs_numbers_are_absent() {
        let record = person_record(&parse(
            r#"{"resourceType":"Patient","id":"p","birthDate":"2019-06",
                "identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9434765918"}]}"#,
        ))
        .unwrap();
        assert_eq!(record.date_of_birth, None);
        assert_eq!(record.nhs_number, None);
        assert!(record.given_names.is_empty());
        assert!(!record.restricted);
    }

    fn fetched() -> Fetched {
        Fetched {
            related_people: vec![parse(
                r#"{"resourceType":"RelatedPerson","id":"rp-1","patient":{"reference":"Patient/pat-1"},
                "relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-RoleCode","code":"MTH"}]}],
                "name":[{"family":"Hartley","given":["Sarah"]}],
                "telecom":[{"system":"phone","value":"0113 496 0000"},{"system":"email","value":"sarah@example.org"}],
                "address":[{"line":["1 Mill Lane"],"city":"Leeds","postalCode":"LS1 4AP"}]}"#,
            )],
            episodes: vec![
                parse(
                    r#"{"resourceType":"EpisodeOfCare","id":"ep-1","status":"active",
                    "type":[{"coding":[{"system":"urn:childgraph:fhir:service-type","code":"general-practice"}]}],
                    "patient":{"reference":"Patient/pat-1"},"managingOrganization":{"reference":"Organization/gp-1"},
                    "careManager":{"reference":"Practitioner/dr-1"},"period":{"start":"2019-07-01"}}"#,
                ),
                parse(
                    r#"{"resourceType":"EpisodeOfCare","id":"ep-2","status":"active",
                    "type":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/episodeofcare-type","code":"hacc"}]}],
                    "patient":{"reference":"Patient/pat-1"}}"#,
                ),
            ],
            encounters: vec![
                parse(
                    r#"{"resourceType":"Encounter","id":"enc-1","status":"finished",
                    "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"HH"},
                    "type":[{"coding":[{"system":"urn:childgraph:fhir:key-age-visit","code":"2y","display":"2-year review"}]}],
                    "subject":{"reference":"Patient/pat-1"},"serviceProvider":{"reference":"Organization/mch-1"},
                    "participant":[{"individual":{"reference":"Practitioner/dr-1"}}],
                    "period":{"start":"2021-06-20T10:00:00+01:00"}}"#,
                ),
                parse(
                    r#"{"resourceType":"Encounter","id":"enc-2","status":"finished",
                    "type":[{"coding":[{"system":"urn:other","code":"clinic"}]}],"subject":{"reference":"Patient/pat-1"}}"#,
                ),
            ],
            organisations: vec![
                parse(
                    r#"{"resourceType":"Organization","id":"gp-1","name":"Mill Lane Surgery",
                    "identifier":[{"system":"https://fhir.nhs.uk/Id/ods-organization-code","value":"A81001"}],
                    "type":[{"coding":[{"system":"urn:childgraph:fhir:organisation-kind","code":"gp-practice"}]}],
                    "telecom":[{"system":"phone","value":"0113 496 0001"}],
                    "address":[{"line":["2 Mill Lane"],"city":"Leeds","postalCode":"LS1 4AQ"}]}"#,
                ),
                parse(
                    r#"{"resourceType":"Organization","id":"mch-1","name":"Leeds Health Visiting",
                    "type":[{"coding":[{"system":"urn:childgraph:fhir:organisation-kind","code":"maternal-child-health"}]}]}"#,
                ),
            ],
            practitioners: vec![parse(
                r#"{"resourceType":"Practitioner","id":"dr-1","name":[{"prefix":["Dr"],"given":["Priya"],"family":"Shah"}],
                "telecom":[{"system":"email","value":"p.shah@example.org"}],
                "qualification":[{"code":{"text":"General practitioner"}}]}"#,
            )],
        }
    }

    #[test]
    fn details_are_sorted_by_patient_with_organisations_and_practitioners() {
        let ids = vec!["pat-1".to_string(), "pat-2".to_string()];
        let details = details(&ids, &fetched());
        assert_eq!(details.len(), 2);
        assert_eq!(details["pat-2"], RecordDetails::default());
        let d = &details["pat-1"];
        assert_eq!(
            d.carers,
            [Carer {
                name: "Sarah Hartley".into(),
                relationship: Some("mother".into()),
                phone: Some("0113 496 0000".into()),
                email: Some("sarah@example.org".into()),
                address: Some(Address {
                    lines: vec!["1 Mill Lane".into(), "Leeds".into()],
                    postcode: Some("LS1 4AP".into())
                }),
            }]
        );
        // The episode of an unknown type is left out rather than guessed.
        assert_eq!(d.involvements.len(), 1);
        let gp = &d.involvements[0];
        assert_eq!(gp.kind, ServiceKind::GeneralPractice);
        assert_eq!(gp.status, InvolvementStatus::Active);
        assert_eq!(gp.start, NaiveDate::from_ymd_opt(2019, 7, 1));
        let org = gp.organisation.as_ref().unwrap();
        assert_eq!(
            (org.name.as_str(), org.kind),
            ("Mill Lane Surgery", OrganisationKind::GpPractice)
        );
        assert_eq!(org.phone.as_deref(), Some("0113 496 0001"));
        let dr = gp.practitioner.as_ref().unwrap();
        assert_eq!(dr.name, "Dr Priya Shah");
        assert_eq!(dr.role.as_deref(), Some("General practitioner"));
        assert_eq!(dr.email.as_deref(), Some("p.shah@example.org"));
        // Only the key-age visit counts as participation.
        assert_eq!(d.participation.len(), 1);
        let visit = &d.participation[0];
        assert_eq!(visit.description, "2-year review");
        assert_eq!(visit.status, ParticipationStatus::Attended);
        assert_eq!(visit.kind, ServiceKind::MaternalChildHealth);
        assert_eq!(visit.date, NaiveDate::from_ymd_opt(2021, 6, 20));
        assert_eq!(
            visit.organisation.as_ref().map(|o| o.kind),
            Some(OrganisationKind::MaternalChildHealth)
        );
    }

    #[test]
    fn encounter_statuses_map_to_participation() {
        let orgs = HashMap::new();
        let status = |s: &str| {
            let e: Encounter = parse(&format!(
                r#"{{"status":"{s}","type":[{{"coding":[{{"system":"urn:childgraph:fhir:key-age-visit","display":"1-year review"}}]}}]}}"#
            ));
            participation(&e, &orgs).map(|p| p.status)
        };
        assert_eq!(status("finished"), Some(ParticipationStatus::Attended));
        assert_eq!(status("cancelled"), Some(ParticipationStatus::Missed));
        assert_eq!(status("planned"), Some(ParticipationStatus::Planned));
        assert_eq!(status("entered-in-error"), None);
    }

    #[test]
    fn sensitive_episodes_keep_their_kind() {
        let e: EpisodeOfCare = parse(
            r#"{"status":"finished","type":[{"coding":[{"system":"urn:childgraph:fhir:service-type","code":"mental-health"}]}],
                "period":{"start":"2020","end":"2021-02-03"}}"#,
        );
        let i = involvement(&e, &HashMap::new(), &HashMap::new()).unwrap();
        assert_eq!(i.kind, ServiceKind::MentalHealth);
        assert_eq!(i.status, InvolvementStatus::Finished);
        assert_eq!(i.start, None);
        assert_eq!(i.end, NaiveDate::from_ymd_opt(2021, 2, 3));
    }
}
