//! Policies: which principal sees which field of which child, and why not. Pure functions over plain data; no IO, no HTTP.
//!
//! The YAML policy compiles into bitmasks, so a decision is a few bit operations whatever the size of the policy.
//! [`Policy::decide_category`] is the one decision: the gateway asks it before fetching (a withheld category is never
//! fetched) and again on the composed answer; `policy explain` and `policy test` ask it too.

pub mod cases;
mod file;

use std::collections::BTreeMap;
use std::fmt;

use childgraph_schema::{Field, ServiceKind};
use sha2::{Digest, Sha256};

use file::{PolicyFile, ScopeFile, locate};

/// The default policy, shipped with the binary and used by the demo.
pub const DEFAULT_POLICY: &str = include_str!("../policy.yaml");

/// What was wrong with a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyProblem {
    #[error("{0}")]
    Syntax(String),
    #[error("unsupported policy version {0}; this gateway reads version 1")]
    Version(u32),
    #[error("field {0} carries child data and has no category under `fields`")]
    UnclassifiedField(&'static str),
    #[error("`fields` names {0}, which is not a field of the schema")]
    UnknownField(String),
    #[error("{place} names category {category}, which is not declared under `categories`")]
    UnknownCategory { place: String, category: String },
    #[error("{place} names permission {permission}; the permissions are {known}", known = Permission::names())]
    UnknownPermission { place: String, permission: String },
    #[error("{place} names role {role}, which is not declared under `roles`")]
    UnknownRole { place: String, role: String },
    #[error("the policy declares {0} categories; at most 64 are supported")]
    TooManyCategories(usize),
    #[error("{0}")]
    Invalid(String),
}

/// A policy file refused, with where in the file the problem lies when that is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub problem: PolicyProblem,
    /// Line and column, both from 1.
    pub location: Option<(usize, usize)>,
}

impl PolicyError {
    /// The error as a policy officer reads it: `FILE:LINE:COLUMN: problem`.
    pub fn in_file(&self, file: &str) -> String {
        match self.location {
            Some((line, column)) => format!("{file}:{line}:{column}: {}", self.problem),
            None => format!("{file}: {}", self.problem),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some((line, column)) => write!(f, "line {line}, column {column}: {}", self.problem),
            None => write!(f, "{}", self.problem),
        }
    }
}

impl std::error::Error for PolicyError {}

/// Why a field was withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// None of the principal's roles sees the field's category.
    Role,
    /// The child is shielded, and a shielded record does not show the category.
    Shielded,
    /// The child is outside the principal's scope: no organisation of the user works with the child, or the child is
    /// past the age limit.
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

/// How the child stands to the principal's organisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Relation {
    /// One of the user's organisations works with the child.
    #[default]
    Own,
    /// None does.
    Other,
}

/// The child's situation, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Situation {
    /// Shielded by the gateway's register, a source's restriction label, or a probable duplicate.
    pub shielded: bool,
    /// The principal holds a live override of this child's shield.
    pub overridden: bool,
    pub relation: Relation,
    /// The child is past the policy's age limit.
    pub past_age: bool,
}

/// What a role may do besides seeing child data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    FlagRaise,
    ShieldRequest,
    ShieldApprove,
    ShieldOverride,
    ShieldView,
    AccountsManage,
    AuditRead,
}

impl Permission {
    pub const ALL: [Permission; 7] = [
        Permission::FlagRaise,
        Permission::ShieldRequest,
        Permission::ShieldApprove,
        Permission::ShieldOverride,
        Permission::ShieldView,
        Permission::AccountsManage,
        Permission::AuditRead,
    ];

