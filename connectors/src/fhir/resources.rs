//! FHIR R4 resources and datatypes, as much of them as the connector reads.
//!
//! The types accept whatever R4 allows, not only childgraph's profile: unknown elements are ignored, every element R4 makes optional is an `Option` or a defaulted list, and dates keep their raw, possibly partial, text.

use chrono::NaiveDate;
use get_size2::GetSize;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The v3 confidentiality code system of `meta.security` labels.
pub const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// The v3 role codes used for `RelatedPerson.relationship`.
pub const ROLE_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
/// The ODS organisation code system.
pub const ODS_SYSTEM: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
/// childgraph's code systems (see `connectors/PROFILES.md`).
pub const ORGANISATION_KIND_SYSTEM: &str = "urn:childgraph:fhir:organisation-kind";
pub const SERVICE_TYPE_SYSTEM: &str = "urn:childgraph:fhir:service-type";
pub const KEY_AGE_VISIT_SYSTEM: &str = "urn:childgraph:fhir:key-age-visit";

/// Any resource a searchset may hold. Types the connector does not read parse as [`Resource::Other`], so an `_include` or a server's extra entries never fail a search.
///
/// JSON only: a resource is read by its `resourceType` first and then parsed once as that type, rather than through
/// serde's internally tagged enums, which buffer every resource, and a whole Bundle, into an intermediate tree.
#[derive(Debug, Clone, GetSize)]
#[allow(clippy::large_enum_variant)]
pub enum Resource {
    Patient(Patient),
    RelatedPerson(RelatedPerson),
    Organization(Organization),
    Practitioner(Practitioner),
    EpisodeOfCare(EpisodeOfCare),
    Encounter(Encounter),
    OperationOutcome(OperationOutcome),
    Bundle(Bundle),
    Other,
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ResourceVisitor)
    }
}

/// Reads a resource in one pass when `resourceType` is its first member, as servers write it and as the JSON format's
/// examples do: the rest of the object is read straight into the type it names. Anywhere else, each member is set
/// aside as text, then read as the type.
struct ResourceVisitor;

impl<'de> serde::de::Visitor<'de> for ResourceVisitor {
    type Value = Resource;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a FHIR resource: an object with a resourceType")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Resource, A::Error> {
        use serde::de::Error;
        use serde::de::value::MapAccessDeserializer;

        let Some(first) = map.next_key::<String>()? else {
            return Err(A::Error::missing_field("resourceType"));
        };
        if first == "resourceType" {
            let resource_type: String = map.next_value()?;
            return Resource::read(&resource_type, MapAccessDeserializer::new(map));
        }
        // Each member is kept as its text until the type is known, then read once as that type.
        let mut members: Vec<(String, Box<RawValue>)> = vec![(first, map.next_value()?)];
        while let Some(member) = map.next_entry::<String, Box<RawValue>>()? {
            members.push(member);
        }
        let resource_type = match members.iter().find(|(key, _)| key == "resourceType") {
            Some((_, value)) => serde_json::from_str::<String>(value.get())
                .map_err(|_| A::Error::custom("resourceType is not a string"))?,
            None => return Err(A::Error::missing_field("resourceType")),
        };
        let rest = serde::de::value::MapDeserializer::new(
            members
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_ref())),
        );
        Resource::read(&resource_type, rest).map_err(A::Error::custom)
    }
}

