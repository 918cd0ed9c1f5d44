//! OneRoster 1.2 rostering objects and their collection envelopes, as much of them as the connector reads.
//!
//! Unknown fields are ignored and fields the standard makes optional are optional, so that a vendor's extensions or a 1.1-style payload still parse.

use get_size2::GetSize;

use crate::cache::json_heap_size;
use serde::Deserialize;
use serde_json::Value;

/// A reference to another object.
#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct GuidRef {
    pub href: Option<String>,
    #[serde(default)]
    pub sourced_id: String,
    /// `user`, `org`, `class`, `course`, `academicSession` or `resource`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// A flag OneRoster 1.2 sends as the string `"true"` or `"false"`; vendors following 1.1 send a JSON boolean.
#[derive(Debug, Clone, GetSize)]
pub enum Flag {
    Bool(bool),
    Text(String),
}

/// Either form, read as it comes: serde's untagged enums buffer the value and build an error for each form tried.
impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlagVisitor;
        impl serde::de::Visitor<'_> for FlagVisitor {
            type Value = Flag;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a boolean, or a string")
            }
            fn visit_bool<E>(self, b: bool) -> Result<Flag, E> {
                Ok(Flag::Bool(b))
            }
            fn visit_str<E>(self, s: &str) -> Result<Flag, E> {
                Ok(Flag::Text(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<Flag, E> {
                Ok(Flag::Text(s))
            }
        }
        deserializer.deserialize_any(FlagVisitor)
    }
}

impl Flag {
    pub fn is_true(&self) -> bool {
        match self {
            Flag::Bool(b) => *b,
            Flag::Text(s) => s.eq_ignore_ascii_case("true"),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub sourced_id: String,
    /// `active` or `tobedeleted`.
    pub status: Option<String>,
    pub date_last_modified: Option<String>,
    #[get_size(size_fn = json_heap_size)]
    pub metadata: Option<Value>,
    pub enabled_user: Option<Flag>,
    pub username: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub middle_name: Option<String>,
    pub preferred_first_name: Option<String>,
    #[serde(default)]
    pub roles: Vec<Role>,
    /// OneRoster 1.1's single role, kept so that 1.1-style users are still classified.
    pub role: Option<String>,
    pub primary_org: Option<GuidRef>,
    /// For students, the unique pupil number.
    pub identifier: Option<String>,
    pub email: Option<String>,
    pub sms: Option<String>,
    pub phone: Option<String>,
    #[serde(default)]
    pub agents: Vec<GuidRef>,
    #[serde(default)]
    pub grades: Vec<String>,
}

impl User {
    /// The primary role, else the first role listed, else a 1.1 `role`.
    pub fn main_role(&self) -> Option<&str> {
        self.roles
            .iter()
            .find(|r| r.role_type.as_deref() == Some("primary"))
            .or_else(|| self.roles.first())
            .and_then(|r| r.role.as_deref())
            .or(self.role.as_deref())
    }

    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.role.as_deref() == Some(role))
            || self.role.as_deref() == Some(role)
    }

