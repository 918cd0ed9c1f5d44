//! HL7's own R4 examples (npm package `hl7.fhir.r4.examples` 4.0.1, CC0) parse into the connector's FHIR types, which must accept what the standard allows and not only childgraph's profile.

use childgraph_connectors::fhir::mapping;
use childgraph_connectors::fhir::resources::{Resource, full_date};
use childgraph_schema::{OrganisationKind, Sex};
use chrono::NaiveDate;

fn example(name: &str) -> Resource {
    let path = format!("{}/tests/fixtures/hl7/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} does not parse: {e}"))
}

#[test]
fn patient_example_parses_and_maps() {
    let Resource::Patient(patient) = example("Patient-example.json") else {
        panic!("not a Patient")
    };
    assert_eq!(patient.id.as_deref(), Some("example"));
    assert_eq!(patient.name[0].family.as_deref(), Some("Chalmers"));
    assert_eq!(patient.name[1].use_.as_deref(), Some("usual"));
    assert_eq!(patient.birth_date.as_deref(), Some("1974-12-25"));
    assert_eq!(patient.telecom.len(), 4);

    let record = mapping::person_record(&patient).expect("a record");
    assert_eq!(record.id, "example");
    assert_eq!(record.given_names, ["Peter", "James"]);
    assert_eq!(record.family_name.as_deref(), Some("Chalmers"));
    assert_eq!(record.date_of_birth, NaiveDate::from_ymd_opt(1974, 12, 25));
    assert_eq!(record.sex, Some(Sex::Male));
    assert_eq!(record.nhs_number, None);
    let address = record.address.expect("an address");
    assert_eq!(address.lines, ["534 Erewhon St", "PleasantVille"]);
    assert_eq!(address.postcode.as_deref(), Some("3999"));
    assert!(!record.restricted);
}

#[test]
fn infant_twin_parses_and_maps() {
    let Resource::Patient(patient) = example("Patient-infant-twin-1.json") else {
        panic!("not a Patient")
    };
    let record = mapping::person_record(&patient).expect("a record");
    assert_eq!(record.given_names, ["Jaina"]);
    assert_eq!(record.family_name.as_deref(), Some("Solo"));
    assert_eq!(record.date_of_birth, NaiveDate::from_ymd_opt(2017, 5, 15));
    assert_eq!(record.sex, Some(Sex::Female));
    assert_eq!(record.address, None);
}

#[test]
fn organizations_parse_and_map() {
    let Resource::Organization(org) = example("Organization-f001.json") else {
        panic!("not an Organization")
    };
    assert_eq!(org.identifier.len(), 2);
    assert_eq!(org.address.len(), 2);
    let mapped = mapping::organisation(&org).expect("an organisation");
    assert_eq!(mapped.id, "f001");
    assert_eq!(mapped.name, "Burgers University Medical Center");
    assert_eq!(mapped.kind, OrganisationKind::Other);
    assert_eq!(mapped.phone.as_deref(), Some("022-655 2300"));
    assert_eq!(
        mapped.address.and_then(|a| a.postcode).as_deref(),
        Some("9105 PZ")
    );

    let Resource::Organization(org) = example("Organization-1.json") else {
        panic!("not an Organization")
    };
    let mapped = mapping::organisation(&org).expect("an organisation");
    assert_eq!(mapped.name, "Gastroenterology");
    assert_eq!(mapped.email.as_deref(), Some("gastro@acme.org"));
}

#[test]
fn practitioners_parse_and_map() {
    let Resource::Practitioner(p) = example("Practitioner-example.json") else {
        panic!("not a Practitioner")
    };
    let mapped = mapping::practitioner(&p).expect("a practitioner");
    assert_eq!(mapped.name, "Dr Adam Careful");
    assert_eq!(mapped.role.as_deref(), Some("Bachelor of Science"));
    assert_eq!(
        p.qualification[0]
            .period
            .as_ref()
            .and_then(|p| p.start.as_deref()),
        Some("1995")
    );

    let Resource::Practitioner(p) = example("Practitioner-f001.json") else {
        panic!("not a Practitioner")
    };
    let mapped = mapping::practitioner(&p).expect("a practitioner");
    assert_eq!(mapped.name, "Eric van den broek");
    assert_eq!(mapped.phone.as_deref(), Some("0205568263"));
    assert_eq!(mapped.email.as_deref(), Some("E.M.vandenbroek@bmc.nl"));
}

