//! Strings that have broken search URLs and queries elsewhere, for the connectors' encoding tests: quotes, separators,
//! FHIR escapes, bidi controls, emoji, combining marks and sheer length.

/// The shared hostile inputs; each protocol's tests add the ones peculiar to it.
pub(crate) fn hostile_strings() -> Vec<String> {
    vec![
        "O'Brien".into(),
        "' OR '1'='1".into(),
        "a&b=c".into(),
        "a,b".into(),
        "a|b".into(),
        "a$b".into(),
        "a\\b".into(),
        "\u{200F}Hartley".into(),
        "😀 Smith".into(),
        "Zoe\u{0301}".into(),
        "x".repeat(10_000),
    ]
}
