//! Policies: which principal sees which field of which child, and why not. Pure functions over plain data; no IO, no HTTP.
//!
//! The YAML policy compiles into bitmasks, so a decision is a few array lookups.

use std::collections::{BTreeMap, HashMap};

use childgraph_schema::Field;
use serde::Deserialize;

/// The default policy, shipped with the binary and used by the demo.
pub const DEFAULT_POLICY: &str = include_str!("../policy.yaml");

/// Why a policy file was refused. Each message names the key at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("the policy is not valid YAML for its format: {0}")]
    Syntax(String),
    #[error("unsupported policy version {0}; this gateway reads version 1")]
    Version(u32),
    #[error("field {0} carries child data and has no category under `fields`")]
    UnclassifiedField(&'static str),
    #[error("`fields` names {0}, which is not a field of the schema")]
    UnknownField(String),
    #[error("{place} names category {category}, which is not declared under `categories`")]
    UnknownCategory { place: String, category: String },
    #[error("the policy declares {0} categories; at most 64 are supported")]
    TooManyCategories(usize),
}

/// Why a field was withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// None of the principal's roles sees the field's category.
    Role,
    /// The child is shielded, and a shielded record does not show the category.
    Shielded,
    /// The child is outside the principal's scope.
    NotRelevant,
}

impl Reason {
    /// The value of `extensions.reason` in a REDACTED error.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Role => "ROLE",
            Reason::Shielded => "SHIELDED",
            Reason::NotRelevant => "NOT_RELEVANT",
        }
    }
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'p> {
    Visible,
    Withheld { reason: Reason, category: &'p str },
}

impl Decision<'_> {
    pub fn is_visible(&self) -> bool {
        matches!(self, Decision::Visible)
    }
}

/// The child's situation, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Situation {
    /// Shielded by the gateway's register, a source's restriction label, or a probable duplicate.
    pub shielded: bool,
    /// The principal holds a live override of this child's shield.
    pub overridden: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    version: u32,
    categories: BTreeMap<String, String>,
    fields: BTreeMap<String, String>,
    roles: BTreeMap<String, RoleFile>,
    shielding: ShieldingFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    #[serde(default)]
    sees: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShieldingFile {
    shows: Vec<String>,
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Category names, indexed by bit position.
    categories: Vec<String>,
    /// The category bit of every catalogue field, indexed by `Field as usize`.
    field_category: Vec<u8>,
    /// The categories each role sees.
    roles: HashMap<String, u64>,
    /// The categories a shielded record shows.
    shielded_shows: u64,
}

/// What a principal's roles grant, resolved once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grant {
    sees: u64,
}

