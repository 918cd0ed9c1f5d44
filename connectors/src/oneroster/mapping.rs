//! From OneRoster objects to childgraph's domain types, following the school profile in `connectors/PROFILES.md`.

use std::collections::HashMap;
use std::sync::Arc;

use childgraph_schema::{
    Address, Carer, Involvement, InvolvementStatus, Organisation, OrganisationKind, Participation,
    ParticipationStatus, PersonRecord, Practitioner, RecordDetails, ServiceKind, Sex, SourceName,
    Upn,
};
use chrono::NaiveDate;
use serde_json::Value;

use super::objects::{Class, Demographics, Enrollment, Org, User};

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn date(raw: Option<&str>) -> Option<NaiveDate> {
    // OneRoster dates are `YYYY-MM-DD`; some vendors send a full timestamp.
    NaiveDate::parse_from_str(raw?.get(..10)?, "%Y-%m-%d").ok()
}

fn is_deleted(status: Option<&str>) -> bool {
    status == Some("tobedeleted")
}

/// Whether the user is a student, the only users that are children.
pub fn is_student(user: &User) -> bool {
    user.has_role("student") && !is_deleted(user.status.as_deref())
}

/// The student as a person record, with the birth date and sex from their demographics.
pub fn person_record(user: &User, demographics: Option<&Demographics>) -> Option<PersonRecord> {
    if user.sourced_id.is_empty() {
        return None;
    }
    let mut given_names: Vec<String> = non_empty(user.given_name.as_deref()).into_iter().collect();
    if let Some(middle) = &user.middle_name {
        given_names.extend(middle.split_whitespace().map(str::to_owned));
    }
    Some(PersonRecord {
        source: SourceName::School,
        id: user.sourced_id.clone(),
        given_names,
        family_name: non_empty(user.family_name.as_deref()),
        date_of_birth: demographics.and_then(|d| date(d.birth_date.as_deref())),
        sex: demographics.and_then(|d| match d.sex.as_deref()? {
            "female" => Some(Sex::Female),
            "male" => Some(Sex::Male),
            "other" => Some(Sex::Other),
            "unspecified" => Some(Sex::Unknown),
            _ => None,
        }),
        nhs_number: None,
        // A malformed UPN is treated as absent, so that linkage never matches on it.
        upn: user.identifier.as_deref().and_then(|u| Upn::parse(u).ok()),
        // OneRoster holds no pupil addresses.
        address: None,
        restricted: false,
    })
}

/// A parent or guardian as a carer: the relationship from `metadata.relationship`, else their role.
pub fn carer(agent: &User) -> Carer {
    Carer {
        name: person_name(agent),
        relationship: non_empty(agent.metadata_text("relationship"))
            .or_else(|| non_empty(agent.main_role())),
        phone: non_empty(agent.phone.as_deref()).or_else(|| non_empty(agent.sms.as_deref())),
        email: non_empty(agent.email.as_deref()),
        address: None,
    }
}

fn person_name(user: &User) -> String {
    [user.given_name.as_deref(), user.family_name.as_deref()]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A teacher as the practitioner of a class.
pub fn teacher(user: &User) -> Practitioner {
    Practitioner {
        id: user.sourced_id.clone(),
        name: person_name(user),
        role: Some("class teacher".into()),
        phone: non_empty(user.phone.as_deref()),
        email: non_empty(user.email.as_deref()),
    }
}

/// The school, with the contact details the profile keeps in `metadata` (OneRoster has no standard place for them).
pub fn organisation(org: &Org) -> Organisation {
    let metadata = org.metadata.as_ref();
    let text = |key: &str| non_empty(metadata.and_then(|m| m.get(key)).and_then(Value::as_str));
    let address = metadata.and_then(|m| m.get("address")).and_then(|a| {
        let lines: Vec<String> = a
            .get("lines")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(|l| non_empty(l.as_str())).collect())
            .unwrap_or_default();
        let postcode = non_empty(a.get("postcode").and_then(Value::as_str));
        (!lines.is_empty() || postcode.is_some()).then_some(Address { lines, postcode })
    });
    Organisation {
        id: org.sourced_id.clone(),
        name: non_empty(org.name.as_deref()).unwrap_or_default(),
        kind: if org.kind.as_deref() == Some("school") {
            OrganisationKind::School
        } else {
            OrganisationKind::Other
        },
        phone: text("phone"),
        email: text("email"),
        address,
    }
}

