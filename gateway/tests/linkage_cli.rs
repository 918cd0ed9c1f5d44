//! `childgraph population` and `childgraph linkage evaluate` as a user runs them: the binary, its files and its
//! output.

use std::process::Command;

fn childgraph(args: &[&str]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_childgraph"))
        .args(args)
        .output()
        .expect("childgraph runs");
    assert!(
        output.status.success(),
        "childgraph {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn evaluate_reads_the_generated_files_and_ends_with_one_json_object() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().to_str().expect("a UTF-8 path");
    childgraph(&[
        "population",
        "--children",
        "800",
        "--seed",
        "3",
        "--out",
        out,
    ]);
    let output = childgraph(&[
        "linkage",
        "evaluate",
        "--left",
        &format!("{out}/health.csv"),
        "--right",
        &format!("{out}/school.csv"),
        "--truth",
        &format!("{out}/truth_health_school.csv"),
    ]);
    let stdout = String::from_utf8(output.stdout).expect("UTF-8");
    let last = stdout.lines().last().expect("output");
    let report: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"));
    let mut keys: Vec<&str> = report.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["f1", "pairs_compared", "precision", "recall", "seconds"]
    );
    for key in ["precision", "recall", "f1"] {
        let value = report[key].as_f64().expect("a number");
        assert!((0.99..=1.0).contains(&value), "{key} {value}: {stdout}");
    }
    assert!(report["pairs_compared"].as_u64().expect("a count") > 0);
    assert!(report["seconds"].as_f64().expect("seconds") > 0.0);
    // The lines before it say the same for a reader.
    assert!(stdout.contains("precision "), "{stdout}");
}

/// The gateway's own model, as it links live: at default noise, precision of at least 0.995 and recall of at least
/// 0.99 between every pair of sources.
#[test]
fn the_gateways_built_in_model_links_well_across_sources() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().to_str().expect("a UTF-8 path");
    childgraph(&[
        "population",
        "--children",
        "3000",
        "--seed",
        "21",
        "--out",
        out,
    ]);
    for (left, right) in [
        ("health", "school"),
        ("health", "early_years"),
        ("school", "early_years"),
    ] {
        let output = childgraph(&[
            "linkage",
            "evaluate",
            "--as-gateway",
            "--left",
            &format!("{out}/{left}.csv"),
            "--right",
            &format!("{out}/{right}.csv"),
            "--truth",
            &format!("{out}/truth_{left}_{right}.csv"),
        ]);
        let stdout = String::from_utf8(output.stdout).expect("UTF-8");
        let report: serde_json::Value =
            serde_json::from_str(stdout.lines().last().expect("output")).expect("JSON");
        let (precision, recall) = (
            report["precision"].as_f64().unwrap(),
            report["recall"].as_f64().unwrap(),
        );
        assert!(
            precision >= 0.995 && recall >= 0.99,
            "{left}-{right}: {stdout}"
        );
    }
}

#[test]
fn a_truth_file_that_names_an_unknown_record_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().to_str().expect("a UTF-8 path");
    childgraph(&[
        "population",
        "--children",
        "50",
        "--seed",
        "3",
        "--out",
        out,
    ]);
    let truth = dir.path().join("bad_truth.csv");
    std::fs::write(&truth, "left_id,right_id\nnobody,noone\n").expect("write");
    let output = Command::new(env!("CARGO_BIN_EXE_childgraph"))
        .args(["linkage", "evaluate", "--left"])
        .arg(dir.path().join("health.csv"))
        .arg("--right")
        .arg(dir.path().join("school.csv"))
        .arg("--truth")
        .arg(&truth)
        .output()
        .expect("childgraph runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("nobody"), "{stderr}");
}
