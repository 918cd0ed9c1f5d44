//! The early-years API's payloads, as `connectors/openapi/early-years.yaml` describes them.
//!
//! Unknown fields are ignored, and nullable fields are optional, so that the register can add to its API without breaking the connector.

use get_size2::GetSize;
use serde::Deserialize;

/// An RFC 9457 problem, the body of every error.
#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub title: Option<String>,
    pub status: Option<u16>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct Address {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub town: Option<String>,
    pub postcode: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct Carer {
    #[serde(default)]
    pub name: String,
    /// `mother`, `father`, `parent`, `guardian`, `grandparent`, `foster_carer` or `other`.
    pub relationship: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<Address>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct Child {
    pub id: String,
    #[serde(default)]
    pub first_name: String,
    #[serde(default)]
    pub middle_names: Vec<String>,
    #[serde(default)]
    pub last_name: String,
    pub preferred_name: Option<String>,
    /// An ISO 8601 calendar date, kept raw so that one bad date costs only that field.
    pub date_of_birth: Option<String>,
    /// `female`, `male`, `other` or `unknown`.
    pub sex: Option<String>,
    pub nhs_number: Option<String>,
    pub address: Option<Address>,
    #[serde(default)]
    pub carers: Vec<Carer>,
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct ChildPage {
    #[serde(default)]
    pub items: Vec<Child>,
    pub total: Option<u64>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
    /// The URL of the next page, absent or null on the last one.
    pub next: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct ChildList {
    #[serde(default)]
    pub items: Vec<Child>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct KeyWorker {
    pub id: String,
    #[serde(default)]
    pub name: String,
    pub role: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct Enrolment {
    pub id: String,
    pub child_id: String,
    pub setting_id: Option<String>,
    /// `kindergarten`, `long_day_care`, `family_day_care` or `funded_hours`.
    pub programme: Option<String>,
    pub hours_per_week: Option<f64>,
    /// `active`, `ended` or `waitlisted`.
    pub status: Option<String>,
    pub start_date: Option<String>,
    pub end_date: Option<String>,
    pub key_worker: Option<KeyWorker>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct EnrolmentList {
    #[serde(default)]
    pub items: Vec<Enrolment>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct Setting {
    pub id: String,
    #[serde(default)]
    pub name: String,
    /// `kindergarten`, `long_day_care` or `family_day_care`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub address: Option<Address>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct SettingList {
    #[serde(default)]
    pub items: Vec<Setting>,
}
