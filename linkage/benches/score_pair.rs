//! Scoring one pair of records: compare every field, then weigh the levels. `cargo bench -p childgraph-linkage`.

use childgraph_linkage::model::{NoFrequencies, Parameters, compare};
use childgraph_schema::{Address, PersonRecord, Sex, SourceName};
use chrono::NaiveDate;
use criterion::{Criterion, black_box, criterion_group, criterion_main};

fn record(
    source: SourceName,
    given: &str,
    family: &str,
    dob: &str,
    postcode: &str,
) -> PersonRecord {
    PersonRecord {
        source,
        id: format!("{source}-1"),
        given_names: vec![given.into()],
        family_name: Some(family.into()),
        date_of_birth: NaiveDate::parse_from_str(dob, "%Y-%m-%d").ok(),
        sex: Some(Sex::Female),
        nhs_number: None,
        upn: None,
        address: Some(Address {
            lines: vec!["14 Orchard Road".into()],
            postcode: Some(postcode.into()),
        }),
        restricted: false,
    }
}

fn score_pair(c: &mut Criterion) {
    let a = record(
        SourceName::Health,
        "Amelia",
        "Hartley",
        "2019-06-14",
        "HF1 2AB",
    );
    let b = record(
        SourceName::EarlyYears,
        "Millie",
        "Hartly",
        "2019-06-14",
        "HF1 2AD",
    );
    let params = Parameters::default();
    c.bench_function("compare and weigh one pair", |bench| {
        bench.iter(|| {
            let levels = compare(black_box(&a), black_box(&b));
            Parameters::probability(params.weight(&a, &b, &levels, &NoFrequencies))
        })
    });
}

criterion_group!(benches, score_pair);
criterion_main!(benches);
