//! `childgraph linkage evaluate`: reads two record files and a truth file, links them, and reports the quality.
//!
//! Record files have the columns `id,given_name,family_name,date_of_birth,sex,postcode,address`; any of the last five
//! may be empty, dates are ISO 8601. The truth file has `left_id,right_id`. `childgraph population` writes both.
//! Errors name the file, the line and the column, never the value.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context as _, bail};
use childgraph_linkage::evaluate::{Evaluation, describe, evaluate_with};
use childgraph_linkage::model::{Comparison, Parameters, compare};
use childgraph_schema::{Address, PersonRecord, Sex, SourceName};
use chrono::NaiveDate;

const RECORD_COLUMNS: [&str; 7] = [
    "id",
    "given_name",
    "family_name",
    "date_of_birth",
    "sex",
    "postcode",
    "address",
];

/// Opens a CSV file and reads its header line.
fn open(path: &Path) -> anyhow::Result<(csv::Reader<std::fs::File>, csv::StringRecord)> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header line", path.display()))?
        .clone();
    Ok((reader, headers))
}

/// The fewest records a name must be carried by to be written to a frequencies file: a common name's share adjusts
/// scores, and a rare one, which could point to one child, stays out of a file that is kept and shared.
pub const FREQUENCY_MIN_RECORDS: usize = 10;

/// Writes the shares of the names at least [`FREQUENCY_MIN_RECORDS`] of these records carry, as `kind,name,share`
/// (`kind` is `family` or `given`), for the gateway's `linkage.frequencies`. The number of names written.
pub fn save_frequencies<'a>(
    path: &Path,
    records: impl IntoIterator<Item = &'a PersonRecord> + Clone,
) -> anyhow::Result<usize> {
    let total = records.clone().into_iter().count().max(1);
    let table = childgraph_linkage::evaluate::Frequencies::of(records)
        .common(FREQUENCY_MIN_RECORDS as f64 / total as f64);
    let mut writer =
        csv::Writer::from_path(path).with_context(|| format!("cannot write {}", path.display()))?;
    writer.write_record(["kind", "name", "share"])?;
    let rows = table.rows();
    for (family, name, share) in &rows {
        let kind = if *family { "family" } else { "given" };
        writer.write_record([kind, name, &format!("{share:.8}")])?;
    }
    writer
        .flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(rows.len())
}

/// Reads a frequencies file that `save_frequencies` wrote (or one made from national name statistics): a header of
/// `kind,name,share`, each share in (0, 1].
pub fn load_frequencies(path: &Path) -> anyhow::Result<childgraph_linkage::evaluate::Frequencies> {
    let (mut reader, headers) = open(path)?;
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim() == name)
            .with_context(|| {
                format!(
                    "{}: the header must name kind, name and share",
                    path.display()
                )
            })
    };
    let (kind, name, share) = (column("kind")?, column("name")?, column("share")?);
    let mut rows = Vec::new();
    for (n, row) in reader.records().enumerate() {
        let line = n + 2;
        let row =
            row.with_context(|| format!("{}: line {line} is not valid CSV", path.display()))?;
        let field = |i: usize| row.get(i).map(str::trim).unwrap_or("");
        let family = match field(kind) {
            "family" => true,
            "given" => false,
            other => bail!(
                "{}: line {line}: kind is family or given, not {other:?}",
                path.display()
            ),
        };
        if field(name).is_empty() {
            bail!("{}: line {line}: the name is empty", path.display());
        }
        let value: f64 = field(share)
            .parse()
            .ok()
            .filter(|s: &f64| *s > 0.0 && *s <= 1.0)
            .with_context(|| {
                format!(
                    "{}: line {line}: share is a number in (0, 1]",
                    path.display()
                )
            })?;
        rows.push((family, field(name).to_owned(), value));
    }
    Ok(childgraph_linkage::evaluate::Frequencies::from_table(rows))
}

