//! Domain types shared by every childgraph crate: what a source says about a child, the search criteria, and the catalogue of child-data fields.
//!
//! This crate does no IO. The other crates convert protocol payloads into these types (connectors),
//! decide over them (policies, linkage) and expose them (gateway).

pub mod criteria;
pub mod fields;
pub mod identifiers;
pub mod record;
pub mod source;

pub use criteria::{CriteriaError, RawCriteria, SearchCriteria, normalise_postcode};
pub use fields::Field;
pub use identifiers::{IdentifierError, NhsNumber, Upn};
pub use record::{
    Address, Carer, Involvement, InvolvementStatus, Organisation, OrganisationKind, Participation,
    ParticipationStatus, PersonRecord, Practitioner, RecordDetails, ServiceKind, Sex,
};
pub use source::{RecordRef, SourceName};
