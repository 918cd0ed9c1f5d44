//! Source ids and identifiers derived from a child's or family's number, so every source numbers records differently and none reveals a name or the truth.

use childgraph_schema::{NhsNumber, Upn};

/// A bijection on the low `bits` bits: ids derived from distinct numbers never collide, yet look unrelated to the number and to each other across sources.
pub(crate) fn scramble(x: u32, bits: u32, key: u32) -> u32 {
    let mask = if bits == 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    };
    let half = bits / 2;
    let mut x = (x ^ key) & mask;
    x = x.wrapping_mul(0x9E37_79B1) & mask;
    x ^= x >> half;
    x = x.wrapping_mul(0x85EB_CA6B) & mask;
    x ^= x >> (half + 1).min(bits - 1);
    x = x.wrapping_mul(0xC2B2_AE35) & mask;
    x ^= x >> half;
    x
}

const HEALTH_KEY: u32 = 0x4845_414c;
const SCHOOL_KEY: u32 = 0x5343_484f;
const EARLY_YEARS_KEY: u32 = 0x4541_524c;
const FAMILY_KEY: u32 = 0x4641_4d49;
const NHS_KEY: u32 = 0x0155_4e48;
const UPN_KEY: u32 = 0x0055_504e;

/// The first child number the generator uses; 0..16 are reserved for the demo cast.
pub(crate) const FIRST_GENERATED: u32 = 16;

pub(crate) fn health_id(child: u32) -> String {
    format!("pat-{:08x}", scramble(child, 32, HEALTH_KEY))
}

pub(crate) fn school_id(child: u32) -> String {
    format!("stu-{:08x}", scramble(child, 32, SCHOOL_KEY))
}

pub(crate) fn early_years_id(child: u32) -> String {
    format!("chd-{:08x}", scramble(child, 32, EARLY_YEARS_KEY))
}

/// A parent or guardian's OneRoster user id: the family's number and the carer's position.
pub(crate) fn parent_id(family: u32, carer: usize) -> String {
    format!("par-{:08x}-{}", scramble(family, 32, FAMILY_KEY), carer + 1)
}

/// The true child's key in truth files: the child's number, which no source id reveals.
pub fn child_key(child: u32) -> String {
    format!("c{child:07}")
}

/// A valid NHS number in the 9xx range, unique per child number below 2^25.
/// Of two nine-digit prefixes that differ only in the last digit at most one has no check digit, so one of the pair always works.
pub(crate) fn nhs_number(child: u32) -> String {
    let n = scramble(child, 25, NHS_KEY);
    let base = 900_000_000u64 + 2 * u64::from(n);
    for prefix in [base, base + 1] {
        let digits: Vec<u32> = format!("{prefix:09}")
            .bytes()
            .map(|b| u32::from(b - b'0'))
            .collect();
        if let Some(check) = NhsNumber::check_digit(&digits) {
            return format!("{prefix:09}{check}");
        }
    }
    unreachable!("one of two prefixes differing in the last digit has a check digit")
}

/// A valid permanent UPN, unique per child number below 2^24, with the admission year in its year field.
pub(crate) fn upn(child: u32, admission_year: i32) -> String {
    let n = scramble(child, 24, UPN_KEY);
    let la = 800 + n / 10_000_000;
    let rest = n % 10_000_000;
    let year = admission_year.rem_euclid(100);
    let body = format!("{la:03}{:04}{year:02}{:03}", rest / 1000, rest % 1000);
    let check = Upn::check_letter(body.as_bytes()).expect("digits only");
    format!("{}{body}", check as char)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn scramble_is_a_bijection_on_small_domains() {
        for bits in [8, 10, 12] {
            let seen: HashSet<u32> = (0..1u32 << bits).map(|x| scramble(x, bits, 77)).collect();
            assert_eq!(seen.len(), 1 << bits);
            assert!(seen.iter().all(|&x| x < 1 << bits));
        }
    }

    #[test]
    fn identifiers_are_valid_and_distinct() {
        let mut nhs = HashSet::new();
        let mut upns = HashSet::new();
        for child in 0..20_000 {
            let n = nhs_number(child);
            assert!(NhsNumber::parse(&n).is_ok(), "{n}");
            assert!(nhs.insert(n));
            let u = upn(child, 2020);
            assert!(Upn::parse(&u).is_ok(), "{u}");
            assert!(upns.insert(u));
        }
    }
}
