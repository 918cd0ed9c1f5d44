//! Case files for `childgraph policy test`: a role set, a child's situation, and the fields expected shown or
//! withheld (with the reason). A policy officer writes them once and runs them against every change to the policy.
//!
//! ```yaml
//! cases:
//!   - name: a teacher sees a pupil's carers but not where the pupil lives
//!     roles: [teacher]
//!     situation: { shielded: false, overridden: false, relation: own, past_age: false }
//!     visible: [Child.name, Child.carers]
//!     withheld: { Child.address: ROLE }
//! ```
//!
//! Field names are those of `policy explain`: the schema's `Type.field` paths, and `Child.services (sensitive kinds)`.

use serde::Deserialize;

use crate::{Policy, PolicyError, PolicyProblem, Reason, Relation, Situation};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseFile {
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    roles: Vec<String>,
    #[serde(default)]
    situation: SituationFile,
    #[serde(default)]
    visible: Vec<String>,
    #[serde(default)]
    withheld: std::collections::BTreeMap<String, ReasonFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SituationFile {
    #[serde(default)]
    shielded: bool,
    #[serde(default)]
    overridden: bool,
    #[serde(default)]
    relation: RelationFile,
    #[serde(default)]
    past_age: bool,
}

#[derive(Debug, Default, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RelationFile {
    #[default]
    Own,
    Other,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum ReasonFile {
    Role,
    Shielded,
    NotRelevant,
}

impl From<ReasonFile> for Reason {
    fn from(r: ReasonFile) -> Self {
        match r {
            ReasonFile::Role => Reason::Role,
            ReasonFile::Shielded => Reason::Shielded,
            ReasonFile::NotRelevant => Reason::NotRelevant,
        }
    }
}

/// The outcome of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    pub name: String,
    /// Each expectation the policy did not meet, in words; empty when the case passed.
    pub failures: Vec<String>,
}

impl CaseOutcome {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Runs every case of a case file against a policy. A case file that does not parse, or names a role or field the
/// policy does not know, is an error: a typo must not pass as a case that checks nothing.
pub fn run(policy: &Policy, text: &str) -> Result<Vec<CaseOutcome>, PolicyError> {
    let file: CaseFile = serde_yaml_ng::from_str(text).map_err(|e| PolicyError {
        location: e.location().map(|l| (l.line(), l.column())),
        problem: PolicyProblem::Syntax(crate::strip_location(&e.to_string())),
    })?;
    let invalid = |message: String, needle: &str| PolicyError {
        problem: PolicyProblem::Invalid(message),
        location: crate::file::locate(text, &[], needle),
    };
    let mut outcomes = Vec::new();
    for case in file.cases {
        for role in &case.roles {
            if !policy.has_role(role) {
                return Err(invalid(
                    format!(
                        "case \"{}\" names role {role}, which the policy does not declare",
                        case.name
                    ),
                    role,
                ));
            }
        }
        if case.visible.is_empty() && case.withheld.is_empty() {
            return Err(invalid(
                format!(
                    "case \"{}\" expects nothing: list `visible` or `withheld` fields",
                    case.name
                ),
                &case.name,
            ));
        }
        let s = case.situation;
        let situation = Situation {
            shielded: s.shielded,
            overridden: s.overridden,
            relation: match s.relation {
                RelationFile::Own => Relation::Own,
                RelationFile::Other => Relation::Other,
            },
            past_age: s.past_age,
        };
        let roles: Vec<&str> = case.roles.iter().map(String::as_str).collect();
        let rows = policy.explain(&roles, situation);
        let find = |field: &str| {
            rows.iter().find(|r| r.field == field).ok_or_else(|| {
                invalid(
                    format!(
                        "case \"{}\" names field {field}, which the policy does not know",
                        case.name
                    ),
                    field,
                )
            })
        };
        let mut failures = Vec::new();
        for field in &case.visible {
            let row = find(field)?;
            if let Some(reason) = row.withheld {
                failures.push(format!(
                    "{field}: expected visible, withheld with {} ({})",
                    reason.as_str(),
                    row.rule
                ));
            }
        }
        for (field, expected) in &case.withheld {
            let row = find(field)?;
            let expected = Reason::from(*expected);
            match row.withheld {
                Some(reason) if reason == expected => {}
                Some(reason) => failures.push(format!(
                    "{field}: expected withheld with {}, withheld with {} ({})",
                    expected.as_str(),
                    reason.as_str(),
                    row.rule
                )),
                None => failures.push(format!(
                    "{field}: expected withheld with {}, visible ({})",
                    expected.as_str(),
                    row.rule
                )),
            }
        }
        outcomes.push(CaseOutcome {
            name: case.name,
            failures,
        });
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CASES: &str = r#"
cases:
  - name: teacher, own pupil
    roles: [teacher]
    visible: [Child.name, Child.carers]
    withheld: { Child.address: ROLE }
  - name: teacher, another school's pupil
    roles: [teacher]
    situation: { relation: other }
    visible: [Child.name]
    withheld: { Child.carers: NOT_RELEVANT }
  - name: wrong on purpose
    roles: [gp]
    situation: { shielded: true }
    visible: [Child.address]
    withheld: { Child.name: SHIELDED, Child.carers: ROLE }
"#;

    #[test]
    fn cases_pass_and_fail_as_the_policy_decides() {
        let outcomes = run(&Policy::default_policy(), CASES).unwrap();
        assert!(outcomes[0].passed(), "{:?}", outcomes[0]);
        assert!(outcomes[1].passed(), "{:?}", outcomes[1]);
        assert_eq!(outcomes[2].failures.len(), 3, "{:?}", outcomes[2]);
        assert!(outcomes[2].failures[0].starts_with("Child.address: expected visible"));
    }

    #[test]
    fn unknown_roles_and_fields_and_empty_cases_are_errors() {
        let policy = Policy::default_policy();
        let error = run(
            &policy,
            "cases:\n  - name: x\n    roles: [teachr]\n    visible: [Child.name]\n",
        )
        .unwrap_err();
        assert_eq!(error.location, Some((3, 13)));
        assert!(
            run(
                &policy,
                "cases:\n  - name: x\n    roles: [teacher]\n    visible: [Child.nam]\n"
            )
            .is_err()
        );
        assert!(run(&policy, "cases:\n  - name: x\n    roles: [teacher]\n").is_err());
        let error = run(&policy, "cases:\n  - name: x\n    role: [teacher]\n").unwrap_err();
        assert!(error.location.is_some());
    }
}
