//! Streaming CSV export of the three sources' person records and the truth, in memory independent of the population size.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use childgraph_schema::Sex;

use super::generate::Generator;
use super::{Address, Family, PopulationConfig, child_key};

/// What [`export`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportSummary {
    pub children: usize,
    pub families: usize,
    pub health: usize,
    pub school: usize,
    pub early_years: usize,
}

const PERSON_HEADER: &str = "id,given_name,family_name,date_of_birth,sex,postcode,address";

/// Writes one CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn field(out: &mut impl Write, value: &str) -> io::Result<()> {
    if value.contains([',', '"', '\n', '\r']) {
        out.write_all(b"\"")?;
        out.write_all(value.replace('"', "\"\"").as_bytes())?;
        out.write_all(b"\"")
    } else {
        out.write_all(value.as_bytes())
    }
}

fn row(out: &mut impl Write, fields: &[&str]) -> io::Result<()> {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        field(out, f)?;
    }
    out.write_all(b"\n")
}

fn sex_word(sex: Sex) -> &'static str {
    match sex {
        Sex::Female => "female",
        Sex::Male => "male",
        Sex::Other => "other",
        Sex::Unknown => "unknown",
    }
}

#[allow(clippy::too_many_arguments)]
fn person(
    out: &mut impl Write,
    id: &str,
    given: &str,
    family: &str,
    birth: chrono::NaiveDate,
    sex: Sex,
    address: Option<&Address>,
) -> io::Result<()> {
    let birth = birth.format("%Y-%m-%d").to_string();
    let (postcode, line) = match address {
        Some(a) => (a.postcode.to_string(), a.one_line()),
        None => (String::new(), String::new()),
    };
    row(
        out,
        &[id, given, family, &birth, sex_word(sex), &postcode, &line],
    )
}

fn address(family: &Family, previous: bool) -> &Address {
    if previous {
        &family.previous_address
    } else {
        &family.address
    }
}

struct Files {
    health: BufWriter<File>,
    school: BufWriter<File>,
    early_years: BufWriter<File>,
    truth: BufWriter<File>,
    health_school: BufWriter<File>,
    health_early_years: BufWriter<File>,
    school_early_years: BufWriter<File>,
}

fn create(dir: &Path, name: &str, header: &str) -> io::Result<BufWriter<File>> {
    let mut w = BufWriter::with_capacity(1 << 16, File::create(dir.join(name))?);
    writeln!(w, "{header}")?;
    Ok(w)
}

/// Generates the population family by family and writes `health.csv`, `school.csv`, `early_years.csv`, `truth.csv` and the pairwise truth files into `dir`.
pub fn export(config: &PopulationConfig, dir: &Path) -> io::Result<ExportSummary> {
    config
        .validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    std::fs::create_dir_all(dir)?;
    let mut f = Files {
        health: create(dir, "health.csv", PERSON_HEADER)?,
        school: create(dir, "school.csv", PERSON_HEADER)?,
        early_years: create(dir, "early_years.csv", PERSON_HEADER)?,
        truth: create(dir, "truth.csv", "source,record_id,child")?,
        health_school: create(dir, "truth_health_school.csv", "left_id,right_id")?,
        health_early_years: create(dir, "truth_health_early_years.csv", "left_id,right_id")?,
        school_early_years: create(dir, "truth_school_early_years.csv", "left_id,right_id")?,
    };
    let mut summary = ExportSummary::default();
    let generator = Generator::new(config);
    for draft in generator.families() {
        summary.families += 1;
        let family = &draft.family;
        for c in &draft.children {
            summary.children += 1;
            let key = child_key(c.child.number);
            let h = &c.health;
            person(
                &mut f.health,
                &h.id,
                &h.given,
                &h.family,
                h.birth_date,
                h.sex,
                Some(address(family, h.previous_address)),
            )?;
            row(&mut f.truth, &["health", &h.id, &key])?;
            summary.health += 1;
            if let Some(s) = &c.school {
                person(
                    &mut f.school,
                    &s.id,
                    &s.given,
                    &s.family,
                    s.birth_date,
                    s.sex,
                    None,
                )?;
                row(&mut f.truth, &["school", &s.id, &key])?;
                row(&mut f.health_school, &[&h.id, &s.id])?;
                summary.school += 1;
            }
            if let Some(e) = &c.early_years {
                person(
                    &mut f.early_years,
                    &e.id,
                    &e.given,
                    &e.family,
                    e.birth_date,
                    e.sex,
                    Some(address(family, e.previous_address)),
                )?;
                row(&mut f.truth, &["early_years", &e.id, &key])?;
                row(&mut f.health_early_years, &[&h.id, &e.id])?;
                if let Some(s) = &c.school {
                    row(&mut f.school_early_years, &[&s.id, &e.id])?;
                }
                summary.early_years += 1;
            }
        }
    }
    for w in [
        &mut f.health,
        &mut f.school,
        &mut f.early_years,
        &mut f.truth,
        &mut f.health_school,
        &mut f.health_early_years,
        &mut f.school_early_years,
    ] {
        w.flush()?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_fields_that_need_it() {
        let mut out = Vec::new();
        row(&mut out, &["a", "b,c", "say \"hi\"", ""]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,\"b,c\",\"say \"\"hi\"\"\",\n"
        );
    }
}
