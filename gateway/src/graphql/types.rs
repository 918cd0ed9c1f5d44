//! The GraphQL types of the answer. Every field that carries child data asks the policy before it resolves, and a
//! withheld field is null with a REDACTED error: this is the second of the policy's two places, after the fetch.

use std::sync::Arc;

use async_graphql::{
    Context, Enum, ID, InputObject, InputValueError, InputValueResult, Object, Result, Scalar,
    ScalarType, SimpleObject, Value,
};
use childgraph_policies::{Decision, Grant, Policy, Situation};
use childgraph_schema as schema;
use childgraph_schema::{Field, SourceName};
use chrono::{DateTime, NaiveDate, Utc};

use super::errors::redacted;

/// `@category(name: "...")` on every field that carries child data: the policy category that decides whether it is
/// shown, so front-end teams know which fields may come back null.
#[async_graphql::TypeDirective(location = "FieldDefinition")]
fn category(name: String) {}

/// The category of a field in the default policy, which the committed SDL shows.
fn category_name(field: Field) -> String {
    static POLICY: std::sync::OnceLock<Policy> = std::sync::OnceLock::new();
    POLICY
        .get_or_init(Policy::default_policy)
        .category(field)
        .to_owned()
}
use crate::pipeline::{ComposedChild, SourceStatus as PipelineSourceStatus};
use crate::store::FlagRecord;

/// A calendar date, written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date(pub NaiveDate);

#[Scalar(name = "Date")]
impl ScalarType for Date {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .map(Date)
                .map_err(|_| InputValueError::custom("a date is written YYYY-MM-DD")),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.format("%Y-%m-%d").to_string())
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gender {
    Female,
    Male,
    Other,
    Unknown,
}

impl From<schema::Sex> for Gender {
    fn from(s: schema::Sex) -> Self {
        match s {
            schema::Sex::Female => Gender::Female,
            schema::Sex::Male => Gender::Male,
            schema::Sex::Other => Gender::Other,
            schema::Sex::Unknown => Gender::Unknown,
        }
    }
}

impl From<Gender> for schema::Sex {
    fn from(g: Gender) -> Self {
        match g {
            Gender::Female => schema::Sex::Female,
            Gender::Male => schema::Sex::Male,
            Gender::Other => schema::Sex::Other,
            Gender::Unknown => schema::Sex::Unknown,
        }
    }
}

/// Why the user is looking: every access to child data states one.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessPurpose {
    Safeguarding,
    ServiceCoordination,
    Transition,
    Enrolment,
}

impl AccessPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessPurpose::Safeguarding => "SAFEGUARDING",
            AccessPurpose::ServiceCoordination => "SERVICE_COORDINATION",
            AccessPurpose::Transition => "TRANSITION",
            AccessPurpose::Enrolment => "ENROLMENT",
        }
    }
}

#[derive(InputObject, Debug)]
pub struct AccessInput {
    pub purpose: AccessPurpose,
    /// Why this access is needed, in words. Required by some operations.
    pub justification: Option<String>,
}

/// What to search for: a family name and date of birth, or an NHS number or unique pupil number, at least.
#[derive(InputObject, Debug)]
pub struct ChildSearchInput {
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub date_of_birth: Option<Date>,
    pub gender: Option<Gender>,
    pub postcode: Option<String>,
    pub nhs_number: Option<String>,
    pub upn: Option<String>,
}

