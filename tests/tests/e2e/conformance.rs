//! Conformance: the health connector's FHIR types parse every resource type the FHIR simulator serves.
//!
//! HL7's own published examples are parsed by the same types in `connectors/tests/hl7_examples.rs`.

use childgraph_connectors::fhir::resources::{Bundle, Resource};
use childgraph_simulators::cast;
use childgraph_tests::TestGateway;

async fn bundle(gateway: &TestGateway, query: &str) -> Bundle {
    let url = format!("{}/fhir/{query}", gateway.source_root("health"));
    let response = gateway
        .http
        .get(url)
        .header("accept", "application/fhir+json")
        .send()
        .await
        .expect("health answers");
    assert_eq!(response.status(), 200, "{query}");
    let content_type = response.headers()["content-type"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        content_type.starts_with("application/fhir+json"),
        "{query}: {content_type}"
    );
    let bundle: Bundle = response.json().await.expect("a Bundle our types parse");
    assert_eq!(bundle.kind.as_deref(), Some("searchset"));
    assert!(bundle.link("self").is_some());
    bundle
}

fn reference_id(reference: Option<&str>) -> String {
    reference
        .and_then(|r| r.rsplit('/').next())
        .expect("a reference")
        .to_owned()
}

#[tokio::test]
async fn the_health_connector_parses_every_resource_the_fhir_simulator_serves() {
    let gateway = TestGateway::builder().children(50).spawn().await;
    let patient_id = cast::AMELIA.health_id.expect("Amelia is in health");

    let patients = bundle(&gateway, &format!("Patient?_id={patient_id}")).await;
    let Some(Resource::Patient(patient)) = patients.matches().next() else {
        panic!("a Patient")
    };
    assert_eq!(patient.birth_date.as_deref(), Some("2019-06-14"));
    assert_eq!(patient.name[0].family.as_deref(), Some("Hartley"));
    let practice = reference_id(patient.general_practitioner[0].reference.as_deref());

    let carers = bundle(&gateway, &format!("RelatedPerson?patient={patient_id}")).await;
    assert!(carers.matches().count() >= 2);
    assert!(
        carers
            .matches()
            .all(|r| matches!(r, Resource::RelatedPerson(p) if !p.name.is_empty()))
    );

    let episodes = bundle(
        &gateway,
        &format!("EpisodeOfCare?patient=Patient/{patient_id}"),
    )
    .await;
    let mut practitioner = None;
    for resource in episodes.matches() {
        let Resource::EpisodeOfCare(episode) = resource else {
            panic!("an EpisodeOfCare")
        };
        assert!(episode.status.is_some() && !episode.kind.is_empty());
        if let Some(manager) = &episode.care_manager {
            practitioner = Some(reference_id(manager.reference.as_deref()));
        }
    }
    let practitioner = practitioner.expect("an episode with a care manager");

    let encounters = bundle(&gateway, &format!("Encounter?patient={patient_id}")).await;
    assert!(encounters.matches().count() > 0);
    assert!(
        encounters
            .matches()
            .all(|r| matches!(r, Resource::Encounter(_)))
    );

    let organisations = bundle(&gateway, &format!("Organization?_id={practice}")).await;
    let Some(Resource::Organization(org)) = organisations.matches().next() else {
        panic!("an Organization")
    };
    assert_eq!(org.name.as_deref(), Some(cast::GP_PRACTICE_NAME));

    let practitioners = bundle(&gateway, &format!("Practitioner?_id={practitioner}")).await;
    assert!(matches!(
        practitioners.matches().next(),
        Some(Resource::Practitioner(_))
    ));

    // Leo's record carries the restriction label the connector reads.
    let leo = bundle(
        &gateway,
        &format!(
            "Patient?_id={}",
            cast::LEO.health_id.expect("Leo is in health")
        ),
    )
    .await;
    let Some(Resource::Patient(leo)) = leo.matches().next() else {
        panic!("a Patient")
    };
    assert!(
        leo.meta
            .as_ref()
            .is_some_and(|m| m.security.iter().any(|c| c.code.as_deref() == Some("R")))
    );
    gateway.stop().await;
}
