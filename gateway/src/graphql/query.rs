//! The query root: `me`, `searchChildren` and `child`. No root field lists children without search criteria.

use std::sync::Arc;

use async_graphql::{Context, ID, Object, Result};
use childgraph_schema::{Field, SearchCriteria};

use super::errors::{coded, pipeline_error};
use super::loader::{ChildKey, ChildLoader};
use super::types::{
    AccessInput, Child, ChildMatch, ChildSearchInput, ChildSearchResult, Lens, Me, OrganisationRef,
};
use crate::pipeline::{ComposedChild, Pipeline, Purpose, RequestScope, SearchOutcome, Wanted};

/// The root fields for child data.
#[derive(Debug, Default)]
pub struct ChildQueries;

fn parts<'a>(ctx: &'a Context<'_>) -> Result<(&'a Pipeline, &'a Arc<RequestScope>)> {
    Ok((ctx.data::<Pipeline>()?, ctx.data::<Arc<RequestScope>>()?))
}

fn purpose(access: AccessInput) -> Purpose {
    Purpose {
        purpose: access.purpose.as_str(),
        justification: access
            .justification
            .map(|j| j.trim().to_owned())
            .filter(|j| !j.is_empty()),
    }
}

/// What the client selected under a child, so the pipeline fetches no more.
fn wanted(child: async_graphql::Lookahead<'_>) -> Wanted {
    Wanted {
        carers: child.field("carers").exists(),
        services: child.field("services").exists(),
        participation: child.field("participation").exists(),
        flags: child.field("flags").exists(),
        fields: selected(child),
    }
}

/// Every child-data field the selection under a `Child` reaches, one bit per [`Field`].
fn selected(child: async_graphql::Lookahead<'_>) -> u32 {
    let mut mask = 0;
    let mut mark = |selection: async_graphql::Lookahead<'_>, field: Field| {
        if selection.exists() {
            mask |= 1 << field as u32;
        }
    };
    for (name, field) in [
        ("name", Field::ChildName),
        ("dateOfBirth", Field::ChildDateOfBirth),
        ("gender", Field::ChildGender),
        ("identifiers", Field::ChildIdentifiers),
        ("address", Field::ChildAddress),
        ("carers", Field::ChildCarers),
        ("services", Field::ChildServices),
        ("participation", Field::ChildParticipation),
        ("flags", Field::ChildFlags),
    ] {
        mark(child.field(name), field);
    }
    let carers = child.field("carers");
    for (name, field) in [
        ("name", Field::CarerName),
        ("relationship", Field::CarerRelationship),
        ("phone", Field::CarerPhone),
        ("email", Field::CarerEmail),
        ("address", Field::CarerAddress),
    ] {
        mark(carers.field(name), field);
    }
    let services = child.field("services");
    mark(services.field("practitioner"), Field::ServicePractitioner);
    mark(services.field("organisation"), Field::ServiceOrganisation);
    mark(
        child.field("participation").field("organisation"),
        Field::ParticipationOrganisation,
    );
    for organisation in [
        services.field("organisation"),
        child.field("participation").field("organisation"),
    ] {
        for (name, field) in [
            ("name", Field::OrganisationName),
            ("phone", Field::OrganisationPhone),
            ("email", Field::OrganisationEmail),
            ("address", Field::OrganisationAddress),
        ] {
            mark(organisation.field(name), field);
        }
    }
    mask
}

fn view(scope: &RequestScope, child: Arc<ComposedChild>) -> Child {
    let lens = Lens::new(scope, child.situation());
    Child { lens, data: child }
}

#[Object]
impl ChildQueries {
    /// The authenticated user, as their authoriser set them up.
    async fn me(&self, ctx: &Context<'_>) -> Result<Me> {
        let (_, scope) = parts(ctx)?;
        let p = &scope.principal;
        Ok(Me {
            user_id: ID(p.user_id.clone()),
            name: p.display_name.clone(),
            organisation: OrganisationRef {
                id: ID(p.organisation.id.clone()),
                name: p.organisation.name.clone(),
            },
            roles: p.roles.clone(),
        })
    }

    /// Finds children across every source. Needs a family name and date of birth, or an identifier; returns at most
    /// a few matches, ranked by score.
    async fn search_children(
        &self,
        ctx: &Context<'_>,
        criteria: ChildSearchInput,
        access: AccessInput,
    ) -> Result<ChildSearchResult> {
        let (pipeline, scope) = parts(ctx)?;
        let today = chrono::Utc::now().date_naive();
        let criteria =
            SearchCriteria::parse(criteria.into(), today).map_err(|e| pipeline_error(&e.into()))?;
        let wanted = wanted(ctx.look_ahead().field("matches").field("child"));
        match pipeline
            .search(scope, criteria, &purpose(access), wanted)
            .await
            .map_err(|e| pipeline_error(&e))?
        {
            SearchOutcome::TooMany => Ok(ChildSearchResult {
                matches: None,
                too_many_results: true,
            }),
            SearchOutcome::Matches(found) => Ok(ChildSearchResult {
                matches: Some(
                    found
                        .into_iter()
                        .map(|(score, c)| ChildMatch {
                            score,
                            child: view(scope, Arc::new(c)),
                        })
                        .collect(),
                ),
                too_many_results: false,
            }),
        }
    }

    /// One child by the id a search returned.
    async fn child(&self, ctx: &Context<'_>, id: ID, access: AccessInput) -> Result<Option<Child>> {
        let scope = ctx.data::<Arc<RequestScope>>()?;
        let key = ChildKey {
            id: id.0,
            purpose: purpose(access),
            wanted: wanted(ctx.look_ahead()),
        };
        let loader = ctx.data::<ChildLoader>()?;
        let found = match loader.try_load(key).await {
            Ok(loaded) => loaded.map_err(|e| pipeline_error(&e))?,
            // Every key of a batch gets an answer, so this is a defect; its message would name the child's id.
            Err(_) => return Err(coded("INTERNAL", "internal error")),
        };
        Ok(found.map(|c| view(scope, c)))
    }
}