impl From<ChildSearchInput> for schema::RawCriteria {
    fn from(i: ChildSearchInput) -> Self {
        schema::RawCriteria {
            given_name: i.given_name,
            family_name: i.family_name,
            date_of_birth: i.date_of_birth.map(|d| d.0),
            sex: i.gender.map(Into::into),
            postcode: i.postcode,
            nhs_number: i.nhs_number,
            upn: i.upn,
        }
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Health,
    School,
    EarlyYears,
}

impl From<SourceName> for Source {
    fn from(s: SourceName) -> Self {
        match s {
            SourceName::Health => Source::Health,
            SourceName::School => Source::School,
            SourceName::EarlyYears => Source::EarlyYears,
        }
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceStatus {
    Ok,
    Unavailable,
    Timeout,
    /// The source marks the child's record restricted.
    Restricted,
}

/// How one source stood for this answer.
#[derive(SimpleObject, Debug)]
pub struct SourceInfo {
    pub source: Source,
    pub status: SourceStatus,
    /// Time spent waiting for the source in this request, in milliseconds, to the nearest.
    pub response_time_ms: u64,
    /// When the source's data in this answer was read.
    pub as_of: DateTime<Utc>,
}

#[derive(SimpleObject, Debug)]
pub struct PersonName {
    pub given: Option<String>,
    pub family: Option<String>,
}

/// An address, borrowed from the record it is part of.
#[derive(Debug, Clone, Copy)]
pub struct Address<'a>(&'a schema::Address);

impl<'a> From<&'a schema::Address> for Address<'a> {
    fn from(a: &'a schema::Address) -> Self {
        Self(a)
    }
}

#[Object]
impl Address<'_> {
    async fn lines(&self) -> &[String] {
        &self.0.lines
    }