    /// A string field of `metadata`, which OneRoster leaves free-form.
    pub fn metadata_text(&self, key: &str) -> Option<&str> {
        self.metadata.as_ref()?.get(key)?.as_str()
    }
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    /// `primary` or `secondary`.
    pub role_type: Option<String>,
    pub role: Option<String>,
    pub org: Option<GuidRef>,
    pub begin_date: Option<String>,
    pub end_date: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct Org {
    #[serde(default)]
    pub sourced_id: String,
    pub status: Option<String>,
    #[get_size(size_fn = json_heap_size)]
    pub metadata: Option<Value>,
    pub name: Option<String>,
    /// `department`, `school`, `district`, `local`, `state` or `national`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// For schools, the URN.
    pub identifier: Option<String>,
    pub parent: Option<GuidRef>,
    #[serde(default)]
    pub children: Vec<GuidRef>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    #[serde(default)]
    pub sourced_id: String,
    pub status: Option<String>,
    #[get_size(size_fn = json_heap_size)]
    pub metadata: Option<Value>,
    pub user: Option<GuidRef>,
    pub class: Option<GuidRef>,
    pub school: Option<GuidRef>,
    /// `administrator`, `proctor`, `student` or `teacher`.
    pub role: Option<String>,
    pub primary: Option<Flag>,
    /// Inclusive.
    pub begin_date: Option<String>,
    /// Exclusive.
    pub end_date: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct Class {
    #[serde(default)]
    pub sourced_id: String,
    pub status: Option<String>,
    #[get_size(size_fn = json_heap_size)]
    pub metadata: Option<Value>,
    pub title: Option<String>,
    pub class_code: Option<String>,
    pub class_type: Option<String>,
    pub location: Option<String>,
    pub course: Option<GuidRef>,
    pub school: Option<GuidRef>,
    #[serde(default)]
    pub terms: Vec<GuidRef>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
#[serde(rename_all = "camelCase")]
pub struct Demographics {
    /// The same as the user's.
    #[serde(default)]
    pub sourced_id: String,
    pub status: Option<String>,
    pub birth_date: Option<String>,
    /// `male`, `female`, `unspecified` or `other`.
    pub sex: Option<String>,
}

/// The error body of every OneRoster failure.
#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct StatusInfo {
    #[serde(rename = "imsx_codeMajor")]
    pub code_major: Option<String>,
    #[serde(rename = "imsx_severity")]
    pub severity: Option<String>,
    #[serde(rename = "imsx_description")]
    pub description: Option<String>,
    #[serde(rename = "imsx_CodeMinor")]
    pub code_minor: Option<CodeMinor>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct CodeMinor {
    #[serde(rename = "imsx_codeMinorField", default)]
    pub fields: Vec<CodeMinorField>,
}

#[derive(Debug, Clone, Default, Deserialize, GetSize)]
pub struct CodeMinorField {
    #[serde(rename = "imsx_codeMinorFieldName")]
    pub name: Option<String>,
    #[serde(rename = "imsx_codeMinorFieldValue")]
    pub value: Option<String>,
}

/// A collection answer: the objects under the collection's key.
pub trait Envelope: serde::de::DeserializeOwned + GetSize + Clone + Send + Sync + 'static {
    type Item: Send + 'static;
    fn into_items(self) -> Vec<Self::Item>;
}

macro_rules! envelope {
    ($name:ident, $key:literal, $item:ty) => {
        #[derive(Debug, Clone, Default, Deserialize, GetSize)]
        pub struct $name {
            #[serde(rename = $key, default)]
            pub items: Vec<$item>,
        }

        impl Envelope for $name {
            type Item = $item;
            fn into_items(self) -> Vec<$item> {
                self.items
            }
        }
    };
}

envelope!(Users, "users", User);
envelope!(Orgs, "orgs", Org);
envelope!(Enrollments, "enrollments", Enrollment);
envelope!(Classes, "classes", Class);
envelope!(DemographicsList, "demographics", Demographics);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_accept_strings_and_booleans() {
        let e: Enrollment = serde_json::from_str(r#"{"primary":"true"}"#).unwrap();
        assert!(e.primary.unwrap().is_true());
        let e: Enrollment = serde_json::from_str(r#"{"primary":false}"#).unwrap();
        assert!(!e.primary.unwrap().is_true());
        // Any case, and escaped as JSON allows.
        let e: Enrollment = serde_json::from_str(r#"{"primary":"TRUE"}"#).unwrap();
        assert!(e.primary.unwrap().is_true());
        let e: Enrollment = serde_json::from_str(r#"{"primary":"tr\u0075e"}"#).unwrap();
        assert!(e.primary.unwrap().is_true());
        let e: Enrollment = serde_json::from_str(r#"{"primary":"no"}"#).unwrap();
        assert!(!e.primary.unwrap().is_true());
        // Neither form: the object does not parse, and the error says what was expected.
        let error = serde_json::from_str::<Enrollment>(r#"{"primary":1}"#).unwrap_err();
        assert!(
            error.to_string().contains("a boolean, or a string"),
            "{error}"
        );
    }

    #[test]
    fn status_info_parses() {
        let s: StatusInfo = serde_json::from_str(
            r#"{"imsx_codeMajor":"failure","imsx_severity":"error","imsx_description":"bad",
                "imsx_CodeMinor":{"imsx_codeMinorField":[{"imsx_codeMinorFieldName":"TargetEndSystem","imsx_codeMinorFieldValue":"invalid_filter_field"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            s.code_minor.unwrap().fields[0].value.as_deref(),
            Some("invalid_filter_field")
        );
    }

    #[test]
    fn users_parse_with_roles_or_a_one_one_role() {
        let users: Users = serde_json::from_str(
            r#"{"users":[
                {"sourcedId":"u1","status":"active","enabledUser":"true","givenName":"A","familyName":"B",
                 "roles":[{"roleType":"primary","role":"student","org":{"href":"h","sourcedId":"s1","type":"org"}}],
                 "extra":{"vendor":true}},
                {"sourcedId":"u2","enabledUser":true,"role":"parent"}]}"#,
        )
        .unwrap();
        assert_eq!(users.items[0].main_role(), Some("student"));
        assert_eq!(users.items[1].main_role(), Some("parent"));
    }
}
