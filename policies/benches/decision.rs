//! The cost of one decision, for one field, as resolvers and the fetch ask it; and of resolving a principal's roles,
//! which happens once per request.
//!
//! `cargo bench -p childgraph-policies --bench decision`

use childgraph_policies::{Policy, Relation, Situation};
use childgraph_schema::Field;
use criterion::{Criterion, black_box, criterion_group, criterion_main};

fn decision(c: &mut Criterion) {
    let policy = Policy::default_policy();
    let grant = policy.grant(["teacher", "mch-nurse"]);
    let situation = Situation {
        shielded: true,
        overridden: false,
        relation: Relation::Other,
        past_age: false,
    };
    c.bench_function("decide one field", |b| {
        b.iter(|| {
            policy
                .decide(
                    black_box(grant),
                    black_box(situation),
                    black_box(Field::CarerAddress),
                )
                .is_visible()
        })
    });
    c.bench_function("decide every field", |b| {
        b.iter(|| {
            Field::ALL
                .iter()
                .filter(|f| {
                    policy
                        .decide(black_box(grant), black_box(situation), **f)
                        .is_visible()
                })
                .count()
        })
    });
    c.bench_function("grant of two roles", |b| {
        b.iter(|| policy.grant(black_box(["teacher", "mch-nurse"])))
    });
}

criterion_group!(benches, decision);
criterion_main!(benches);