    async fn postcode(&self) -> Option<&str> {
        self.0.postcode.as_deref()
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierKind {
    NhsNumber,
    Upn,
}

#[derive(SimpleObject, Debug)]
pub struct ChildIdentifier {
    pub kind: IdentifierKind,
    pub value: String,
    pub source: Source,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceKind {
    GeneralPractice,
    MaternalChildHealth,
    School,
    EarlyYears,
    SocialCare,
    MentalHealth,
    SexualHealth,
    SubstanceMisuse,
}

impl From<schema::ServiceKind> for ServiceKind {
    fn from(k: schema::ServiceKind) -> Self {
        use schema::ServiceKind as K;
        match k {
            K::GeneralPractice => ServiceKind::GeneralPractice,
            K::MaternalChildHealth => ServiceKind::MaternalChildHealth,
            K::School => ServiceKind::School,
            K::EarlyYears => ServiceKind::EarlyYears,
            K::SocialCare => ServiceKind::SocialCare,
            K::MentalHealth => ServiceKind::MentalHealth,
            K::SexualHealth => ServiceKind::SexualHealth,
            K::SubstanceMisuse => ServiceKind::SubstanceMisuse,
        }
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceStatus {
    Planned,
    Active,
    Finished,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipationStatus {
    Attended,
    Missed,
    Planned,
    Enrolled,
    Left,
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrganisationKind {
    School,
    GpPractice,
    MaternalChildHealth,
    Kindergarten,
    SocialCare,
    Other,
}

impl FlagKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FlagKind::HasInformation => "HAS_INFORMATION",
            FlagKind::TakingAction => "TAKING_ACTION",
            FlagKind::AssessmentDone => "ASSESSMENT_DONE",
        }
    }
}

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagKind {
    /// "I have information to share."
    HasInformation,
    /// "I am taking action."
    TakingAction,
    /// "An assessment was done."
    AssessmentDone,
}

/// The policy's view of one child for one principal: every child-data field asks it before resolving.
#[derive(Clone)]
pub struct Lens {
    policy: Arc<Policy>,
    grant: Grant,
    situation: Situation,
    metrics: Arc<crate::metrics::Metrics>,
}

impl std::fmt::Debug for Lens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lens")
            .field("grant", &self.grant)
            .field("situation", &self.situation)
            .finish()
    }
}

impl Lens {
    pub fn new(scope: &crate::pipeline::RequestScope, situation: Situation) -> Self {
        Self {
            policy: scope.policy.clone(),
            grant: scope.grant,
            situation,
            metrics: scope.metrics.clone(),
        }
    }

    /// Whether a service, or the child's participation in one, listed under `field` may be shown.
    fn shows_item(&self, field: Field, kind: schema::ServiceKind) -> bool {
        self.metrics.policy(|| {
            self.policy
                .decide_category(
                    self.grant,
                    self.situation,
                    self.policy.item_category(field, kind),
                )
                .is_visible()
        })
    }

    /// Whether `field` shows. A withheld field answers null, with a REDACTED error at its path saying why: returned
    /// as the resolver's error instead, async-graphql would leave the field out of its object, and answer null for an
    /// object all of whose selected fields were withheld.
    fn allow(&self, ctx: &Context<'_>, field: Field) -> bool {
        self.metrics.policy(|| {
            let decision = self.policy.decide(self.grant, self.situation, field);
            match decision {
                Decision::Visible => true,
                Decision::Withheld { reason, .. } => {
                    self.metrics.redaction(reason);
                    let error = redacted(field, &decision).into_server_error(ctx.item.pos);
                    ctx.add_error(ctx.set_error_path(error));
                    false
                }
            }
        })
    }
}

/// A child as one principal may see it.
#[derive(Debug, Clone)]
pub struct Child {
    pub lens: Lens,
    pub data: Arc<ComposedChild>,
}

#[Object]
impl Child {
    /// The gateway's id for the child: stable across requests.
    async fn id(&self) -> ID {
        ID(self.data.id.clone())
    }

    /// Whether the child is shielded: its record then shows only name, date of birth, gender and id.
    async fn shielded(&self) -> bool {
        self.data.shielded
    }

    #[graphql(directive = category::apply(category_name(Field::ChildName)))]
    async fn name(&self, ctx: &Context<'_>) -> Result<Option<PersonName>> {
        if !self.lens.allow(ctx, Field::ChildName) {
            return Ok(None);
        }
        let given = self
            .data
            .records
            .iter()
            .find_map(|r| r.given_name().map(str::to_owned));
        let family = self.data.records.iter().find_map(|r| r.family_name.clone());
        Ok(Some(PersonName { given, family }))
    }

    #[graphql(directive = category::apply(category_name(Field::ChildDateOfBirth)))]
    async fn date_of_birth(&self, ctx: &Context<'_>) -> Result<Option<Date>> {
        if !self.lens.allow(ctx, Field::ChildDateOfBirth) {
            return Ok(None);
        }
        Ok(self
            .data
            .records
            .iter()
            .find_map(|r| r.date_of_birth)
            .map(Date))
    }

    #[graphql(directive = category::apply(category_name(Field::ChildGender)))]
    async fn gender(&self, ctx: &Context<'_>) -> Result<Option<Gender>> {
        if !self.lens.allow(ctx, Field::ChildGender) {
            return Ok(None);
        }
        Ok(self.data.records.iter().find_map(|r| r.sex).map(Into::into))
    }

    #[graphql(directive = category::apply(category_name(Field::ChildIdentifiers)))]
    async fn identifiers(&self, ctx: &Context<'_>) -> Result<Option<Vec<ChildIdentifier>>> {
        if !self.lens.allow(ctx, Field::ChildIdentifiers) {
            return Ok(None);
        }
        let mut ids: Vec<ChildIdentifier> = Vec::new();
        for r in &self.data.records {
            let found = [
                r.nhs_number
                    .as_ref()
                    .map(|n| (IdentifierKind::NhsNumber, n.to_string())),
                r.upn.as_ref().map(|u| (IdentifierKind::Upn, u.to_string())),
            ];
            for (kind, value) in found.into_iter().flatten() {
                if !ids.iter().any(|i| i.kind == kind && i.value == value) {
                    ids.push(ChildIdentifier {
                        kind,
                        value,
                        source: r.source.into(),
                    });
                }
            }
        }
        Ok(Some(ids))
    }

    #[graphql(directive = category::apply(category_name(Field::ChildAddress)))]
    async fn address(&self, ctx: &Context<'_>) -> Result<Option<Address<'_>>> {
        if !self.lens.allow(ctx, Field::ChildAddress) {
            return Ok(None);
        }
        Ok(self
            .data
            .records
            .iter()
            .find_map(|r| r.address.as_ref())
            .map(Address::from))
    }

    /// Carers as each source records them.
    #[graphql(directive = category::apply(category_name(Field::ChildCarers)))]
    async fn carers(&self, ctx: &Context<'_>) -> Result<Option<Vec<Carer<'_>>>> {
        if !self.lens.allow(ctx, Field::ChildCarers) {
            return Ok(None);
        }
        let mut carers: Vec<Carer> = Vec::new();
        for c in &self.data.details.carers {
            if !carers
                .iter()
                .any(|k| k.data.name.eq_ignore_ascii_case(&c.name))
            {
                carers.push(Carer {
                    lens: &self.lens,
                    data: c,
                });
            }
        }
        Ok(Some(carers))
    }

    /// Services working with the child, with their practitioners.
    #[graphql(directive = category::apply(category_name(Field::ChildServices)))]
    async fn services(&self, ctx: &Context<'_>) -> Result<Option<Vec<Service<'_>>>> {
        if !self.lens.allow(ctx, Field::ChildServices) {
            return Ok(None);
        }
        // A service of a sensitive kind is left out, not redacted, for a role that does not see its category: its
        // mere existence is what must not be shown.
        let services = self
            .data
            .details
            .involvements
            .iter()
            .filter(|i| self.lens.shows_item(Field::ChildServices, i.kind))
            .map(|i| Service {
                lens: &self.lens,
                data: i,
            })
            .collect();
        Ok(Some(services))
    }

    /// Enrolments and key-age visits.
    #[graphql(directive = category::apply(category_name(Field::ChildParticipation)))]
    async fn participation(&self, ctx: &Context<'_>) -> Result<Option<Vec<Participation<'_>>>> {
        if !self.lens.allow(ctx, Field::ChildParticipation) {
            return Ok(None);
        }
        let items = self
            .data
            .details
            .participation
            .iter()
            .filter(|p| self.lens.shows_item(Field::ChildParticipation, p.kind))
            .map(|p| Participation {
                lens: &self.lens,
                data: p,
            })
            .collect();
        Ok(Some(items))
    }

    /// Flags other practitioners raised, live ones only.
    #[graphql(directive = category::apply(category_name(Field::ChildFlags)))]
    async fn flags(&self, ctx: &Context<'_>) -> Result<Option<Vec<Flag>>> {
        if !self.lens.allow(ctx, Field::ChildFlags) {
            return Ok(None);
        }
        Ok(Some(
            self.data
                .flags
                .iter()
                .map(|f| Flag { data: f.clone() })
                .collect(),
        ))
    }

    /// Every source, and how it stood for this answer.
    async fn sources(&self) -> Vec<SourceInfo> {
        self.data
            .sources
            .iter()
            .map(|s| SourceInfo {
                source: s.source.into(),
                status: match s.status {
                    PipelineSourceStatus::Ok => SourceStatus::Ok,
                    PipelineSourceStatus::Unavailable => SourceStatus::Unavailable,
                    PipelineSourceStatus::Timeout => SourceStatus::Timeout,
                    PipelineSourceStatus::Restricted => SourceStatus::Restricted,
                },
                response_time_ms: nearest_millisecond(s.response_time),
                as_of: s.as_of,
            })
            .collect()
    }
}

/// Borrowed from the child's composed answer, as are the objects below it: a field resolves without copying it.
#[derive(Debug)]
pub struct Carer<'a> {
    lens: &'a Lens,
    data: &'a schema::Carer,
}

#[Object]
impl Carer<'_> {
    #[graphql(directive = category::apply(category_name(Field::CarerName)))]
    async fn name(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        if !self.lens.allow(ctx, Field::CarerName) {
            return Ok(None);
        }
        Ok(Some(&self.data.name))
    }

    #[graphql(directive = category::apply(category_name(Field::CarerRelationship)))]
    async fn relationship(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        if !self.lens.allow(ctx, Field::CarerRelationship) {
            return Ok(None);
        }
        Ok(self.data.relationship.as_deref())
    }

    #[graphql(directive = category::apply(category_name(Field::CarerPhone)))]
    async fn phone(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        if !self.lens.allow(ctx, Field::CarerPhone) {
            return Ok(None);
        }
        Ok(self.data.phone.as_deref())
    }

    #[graphql(directive = category::apply(category_name(Field::CarerEmail)))]
    async fn email(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        if !self.lens.allow(ctx, Field::CarerEmail) {
            return Ok(None);
        }
        Ok(self.data.email.as_deref())
    }

    #[graphql(directive = category::apply(category_name(Field::CarerAddress)))]
    async fn address(&self, ctx: &Context<'_>) -> Result<Option<Address<'_>>> {
        if !self.lens.allow(ctx, Field::CarerAddress) {
            return Ok(None);
        }
        Ok(self.data.address.as_ref().map(Address::from))
    }
}

#[derive(Debug)]
pub struct Service<'a> {
    lens: &'a Lens,
    data: &'a schema::Involvement,
}

#[Object]
impl Service<'_> {
    async fn kind(&self) -> ServiceKind {
        self.data.kind.into()
    }

    async fn source(&self) -> Source {
        self.data.source.into()
    }

    async fn status(&self) -> ServiceStatus {
        match self.data.status {
            schema::InvolvementStatus::Planned => ServiceStatus::Planned,
            schema::InvolvementStatus::Active => ServiceStatus::Active,
            schema::InvolvementStatus::Finished => ServiceStatus::Finished,
        }
    }

    async fn start(&self) -> Option<Date> {
        self.data.start.map(Date)
    }

    async fn end(&self) -> Option<Date> {
        self.data.end.map(Date)
    }

    #[graphql(directive = category::apply(category_name(Field::ServiceOrganisation)))]
    async fn organisation(&self, ctx: &Context<'_>) -> Result<Option<Organisation<'_>>> {
        if !self.lens.allow(ctx, Field::ServiceOrganisation) {
            return Ok(None);
        }
        Ok(self.data.organisation.as_ref().map(|data| Organisation {
            lens: self.lens,
            data,
        }))
    }

    #[graphql(directive = category::apply(category_name(Field::ServicePractitioner)))]
    async fn practitioner(&self, ctx: &Context<'_>) -> Result<Option<Practitioner<'_>>> {
        if !self.lens.allow(ctx, Field::ServicePractitioner) {
            return Ok(None);
        }
        Ok(self
            .data
            .practitioner
            .as_ref()
            .map(|data| Practitioner { data }))
    }
}

#[derive(Debug)]
pub struct Participation<'a> {
    lens: &'a Lens,
    data: &'a schema::Participation,
}

#[Object]
impl Participation<'_> {
    async fn kind(&self) -> ServiceKind {
        self.data.kind.into()
    }

    async fn source(&self) -> Source {
        self.data.source.into()
    }

    async fn description(&self) -> &str {
        &self.data.description
    }

    async fn status(&self) -> ParticipationStatus {
        match self.data.status {
            schema::ParticipationStatus::Attended => ParticipationStatus::Attended,
            schema::ParticipationStatus::Missed => ParticipationStatus::Missed,
            schema::ParticipationStatus::Planned => ParticipationStatus::Planned,
            schema::ParticipationStatus::Enrolled => ParticipationStatus::Enrolled,
            schema::ParticipationStatus::Left => ParticipationStatus::Left,
        }
    }

    async fn date(&self) -> Option<Date> {
        self.data.date.map(Date)
    }

    async fn end(&self) -> Option<Date> {
        self.data.end.map(Date)
    }

    #[graphql(directive = category::apply(category_name(Field::ParticipationOrganisation)))]
    async fn organisation(&self, ctx: &Context<'_>) -> Result<Option<Organisation<'_>>> {
        if !self.lens.allow(ctx, Field::ParticipationOrganisation) {
            return Ok(None);
        }
        Ok(self.data.organisation.as_ref().map(|data| Organisation {
            lens: self.lens,
            data,
        }))
    }
}

#[derive(Debug)]
pub struct Organisation<'a> {
    lens: &'a Lens,
    data: &'a schema::Organisation,
}

#[Object]
impl Organisation<'_> {
    async fn kind(&self) -> OrganisationKind {
        use schema::OrganisationKind as K;
        match self.data.kind {
            K::School => OrganisationKind::School,
            K::GpPractice => OrganisationKind::GpPractice,
            K::MaternalChildHealth => OrganisationKind::MaternalChildHealth,
            K::Kindergarten => OrganisationKind::Kindergarten,
            K::SocialCare => OrganisationKind::SocialCare,
            K::Other => OrganisationKind::Other,
        }
    }

    #[graphql(directive = category::apply(category_name(Field::OrganisationName)))]
    async fn name(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        if !self.lens.allow(ctx, Field::OrganisationName) {
            return Ok(None);
        }
        Ok(Some(&self.data.name))
    }

    #[graphql(directive = category::apply(category_name(Field::OrganisationPhone)))]
    async fn phone(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        if !self.lens.allow(ctx, Field::OrganisationPhone) {
            return Ok(None);
        }
        Ok(self.data.phone.as_deref())
    }

    #[graphql(directive = category::apply(category_name(Field::OrganisationEmail)))]
    async fn email(&self, ctx: &Context<'_>) -> Result<Option<&str>> {
        if !self.lens.allow(ctx, Field::OrganisationEmail) {
            return Ok(None);
        }
        Ok(self.data.email.as_deref())
    }

    #[graphql(directive = category::apply(category_name(Field::OrganisationAddress)))]
    async fn address(&self, ctx: &Context<'_>) -> Result<Option<Address<'_>>> {
        if !self.lens.allow(ctx, Field::OrganisationAddress) {
            return Ok(None);
        }
        Ok(self.data.address.as_ref().map(Address::from))
    }
}

/// A practitioner working with the child, and how to reach them.
#[derive(Debug)]
pub struct Practitioner<'a> {
    data: &'a schema::Practitioner,
}

#[Object]
impl Practitioner<'_> {
    async fn name(&self) -> &str {
        &self.data.name
    }

    async fn role(&self) -> Option<&str> {
        self.data.role.as_deref()
    }

    async fn phone(&self) -> Option<&str> {
        self.data.phone.as_deref()
    }

    async fn email(&self) -> Option<&str> {
        self.data.email.as_deref()
    }
}

/// A flag another practitioner raised: contact guidance, never case notes.
#[derive(Debug)]
pub struct Flag {
    data: FlagRecord,
}

impl Flag {
    pub fn new(data: FlagRecord) -> Self {
        Self { data }
    }
}

#[Object]
impl Flag {
    async fn id(&self) -> ID {
        ID(self.data.id.clone())
    }

