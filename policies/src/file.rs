//! The policy file as written: plain serde structs, checked and compiled by [`crate::Policy::from_yaml`].

use std::collections::BTreeMap;

use childgraph_schema::ServiceKind;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PolicyFile {
    pub version: u32,
    pub categories: BTreeMap<String, String>,
    pub fields: BTreeMap<String, String>,
    pub sensitive_services: Option<SensitiveFile>,
    pub roles: BTreeMap<String, RoleFile>,
    pub relevance: RelevanceFile,
    pub shielding: ShieldingFile,
    #[serde(default)]
    pub flags: FlagsFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagsFile {
    pub expire_days: u32,
    pub note_max_chars: usize,
}

impl Default for FlagsFile {
    fn default() -> Self {
        Self {
            expire_days: 90,
            note_max_chars: 280,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SensitiveFile {
    pub category: String,
    pub kinds: Vec<ServiceKind>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleFile {
    #[serde(default)]
    pub sees: Vec<String>,
    #[serde(default)]
    pub scope: ScopeFile,
    #[serde(default)]
    pub permissions: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum ScopeFile {
    #[default]
    Any,
    OwnOrganisation,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RelevanceFile {
    pub shows: Vec<String>,
    pub until_age: u32,
    pub at_school_until_age: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ShieldingFile {
    pub shows: Vec<String>,
    pub review_months: u32,
    #[serde(rename = "override")]
    pub override_rules: OverrideFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OverrideFile {
    pub min_justification: usize,
    pub minutes: u32,
    pub alert: Vec<String>,
}

/// The line and column (both from 1) of the first line that holds `key` as a mapping key, optionally after the line
/// holding `after`; or of the first occurrence of `needle` on a line after that. Used to point a policy officer at
/// the place of an error that YAML itself did not see.
pub(crate) fn locate(text: &str, section: &[&str], needle: &str) -> Option<(usize, usize)> {
    let mut start = 0;
    let lines: Vec<&str> = text.lines().collect();
    for key in section {
        let pattern = format!("{key}:");
        start += lines[start..]
            .iter()
            .position(|l| l.trim_start().starts_with(&pattern))?;
    }
    lines[start..]
        .iter()
        .enumerate()
        .find_map(|(i, line)| find_word(line, needle).map(|col| (start + i + 1, col + 1)))
}

/// The byte offset of `word` in `line` where it stands alone: not inside a longer name.
fn find_word(line: &str, word: &str) -> Option<usize> {
    let is_name = |c: char| c.is_alphanumeric() || c == '-' || c == '_' || c == '.';
    let mut from = 0;
    while let Some(i) = line[from..].find(word) {
        let at = from + i;
        let before = line[..at].chars().next_back();
        let after = line[at + word.len()..].chars().next();
        if !before.is_some_and(is_name) && !after.is_some_and(is_name) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_a_value_within_its_section() {
        let text =
            "roles:\n  teacher:\n    sees: [identity, secrets]\n  gp:\n    sees: [secrets]\n";
        assert_eq!(locate(text, &["roles", "gp"], "secrets"), Some((5, 12)));
        assert_eq!(locate(text, &["roles"], "secrets"), Some((3, 22)));
        assert_eq!(locate(text, &["roles"], "secret"), None);
        assert_eq!(locate(text, &["shielding"], "secrets"), None);
    }
}