/// Reads a record file. The source name only labels the records in memory.
pub fn read_records(path: &Path, source: SourceName) -> anyhow::Result<Vec<PersonRecord>> {
    let (mut reader, headers) = open(path)?;
    let column = |name: &str| headers.iter().position(|h| h.trim() == name);
    let mut at = [0usize; 7];
    for (i, name) in RECORD_COLUMNS.iter().enumerate() {
        at[i] = column(name).with_context(|| {
            format!(
                "{}: the header has no {name} column (expected {})",
                path.display(),
                RECORD_COLUMNS.join(",")
            )
        })?;
    }
    let mut records = Vec::new();
    let mut ids = HashSet::new();
    for (n, row) in reader.records().enumerate() {
        let line = n + 2;
        let row =
            row.with_context(|| format!("{}: line {line} is not valid CSV", path.display()))?;
        let field = |i: usize| row.get(at[i]).map(str::trim).filter(|v| !v.is_empty());
        let Some(id) = field(0) else {
            bail!("{}: line {line} has no id", path.display());
        };
        if !ids.insert(id.to_owned()) {
            bail!("{}: line {line} repeats an id used above", path.display());
        }
        let date_of_birth = field(3)
            .map(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d"))
            .transpose()
            .with_context(|| {
                format!(
                    "{}: line {line}: date_of_birth is not an ISO 8601 date (YYYY-MM-DD)",
                    path.display()
                )
            })?;
        let sex = match field(4).map(str::to_ascii_lowercase).as_deref() {
            None | Some("unknown") => None,
            Some("female" | "f") => Some(Sex::Female),
            Some("male" | "m") => Some(Sex::Male),
            Some("other") => Some(Sex::Other),
            Some(_) => bail!(
                "{}: line {line}: sex is not one of female, male, other, unknown",
                path.display()
            ),
        };
        let address = (field(5).is_some() || field(6).is_some()).then(|| Address {
            lines: field(6).map(|a| vec![a.to_owned()]).unwrap_or_default(),
            postcode: field(5).map(str::to_owned),
        });
        records.push(PersonRecord {
            source,
            id: id.to_owned(),
            given_names: field(1).map(|g| vec![g.to_owned()]).unwrap_or_default(),
            family_name: field(2).map(str::to_owned),
            date_of_birth,
            sex,
            nhs_number: None,
            upn: None,
            address,
            restricted: false,
        });
    }
    Ok(records)
}

/// Reads a truth file of `left_id,right_id` pairs.
pub fn read_truth(path: &Path) -> anyhow::Result<HashSet<(String, String)>> {
    let (mut reader, headers) = open(path)?;
    let (Some(left), Some(right)) = (
        headers.iter().position(|h| h.trim() == "left_id"),
        headers.iter().position(|h| h.trim() == "right_id"),
    ) else {
        bail!(
            "{}: the header must name left_id and right_id",
            path.display()
        );
    };
    let mut truth = HashSet::new();
    for (n, row) in reader.records().enumerate() {
        let line = n + 2;
        let row =
            row.with_context(|| format!("{}: line {line} is not valid CSV", path.display()))?;
        match (row.get(left).map(str::trim), row.get(right).map(str::trim)) {
            (Some(l), Some(r)) if !l.is_empty() && !r.is_empty() => {
                truth.insert((l.to_owned(), r.to_owned()));
            }
            _ => bail!(
                "{}: line {line} lacks a left_id or a right_id",
                path.display()
            ),
        }
    }
    Ok(truth)
}

/// Writes parameters as the YAML file the gateway's `linkage.parameters` names: the prior, then per comparison each
/// level's m and u.
pub fn save_parameters(path: &Path, parameters: &Parameters) -> anyhow::Result<()> {
    let mut text = String::from(
        "# Fellegi-Sunter parameters for childgraph: the prior probability that two records are the same child, and for\n\
         # each level of each comparison, m (its probability between records of the same child) and u (between records\n\
         # of different children). Written by `childgraph linkage evaluate --save-parameters`; set as `linkage.parameters`.\n",
    );
    text.push_str(&format!("prior: {}\n", parameters.prior));
    let mut current = None;
    for (comparison, level, m, u) in parameters.levels() {
        if current != Some(comparison) {
            text.push_str(&format!("{}:\n", comparison.name()));
            current = Some(comparison);
        }
        text.push_str(&format!("  \"{level}\": {{ m: {m}, u: {u} }}\n"));
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// One level in a parameters file.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LevelFile {
    m: f64,
    u: f64,
}

/// Reads a parameters file written by [`save_parameters`]. Errors name the file and the key, or the line and column.
pub fn load_parameters(path: &Path) -> anyhow::Result<Parameters> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut file: std::collections::BTreeMap<String, serde_yaml_ng::Value> =
        serde_yaml_ng::from_str(&text)
            .with_context(|| format!("{} is not a linkage parameters file", path.display()))?;
    let prior = file
        .remove("prior")
        .and_then(|p| p.as_f64())
        .with_context(|| format!("{}: prior: a number is needed", path.display()))?;
    let mut levels = Vec::new();
    for (comparison, value) in file {
        let named: std::collections::BTreeMap<String, LevelFile> = serde_yaml_ng::from_value(value)
            .with_context(|| {
                format!(
                    "{}: {comparison}: each level needs an m and a u, and nothing else",
                    path.display()
                )
            })?;
        levels.extend(
            named
                .into_iter()
                .map(|(level, p)| (comparison.clone(), level, p.m, p.u)),
        );
    }
    Parameters::from_levels(prior, levels).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// What `run` prints besides the figures.
#[derive(Debug, Clone)]
pub struct Report {
    /// The least match probability that links a pair.
    pub threshold: f64,
    /// Print the estimated m and u of every level.
    pub parameters: bool,
    /// Print every false and missed link, by id, with its comparison levels.
    pub mistakes: bool,
    /// Write the estimated parameters to this file, for the gateway's `linkage.parameters`.
    pub save_parameters: Option<std::path::PathBuf>,
    /// Write the shares of the common names to this file, for the gateway's `linkage.frequencies`.
    pub save_frequencies: Option<std::path::PathBuf>,
    /// Link with this linker's parameters and name frequencies, as the gateway does, instead of estimating them.
    pub linker: Option<childgraph_linkage::Linker>,
}

impl Default for Report {
    fn default() -> Self {
        Self {
            threshold: 0.5,
            parameters: false,
            mistakes: false,
            save_parameters: None,
            save_frequencies: None,
            linker: None,
        }
    }
}

/// Runs the evaluation and prints its report; the last line is one JSON object.
pub fn run(left: &Path, right: &Path, truth: &Path, report: &Report) -> anyhow::Result<Evaluation> {
    let threshold = report.threshold;
    if !(0.0..=1.0).contains(&threshold) {
        bail!("--threshold must lie between 0 and 1");
    }
    // Timed from the first file read to the figures, as the user waits for them.
    let started = Instant::now();
    let left_records = read_records(left, SourceName::Health)?;
    let right_records = read_records(right, SourceName::School)?;
    let truth_path = truth;
    let truth = read_truth(truth_path)?;
    // A truth file of other sources would give figures that mean nothing: each of its ids must be a record here.
    let ids = |records: &[PersonRecord]| -> HashSet<String> {
        records.iter().map(|r| r.id.clone()).collect()
    };
    let (left_ids, right_ids) = (ids(&left_records), ids(&right_records));
    let mut strangers: Vec<String> = truth
        .iter()
        .flat_map(|(l, r)| {
            let l =
                (!left_ids.contains(l)).then(|| format!("left_id {l} (not in {})", left.display()));
            let r = (!right_ids.contains(r))
                .then(|| format!("right_id {r} (not in {})", right.display()));
            l.into_iter().chain(r)
        })
        .collect();
    if !strangers.is_empty() {
        strangers.sort();
        let count = strangers.len();
        strangers.truncate(3);
        bail!(
            "{}: {count} ids are no record of the files compared, such as {}",
            truth_path.display(),
            strangers.join(", ")
        );
    }
    let evaluation = evaluate_with(
        &left_records,
        &right_records,
        &truth,
        threshold,
        42,
        report.linker.as_ref(),
    );
    let seconds = started.elapsed().as_secs_f64();
    let q = &evaluation.quality;
    if report.parameters {
        for line in describe(&evaluation.parameters) {
            println!("{line}");
        }
    }
    if let Some(path) = &report.save_parameters {
        save_parameters(path, &evaluation.parameters)?;
        println!("parameters written to {}", path.display());
    }
    if let Some(path) = &report.save_frequencies {
        let written = save_frequencies(path, left_records.iter().chain(&right_records))?;
        println!(
            "{written} common names' shares written to {}",
            path.display()
        );
    }
    if report.mistakes {
        for line in mistakes(&left_records, &right_records, &truth, &evaluation) {
            println!("{line}");
        }
    }
    println!(
        "left {} records, right {} records, {} true links",
        left_records.len(),
        right_records.len(),
        q.true_links
    );
    println!(
        "pairs compared {}; linked {}, of which correct {}",
        evaluation.pairs_compared, q.linked, q.correct
    );
    println!(
        "precision {:.4}  recall {:.4}  F1 {:.4}  in {seconds:.3} s (threshold {threshold})",
        q.precision, q.recall, q.f1
    );
    println!(
        "{}",
        serde_json::json!({
            "precision": q.precision,
            "recall": q.recall,
            "f1": q.f1,
            "pairs_compared": evaluation.pairs_compared,
            "seconds": seconds,
        })
    );
    Ok(evaluation)
}

/// One line per false link and per missed link: the two ids, the probability if linked, and each comparison's level.
fn mistakes(
    left: &[PersonRecord],
    right: &[PersonRecord],
    truth: &HashSet<(String, String)>,
    evaluation: &Evaluation,
) -> Vec<String> {
    let left_by_id: HashMap<&str, &PersonRecord> =
        left.iter().map(|r| (r.id.as_str(), r)).collect();
    let right_by_id: HashMap<&str, &PersonRecord> =
        right.iter().map(|r| (r.id.as_str(), r)).collect();
    let levels = |l: &str, r: &str| -> String {
        let (Some(a), Some(b)) = (left_by_id.get(l), right_by_id.get(r)) else {
            return "(not in the record files)".into();
        };
        compare(a, b)
            .iter()
            .zip(Comparison::ALL)
            .map(|(&level, c)| format!("{}={}", c.name(), c.levels()[usize::from(level)]))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut lines = Vec::new();
    let linked: HashSet<(&str, &str)> = evaluation
        .links
        .iter()
        .map(|(l, r, _)| (l.as_str(), r.as_str()))
        .collect();
    for (l, r, p) in &evaluation.links {
        if !truth.contains(&(l.clone(), r.clone())) {
            lines.push(format!("false link {l} {r} p={p:.4}: {}", levels(l, r)));
        }
    }
    let mut missed: Vec<&(String, String)> = truth
        .iter()
        .filter(|(l, r)| !linked.contains(&(l.as_str(), r.as_str())))
        .collect();
    missed.sort();
    for (l, r) in missed {
        lines.push(format!("missed link {l} {r}: {}", levels(l, r)));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use childgraph_simulators::population::{PopulationConfig, export};

    /// A generated population of 1,500 children, written as the linkage files.
    fn population(seed: u64) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        export(
            &PopulationConfig {
                children: 1500,
                seed,
                ..PopulationConfig::default()
            },
            dir.path(),
        )
        .expect("export");
        dir
    }

    #[test]
    fn a_generated_population_links_well_and_the_last_line_is_json() {
        let dir = population(11);
        // School and early years share few children: a few dozen here.
        for (left, right, shared) in [
            ("health", "school", 100),
            ("health", "early_years", 100),
            ("school", "early_years", 20),
        ] {
            let evaluation = run(
                &dir.path().join(format!("{left}.csv")),
                &dir.path().join(format!("{right}.csv")),
                &dir.path().join(format!("truth_{left}_{right}.csv")),
                &Report::default(),
            )
            .expect("evaluates");
            let q = &evaluation.quality;
            assert!(q.true_links > shared, "{left}-{right}: {q:?}");
            assert!(q.precision >= 0.995, "{left}-{right}: {q:?}");
            assert!(q.recall >= 0.99, "{left}-{right}: {q:?}");
        }
    }

    #[test]
    fn common_names_shares_are_saved_without_rare_names_and_put_in_force() {
        let dir = population(5);
        let saved = dir.path().join("frequencies.csv");
        let (left, right) = (dir.path().join("health.csv"), dir.path().join("school.csv"));
        run(
            &left,
            &right,
            &dir.path().join("truth_health_school.csv"),
            &Report {
                save_frequencies: Some(saved.clone()),
                ..Report::default()
            },
        )
        .expect("evaluates");
        let records: Vec<PersonRecord> = read_records(&left, SourceName::Health)
            .unwrap()
            .into_iter()
            .chain(read_records(&right, SourceName::School).unwrap())
            .collect();
        let table = load_frequencies(&saved).expect("reads back");
        let rows = table.rows();
        assert!(
            rows.iter().any(|r| r.0) && rows.iter().any(|r| !r.0),
            "{rows:?}"
        );
        // Every name written is carried by at least ten records: none could point to one child.
        for (family, name, share) in &rows {
            let carried = records
                .iter()
                .filter(|r| {
                    if *family {
                        r.family_name
                            .as_deref()
                            .map(childgraph_linkage::names::normalise)
                            .as_deref()
                            == Some(*name)
                    } else {
                        r.given_names
                            .iter()
                            .any(|g| childgraph_linkage::names::normalise(g) == *name)
                    }
                })
                .count();
            assert!(
                carried >= FREQUENCY_MIN_RECORDS,
                "{name}: {carried} records, share {share}"
            );
        }
        // The gateway's config puts it in force.
        let config = crate::config::LinkageConfig {
            frequencies: Some(saved.clone()),
            ..Default::default()
        };
        assert_eq!(*config.linker().expect("a linker").frequencies, table);
        // A bad row is named by line.
        let bad = dir.path().join("bad.csv");
        std::fs::write(
            &bad,
            "kind,name,share\nfamily,smith,0.01\nsurname,jones,0.01\n",
        )
        .unwrap();
        let error = format!("{:#}", load_frequencies(&bad).unwrap_err());
        assert!(
            error.contains("line 3") && error.contains("family or given"),
            "{error}"
        );
        std::fs::write(&bad, "kind,name,share\nfamily,smith,2\n").unwrap();
        let error = format!("{:#}", load_frequencies(&bad).unwrap_err());
        assert!(
            error.contains("line 2") && error.contains("(0, 1]"),
            "{error}"
        );
    }

    #[test]
    fn estimated_parameters_are_saved_and_read_back() {
        let dir = population(5);
        let saved = dir.path().join("linkage.yaml");
        let evaluation = run(
            &dir.path().join("health.csv"),
            &dir.path().join("school.csv"),
            &dir.path().join("truth_health_school.csv"),
            &Report {
                save_parameters: Some(saved.clone()),
                ..Report::default()
            },
        )
        .expect("evaluates");
        let read = load_parameters(&saved).expect("reads back");
        assert_eq!(read.prior, evaluation.parameters.prior);
        for (a, b) in read.levels().iter().zip(evaluation.parameters.levels()) {
            assert_eq!((a.0, a.1), (b.0, b.1));
            assert!(
                (a.2 - b.2).abs() < 1e-12 && (a.3 - b.3).abs() < 1e-12,
                "{a:?} {b:?}"
            );
        }
        // A level left out, or a misspelt key, is named.
        let text = std::fs::read_to_string(&saved).expect("read");
        let cut = dir.path().join("cut.yaml");
        std::fs::write(&cut, text.replace("  \"same sector\"", "  \"same sectr\"")).expect("write");
        let error = format!("{:#}", load_parameters(&cut).unwrap_err());
        assert!(
            error.contains("postcode.same sectr: not a level"),
            "{error}"
        );
        std::fs::write(&cut, text.replace("m: ", "mm: ")).expect("write");
        let error = format!("{:#}", load_parameters(&cut).unwrap_err());
        assert!(error.contains("each level needs an m and a u"), "{error}");
    }

    #[test]
    fn bad_input_is_refused_with_the_line_and_column_but_not_the_value() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let header = "id,given_name,family_name,date_of_birth,sex,postcode,address\n";
        let bad_date = write(
            "a.csv",
            &format!("{header}h1,Amelia,Hartley,14/06/2019,female,,\n"),
        );
        let error = read_records(&bad_date, SourceName::Health)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 2") && error.contains("date_of_birth"),
            "{error}"
        );
        assert!(!error.contains("14/06/2019"), "{error}");

        let no_column = write("b.csv", "id,given_name\nh1,Amelia\n");
        let error = read_records(&no_column, SourceName::Health)
            .unwrap_err()
            .to_string();
        assert!(error.contains("no family_name column"), "{error}");

        let repeated = write("c.csv", &format!("{header}h1,A,B,,,,\nh1,C,D,,,,\n"));
        let error = read_records(&repeated, SourceName::Health)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 3") && error.contains("repeats"),
            "{error}"
        );

        let bad_sex = write("d.csv", &format!("{header}h1,A,B,2019-06-14,x,,\n"));
        let error = read_records(&bad_sex, SourceName::Health)
            .unwrap_err()
            .to_string();
        assert!(error.contains("sex"), "{error}");

        // Empty optional columns are fine.
        let sparse = write("e.csv", &format!("{header}h1,,Hartley,,,,\n"));
        let records = read_records(&sparse, SourceName::Health).expect("reads");
        assert_eq!(records[0].date_of_birth, None);

        let truth = write("t.csv", "left_id,right_id\nh1,\n");
        let error = read_truth(&truth).unwrap_err().to_string();
        assert!(error.contains("line 2"), "{error}");
    }
}