    /// The name the policy file uses.
    pub fn name(self) -> &'static str {
        match self {
            Permission::FlagRaise => "flag.raise",
            Permission::ShieldRequest => "shield.request",
            Permission::ShieldApprove => "shield.approve",
            Permission::ShieldOverride => "shield.override",
            Permission::ShieldView => "shield.view",
            Permission::AccountsManage => "accounts.manage",
            Permission::AuditRead => "audit.read",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    fn names() -> String {
        Self::ALL.map(Permission::name).join(", ")
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// Which children a role sees in full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Any child a full search finds.
    Any,
    /// Children one of the user's organisations works with; of others, only what `relevance.shows` lists.
    OwnOrganisation,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Any => "any",
            Scope::OwnOrganisation => "own-organisation",
        }
    }
}

/// One role as compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub sees: u64,
    pub scope: Scope,
    permissions: u16,
}

/// The override rules of the shielding section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverrideRules {
    /// The fewest characters a justification may have.
    pub min_justification: usize,
    /// How long an override lasts.
    pub minutes: u32,
    /// The roles alerted when an override is made.
    pub alert: Vec<String>,
}

/// How long a flag lasts, and how long its note may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagRules {
    pub expire_days: u32,
    /// A note is contact guidance, not case notes: it is kept short.
    pub note_max_chars: usize,
}

/// The age limit of the relevance section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeLimit {
    /// Out of scope from this birthday...
    pub until: u32,
    /// ...or from this one for a child still at school.
    pub at_school_until: u32,
}

impl AgeLimit {
    /// Whether a child born on `born` is past the limit on `today`.
    pub fn is_past(
        self,
        born: chrono::NaiveDate,
        today: chrono::NaiveDate,
        at_school: bool,
    ) -> bool {
        let limit = if at_school {
            self.until.max(self.at_school_until)
        } else {
            self.until
        };
        today.years_since(born).is_some_and(|age| age >= limit)
    }
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Category names and descriptions, indexed by bit position.
    categories: Vec<(String, String)>,
    /// The category bit of every catalogue field, indexed by `Field as usize`.
    field_category: Vec<u8>,
    roles: BTreeMap<String, Role>,
    /// The category of sensitive services, and their kinds.
    sensitive: Option<(u8, Vec<ServiceKind>)>,
    /// What a role sees of a child outside its scope.
    relevance_shows: u64,
    age: AgeLimit,
    /// The categories a shielded record shows.
    shielded_shows: u64,
    review_months: u32,
    override_rules: OverrideRules,
    flags: FlagRules,
    /// SHA-256 of the file, hex: which policy was in force, for the audit and `/metrics`.
    hash: String,
}

/// What a principal's roles grant, resolved once per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grant {
    /// The categories any of the roles sees, of children in scope.
    sees: u64,
    /// The categories seen of a child no organisation of the user works with.
    sees_other: u64,
    permissions: u16,
}

impl Grant {
    /// Whether any role of the principal holds the permission.
    pub fn may(self, permission: Permission) -> bool {
        self.permissions & permission.bit() != 0
    }

    /// Whether the grant sees more of a child its user's organisation works with than of another: only then does the
    /// relation need deciding.
    pub fn depends_on_relation(self) -> bool {
        self.sees != self.sees_other
    }
}

impl Policy {
    /// Parses, checks and compiles a policy file.
    pub fn from_yaml(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = serde_yaml_ng::from_str(text).map_err(|e| PolicyError {
            location: e.location().map(|l| (l.line(), l.column())),
            problem: PolicyProblem::Syntax(strip_location(&e.to_string())),
        })?;
        Self::compile(file, text)
    }