#[test]
fn related_people_parse_and_map() {
    let Resource::RelatedPerson(rp) = example("RelatedPerson-peter.json") else {
        panic!("not a RelatedPerson")
    };
    assert_eq!(
        rp.patient.as_ref().and_then(|r| r.id_of("Patient")),
        Some("animal")
    );
    let carer = mapping::carer(&rp);
    assert_eq!(carer.name, "Peter James Chalmers");
    // A v2 relationship code without words is not guessed at.
    assert_eq!(carer.relationship, None);
    assert_eq!(carer.phone.as_deref(), Some("(03) 5555 6473"));

    let Resource::RelatedPerson(rp) = example("RelatedPerson-f001.json") else {
        panic!("not a RelatedPerson")
    };
    let carer = mapping::carer(&rp);
    assert_eq!(carer.name, "Sarah Abels");
    assert_eq!(carer.email.as_deref(), Some("s.abels@kpn.nl"));
}

#[test]
fn encounters_parse() {
    let Resource::Encounter(e) = example("Encounter-home.json") else {
        panic!("not an Encounter")
    };
    assert_eq!(e.status.as_deref(), Some("finished"));
    assert_eq!(e.class.as_ref().and_then(|c| c.code.as_deref()), Some("HH"));
    assert_eq!(
        e.subject.as_ref().and_then(|r| r.id_of("Patient")),
        Some("example")
    );
    assert_eq!(
        e.participant[0]
            .individual
            .as_ref()
            .and_then(|r| r.id_of("Practitioner")),
        Some("example")
    );
    assert_eq!(
        e.period.as_ref().and_then(|p| p.start_date()),
        NaiveDate::from_ymd_opt(2015, 1, 17)
    );
    // Not a key-age visit, so never reported as participation.
    assert!(!mapping::is_key_age_visit(&e));

    let Resource::Encounter(e) = example("Encounter-example.json") else {
        panic!("not an Encounter")
    };
    assert_eq!(e.class.and_then(|c| c.code).as_deref(), Some("IMP"));
}

#[test]
fn episode_of_care_parses() {
    let Resource::EpisodeOfCare(e) = example("EpisodeOfCare-example.json") else {
        panic!("not an EpisodeOfCare")
    };
    assert_eq!(e.status.as_deref(), Some("active"));
    assert_eq!(
        e.patient.as_ref().and_then(|r| r.id_of("Patient")),
        Some("example")
    );
    assert_eq!(
        e.managing_organization
            .as_ref()
            .and_then(|r| r.id_of("Organization")),
        Some("hl7")
    );
    assert_eq!(
        e.care_manager
            .as_ref()
            .and_then(|r| r.id_of("Practitioner")),
        Some("14")
    );
    assert_eq!(
        e.period
            .as_ref()
            .and_then(|p| p.start.as_deref())
            .and_then(full_date),
        NaiveDate::from_ymd_opt(2014, 9, 1)
    );
    // Its type is outside childgraph's service types, so it is not shown as a service.
    let (organisations, practitioners) = Default::default();
    assert_eq!(
        mapping::involvement(&e, &organisations, &practitioners),
        None
    );
}

#[test]
fn searchset_bundles_parse() {
    let Resource::Bundle(b) = example("Bundle-bundle-example.json") else {
        panic!("not a Bundle")
    };
    assert_eq!(b.kind.as_deref(), Some("searchset"));
    assert_eq!(b.total, Some(3));
    assert!(b.link("self").is_some());
    assert!(b.link("next").is_some_and(|n| n.contains("page=2")));
    assert_eq!(b.entry.len(), 2);
    assert_eq!(
        b.entry[0].full_url.as_deref(),
        Some("https://example.com/base/MedicationRequest/3123")
    );
    // Resource types the connector does not read still parse, and includes are not matches.
    assert_eq!(b.matches().count(), 1);
    assert!(b.resources().all(|r| matches!(r, Resource::Other)));

    let Resource::Bundle(b) = example("Bundle-bundle-search-warning.json") else {
        panic!("not a Bundle")
    };
    assert_eq!(b.total, Some(0));
    assert_eq!(b.matches().count(), 0);
    assert!(matches!(
        b.resources().next(),
        Some(Resource::OperationOutcome(o)) if o.issue[0].code.as_deref() == Some("not-found")
    ));
}

#[test]
fn operation_outcome_parses() {
    let Resource::OperationOutcome(o) = example("OperationOutcome-exception.json") else {
        panic!("not an OperationOutcome")
    };
    assert_eq!(o.issue[0].severity.as_deref(), Some("error"));
    assert_eq!(o.issue[0].code.as_deref(), Some("exception"));
}