/// Everything fetched for a set of students.
#[derive(Debug, Default)]
pub struct Fetched {
    /// The students themselves, for their `agents`.
    pub students: Vec<User>,
    /// Their parents and guardians.
    pub agents: Vec<User>,
    /// The students' own enrolments.
    pub enrollments: Vec<Enrollment>,
    pub classes: Vec<Class>,
    pub orgs: Vec<Org>,
    /// Teachers' enrolments in those classes, to find each class teacher.
    pub teacher_enrollments: Vec<Enrollment>,
    pub teachers: Vec<User>,
}

/// The class teacher of each class: the teacher enrolment marked primary.
pub fn class_teachers(teacher_enrollments: &[Enrollment]) -> HashMap<String, String> {
    let mut teachers: Vec<&Enrollment> = teacher_enrollments
        .iter()
        .filter(|e| {
            e.role.as_deref() == Some("teacher")
                && e.primary.as_ref().is_some_and(|p| p.is_true())
                && !is_deleted(e.status.as_deref())
        })
        .collect();
    // Sorted so that, should a source mark two primary teachers, the same one is chosen every time.
    teachers.sort_by(|a, b| a.sourced_id.cmp(&b.sourced_id));
    let mut out = HashMap::new();
    for e in teachers {
        if let (Some(class), Some(user)) = (&e.class, &e.user) {
            out.entry(class.sourced_id.clone())
                .or_insert_with(|| user.sourced_id.clone());
        }
    }
    out
}

/// Whether an enrolment is a student's own and not withdrawn by the source.
pub fn is_student_enrollment(e: &Enrollment) -> bool {
    e.role.as_deref() == Some("student") && !is_deleted(e.status.as_deref())
}

