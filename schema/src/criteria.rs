//! Search criteria, checked on construction: a search needs a family name and date of birth, or an identifier.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::identifiers::{IdentifierError, NhsNumber, Upn};
use crate::record::Sex;

/// The longest name or postcode the gateway will search for. Longer input is refused, not truncated.
pub const MAX_TEXT_LEN: usize = 100;

/// Why criteria were refused. Messages never repeat the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CriteriaError {
    #[error(
        "a search needs a family name and a date of birth, or an NHS number or unique pupil number"
    )]
    Insufficient,
    #[error("{field} is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field} contains control characters")]
    ControlCharacters { field: &'static str },
    #[error("{0}")]
    Identifier(#[from] IdentifierError),
    #[error("the date of birth is in the future")]
    FutureBirth,
}

/// Criteria that passed validation. Text is trimmed; empty strings count as absent.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchCriteria {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub sex: Option<Sex>,
    pub postcode: Option<String>,
    pub nhs_number: Option<NhsNumber>,
    pub upn: Option<Upn>,
}

/// Criteria as a client sent them, before validation.
#[derive(Debug, Clone, Default)]
pub struct RawCriteria {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub date_of_birth: Option<NaiveDate>,
    pub sex: Option<Sex>,
    pub postcode: Option<String>,
    pub nhs_number: Option<String>,
    pub upn: Option<String>,
}

impl SearchCriteria {
    /// Checks the raw criteria against the search minimum and the input limits.
    pub fn parse(raw: RawCriteria, today: NaiveDate) -> Result<Self, CriteriaError> {
        let given_name = text("givenName", raw.given_name)?;
        let family_name = text("familyName", raw.family_name)?;
        let postcode = text("postcode", raw.postcode)?.map(|p| normalise_postcode(&p));
        let nhs_number = text("nhsNumber", raw.nhs_number)?
            .map(|n| NhsNumber::parse(&n))
            .transpose()?;
        let upn = text("upn", raw.upn)?.map(|u| Upn::parse(&u)).transpose()?;
        if raw.date_of_birth.is_some_and(|d| d > today) {
            return Err(CriteriaError::FutureBirth);
        }
        let criteria = Self {
            given_name,
            family_name,
            date_of_birth: raw.date_of_birth,
            sex: raw.sex,
            postcode,
            nhs_number,
            upn,
        };
        let has_identifier = criteria.nhs_number.is_some() || criteria.upn.is_some();
        let has_name_and_birth = criteria.family_name.is_some() && criteria.date_of_birth.is_some();
        if !(has_identifier || has_name_and_birth) {
            return Err(CriteriaError::Insufficient);
        }
        Ok(criteria)
    }
}

fn text(field: &'static str, value: Option<String>) -> Result<Option<String>, CriteriaError> {
    let Some(value) = value else { return Ok(None) };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if value.chars().count() > MAX_TEXT_LEN {
        return Err(CriteriaError::TooLong {
            field,
            max: MAX_TEXT_LEN,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(CriteriaError::ControlCharacters { field });
    }
    Ok(Some(value.to_owned()))
}

/// Upper case with one space before the inward code ("sw1a1aa" becomes "SW1A 1AA").
pub fn normalise_postcode(raw: &str) -> String {
    let compact: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_uppercase();
    if compact.len() > 3 && compact.is_ascii() {
        let (outward, inward) = compact.split_at(compact.len() - 3);
        format!("{outward} {inward}")
    } else {
        compact
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 1).expect("valid date")
    }

    #[test]
    fn family_name_alone_is_insufficient() {
        let raw = RawCriteria {
            family_name: Some("Hartley".into()),
            ..Default::default()
        };
        assert_eq!(
            SearchCriteria::parse(raw, today()),
            Err(CriteriaError::Insufficient)
        );
    }

    #[test]
    fn blank_strings_count_as_absent() {
        let raw = RawCriteria {
            family_name: Some("  ".into()),
            date_of_birth: NaiveDate::from_ymd_opt(2019, 6, 14),
            ..Default::default()
        };
        assert_eq!(
            SearchCriteria::parse(raw, today()),
            Err(CriteriaError::Insufficient)
        );
    }

    #[test]
    fn identifier_alone_is_enough_and_checked() {
        let raw = RawCriteria {
            nhs_number: Some("943 476 5919".into()),
            ..Default::default()
        };
        let c = SearchCriteria::parse(raw, today()).expect("valid");
        assert_eq!(
            c.nhs_number.map(|n| n.to_string()).as_deref(),
            Some("9434765919")
        );
        let raw = RawCriteria {
            nhs_number: Some("9434765918".into()),
            ..Default::default()
        };
        assert!(matches!(
            SearchCriteria::parse(raw, today()),
            Err(CriteriaError::Identifier(_))
        ));
    }

    #[test]
    fn long_and_control_text_is_refused() {
        let raw = RawCriteria {
            family_name: Some("x".repeat(10_000)),
            date_of_birth: NaiveDate::from_ymd_opt(2019, 6, 14),
            ..Default::default()
        };
        assert!(matches!(
            SearchCriteria::parse(raw, today()),
            Err(CriteriaError::TooLong { .. })
        ));
        let raw = RawCriteria {
            family_name: Some("a\u{0}b".into()),
            date_of_birth: NaiveDate::from_ymd_opt(2019, 6, 14),
            ..Default::default()
        };
        assert!(matches!(
            SearchCriteria::parse(raw, today()),
            Err(CriteriaError::ControlCharacters { .. })
        ));
    }

    #[test]
    fn postcodes_are_normalised() {
        assert_eq!(normalise_postcode("sw1a1aa"), "SW1A 1AA");
        assert_eq!(normalise_postcode(" LS1  4AP "), "LS1 4AP");
    }
}
