//! UK child identifiers, checked on construction: the NHS number (mod-11 check digit) and the unique pupil number (check letter).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The FHIR identifier system of the NHS number.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// Why an identifier was refused. Messages never repeat the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentifierError {
    #[error("an NHS number has 10 digits")]
    NhsNumberLength,
    #[error("the NHS number's check digit does not match")]
    NhsNumberCheck,
    #[error(
        "a unique pupil number has 13 characters: a check letter, 11 digits and a digit or letter"
    )]
    UpnFormat,
    #[error("the unique pupil number's check letter does not match")]
    UpnCheck,
}

/// A 10-digit NHS number whose check digit is valid.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NhsNumber(String);

impl NhsNumber {
    /// Accepts the number with or without the usual spaces or hyphens (3-3-4).
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let digits: String = raw.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
        if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(IdentifierError::NhsNumberLength);
        }
        let d: Vec<u32> = digits.bytes().map(|b| u32::from(b - b'0')).collect();
        if Self::check_digit(&d[..9]) != Some(d[9]) {
            return Err(IdentifierError::NhsNumberCheck);
        }
        Ok(Self(digits))
    }

    /// The check digit for nine leading digits, or `None` where no tenth digit can make them valid.
    pub fn check_digit(first_nine: &[u32]) -> Option<u32> {
        let sum: u32 = first_nine
            .iter()
            .zip((2..=10).rev())
            .map(|(d, w)| d * w)
            .sum();
        match 11 - sum % 11 {
            11 => Some(0),
            10 => None,
            c => Some(c),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NhsNumber {
    type Error = IdentifierError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<NhsNumber> for String {
    fn from(n: NhsNumber) -> String {
        n.0
    }
}

impl fmt::Display for NhsNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The letters a UPN check character is drawn from (no I, O or S).
const UPN_LETTERS: &[u8; 23] = b"ABCDEFGHJKLMNPQRTUVWXYZ";

/// A 13-character unique pupil number whose check letter is valid.
/// Permanent UPNs end in a digit; temporary ones end in a letter, which counts as its index in the check.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Upn(String);

impl Upn {
    pub fn parse(raw: &str) -> Result<Self, IdentifierError> {
        let upn = raw.trim().to_ascii_uppercase();
        let b = upn.as_bytes();
        if b.len() != 13
            || !UPN_LETTERS.contains(&b[0])
            || !b[1..12].iter().all(u8::is_ascii_digit)
            || !(b[12].is_ascii_digit() || UPN_LETTERS.contains(&b[12]))
        {
            return Err(IdentifierError::UpnFormat);
        }
        if Self::check_letter(&b[1..]) != Some(b[0]) {
            return Err(IdentifierError::UpnCheck);
        }
        Ok(Self(upn))
    }

    /// The check letter for the 12 characters after it.
    pub fn check_letter(rest: &[u8]) -> Option<u8> {
        if rest.len() != 12 {
            return None;
        }
        let mut sum = 0usize;
        for (i, &c) in rest.iter().enumerate() {
            let value = if c.is_ascii_digit() {
                usize::from(c - b'0')
            } else {
                UPN_LETTERS.iter().position(|&l| l == c)?
            };
            sum += value * (i + 2);
        }
        Some(UPN_LETTERS[sum % 23])
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Upn {
    type Error = IdentifierError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Upn> for String {
    fn from(n: Upn) -> String {
        n.0
    }
}

impl fmt::Display for Upn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nhs_number_check_digit() {
        assert!(NhsNumber::parse("9434765919").is_ok());
        assert!(NhsNumber::parse("943 476 5919").is_ok());
        assert_eq!(
            NhsNumber::parse("9434765918"),
            Err(IdentifierError::NhsNumberCheck)
        );
        assert_eq!(
            NhsNumber::parse("94347659"),
            Err(IdentifierError::NhsNumberLength)
        );
        assert_eq!(
            NhsNumber::parse("943476591x"),
            Err(IdentifierError::NhsNumberLength)
        );
    }

    #[test]
    fn nhs_number_whose_check_would_be_ten_is_invalid() {
        // 1*10 + 0*9 + ... : find nine digits whose remainder leaves 10, and check no tenth digit is accepted.
        let nine = [0, 0, 0, 0, 0, 0, 0, 0, 1]; // sum = 2, 11 - 2 = 9: valid with 9
        assert_eq!(NhsNumber::check_digit(&nine), Some(9));
        let nine = [0, 0, 0, 0, 0, 0, 0, 0, 5]; // sum = 10 → 11 - 10 = 1
        assert_eq!(NhsNumber::check_digit(&nine), Some(1));
        let nine = [0, 0, 0, 0, 0, 0, 0, 1, 0]; // sum = 3 → 8
        assert_eq!(NhsNumber::check_digit(&nine), Some(8));
        let nine = [0, 0, 0, 0, 0, 0, 0, 0, 6]; // sum = 12 → 12 mod 11 = 1 → 10: invalid
        assert_eq!(NhsNumber::check_digit(&nine), None);
    }

    #[test]
    fn upn_check_letter() {
        assert!(Upn::parse("B801200005001").is_ok());
        assert!(Upn::parse("b801200005001").is_ok());
        assert_eq!(Upn::parse("C801200005001"), Err(IdentifierError::UpnCheck));
        assert_eq!(Upn::parse("B80120000500"), Err(IdentifierError::UpnFormat));
        assert_eq!(Upn::parse("I801200005001"), Err(IdentifierError::UpnFormat));
    }

    #[test]
    fn temporary_upn_letter_counts_as_its_index() {
        let rest = b"80120000500A";
        let check = Upn::check_letter(rest).expect("valid characters");
        let upn = format!(
            "{}{}",
            check as char,
            std::str::from_utf8(rest).expect("ascii")
        );
        assert!(Upn::parse(&upn).is_ok());
    }
}
