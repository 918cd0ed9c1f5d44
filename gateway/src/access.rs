//! One record per access to child data, written to the log under the `childgraph::access` target.
//!
//! It names who asked, why, what operation, and which children by gateway id only: never a name, a date of birth or
//! a search term. It also names the policy that decided the answer, by the hash of its file.

use crate::pipeline::{ComposedChild, Purpose, RequestScope};

#[derive(Debug, Clone, Copy)]
pub enum Operation {
    Search,
    View,
    ShieldRequest,
    ShieldApprove,
    ShieldLift,
    ShieldOverride,
    /// Reading the shield officers' lists.
    ShieldReview,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Search => "search",
            Operation::View => "view",
            Operation::ShieldRequest => "shield.request",
            Operation::ShieldApprove => "shield.approve",
            Operation::ShieldLift => "shield.lift",
            Operation::ShieldOverride => "shield.override",
            Operation::ShieldReview => "shield.review",
        }
    }
}

/// An access about to be logged.
#[derive(Debug)]
pub struct AccessRecord<'a> {
    scope: &'a RequestScope,
    purpose: &'a Purpose,
    operation: Operation,
    children: Vec<String>,
    outcome: &'static str,
}

impl<'a> AccessRecord<'a> {
    pub fn new(scope: &'a RequestScope, purpose: &'a Purpose, operation: Operation) -> Self {
        Self {
            scope,
            purpose,
            operation,
            children: Vec::new(),
            outcome: "ok",
        }
    }

    pub fn children(mut self, children: &[ComposedChild]) -> Self {
        self.children = children.iter().map(|c| c.id.clone()).collect();
        self
    }

    pub fn child_ids(mut self, ids: Vec<String>) -> Self {
        self.children = ids;
        self
    }

    pub fn too_many(mut self) -> Self {
        self.outcome = "too_many_results";
        self
    }

    pub fn not_found(mut self) -> Self {
        self.outcome = "not_found";
        self
    }

    pub fn denied(mut self) -> Self {
        self.outcome = "denied";
        self
    }

    pub fn log(self) {
        let principal = &self.scope.principal;
        tracing::info!(
            target: "childgraph::access",
            request_id = %self.scope.request_id,
            user = %principal.user_id,
            organisation = %principal.organisation.id,
            roles = %principal.roles.join(","),
            purpose = self.purpose.purpose,
            justified = self.purpose.justification.is_some(),
            operation = self.operation.as_str(),
            children = %self.children.join(","),
            outcome = self.outcome,
            policy = %self.scope.policy.hash(),
            "access"
        );
    }
}
