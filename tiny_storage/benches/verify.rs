//! `Users::verify` with the OWASP argon2id parameters: one login at a time,
//! and a storm of concurrent logins through the per-core hashing permits.
//!
//! `cargo bench -p tiny_storage --bench verify`. The storm's logins per
//! second, divided by (cores ÷ the time of one login), says how much of the
//! machine's hashing capacity a login storm gets; docs/benchmarks.md records
//! the ratio (target ≥ 0.9), and the storm against `raw_argon2_threads`,
//! the same number of bare argon2 verifications on one plain thread per core
//! (the machine's real parallel hashing capacity, measured in the same run).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tiny_storage::{NewUser, UserModel, Users};

fn benches(c: &mut Criterion) {
    let cores = Users::default_hash_concurrency();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores)
        .build()
        .expect("tokio runtime");
    let users = rt.block_on(async {
        let store = nopi::open("memory:").await.expect("store");
        let model = UserModel::builder()
            .user_name("name")
            .password("password")
            .build()
            .expect("model");
        let users = Users::open(&store, model).await.expect("users");
        users
            .create(NewUser::new("alice").password("correct horse battery staple"))
            .await
            .expect("create");
        users
    });

    let mut g = c.benchmark_group("verify_owasp");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.throughput(Throughput::Elements(1));
    g.bench_function(BenchmarkId::new("sequential", 1), |b| {
        b.iter(|| {
            rt.block_on(async {
                black_box(
                    users
                        .verify("alice", "password", "correct horse battery staple")
                        .await
                        .expect("login"),
                )
            })
        })
    });
    let storm = 8 * cores;
    g.throughput(Throughput::Elements(storm as u64));
    g.bench_function(BenchmarkId::new("storm", storm), |b| {
        b.iter(|| {
            rt.block_on(async {
                let logins: Vec<_> = (0..storm)
                    .map(|_| {
                        let users = users.clone();
                        tokio::spawn(async move {
                            users
                                .verify("alice", "password", "correct horse battery staple")
                                .await
                        })
                    })
                    .collect();
                for l in logins {
                    black_box(l.await.expect("task").expect("login"));
                }
            })
        })
    });

    // Baseline in the same run: raw argon2 verification of the same PHC
    // string on `cores` plain threads, no runtime, no permits, no storage.
    let phc = {
        use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(b"correct horse battery staple", &salt)
            .expect("hash")
            .to_string()
    };
    g.bench_function(BenchmarkId::new("raw_argon2_threads", storm), |b| {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        let parsed = PasswordHash::new(&phc).expect("phc");
        b.iter(|| {
            std::thread::scope(|s| {
                for _ in 0..cores {
                    s.spawn(|| {
                        for _ in 0..storm / cores {
                            argon2::Argon2::default()
                                .verify_password(b"correct horse battery staple", &parsed)
                                .expect("verify");
                        }
                    });
                }
            })
        })
    });
    g.finish();
}

criterion_group!(verify, benches);
criterion_main!(verify);