    fn compile(file: PolicyFile, text: &str) -> Result<Self, PolicyError> {
        let at = |problem: PolicyProblem, section: &[&str], needle: &str| PolicyError {
            problem,
            location: locate(text, section, needle),
        };
        if file.version != 1 {
            return Err(at(PolicyProblem::Version(file.version), &[], "version"));
        }
        if file.categories.len() > 64 {
            return Err(at(
                PolicyProblem::TooManyCategories(file.categories.len()),
                &[],
                "categories",
            ));
        }
        let categories: Vec<(String, String)> = file.categories.into_iter().collect();
        let bit = |section: &[&str], place: &str, name: &str| -> Result<u8, PolicyError> {
            categories
                .iter()
                .position(|(c, _)| c == name)
                .and_then(|i| u8::try_from(i).ok())
                .ok_or_else(|| {
                    at(
                        PolicyProblem::UnknownCategory {
                            place: place.to_owned(),
                            category: name.to_owned(),
                        },
                        section,
                        name,
                    )
                })
        };
        let mask = |section: &[&str], place: &str, names: &[String]| -> Result<u64, PolicyError> {
            names
                .iter()
                .try_fold(0u64, |m, name| Ok(m | 1 << bit(section, place, name)?))
        };
        for path in file.fields.keys() {
            if Field::from_path(path).is_none() {
                return Err(at(
                    PolicyProblem::UnknownField(path.clone()),
                    &["fields"],
                    path,
                ));
            }
        }
        let mut field_category = Vec::with_capacity(Field::ALL.len());
        for field in Field::ALL {
            let category = file.fields.get(field.path()).ok_or_else(|| {
                at(
                    PolicyProblem::UnclassifiedField(field.path()),
                    &[],
                    "fields",
                )
            })?;
            field_category.push(bit(
                &["fields"],
                &format!("fields.{}", field.path()),
                category,
            )?);
        }
        let sensitive = match &file.sensitive_services {
            Some(s) => Some((
                bit(
                    &["sensitive_services"],
                    "sensitive_services.category",
                    &s.category,
                )?,
                s.kinds.clone(),
            )),
            None => None,
        };
        let mut roles = BTreeMap::new();
        for (name, role) in &file.roles {
            let place = format!("roles.{name}");
            let mut permissions = 0u16;
            for p in &role.permissions {
                let permission = Permission::from_name(p).ok_or_else(|| {
                    at(
                        PolicyProblem::UnknownPermission {
                            place: format!("{place}.permissions"),
                            permission: p.clone(),
                        },
                        &["roles", name],
                        p,
                    )
                })?;
                permissions |= permission.bit();
            }
            roles.insert(
                name.clone(),
                Role {
                    sees: mask(&["roles", name], &format!("{place}.sees"), &role.sees)?,
                    scope: match role.scope {
                        ScopeFile::Any => Scope::Any,
                        ScopeFile::OwnOrganisation => Scope::OwnOrganisation,
                    },
                    permissions,
                },
            );
        }
        let relevance_shows = mask(&["relevance"], "relevance.shows", &file.relevance.shows)?;
        let shielded_shows = mask(&["shielding"], "shielding.shows", &file.shielding.shows)?;
        let rules = file.shielding.override_rules;
        for role in &rules.alert {
            if !roles.contains_key(role) {
                return Err(at(
                    PolicyProblem::UnknownRole {
                        place: "shielding.override.alert".to_owned(),
                        role: role.clone(),
                    },
                    &["shielding", "override", "alert"],
                    role,
                ));
            }
        }
        if rules.minutes == 0 {
            return Err(at(
                PolicyProblem::Invalid("shielding.override.minutes must be at least 1".to_owned()),
                &["shielding", "override"],
                "minutes",
            ));
        }
        if file.flags.expire_days == 0 || file.flags.note_max_chars == 0 {
            return Err(at(
                PolicyProblem::Invalid(
                    "flags.expire_days and flags.note_max_chars must be at least 1".to_owned(),
                ),
                &["flags"],
                "expire_days",
            ));
        }
        if file.shielding.review_months == 0 {
            return Err(at(
                PolicyProblem::Invalid("shielding.review_months must be at least 1".to_owned()),
                &["shielding"],
                "review_months",
            ));
        }
        let age = AgeLimit {
            until: file.relevance.until_age,
            at_school_until: file
                .relevance
                .at_school_until_age
                .unwrap_or(file.relevance.until_age),
        };
        if age.until == 0 || age.at_school_until < age.until {
            return Err(at(
                PolicyProblem::Invalid(
                    "relevance.until_age must be at least 1, and at_school_until_age no less than it"
                        .to_owned(),
                ),
                &["relevance"],
                "until_age",
            ));
        }
        Ok(Self {
            categories,
            field_category,
            roles,
            sensitive,
            relevance_shows,
            age,
            shielded_shows,
            review_months: file.shielding.review_months,
            flags: FlagRules {
                expire_days: file.flags.expire_days,
                note_max_chars: file.flags.note_max_chars,
            },
            override_rules: OverrideRules {
                min_justification: rules.min_justification,
                minutes: rules.minutes,
                alert: rules.alert,
            },
            hash: hex(&Sha256::digest(text.as_bytes())),
        })
    }