    async fn kind(&self) -> FlagKind {
        match self.data.kind.as_str() {
            "TAKING_ACTION" => FlagKind::TakingAction,
            "ASSESSMENT_DONE" => FlagKind::AssessmentDone,
            _ => FlagKind::HasInformation,
        }
    }

    /// Short contact guidance.
    async fn note(&self) -> &str {
        &self.data.note
    }

    async fn raised_at(&self) -> DateTime<Utc> {
        self.data.raised_at
    }

    async fn expires_at(&self) -> DateTime<Utc> {
        self.data.expires_at
    }

    /// Who raised it, and how to reach them.
    async fn raised_by(&self) -> FlagAuthor {
        let account = &self.data.raised_by;
        FlagAuthor {
            name: account.display_name.clone(),
            organisation: account.organisation.name.clone(),
            phone: account.phone.clone(),
            email: account.email.clone(),
        }
    }
}

/// The practitioner who raised a flag.
#[derive(SimpleObject, Debug)]
pub struct FlagAuthor {
    pub name: String,
    pub organisation: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

#[derive(SimpleObject, Debug)]
pub struct ChildMatch {
    /// How well the child matches the criteria, from 0 to 1.
    pub score: f64,
    pub child: Child,
}

#[derive(SimpleObject, Debug)]
pub struct ChildSearchResult {
    /// The matches, best first; null when there are too many to return.
    pub matches: Option<Vec<ChildMatch>>,
    /// More children matched than a search may return: refine the criteria.
    pub too_many_results: bool,
}

#[derive(SimpleObject, Debug)]
pub struct OrganisationRef {
    pub id: ID,
    pub name: String,
}

/// The authenticated user.
#[derive(SimpleObject, Debug)]
pub struct Me {
    pub user_id: ID,
    pub name: String,
    pub organisation: OrganisationRef,
    pub roles: Vec<String>,
}

/// A duration in whole milliseconds, to the nearest: 10.9 ms is 11, not 10.
fn nearest_millisecond(d: std::time::Duration) -> u64 {
    u64::try_from((d.as_micros() + 500) / 1000).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::nearest_millisecond;
    use std::time::Duration;

    #[test]
    fn response_times_are_rounded_to_the_nearest_millisecond() {
        assert_eq!(nearest_millisecond(Duration::from_micros(10_900)), 11);
        assert_eq!(nearest_millisecond(Duration::from_micros(10_499)), 10);
        assert_eq!(nearest_millisecond(Duration::from_micros(10_500)), 11);
        assert_eq!(nearest_millisecond(Duration::ZERO), 0);
        assert_eq!(nearest_millisecond(Duration::MAX), u64::MAX);
    }
}
