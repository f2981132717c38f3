//! Assignment benches (being written).
#[path = "support/optimal.rs"]
mod optimal;

criterion::criterion_group!(benches, optimal::bench_optimal);
criterion::criterion_main!(benches);