/// Sorts what was fetched into details per student. Every id asked for gets an entry.
pub fn details(
    ids: &[String],
    fetched: &Fetched,
    today: NaiveDate,
) -> HashMap<String, RecordDetails> {
    let mut out: HashMap<String, RecordDetails> = ids
        .iter()
        .map(|id| (id.clone(), RecordDetails::default()))
        .collect();
    let agents: HashMap<&str, &User> = fetched
        .agents
        .iter()
        .map(|u| (u.sourced_id.as_str(), u))
        .collect();
    for student in &fetched.students {
        let Some(entry) = out.get_mut(&student.sourced_id) else {
            continue;
        };
        for agent in &student.agents {
            if let Some(user) = agents.get(agent.sourced_id.as_str()) {
                entry.carers.push(carer(user));
            }
        }
    }
    let classes: HashMap<&str, &Class> = fetched
        .classes
        .iter()
        .map(|c| (c.sourced_id.as_str(), c))
        .collect();
    let orgs: HashMap<&str, Arc<Organisation>> = fetched
        .orgs
        .iter()
        .map(|o| (o.sourced_id.as_str(), Arc::new(organisation(o))))
        .collect();
    let class_teachers = class_teachers(&fetched.teacher_enrollments);
    let teachers: HashMap<&str, Practitioner> = fetched
        .teachers
        .iter()
        .map(|u| (u.sourced_id.as_str(), teacher(u)))
        .collect();
    for enrollment in fetched
        .enrollments
        .iter()
        .filter(|e| is_student_enrollment(e))
    {
        let Some(entry) = enrollment
            .user
            .as_ref()
            .and_then(|u| out.get_mut(&u.sourced_id))
        else {
            continue;
        };
        let class_id = enrollment.class.as_ref().map(|c| c.sourced_id.as_str());
        let class = class_id.and_then(|id| classes.get(id));
        let school_id = enrollment
            .school
            .as_ref()
            .or_else(|| class.and_then(|c| c.school.as_ref()))
            .map(|s| s.sourced_id.as_str());
        let school = school_id.and_then(|id| orgs.get(id)).cloned();
        let begin = date(enrollment.begin_date.as_deref());
        // `endDate` is exclusive: an enrolment ending today has ended.
        let end = date(enrollment.end_date.as_deref());
        let ended = end.is_some_and(|e| e <= today);
        let status = if ended {
            InvolvementStatus::Finished
        } else if begin.is_some_and(|b| b > today) {
            InvolvementStatus::Planned
        } else {
            InvolvementStatus::Active
        };
        entry.involvements.push(Involvement {
            source: SourceName::School,
            kind: ServiceKind::School,
            organisation: school.clone(),
            practitioner: class_id
                .and_then(|id| class_teachers.get(id))
                .and_then(|t| teachers.get(t.as_str()))
                .cloned(),
            status,
            start: begin,
            end,
        });
        let title = class.and_then(|c| non_empty(c.title.as_deref()));
        entry.participation.push(Participation {
            source: SourceName::School,
            kind: ServiceKind::School,
            description: title
                .map_or_else(|| "Enrolled".to_owned(), |t| format!("Enrolled in {t}")),
            status: if ended {
                ParticipationStatus::Left
            } else {
                ParticipationStatus::Enrolled
            },
            date: begin,
            end,
            organisation: school,
        });
    }
    for entry in out.values_mut() {
        entry.participation.sort_by_key(|p| p.date);
        entry.involvements.sort_by_key(|i| i.start);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oneroster::objects::{
        Classes, DemographicsList, Enrollments, Envelope, Orgs, Users,
    };

    fn items<E: Envelope>(json: &str) -> Vec<E::Item> {
        serde_json::from_str::<E>(json).unwrap().into_items()
    }

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 1, 10).unwrap()
    }

    const STUDENT: &str = r#"{"users":[{"sourcedId":"stu-1","status":"active","dateLastModified":"2025-09-01T00:00:00Z",
        "enabledUser":"true","givenName":"Amelia","middleName":"Rose","familyName":"Hartley","preferredFirstName":"Millie",
        "identifier":"B801200005001",
        "roles":[{"roleType":"primary","role":"student","org":{"href":"/orgs/sch-1","sourcedId":"sch-1","type":"org"}}],
        "agents":[{"href":"/users/par-1","sourcedId":"par-1","type":"user"},{"href":"/users/par-2","sourcedId":"par-2","type":"user"}]}]}"#;

    #[test]
    fn student_maps_to_person_record() {
        let students = items::<Users>(STUDENT);
        let demographics = items::<DemographicsList>(
            r#"{"demographics":[{"sourcedId":"stu-1","status":"active","birthDate":"2019-06-14","sex":"female","americanIndianOrAlaskaNative":"false"}]}"#,
        );
        assert!(is_student(&students[0]));
        let record = person_record(&students[0], demographics.first()).unwrap();
        assert_eq!(record.id, "stu-1");
        assert_eq!(record.given_names, ["Amelia", "Rose"]);
        assert_eq!(record.family_name.as_deref(), Some("Hartley"));
        assert_eq!(record.date_of_birth, NaiveDate::from_ymd_opt(2019, 6, 14));
        assert_eq!(record.sex, Some(Sex::Female));
        assert_eq!(record.upn.unwrap().as_str(), "B801200005001");
        assert_eq!(record.address, None);
        let without = person_record(&students[0], None).unwrap();
        assert_eq!(without.date_of_birth, None);
    }

    fn fetched() -> Fetched {
        Fetched {
            students: items::<Users>(STUDENT),
            agents: items::<Users>(
                r#"{"users":[
                {"sourcedId":"par-1","givenName":"Sarah","familyName":"Hartley","email":"sarah@example.org","phone":"0113 496 0000",
                 "metadata":{"relationship":"mother"},"roles":[{"roleType":"primary","role":"parent"}]},
                {"sourcedId":"par-2","givenName":"Joan","familyName":"Hartley","sms":"07700 900000",
                 "roles":[{"roleType":"primary","role":"guardian"}]}]}"#,
            ),
            enrollments: items::<Enrollments>(
                r#"{"enrollments":[
                {"sourcedId":"enr-1","status":"active","role":"student","user":{"sourcedId":"stu-1"},"class":{"sourcedId":"cls-1"},
                 "school":{"sourcedId":"sch-1"},"beginDate":"2025-09-03"},
                {"sourcedId":"enr-0","status":"active","role":"student","user":{"sourcedId":"stu-1"},"class":{"sourcedId":"cls-0"},
                 "school":{"sourcedId":"sch-1"},"beginDate":"2024-09-04","endDate":"2025-07-22"}]}"#,
            ),
            classes: items::<Classes>(
                r#"{"classes":[{"sourcedId":"cls-1","title":"Year 2 Oak","school":{"sourcedId":"sch-1"}},
                               {"sourcedId":"cls-0","title":"Year 1 Ash","school":{"sourcedId":"sch-1"}}]}"#,
            ),
            orgs: items::<Orgs>(
                r#"{"orgs":[{"sourcedId":"sch-1","name":"Mill Lane Primary","type":"school","identifier":"107000",
                "metadata":{"phone":"0113 496 0002","email":"office@mill.example","address":{"lines":["Mill Lane","Leeds"],"postcode":"LS1 4AR"}}}]}"#,
            ),
            teacher_enrollments: items::<Enrollments>(
                r#"{"enrollments":[
                {"sourcedId":"t-2","role":"teacher","primary":"false","user":{"sourcedId":"tea-2"},"class":{"sourcedId":"cls-1"}},
                {"sourcedId":"t-1","role":"teacher","primary":"true","user":{"sourcedId":"tea-1"},"class":{"sourcedId":"cls-1"}}]}"#,
            ),
            teachers: items::<Users>(
                r#"{"users":[{"sourcedId":"tea-1","givenName":"Tom","familyName":"Okafor","email":"t.okafor@mill.example",
                "roles":[{"roleType":"primary","role":"teacher"}]}]}"#,
            ),
        }
    }

    #[test]
    fn details_carry_carers_school_teacher_and_enrolments() {
        let ids = vec!["stu-1".to_string(), "stu-9".to_string()];
        let details = details(&ids, &fetched(), today());
        assert_eq!(details["stu-9"], RecordDetails::default());
        let d = &details["stu-1"];
        assert_eq!(d.carers.len(), 2);
        assert_eq!(d.carers[0].name, "Sarah Hartley");
        assert_eq!(d.carers[0].relationship.as_deref(), Some("mother"));
        assert_eq!(d.carers[0].phone.as_deref(), Some("0113 496 0000"));
        assert_eq!(d.carers[1].relationship.as_deref(), Some("guardian"));
        assert_eq!(d.carers[1].phone.as_deref(), Some("07700 900000"));

        assert_eq!(d.involvements.len(), 2);
        let current = &d.involvements[1];
        assert_eq!(current.status, InvolvementStatus::Active);
        let school = current.organisation.as_ref().unwrap();
        assert_eq!(school.kind, OrganisationKind::School);
        assert_eq!(school.email.as_deref(), Some("office@mill.example"));
        assert_eq!(
            school.address.as_ref().unwrap().postcode.as_deref(),
            Some("LS1 4AR")
        );
        let teacher = current.practitioner.as_ref().unwrap();
        assert_eq!(teacher.name, "Tom Okafor");
        assert_eq!(teacher.role.as_deref(), Some("class teacher"));
        assert_eq!(d.involvements[0].status, InvolvementStatus::Finished);
        assert_eq!(d.involvements[0].practitioner, None);

        let descriptions: Vec<(&str, ParticipationStatus)> = d
            .participation
            .iter()
            .map(|p| (p.description.as_str(), p.status))
            .collect();
        assert_eq!(
            descriptions,
            [
                ("Enrolled in Year 1 Ash", ParticipationStatus::Left),
                ("Enrolled in Year 2 Oak", ParticipationStatus::Enrolled)
            ]
        );
    }

    #[test]
    fn end_date_is_exclusive() {
        let mut f = fetched();
        f.enrollments.truncate(1);
        f.enrollments[0].end_date = Some("2026-01-10".into());
        let d = &details(&["stu-1".to_string()], &f, today())["stu-1"];
        assert_eq!(d.participation[0].status, ParticipationStatus::Left);
        f.enrollments[0].end_date = Some("2026-01-11".into());
        let d = &details(&["stu-1".to_string()], &f, today())["stu-1"];
        assert_eq!(d.participation[0].status, ParticipationStatus::Enrolled);
    }
}