    /// The default policy. It is checked by the tests, so this cannot fail at run time.
    pub fn default_policy() -> Self {
        Self::from_yaml(DEFAULT_POLICY).expect("the default policy is valid")
    }

    /// SHA-256 of the policy file, in hex.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// Whether the policy knows a role.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    /// The roles, by name.
    pub fn roles(&self) -> &BTreeMap<String, Role> {
        &self.roles
    }

    /// Category names, in the policy's order.
    pub fn categories(&self) -> impl Iterator<Item = (&str, &str)> {
        self.categories
            .iter()
            .map(|(n, d)| (n.as_str(), d.as_str()))
    }

    /// Resolves a principal's roles. Roles the policy does not know grant nothing.
    pub fn grant<'a>(&self, roles: impl IntoIterator<Item = &'a str>) -> Grant {
        let mut grant = Grant::default();
        for role in roles.into_iter().filter_map(|r| self.roles.get(r)) {
            grant.sees |= role.sees;
            grant.permissions |= role.permissions;
            if role.scope == Scope::Any {
                grant.sees_other |= role.sees;
            }
        }
        grant.sees_other |= grant.sees & self.relevance_shows;
        grant
    }

    /// The category a field belongs to.
    pub fn category(&self, field: Field) -> &str {
        &self.categories[usize::from(self.field_category[field as usize])].0
    }

    /// The category index of a field.
    pub fn category_of(&self, field: Field) -> u8 {
        self.field_category[field as usize]
    }

    /// The category index of one service, or of the child's participation in one, listed under `field`
    /// (`Child.services` or `Child.participation`): the sensitive category for a sensitive kind.
    pub fn item_category(&self, field: Field, kind: ServiceKind) -> u8 {
        match &self.sensitive {
            Some((category, kinds)) if kinds.contains(&kind) => *category,
            _ => self.category_of(field),
        }
    }

    /// The category index of sensitive services, if the policy names one.
    pub fn sensitive_category(&self) -> Option<u8> {
        self.sensitive.as_ref().map(|(c, _)| *c)
    }

    /// The one decision: may this grant see a field of this category, of a child in this situation.
    pub fn decide_category(
        &self,
        grant: Grant,
        situation: Situation,
        category: u8,
    ) -> Decision<'_> {
        let bit = 1u64 << category;
        let reason = if grant.sees & bit == 0 {
            Reason::Role
        } else if situation.shielded && !situation.overridden && self.shielded_shows & bit == 0 {
            Reason::Shielded
        } else if (situation.past_age && self.relevance_shows & bit == 0)
            || (situation.relation == Relation::Other && grant.sees_other & bit == 0)
        {
            Reason::NotRelevant
        } else {
            return Decision::Visible;
        };
        Decision::Withheld {
            reason,
            category: &self.categories[usize::from(category)].0,
        }
    }

    /// The decision for a field: [`Self::decide_category`] on its category.
    pub fn decide(&self, grant: Grant, situation: Situation, field: Field) -> Decision<'_> {
        self.decide_category(grant, situation, self.category_of(field))
    }

    /// Whether a grant sees any child data at all: a principal who sees nothing gets no search results.
    pub fn sees_child_data(&self, grant: Grant) -> bool {
        grant.sees != 0
    }

    /// The age limit.
    pub fn age_limit(&self) -> AgeLimit {
        self.age
    }

    /// Months from a shield's approval, or its last review, to its next review.
    pub fn review_months(&self) -> u32 {
        self.review_months
    }

    pub fn override_rules(&self) -> &OverrideRules {
        &self.override_rules
    }

    pub fn flag_rules(&self) -> FlagRules {
        self.flags
    }

    /// The rule of the file that made a decision, in words, for `policy explain`.
    pub fn rule(&self, roles: &[&str], situation: Situation, category: u8) -> String {
        let name = &self.categories[usize::from(category)].0;
        let bit = 1u64 << category;
        let grant = self.grant(roles.iter().copied());
        let seeing: Vec<&str> = roles
            .iter()
            .copied()
            .filter(|r| self.roles.get(*r).is_some_and(|role| role.sees & bit != 0))
            .collect();
        match self.decide_category(grant, situation, category) {
            Decision::Withheld {
                reason: Reason::Role,
                ..
            } => format!("no role's `sees` lists {name}"),
            Decision::Withheld {
                reason: Reason::Shielded,
                ..
            } => format!("shielding.shows does not list {name}"),
            Decision::Withheld {
                reason: Reason::NotRelevant,
                ..
            } if situation.past_age && self.relevance_shows & bit == 0 => format!(
                "the child is past relevance.until_age, and relevance.shows does not list {name}"
            ),
            Decision::Withheld {
                reason: Reason::NotRelevant,
                ..
            } => format!(
                "scope own-organisation ({}), and relevance.shows does not list {name}",
                seeing.join(", ")
            ),
            Decision::Visible => {
                let mut rule = format!("{} sees {name}", seeing.join(", "));
                if situation.shielded && situation.overridden && self.shielded_shows & bit == 0 {
                    rule.push_str("; the shield is overridden");
                } else if situation.shielded {
                    rule.push_str(&format!("; shielding.shows lists {name}"));
                }
                if situation.relation == Relation::Other || situation.past_age {
                    rule.push_str(&format!(
                        "; {}",
                        if !situation.past_age
                            && roles.iter().any(|r| {
                                self.roles.get(*r).is_some_and(|role| {
                                    role.scope == Scope::Any && role.sees & bit != 0
                                })
                            })
                        {
                            "a role with scope any sees it".to_owned()
                        } else {
                            format!("relevance.shows lists {name}")
                        }
                    ));
                }
                rule
            }
        }
    }
}

