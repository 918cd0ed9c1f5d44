//! What one source says about a child: the person record that linkage compares, and the details (carers, services, participation) that the answer composes.

use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::identifiers::{NhsNumber, Upn};
use crate::source::{RecordRef, SourceName};

/// Administrative sex as the sources record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Female,
    Male,
    Other,
    Unknown,
}

/// A postal address. `lines` hold everything but the postcode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub lines: Vec<String>,
    pub postcode: Option<String>,
}

/// One source's record of a child: the fields linkage compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PersonRecord {
    pub source: SourceName,
    /// The source's own id for this record.
    pub id: String,
    /// Given names in order; the first is the one in everyday use where the source says so.
    pub given_names: Vec<String>,
    pub family_name: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub sex: Option<Sex>,
    pub nhs_number: Option<NhsNumber>,
    pub upn: Option<Upn>,
    pub address: Option<Address>,
    /// The source marks this record restricted (FHIR `meta.security` R or V): the child is shielded.
    pub restricted: bool,
}

impl PersonRecord {
    pub fn record_ref(&self) -> RecordRef {
        RecordRef::new(self.source, self.id.clone())
    }

    /// The first given name, if any.
    pub fn given_name(&self) -> Option<&str> {
        self.given_names.first().map(String::as_str)
    }
}

/// The kind of organisation or service a practitioner works in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrganisationKind {
    School,
    GpPractice,
    MaternalChildHealth,
    Kindergarten,
    SocialCare,
    Other,
}

/// The kind of service a child takes part in. The last three are sensitive: the default policy hides them unless a role is allowed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceKind {
    GeneralPractice,
    MaternalChildHealth,
    School,
    EarlyYears,
    SocialCare,
    MentalHealth,
    SexualHealth,
    SubstanceMisuse,
}

/// An organisation with its contact details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organisation {
    /// The source's id for the organisation (FHIR Organization id, OneRoster org sourcedId, early-years setting id).
    pub id: String,
    pub name: String,
    pub kind: OrganisationKind,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<Address>,
}

/// A practitioner with contact details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Practitioner {
    pub id: String,
    pub name: String,
    /// What they do, in words: "class teacher", "health visitor".
    pub role: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// A carer of the child: parent, guardian or other relative, as a source records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Carer {
    pub name: String,
    /// The relationship in words: "mother", "guardian".
    pub relationship: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<Address>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvolvementStatus {
    Planned,
    Active,
    Finished,
}

/// A service working with the child: who, where, and since when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Involvement {
    pub source: SourceName,
    pub kind: ServiceKind,
    /// Shared by every service and participation at the same organisation.
    pub organisation: Option<Arc<Organisation>>,
    pub practitioner: Option<Practitioner>,
    pub status: InvolvementStatus,
    pub start: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipationStatus {
    /// A visit or review that took place.
    Attended,
    /// A visit or review that was booked and did not take place.
    Missed,
    /// A visit or review booked for the future.
    Planned,
    /// Currently enrolled (school, kindergarten).
    Enrolled,
    /// An enrolment that has ended.
    Left,
}

/// An event or enrolment that shows the child taking part in a key service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participation {
    pub source: SourceName,
    pub kind: ServiceKind,
    /// What it is, in words: "2-year review", "enrolled in year 2", "15 hours a week".
    pub description: String,
    pub status: ParticipationStatus,
    pub date: Option<NaiveDate>,
    pub end: Option<NaiveDate>,
    /// The organisation where it takes place.
    /// Shared by every service and participation at the same organisation.
    pub organisation: Option<Arc<Organisation>>,
}

/// Everything a source holds about one of its records beyond the person fields.
/// Parts that the policy withheld are never fetched and stay empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RecordDetails {
    pub carers: Vec<Carer>,
    pub involvements: Vec<Involvement>,
    pub participation: Vec<Participation>,
}