impl Resource {
    /// The rest of a resource, read as the type `resource_type` names; a type the connector does not read is skipped.
    fn read<'de, D: serde::Deserializer<'de>>(
        resource_type: &str,
        rest: D,
    ) -> Result<Self, D::Error> {
        Ok(match resource_type {
            "Patient" => Resource::Patient(Deserialize::deserialize(rest)?),
            "RelatedPerson" => Resource::RelatedPerson(Deserialize::deserialize(rest)?),
            "Organization" => Resource::Organization(Deserialize::deserialize(rest)?),
            "Practitioner" => Resource::Practitioner(Deserialize::deserialize(rest)?),
            "EpisodeOfCare" => Resource::EpisodeOfCare(Deserialize::deserialize(rest)?),
            "Encounter" => Resource::Encounter(Deserialize::deserialize(rest)?),
            "OperationOutcome" => Resource::OperationOutcome(Deserialize::deserialize(rest)?),
            "Bundle" => Resource::Bundle(Deserialize::deserialize(rest)?),
            _ => {
                serde::de::IgnoredAny::deserialize(rest)?;
                Resource::Other
            }
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct Bundle {
    pub id: Option<String>,
    pub meta: Option<Meta>,
    /// `searchset` for every answer the connector asks for.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub total: Option<u64>,
    #[serde(default)]
    pub link: Vec<BundleLink>,
    #[serde(default)]
    pub entry: Vec<BundleEntry>,
}

impl Bundle {
    /// The URL of the link with this relation (`self`, `next`).
    pub fn link(&self, relation: &str) -> Option<&str> {
        self.link
            .iter()
            .find(|l| l.relation.as_deref() == Some(relation))
            .and_then(|l| l.url.as_deref())
    }

    /// The resources that matched the search: `outcome` and `include` entries are left out.
    pub fn matches(&self) -> impl Iterator<Item = &Resource> {
        self.entry
            .iter()
            .filter(|e| {
                e.search
                    .as_ref()
                    .and_then(|s| s.mode.as_deref())
                    .is_none_or(|m| m == "match")
            })
            .filter_map(|e| e.resource.as_ref())
    }

    /// Every resource in the bundle, whatever its search mode.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.entry.iter().filter_map(|e| e.resource.as_ref())
    }
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct BundleLink {
    pub relation: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct BundleEntry {
    pub full_url: Option<String>,
    pub resource: Option<Resource>,
    pub search: Option<BundleEntrySearch>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct BundleEntrySearch {
    /// `match`, `include` or `outcome`.
    pub mode: Option<String>,
    pub score: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct OperationOutcome {
    pub id: Option<String>,
    #[serde(default)]
    pub issue: Vec<OperationOutcomeIssue>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct OperationOutcomeIssue {
    /// `fatal`, `error`, `warning` or `information`.
    pub severity: Option<String>,
    /// The issue type code: `invalid`, `not-found`, `too-costly`…
    pub code: Option<String>,
    pub details: Option<CodeableConcept>,
    pub diagnostics: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    pub version_id: Option<String>,
    pub last_updated: Option<String>,
    #[serde(default)]
    pub security: Vec<Coding>,
    #[serde(default)]
    pub tag: Vec<Coding>,
    #[serde(default)]
    pub profile: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    pub id: Option<String>,
    pub meta: Option<Meta>,
    pub active: Option<bool>,
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub name: Vec<HumanName>,
    #[serde(default)]
    pub telecom: Vec<ContactPoint>,
    /// `male`, `female`, `other` or `unknown`.
    pub gender: Option<String>,
    /// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    pub birth_date: Option<String>,
    #[serde(default)]
    pub address: Vec<Address>,
    #[serde(default)]
    pub general_practitioner: Vec<Reference>,
    pub managing_organization: Option<Reference>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct RelatedPerson {
    pub id: Option<String>,
    pub meta: Option<Meta>,
    pub active: Option<bool>,
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    /// Required by R4, but a missing one only costs the carer, not the search.
    pub patient: Option<Reference>,
    #[serde(default)]
    pub relationship: Vec<CodeableConcept>,
    #[serde(default)]
    pub name: Vec<HumanName>,
    #[serde(default)]
    pub telecom: Vec<ContactPoint>,
    pub gender: Option<String>,
    pub birth_date: Option<String>,
    #[serde(default)]
    pub address: Vec<Address>,
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct Organization {
    pub id: Option<String>,
    pub meta: Option<Meta>,
    pub active: Option<bool>,
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    #[serde(default, rename = "type")]
    pub kind: Vec<CodeableConcept>,
    pub name: Option<String>,
    #[serde(default)]
    pub alias: Vec<String>,
    #[serde(default)]
    pub telecom: Vec<ContactPoint>,
    #[serde(default)]
    pub address: Vec<Address>,
    pub part_of: Option<Reference>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct Practitioner {
    pub id: Option<String>,
    pub meta: Option<Meta>,
    pub active: Option<bool>,
    #[serde(default)]
    pub identifier: Vec<Identifier>,
    #[serde(default)]
    pub name: Vec<HumanName>,
    #[serde(default)]
    pub telecom: Vec<ContactPoint>,
    #[serde(default)]
    pub address: Vec<Address>,
    pub gender: Option<String>,
    #[serde(default)]
    pub qualification: Vec<Qualification>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct Qualification {
    pub code: Option<CodeableConcept>,
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct EpisodeOfCare {
    pub id: Option<String>,
    pub meta: Option<Meta>,
    /// `planned`, `waitlist`, `active`, `onhold`, `finished`, `cancelled` or `entered-in-error`.
    pub status: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Vec<CodeableConcept>,
    pub patient: Option<Reference>,
    pub managing_organization: Option<Reference>,
    pub period: Option<Period>,
    pub care_manager: Option<Reference>,
    #[serde(default)]
    pub team: Vec<Reference>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct Encounter {
    pub id: Option<String>,
    pub meta: Option<Meta>,
    /// `planned`, `arrived`, `triaged`, `in-progress`, `onleave`, `finished`, `cancelled`, `entered-in-error` or `unknown`.
    pub status: Option<String>,
    /// A single Coding in R4 (v3-ActCode `AMB`, `HH`…).
    pub class: Option<Coding>,
    #[serde(default, rename = "type")]
    pub kind: Vec<CodeableConcept>,
    pub subject: Option<Reference>,
    #[serde(default)]
    pub episode_of_care: Vec<Reference>,
    #[serde(default)]
    pub participant: Vec<EncounterParticipant>,
    pub period: Option<Period>,
    pub service_provider: Option<Reference>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct EncounterParticipant {
    #[serde(default, rename = "type")]
    pub kind: Vec<CodeableConcept>,
    pub period: Option<Period>,
    pub individual: Option<Reference>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct Identifier {
    #[serde(rename = "use")]
    pub use_: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<CodeableConcept>,
    pub system: Option<String>,
    pub value: Option<String>,
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct HumanName {
    /// `usual`, `official`, `temp`, `nickname`, `anonymous`, `old` or `maiden`.
    #[serde(rename = "use")]
    pub use_: Option<String>,
    pub text: Option<String>,
    pub family: Option<String>,
    #[serde(default)]
    pub given: Vec<String>,
    #[serde(default)]
    pub prefix: Vec<String>,
    #[serde(default)]
    pub suffix: Vec<String>,
    pub period: Option<Period>,
}

impl HumanName {
    /// The name as one line: `text` if given, else prefix, given names and family name.
    pub fn display(&self) -> Option<String> {
        if let Some(text) = self
            .text
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            return Some(text.to_owned());
        }
        let parts: Vec<&str> = self
            .prefix
            .iter()
            .chain(&self.given)
            .map(String::as_str)
            .chain(self.family.as_deref())
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    }
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct ContactPoint {
    /// `phone`, `fax`, `email`, `pager`, `url`, `sms` or `other`.
    pub system: Option<String>,
    pub value: Option<String>,
    /// `home`, `work`, `temp`, `old` or `mobile`.
    #[serde(rename = "use")]
    pub use_: Option<String>,
    pub rank: Option<u32>,
    pub period: Option<Period>,
}

/// The first current value of a system among contact points, preferring the lowest `rank`.
pub fn contact(points: &[ContactPoint], system: &str) -> Option<String> {
    points
        .iter()
        .filter(|p| p.system.as_deref() == Some(system) && p.use_.as_deref() != Some("old"))
        .filter_map(|p| Some((p.rank.unwrap_or(u32::MAX), p.value.as_deref()?.trim())))
        .filter(|(_, v)| !v.is_empty())
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, v)| v.to_owned())
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    #[serde(rename = "use")]
    pub use_: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub text: Option<String>,
    #[serde(default)]
    pub line: Vec<String>,
    pub city: Option<String>,
    pub district: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub country: Option<String>,
    pub period: Option<Period>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct CodeableConcept {
    #[serde(default)]
    pub coding: Vec<Coding>,
    pub text: Option<String>,
}

impl CodeableConcept {
    /// The first coding in `system`.
    pub fn coding_in(&self, system: &str) -> Option<&Coding> {
        self.coding
            .iter()
            .find(|c| c.system.as_deref() == Some(system))
    }

    /// The concept in words: its text, else the first coding's display.
    pub fn words(&self) -> Option<&str> {
        self.text
            .as_deref()
            .or_else(|| self.coding.iter().find_map(|c| c.display.as_deref()))
    }
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct Coding {
    pub system: Option<String>,
    pub version: Option<String>,
    pub code: Option<String>,
    pub display: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct Reference {
    /// Relative (`Patient/123`), absolute (`https://…/fhir/Patient/123`) or contained (`#x`).
    pub reference: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub identifier: Option<Identifier>,
    pub display: Option<String>,
}

impl Reference {
    /// The id of the resource of type `resource_type` this points to, from a relative or absolute reference, ignoring any `_history` suffix.
    pub fn id_of(&self, resource_type: &str) -> Option<&str> {
        let reference = self.reference.as_deref()?;
        // Searched from the end so that an absolute base containing the type name does not confuse it: the segment
        // after the last one naming the type.
        let mut after = None;
        for segment in reference.rsplit('/') {
            if segment == resource_type {
                return after.filter(|id: &&str| !id.is_empty() && *id != "_history");
            }
            after = Some(segment);
        }
        None
    }
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct Period {
    /// A dateTime: `YYYY`, `YYYY-MM`, `YYYY-MM-DD` or with a time and zone.
    pub start: Option<String>,
    pub end: Option<String>,
}

impl Period {
    pub fn start_date(&self) -> Option<NaiveDate> {
        self.start.as_deref().and_then(full_date)
    }

    pub fn end_date(&self) -> Option<NaiveDate> {
        self.end.as_deref().and_then(full_date)
    }
}

/// The calendar date of a FHIR date or dateTime, when it names a whole day. A partial date (`2019`, `2019-06`) has none.
pub fn full_date(raw: &str) -> Option<NaiveDate> {
    let date = raw.get(..10)?;
    if raw.len() > 10 && !raw[10..].starts_with('T') {
        return None;
    }
    NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_dates_have_no_calendar_date() {
        assert_eq!(full_date("2019"), None);
        assert_eq!(full_date("2019-06"), None);
        assert_eq!(
            full_date("2019-06-14"),
            NaiveDate::from_ymd_opt(2019, 6, 14)
        );
        assert_eq!(
            full_date("2015-01-17T16:00:00+10:00"),
            NaiveDate::from_ymd_opt(2015, 1, 17)
        );
        assert_eq!(full_date("2019-02-30"), None);
        assert_eq!(full_date("2019-06-14x"), None);
        assert_eq!(full_date("né le 14"), None);
    }

    #[test]
    fn references_give_ids_whatever_their_form() {
        let r = |s: &str| Reference {
            reference: Some(s.into()),
            ..Default::default()
        };
        assert_eq!(r("Patient/123").id_of("Patient"), Some("123"));
        assert_eq!(
            r("https://h/fhir/Patient/123").id_of("Patient"),
            Some("123")
        );
        assert_eq!(r("Patient/123/_history/2").id_of("Patient"), Some("123"));
        assert_eq!(r("Organization/1").id_of("Patient"), None);
        assert_eq!(r("#contained").id_of("Patient"), None);
        assert_eq!(r("Patient/").id_of("Patient"), None);
        assert_eq!(r("Patient").id_of("Patient"), None);
        assert_eq!(r("Patient/_history").id_of("Patient"), None);
        // The type's last mention counts, not one in the server's base.
        assert_eq!(
            r("https://h/Patient/fhir/Patient/9").id_of("Patient"),
            Some("9")
        );
    }

    #[test]
    fn unknown_elements_and_resource_types_are_ignored() {
        let json = r#"{"resourceType":"Bundle","type":"searchset","total":2,"unknown":{"a":1},
            "entry":[{"resource":{"resourceType":"Observation","id":"o","valueQuantity":{"value":1}},"search":{"mode":"include"}},
                     {"resource":{"resourceType":"Patient","id":"p","extension":[{"url":"x"}],"birthDate":"2019"},"search":{"mode":"match","score":0.5}}]}"#;
        let bundle: Bundle = serde_json::from_str(json).unwrap();
        assert_eq!(bundle.total, Some(2));
        assert_eq!(bundle.resources().count(), 2);
        let matches: Vec<_> = bundle.matches().collect();
        assert!(
            matches!(matches.as_slice(), [Resource::Patient(p)] if p.birth_date.as_deref() == Some("2019"))
        );
    }

    #[test]
    fn the_resource_type_is_found_first_or_anywhere() {
        for json in [
            r#" { "resourceType" : "Patient", "id": "p"}"#,
            r#"{"id":"p","resourceType":"Patient"}"#,
            r#"{"id":"p","meta":{"security":[]},"resourceType":"Patient","birthDate":"2019"}"#,
            r#"{"resourceType":"Pat\u0069ent","id":"p"}"#,
        ] {
            let resource: Resource = serde_json::from_str(json).unwrap();
            assert!(
                matches!(resource, Resource::Patient(p) if p.id.as_deref() == Some("p")),
                "{json}"
            );
        }
        for json in [
            r#"{"id":"p"}"#,
            r#"{}"#,
            r#"{"resourceType":1,"id":"p"}"#,
            r#"[]"#,
        ] {
            assert!(serde_json::from_str::<Resource>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn a_resource_inside_a_bundle_is_read_whatever_the_order_of_its_members() {
        let json = r#"{"resourceType":"Bundle","type":"searchset","entry":[
            {"resource":{"resourceType":"Patient","id":"first","birthDate":"2019-06-14"}},
            {"resource":{"id":"last","birthDate":"2020-01-02","resourceType":"Patient"}},
            {"resource":{"resourceType":"Observation","id":"o","component":[{"valueString":"x"}]}},
            {"resource":{"resourceType":"Organization","id":"org","name":"Ridgeway"}}]}"#;
        let Resource::Bundle(bundle) = serde_json::from_str::<Resource>(json).unwrap() else {
            panic!("a Bundle");
        };
        let read: Vec<String> = bundle
            .resources()
            .map(|r| match r {
                Resource::Patient(p) => format!("Patient {:?} {:?}", p.id, p.birth_date),
                Resource::Organization(o) => format!("Organization {:?}", o.id),
                Resource::Other => "Other".to_owned(),
                _ => "unexpected".to_owned(),
            })
            .collect();
        assert_eq!(
            read,
            [
                r#"Patient Some("first") Some("2019-06-14")"#,
                r#"Patient Some("last") Some("2020-01-02")"#,
                "Other",
                r#"Organization Some("org")"#,
            ]
        );
    }

    #[test]
    fn contacts_prefer_current_and_ranked_values() {
        let points: Vec<ContactPoint> = serde_json::from_str(
            r#"[{"system":"phone","value":"old","use":"old"},{"system":"phone","value":"second","rank":2},
                {"system":"phone","value":"first","rank":1},{"system":"email","value":"a@b"}]"#,
        )
        .unwrap();
        assert_eq!(contact(&points, "phone").as_deref(), Some("first"));
        assert_eq!(contact(&points, "email").as_deref(), Some("a@b"));
        assert_eq!(contact(&points, "fax"), None);
    }
}
