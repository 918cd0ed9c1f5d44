//! The catalogue of every schema field that carries child data. The policy gives each a category; a field missing from the policy is an error, so no new field slips out unclassified.

use std::fmt;

macro_rules! fields {
    ($($variant:ident => $path:literal,)*) => {
        /// A field of the answer that carries child data, named by its GraphQL path (`Type.field`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Field { $($variant,)* }

        impl Field {
            /// Every field, in catalogue order.
            pub const ALL: &'static [Field] = &[$(Field::$variant,)*];

            /// The GraphQL path of the field, as the policy file names it.
            pub fn path(self) -> &'static str {
                match self { $(Field::$variant => $path,)* }
            }
        }
    };
}

fields! {
    ChildName => "Child.name",
    ChildDateOfBirth => "Child.dateOfBirth",
    ChildGender => "Child.gender",
    ChildIdentifiers => "Child.identifiers",
    ChildAddress => "Child.address",
    ChildCarers => "Child.carers",
    ChildServices => "Child.services",
    ChildParticipation => "Child.participation",
    ChildFlags => "Child.flags",
    CarerName => "Carer.name",
    CarerRelationship => "Carer.relationship",
    CarerPhone => "Carer.phone",
    CarerEmail => "Carer.email",
    CarerAddress => "Carer.address",
    ServiceOrganisation => "Service.organisation",
    ServicePractitioner => "Service.practitioner",
    ParticipationOrganisation => "Participation.organisation",
    OrganisationName => "Organisation.name",
    OrganisationPhone => "Organisation.phone",
    OrganisationEmail => "Organisation.email",
    OrganisationAddress => "Organisation.address",
}

impl Field {
    /// Looks a field up by its GraphQL path.
    pub fn from_path(path: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.path() == path)
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_unique_and_round_trip() {
        for f in Field::ALL {
            assert_eq!(Field::from_path(f.path()), Some(*f));
        }
        let mut paths: Vec<_> = Field::ALL.iter().map(|f| f.path()).collect();
        paths.sort_unstable();
        paths.dedup();
        assert_eq!(paths.len(), Field::ALL.len());
    }
}