/// serde_yaml_ng ends its messages with ` at line L column C`; the location is given apart.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One line of `policy explain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExplainedField {
    /// The field's path, or `Service(sensitive)` for services of sensitive kinds.
    pub field: String,
    pub category: String,
    /// `None` when visible; the reason it is withheld otherwise.
    pub withheld: Option<Reason>,
    pub rule: String,
}

impl Policy {
    /// Every field, and the services of sensitive kinds, shown or withheld for these roles in this situation, with the
    /// rule that decided.
    pub fn explain(&self, roles: &[&str], situation: Situation) -> Vec<ExplainedField> {
        let grant = self.grant(roles.iter().copied());
        let mut rows: Vec<(String, u8)> = Field::ALL
            .iter()
            .map(|f| (f.path().to_owned(), self.category_of(*f)))
            .collect();
        if let Some(category) = self.sensitive_category() {
            rows.push(("Child.services (sensitive kinds)".to_owned(), category));
            rows.push(("Child.participation (sensitive kinds)".to_owned(), category));
        }
        rows.into_iter()
            .map(|(field, category)| {
                let decision = self.decide_category(grant, situation, category);
                ExplainedField {
                    field,
                    category: self.categories[usize::from(category)].0.clone(),
                    withheld: match decision {
                        Decision::Visible => None,
                        Decision::Withheld { reason, .. } => Some(reason),
                    },
                    rule: self.rule(roles, situation, category),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shielded() -> Situation {
        Situation {
            shielded: true,
            ..Situation::default()
        }
    }

    fn other() -> Situation {
        Situation {
            relation: Relation::Other,
            ..Situation::default()
        }
    }

    #[test]
    fn default_policy_compiles() {
        let policy = Policy::default_policy();
        assert!(policy.has_role("teacher"));
        assert_eq!(policy.category(Field::ChildAddress), "location");
        assert_eq!(policy.category(Field::OrganisationAddress), "location");
        assert_eq!(policy.category(Field::CarerAddress), "location");
        assert_eq!(policy.hash().len(), 64);
    }

    #[test]
    fn role_decides_first() {
        let policy = Policy::default_policy();
        let teacher = policy.grant(["teacher"]);
        assert_eq!(
            policy.decide(teacher, shielded(), Field::ChildAddress),
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
    fn shielded_record_shows_only_identity_unless_overridden() {
        let policy = Policy::default_policy();
        let gp = policy.grant(["gp"]);
        for field in Field::ALL {
            let decision = policy.decide(gp, shielded(), *field);
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
            overridden: true,
            ..shielded()
        };
        assert!(
            policy
                .decide(gp, overridden, Field::ChildAddress)
                .is_visible()
        );
    }

    #[test]
    fn own_organisation_scope_sees_only_identity_of_other_children() {
        let policy = Policy::default_policy();
        let teacher = policy.grant(["teacher"]);
        assert!(teacher.depends_on_relation());
        assert!(
            policy
                .decide(teacher, other(), Field::ChildName)
                .is_visible()
        );
        assert_eq!(
            policy.decide(teacher, other(), Field::ChildCarers),
            Decision::Withheld {
                reason: Reason::NotRelevant,
                category: "carers"
            }
        );
        // A role with scope any, held as well, sees what it sees of any child.
        let both = policy.grant(["teacher", "gp"]);
        assert!(
            policy
                .decide(both, other(), Field::ChildCarers)
                .is_visible()
        );
        assert!(!policy.grant(["gp"]).depends_on_relation());
    }

    #[test]
    fn a_child_past_the_age_limit_shows_identity_only() {
        let policy = Policy::default_policy();
        let gp = policy.grant(["gp"]);
        let adult = Situation {
            past_age: true,
            ..Situation::default()
        };
        assert!(policy.decide(gp, adult, Field::ChildName).is_visible());
        assert_eq!(
            policy.decide(gp, adult, Field::ChildServices),
            Decision::Withheld {
                reason: Reason::NotRelevant,
                category: "services"
            }
        );
        let limit = policy.age_limit();
        let born = chrono::NaiveDate::from_ymd_opt(2008, 3, 1).unwrap();
        let eve = chrono::NaiveDate::from_ymd_opt(2026, 2, 28).unwrap();
        let birthday = chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap();
        assert!(!limit.is_past(born, eve, false));
        assert!(limit.is_past(born, birthday, false));
        assert!(!limit.is_past(born, birthday, true));
        assert!(limit.is_past(
            born,
            chrono::NaiveDate::from_ymd_opt(2027, 3, 1).unwrap(),
            true
        ));
    }

    #[test]
    fn sensitive_services_are_their_own_category() {
        let policy = Policy::default_policy();
        let sensitive = policy.item_category(Field::ChildServices, ServiceKind::MentalHealth);
        let plain = policy.item_category(Field::ChildServices, ServiceKind::School);
        assert_eq!(plain, policy.category_of(Field::ChildServices));
        assert_ne!(sensitive, plain);
        let open = Situation::default();
        let gp = policy.grant(["gp"]);
        assert!(!policy.decide_category(gp, open, sensitive).is_visible());
        assert!(policy.decide_category(gp, open, plain).is_visible());
        let social = policy.grant(["social-worker"]);
        assert!(policy.decide_category(social, open, sensitive).is_visible());
    }

    #[test]
    fn permissions_come_from_roles() {
        let policy = Policy::default_policy();
        let social = policy.grant(["social-worker"]);
        assert!(social.may(Permission::ShieldOverride));
        assert!(!social.may(Permission::ShieldApprove));
        let officer = policy.grant(["shield-officer"]);
        assert!(officer.may(Permission::ShieldApprove));
        assert!(!policy.grant(["teacher"]).may(Permission::ShieldOverride));
        assert!(!Grant::default().may(Permission::FlagRaise));
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
            Policy::from_yaml(&text).unwrap_err().problem,
            PolicyProblem::UnclassifiedField("Child.flags")
        );
    }

    #[test]
    fn unknown_names_are_refused_with_their_line() {
        let text =
            DEFAULT_POLICY.replace("    sees: [identity]\n", "    sees: [identity, secrets]\n");
        let error = Policy::from_yaml(&text).unwrap_err();
        assert!(matches!(
            error.problem,
            PolicyProblem::UnknownCategory { .. }
        ));
        let (line, column) = error.location.expect("a location");
        assert_eq!(
            &text.lines().nth(line - 1).unwrap()[column - 1..column + 6],
            "secrets"
        );

        let text = DEFAULT_POLICY.replace(
            "  Child.flags: flags\n",
            "  Child.flags: flags\n  Child.shoeSize: identity\n",
        );
        let error = Policy::from_yaml(&text).unwrap_err();
        assert_eq!(
            error.problem,
            PolicyProblem::UnknownField("Child.shoeSize".into())
        );
        assert!(error.in_file("p.yaml").starts_with("p.yaml:"));

        let text = DEFAULT_POLICY.replace(
            "[flag.raise, shield.request, shield.override]",
            "[shield.bypass]",
        );
        let error = Policy::from_yaml(&text).unwrap_err();
        assert!(matches!(
            error.problem,
            PolicyProblem::UnknownPermission { .. }
        ));
        assert!(error.location.is_some());

        let text = DEFAULT_POLICY.replace("alert: [shield-officer]", "alert: [shield-oficer]");
        let error = Policy::from_yaml(&text).unwrap_err();
        assert!(matches!(error.problem, PolicyProblem::UnknownRole { .. }));
    }

    #[test]
    fn yaml_errors_give_line_and_column() {
        let text = DEFAULT_POLICY.replace("  teacher:\n    sees:", "  teacher:\n   sees:");
        let error = Policy::from_yaml(&text).unwrap_err();
        assert!(matches!(error.problem, PolicyProblem::Syntax(_)));
        let (line, _) = error.location.expect("a location");
        assert!(text.lines().nth(line - 1).is_some());
        assert!(error.to_string().starts_with("line "), "{error}");
    }

    #[test]
    fn explain_gives_every_field_and_the_rule() {
        let policy = Policy::default_policy();
        let rows = policy.explain(&["teacher"], Situation::default());
        assert_eq!(rows.len(), Field::ALL.len() + 2);
        let address = rows.iter().find(|r| r.field == "Child.address").unwrap();
        assert_eq!(address.withheld, Some(Reason::Role));
        assert!(address.rule.contains("location"), "{}", address.rule);
        let carers = rows.iter().find(|r| r.field == "Child.carers").unwrap();
        assert_eq!(carers.withheld, None);
        assert!(carers.rule.contains("teacher"), "{}", carers.rule);
        let rows = policy.explain(&["teacher"], other());
        let name = rows.iter().find(|r| r.field == "Child.name").unwrap();
        assert!(
            name.rule.contains("relevance.shows lists identity"),
            "{}",
            name.rule
        );
        let carers = rows.iter().find(|r| r.field == "Child.carers").unwrap();
        assert_eq!(carers.withheld, Some(Reason::NotRelevant));
    }
}
