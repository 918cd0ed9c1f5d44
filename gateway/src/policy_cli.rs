//! `childgraph policy check|explain|test`: the policy officer's tools. Each reads the same compiled policy, and asks
//! the same decision, as the gateway does.

use std::fmt::Write as _;
use std::path::Path;

use childgraph_policies::{Policy, Relation, Situation, cases};

/// Reads and compiles a policy file; an error names the file, line and column.
pub fn load(path: &Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    Policy::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("{}", e.in_file(&path.display().to_string())))
}

/// The policy named, or the built-in default.
pub fn load_or_default(path: Option<&Path>) -> anyhow::Result<Policy> {
    path.map_or_else(|| Ok(Policy::default_policy()), load)
}

/// `policy check FILE`: a summary of a valid policy.
pub fn check(path: &Path) -> anyhow::Result<String> {
    let policy = load(path)?;
    Ok(format!(
        "{} is valid: {} categories, {} roles, every one of {} child-data fields classified; sha256 {}\n",
        path.display(),
        policy.categories().count(),
        policy.roles().len(),
        childgraph_schema::Field::ALL.len(),
        policy.hash()
    ))
}

/// `policy explain`: every field, shown or withheld, with the rule that decided.
pub fn explain(policy: &Policy, roles: &[String], situation: Situation) -> anyhow::Result<String> {
    for role in roles {
        if !policy.has_role(role) {
            let known: Vec<&str> = policy.roles().keys().map(String::as_str).collect();
            anyhow::bail!(
                "the policy has no role {role}; its roles are {}",
                known.join(", ")
            );
        }
    }
    let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    let rows = policy.explain(&roles, situation);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "roles {}; child {}, {}{}{}",
        roles.join(", "),
        if situation.shielded {
            "shielded"
        } else {
            "not shielded"
        },
        match situation.relation {
            Relation::Own => "of the user's organisation",
            Relation::Other => "of another organisation",
        },
        if situation.overridden {
            ", shield overridden"
        } else {
            ""
        },
        if situation.past_age {
            ", past the age limit"
        } else {
            ""
        },
    );
    let width = rows.iter().map(|r| r.field.len()).max().unwrap_or(0);
    let cat_width = rows.iter().map(|r| r.category.len()).max().unwrap_or(0);
    for row in rows {
        let decision = match row.withheld {
            None => "visible".to_owned(),
            Some(reason) => format!("withheld {}", reason.as_str()),
        };
        let _ = writeln!(
            out,
            "{:width$}  {:cat_width$}  {:21}  {}",
            row.field, row.category, decision, row.rule
        );
    }
    Ok(out)
}

/// `policy test CASES...`: runs every case file; the answer says whether all passed.
pub fn test(policy: &Policy, files: &[&Path]) -> anyhow::Result<(bool, String)> {
    let mut out = String::new();
    let (mut passed, mut failed) = (0, 0);
    for file in files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
        let outcomes = cases::run(policy, &text)
            .map_err(|e| anyhow::anyhow!("{}", e.in_file(&file.display().to_string())))?;
        for outcome in outcomes {
            if outcome.passed() {
                passed += 1;
                let _ = writeln!(out, "ok    {}: {}", file.display(), outcome.name);
            } else {
                failed += 1;
                let _ = writeln!(out, "FAIL  {}: {}", file.display(), outcome.name);
                for failure in &outcome.failures {
                    let _ = writeln!(out, "      {failure}");
                }
            }
        }
    }
    let _ = writeln!(out, "{passed} passed, {failed} failed");
    Ok((failed == 0, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_the_file_line_and_column_of_a_mistake() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.yaml");
        std::fs::write(&path, childgraph_policies::DEFAULT_POLICY).unwrap();
        assert!(check(&path).unwrap().contains("is valid"));
        let text =
            childgraph_policies::DEFAULT_POLICY.replace("sees: [identity]\n", "sees: [identiy]\n");
        std::fs::write(&path, &text).unwrap();
        let error = check(&path).unwrap_err().to_string();
        let (line, column) = text
            .lines()
            .enumerate()
            .find_map(|(i, l)| l.find("identiy").map(|c| (i + 1, c + 1)))
            .unwrap();
        assert!(
            error.starts_with(&format!("{}:{line}:{column}: ", path.display())),
            "{error}"
        );
        assert!(error.contains("identiy"), "{error}");
    }

    #[test]
    fn explain_lists_every_field_with_its_decision() {
        let policy = Policy::default_policy();
        let out = explain(&policy, &["teacher".to_owned()], Situation::default()).unwrap();
        assert_eq!(
            out.lines().count(),
            1 + childgraph_schema::Field::ALL.len() + 2
        );
        let address = out
            .lines()
            .find(|l| l.starts_with("Child.address "))
            .unwrap();
        assert!(address.contains("withheld ROLE"), "{address}");
        let carers = out
            .lines()
            .find(|l| l.starts_with("Child.carers "))
            .unwrap();
        assert!(carers.contains("visible"), "{carers}");
        assert!(explain(&policy, &["headteacher".to_owned()], Situation::default()).is_err());
    }

    #[test]
    fn the_shipped_cases_pass_against_the_default_policy() {
        let files = [Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../policies/cases/default.yaml"
        ))];
        let (ok, out) = test(&Policy::default_policy(), &files).unwrap();
        assert!(ok, "{out}");
        assert!(out.ends_with(" passed, 0 failed\n"), "{out}");
    }

    #[test]
    fn a_failing_case_fails_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cases.yaml");
        std::fs::write(
            &path,
            "cases:\n  - name: teachers see addresses\n    roles: [teacher]\n    visible: [Child.address]\n",
        )
        .unwrap();
        let (ok, out) = test(&Policy::default_policy(), &[path.as_path()]).unwrap();
        assert!(!ok);
        assert!(out.contains("FAIL"), "{out}");
        assert!(
            out.contains("Child.address: expected visible, withheld with ROLE"),
            "{out}"
        );
    }
}
