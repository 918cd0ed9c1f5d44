//! The source systems the gateway federates, and references to their records.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One of the source systems. The gateway knows each by this name in config, errors and the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceName {
    /// GP registration, maternal and child health, health visiting (FHIR R4).
    Health,
    /// Enrolment and school contacts (OneRoster 1.2).
    School,
    /// Kindergarten and childcare enrolment (bespoke REST API).
    EarlyYears,
}

impl SourceName {
    /// Every source, in a fixed order used wherever the gateway lists them.
    pub const ALL: [SourceName; 3] = [
        SourceName::Health,
        SourceName::School,
        SourceName::EarlyYears,
    ];

    /// The name used in config, `extensions.source` and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceName::Health => "health",
            SourceName::School => "school",
            SourceName::EarlyYears => "early_years",
        }
    }

    /// Parses the name used in config and the store.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|n| n.as_str() == s)
    }
}

impl fmt::Display for SourceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record in one source: the unit that linkage joins into children.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RecordRef {
    pub source: SourceName,
    /// The source's own id for the record (FHIR `Patient.id`, OneRoster `sourcedId`, early-years child id).
    pub id: String,
}

impl RecordRef {
    pub fn new(source: SourceName, id: impl Into<String>) -> Self {
        Self {
            source,
            id: id.into(),
        }
    }
}