impl Policy {
    /// Parses and checks a policy file.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile =
            serde_yaml_ng::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        if file.version != 1 {
            return Err(PolicyError::Version(file.version));
        }
        if file.categories.len() > 64 {
            return Err(PolicyError::TooManyCategories(file.categories.len()));
        }
        let categories: Vec<String> = file.categories.keys().cloned().collect();
        let bit = |place: &str, name: &str| -> Result<u8, PolicyError> {
            categories
                .iter()
                .position(|c| c == name)
                .and_then(|i| u8::try_from(i).ok())
                .ok_or_else(|| PolicyError::UnknownCategory {
                    place: place.to_owned(),
                    category: name.to_owned(),
                })
        };
        for path in file.fields.keys() {
            if Field::from_path(path).is_none() {
                return Err(PolicyError::UnknownField(path.clone()));
            }
        }
        let mut field_category = Vec::with_capacity(Field::ALL.len());
        for field in Field::ALL {
            let category = file
                .fields
                .get(field.path())
                .ok_or(PolicyError::UnclassifiedField(field.path()))?;
            field_category.push(bit(&format!("fields.{}", field.path()), category)?);
        }
        let mut roles = HashMap::new();
        for (name, role) in &file.roles {
            let mut mask = 0u64;
            for category in &role.sees {
                mask |= 1 << bit(&format!("roles.{name}.sees"), category)?;
            }
            roles.insert(name.clone(), mask);
        }
        let mut shielded_shows = 0u64;
        for category in &file.shielding.shows {
            shielded_shows |= 1 << bit("shielding.shows", category)?;
        }
        Ok(Self {
            categories,
            field_category,
            roles,
            shielded_shows,
        })
    }

    /// The default policy. It is checked by the tests, so this cannot fail at run time.
    pub fn default_policy() -> Self {
        Self::from_yaml(DEFAULT_POLICY).expect("the default policy is valid")
    }

    /// Whether the policy knows a role.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    /// Resolves a principal's roles. Roles the policy does not know grant nothing.
    pub fn grant<'a>(&self, roles: impl IntoIterator<Item = &'a str>) -> Grant {
        let sees = roles
            .into_iter()
            .filter_map(|r| self.roles.get(r))
            .fold(0, |acc, m| acc | m);
        Grant { sees }
    }

    /// The category a field belongs to.
    pub fn category(&self, field: Field) -> &str {
        &self.categories[usize::from(self.field_category[field as usize])]
    }

    /// The one decision: may this grant see this field of a child in this situation.
    pub fn decide(&self, grant: Grant, situation: Situation, field: Field) -> Decision<'_> {
        let index = self.field_category[field as usize];
        let bit = 1u64 << index;
        let category = self.categories[usize::from(index)].as_str();
        if grant.sees & bit == 0 {
            return Decision::Withheld {
                reason: Reason::Role,
                category,
            };
        }
        if situation.shielded && !situation.overridden && self.shielded_shows & bit == 0 {
            return Decision::Withheld {
                reason: Reason::Shielded,
                category,
            };
        }
        Decision::Visible
    }

    /// Whether a grant sees any child data at all: a principal who sees nothing gets no search results.
    pub fn sees_child_data(&self, grant: Grant) -> bool {
        grant.sees != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_policy_compiles() {
        let policy = Policy::default_policy();
        assert!(policy.has_role("teacher"));
        assert_eq!(policy.category(Field::ChildAddress), "location");
    }

    #[test]
    fn role_decides_first() {
        let policy = Policy::default_policy();
        let teacher = policy.grant(["teacher"]);
        assert_eq!(
            policy.decide(teacher, Situation::default(), Field::ChildAddress),
            Decision::Withheld {
                reason: Reason::Role,
                category: "location"
            }
        );
        assert!(
            policy
                .decide(teacher, Situation::default(), Field::ChildCarers)
                .is_visible()
        );
    }

    #[test]
    fn shielded_record_shows_only_identity() {
        let policy = Policy::default_policy();
        let gp = policy.grant(["gp"]);
        let shielded = Situation {
            shielded: true,
            overridden: false,
        };
        for field in Field::ALL {
            let decision = policy.decide(gp, shielded, *field);
            let identity = policy.category(*field) == "identity";
            assert_eq!(decision.is_visible(), identity, "{field}");
            if !identity {
                assert!(matches!(
                    decision,
                    Decision::Withheld {
                        reason: Reason::Shielded,
                        ..
                    }
                ));
            }
        }
        let overridden = Situation {
            shielded: true,
            overridden: true,
        };
        assert!(
            policy
                .decide(gp, overridden, Field::ChildAddress)
                .is_visible()
        );
    }

    #[test]
    fn roles_combine_and_unknown_roles_grant_nothing() {
        let policy = Policy::default_policy();
        assert!(!policy.sees_child_data(policy.grant(["authoriser", "no-such-role"])));
        let both = policy.grant(["teacher", "gp"]);
        assert!(
            policy
                .decide(both, Situation::default(), Field::ChildAddress)
                .is_visible()
        );
    }

    #[test]
    fn unclassified_field_is_refused() {
        let text = DEFAULT_POLICY.replace("  Child.flags: flags\n", "");
        assert_eq!(
            Policy::from_yaml(&text).unwrap_err(),
            PolicyError::UnclassifiedField("Child.flags")
        );
    }

    #[test]
    fn unknown_category_and_field_are_refused() {
        let text =
            DEFAULT_POLICY.replace("    sees: [identity]\n", "    sees: [identity, secrets]\n");
        assert!(matches!(
            Policy::from_yaml(&text),
            Err(PolicyError::UnknownCategory { .. })
        ));
        let text = DEFAULT_POLICY.replace(
            "  Child.flags: flags\n",
            "  Child.flags: flags\n  Child.shoeSize: identity\n",
        );
        assert_eq!(
            Policy::from_yaml(&text).unwrap_err(),
            PolicyError::UnknownField("Child.shoeSize".into())
        );
    }
}
