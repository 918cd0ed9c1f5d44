//! The demo cast: a handful of children with fixed ids and known properties that the demo, the gateway's tests and the documentation rely on.
//!
//! The cast is added to every population generated with `include_cast`, on top of the generated children, and the generator never produces another child with a cast member's name and date of birth.
//! Ids are neutral, like every generated id: the cast's child numbers 0 to 4 sit in a reserved range (generated children start at 16), and source ids are derived from those numbers exactly as for everyone else.
//!
//! | key | child | health | school | early years |
//! |---|---|---|---|---|
//! | `c0000000` | Amelia Hartley, 2019-06-14 | `pat-d0af189b` | `stu-22dfa910` ("Hartly") | `chd-a5173eee` (ended enrolment) |
//! | `c0000001` | Noah Okafor, 2021-11-03 | `pat-ffd73256` | none | `chd-0b5f32fe` (active enrolment) |
//! | `c0000002` | Isla Brennan, twin, 2017-01-22 | `pat-c2cea4f6` | `stu-7188aa81` | none |
//! | `c0000003` | Ava Brennan, twin, 2017-01-22 | `pat-29ef8458` | `stu-082d022f` | none |
//! | `c0000004` | Leo Fernandes, 2012-09-05 | `pat-3c26edee` (restricted R, social care) | `stu-cd389e68` | none |
//! | `c0000005` | Maya Kowalczyk, 2023-03-08 | `pat-6ff8151b` | none | `chd-ab6e9272` ("Kowalcyzk", 2023-08-03, no NHS number; not linked by the demo) |
//!
//! The organisations and practitioners are the first of each kind (index 0), renamed.

/// A cast member: the truth about the child and the ids each source uses for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CastMember {
    /// The true child's key, as in `truth.csv`.
    pub key: &'static str,
    pub given: &'static str,
    pub family: &'static str,
    /// ISO 8601.
    pub date_of_birth: &'static str,
    pub health_id: Option<&'static str>,
    pub school_id: Option<&'static str>,
    pub early_years_id: Option<&'static str>,
}

pub const AMELIA: CastMember = CastMember {
    key: "c0000000",
    given: "Amelia",
    family: "Hartley",
    date_of_birth: "2019-06-14",
    health_id: Some("pat-d0af189b"),
    school_id: Some("stu-22dfa910"),
    early_years_id: Some("chd-a5173eee"),
};

pub const NOAH: CastMember = CastMember {
    key: "c0000001",
    given: "Noah",
    family: "Okafor",
    date_of_birth: "2021-11-03",
    health_id: Some("pat-ffd73256"),
    school_id: None,
    early_years_id: Some("chd-0b5f32fe"),
};

pub const ISLA: CastMember = CastMember {
    key: "c0000002",
    given: "Isla",
    family: "Brennan",
    date_of_birth: "2017-01-22",
    health_id: Some("pat-c2cea4f6"),
    school_id: Some("stu-7188aa81"),
    early_years_id: None,
};

pub const AVA: CastMember = CastMember {
    key: "c0000003",
    given: "Ava",
    family: "Brennan",
    date_of_birth: "2017-01-22",
    health_id: Some("pat-29ef8458"),
    school_id: Some("stu-082d022f"),
    early_years_id: None,
};

pub const LEO: CastMember = CastMember {
    key: "c0000004",
    given: "Leo",
    family: "Fernandes",
    date_of_birth: "2012-09-05",
    health_id: Some("pat-3c26edee"),
    school_id: Some("stu-cd389e68"),
    early_years_id: None,
};

/// Shielded in the demo. Her early-years record is a noisy duplicate that the demo does not link: the gateway must find it
/// live, and shield it too. See [`MAYA_EARLY_YEARS_ID`].
pub const MAYA: CastMember = CastMember {
    key: "c0000005",
    given: "Maya",
    family: "Kowalczyk",
    date_of_birth: "2023-03-08",
    health_id: Some("pat-6ff8151b"),
    school_id: None,
    early_years_id: None,
};

/// Maya's early-years record: family name misspelt, day and month swapped, and no NHS number.
pub const MAYA_EARLY_YEARS_ID: &str = "chd-ab6e9272";
/// The early-years register's spelling of Maya's family name.
pub const MAYA_EARLY_YEARS_FAMILY: &str = "Kowalcyzk";
/// The early-years register's date of birth for Maya, day and month the other way round.
pub const MAYA_EARLY_YEARS_DATE_OF_BIRTH: &str = "2023-08-03";

/// Every cast member, in child-number order.
pub const MEMBERS: &[CastMember] = &[AMELIA, NOAH, ISLA, AVA, LEO, MAYA];

/// OneRoster org sourcedId of "Riverside Primary School" (Amelia, Isla, Ava).
pub const SCHOOL_ORG_ID: &str = "sch-00000";
/// OneRoster org sourcedId of Leo's secondary school.
pub const SECONDARY_SCHOOL_ORG_ID: &str = "sch-00001";
/// FHIR Organization id of "Elm Tree Surgery" (gp-practice).
pub const GP_PRACTICE_ID: &str = "org-g00000";
/// FHIR Organization id of "Willow Maternal and Child Health Centre".
pub const MCH_CENTRE_ID: &str = "org-m00000";
/// Early-years setting id of "Acorn Kindergarten".
pub const KINDERGARTEN_ID: &str = "set-00000";
/// FHIR Organization id of "North Children's Social Care Team".
pub const SOCIAL_CARE_TEAM_ID: &str = "org-c00000";
/// OneRoster teacher user "Priya Shah", class teacher of Amelia's class at Riverside.
pub const TEACHER_ID: &str = "tch-000000";
/// FHIR Practitioner "Dr Tom Whitfield" at Elm Tree Surgery, careManager of Amelia's general-practice EpisodeOfCare.
pub const GP_ID: &str = "prac-g00000-0";
/// FHIR Practitioner "Grace Mensah", careManager of Noah's maternal-child-health EpisodeOfCare at Willow.
pub const MCH_NURSE_ID: &str = "prac-m00000-0";
/// Early-years key worker "Sam Taylor" at Acorn, Noah's key worker.
pub const KEY_WORKER_ID: &str = "kw-00000-0";
/// FHIR Practitioner "Jordan Reid" at the North team, careManager of Leo's social-care EpisodeOfCare.
pub const SOCIAL_WORKER_ID: &str = "prac-s00000-0";

pub const SCHOOL_NAME: &str = "Riverside Primary School";
pub const GP_PRACTICE_NAME: &str = "Elm Tree Surgery";
pub const MCH_CENTRE_NAME: &str = "Willow Maternal and Child Health Centre";
pub const KINDERGARTEN_NAME: &str = "Acorn Kindergarten";
pub const SOCIAL_CARE_TEAM_NAME: &str = "North Children's Social Care Team";
/// (given, family) of the cast's practitioners.
pub const TEACHER_NAME: (&str, &str) = ("Priya", "Shah");
pub const GP_NAME: (&str, &str) = ("Tom", "Whitfield");
pub const MCH_NURSE_NAME: (&str, &str) = ("Grace", "Mensah");
pub const KEY_WORKER_NAME: (&str, &str) = ("Sam", "Taylor");
pub const SOCIAL_WORKER_NAME: (&str, &str) = ("Jordan", "Reid");

/// The school's misspelling of Amelia's family name.
pub const AMELIA_SCHOOL_FAMILY: &str = "Hartly";
