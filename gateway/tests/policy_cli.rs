//! The policy officer's commands as they run them: `childgraph policy check|explain|test`, their output and their
//! exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn policy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_childgraph"))
        .arg("policy")
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("childgraph runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn check_passes_the_default_policy_and_points_at_a_mistake_by_line_and_column() {
    let good = policy(&["check", "policies/policy.yaml"]);
    assert!(good.status.success(), "{}", text(&good));

    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("policy.yaml");
    let broken = childgraph_policies::DEFAULT_POLICY.replacen(
        "    sees: [identity]\n",
        "    sees: [identity, secrets]\n",
        1,
    );
    assert_ne!(broken, childgraph_policies::DEFAULT_POLICY);
    std::fs::write(&bad, &broken).expect("write");
    let (line, column) = broken
        .lines()
        .enumerate()
        .find_map(|(i, l)| Some((i + 1, l.find("secrets")? + 1)))
        .expect("the mistake");
    let output = policy(&["check", bad.to_str().expect("a UTF-8 path")]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let said = text(&output);
    assert!(
        said.contains(&format!("{}:{line}:{column}: ", bad.display())) && said.contains("secrets"),
        "{said}"
    );
    assert!(!said.contains("backtrace"), "{said}");
}

#[test]
fn explain_gives_every_field_with_the_rule_that_decided_it() {
    let output = policy(&[
        "explain",
        "--role",
        "teacher",
        "--shielded",
        "--relation",
        "other",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let table = String::from_utf8(output.stdout).expect("UTF-8");
    let row = |field: &str| {
        table
            .lines()
            .find(|l| l.split_whitespace().next() == Some(field))
            .unwrap_or_else(|| panic!("no {field} in\n{table}"))
            .to_owned()
    };
    assert!(row("Child.name").contains("visible"), "{table}");
    assert!(row("Child.carers").contains("withheld SHIELDED"), "{table}");
    assert!(row("Child.address").contains("withheld ROLE"), "{table}");
    // With an override, the shield no longer decides for the social worker.
    let output = policy(&[
        "explain",
        "--role",
        "social-worker",
        "--shielded",
        "--override",
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let table = String::from_utf8(output.stdout).expect("UTF-8");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("Child.address") && l.contains("visible")),
        "{table}"
    );
    // An unknown role is refused by name.
    let output = policy(&["explain", "--role", "headteacher"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("headteacher"), "{}", text(&output));
}

#[test]
fn test_exits_0_when_every_case_holds_and_1_when_one_does_not() {
    let output = policy(&["test", "policies/cases/default.yaml"]);
    assert!(output.status.success(), "{}", text(&output));

    let dir = tempfile::tempdir().expect("temp dir");
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - name: a teacher sees the address\n    roles: [teacher]\n    visible: [Child.address]\n",
    )
    .expect("write");
    let output = policy(&["test", cases.to_str().expect("a UTF-8 path")]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("a teacher sees the address"),
        "{}",
        text(&output)
    );
}
