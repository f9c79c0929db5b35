//! `check` and `check_in` against casbin enforcing the equivalent RBAC policy,
//! in the same run: 1,000 users, 50 groups (roles, for casbin), 100
//! permissions; for scoped checks, 3 roles on 200 scopes with 5 scoped roles
//! per user (casbin: RBAC with domains).
//!
//! Each benchmark cycles through 4,096 precomputed queries, about half of
//! them allowed, so the figure is an average over hits and denials rather
//! than one hot path. Before measuring, both engines answer every query and
//! must agree.
//!
//! Run: `cargo bench -p aucheck --bench check_vs_casbin`

use std::time::Duration;

use aucheck::AuthManager;
use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
use criterion::{Criterion, criterion_group, criterion_main};
use tiny_storage::{NewUser, PasswordParams};

const USERS: usize = 1000;
const GROUPS: usize = 50;
const PERMISSIONS: usize = 100;
/// Permissions each group holds (out of the first 90; the last 10 are scoped).
const PER_GROUP: usize = 20;
const SCOPES: usize = 200;
const ROLES_PER_USER: usize = 5;
const QUERIES: usize = 4096;

const RBAC: &str = "
[request_definition]
r = sub, act
[policy_definition]
p = sub, act
[role_definition]
g = _, _
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = g(r.sub, p.sub) && r.act == p.act
";

const RBAC_WITH_DOMAINS: &str = "
[request_definition]
r = sub, dom, act
[policy_definition]
p = sub, act
[role_definition]
g = _, _, _
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = g(r.sub, p.sub, r.dom) && r.act == p.act
";

/// A small deterministic generator (xorshift), so every run sees the same data.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn perm(i: usize) -> String {
    format!("perm.{i:03}")
}

fn user(i: usize) -> String {
    format!("user{i:04}")
}

fn group(i: usize) -> String {
    format!("group{i:02}")
}

fn scope(i: usize) -> String {
    format!("chat/{i:03}")
}

/// The scoped roles and the permissions (among the last ten) each grants.
fn roles() -> Vec<(&'static str, Vec<String>)> {
    vec![
        ("owner", (90..100).map(perm).collect()),
        ("admin", (90..96).map(perm).collect()),
        ("member", (90..93).map(perm).collect()),
    ]
}

struct Fixture {
    group_perms: Vec<Vec<usize>>,
    /// (scope, role) of each user.
    user_roles: Vec<Vec<(usize, usize)>>,
    global: Vec<(String, String)>,
    scoped: Vec<(String, String, String)>,
}

fn fixture() -> Fixture {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let group_perms: Vec<Vec<usize>> = (0..GROUPS)
        .map(|_| {
            let mut ps: Vec<usize> = Vec::new();
            while ps.len() < PER_GROUP {
                let p = rng.below(90);
                if !ps.contains(&p) {
                    ps.push(p);
                }
            }
            ps
        })
        .collect();
    let user_roles: Vec<Vec<(usize, usize)>> = (0..USERS)
        .map(|_| {
            let mut rs: Vec<(usize, usize)> = Vec::new();
            while rs.len() < ROLES_PER_USER {
                let s = rng.below(SCOPES);
                if !rs.iter().any(|&(x, _)| x == s) {
                    rs.push((s, rng.below(3)));
                }
            }
            rs
        })
        .collect();
    // About half allowed: pick from the user's own permissions half the time.
    let global = (0..QUERIES)
        .map(|_| {
            let u = rng.below(USERS);
            let p = if rng.below(2) == 0 {
                group_perms[u % GROUPS][rng.below(PER_GROUP)]
            } else {
                rng.below(PERMISSIONS)
            };
            (user(u), perm(p))
        })
        .collect();
    let scoped = (0..QUERIES)
        .map(|_| {
            let u = rng.below(USERS);
            let s = if rng.below(2) == 0 {
                user_roles[u][rng.below(ROLES_PER_USER)].0
            } else {
                rng.below(SCOPES)
            };
            (user(u), perm(90 + rng.below(10)), scope(s))
        })
        .collect();
    Fixture {
        group_perms,
        user_roles,
        global,
        scoped,
    }
}

async fn aucheck(f: &Fixture, audit_denials: bool) -> AuthManager {
    let store = nopi::Store::memory();
    let mut builder = AuthManager::builder(&store)
        .permissions((0..PERMISSIONS).map(perm))
        .password_params(PasswordParams::insecure_for_tests())
        .audit_denials(audit_denials);
    for (role, perms) in roles() {
        builder = builder.role(role, perms);
    }
    for (g, perms) in f.group_perms.iter().enumerate() {
        builder = builder.group(group(g), perms.iter().map(|&p| perm(p)));
    }
    let auth = builder.build().await.expect("build");
    let root = auth.by("bench");
    for u in 0..USERS {
        root.create_user(
            NewUser::new(user(u)).password("pw"),
            Some(&group(u % GROUPS)),
        )
        .await
        .expect("create user");
        for &(s, r) in &f.user_roles[u] {
            root.set_role(&user(u), &scope(s), roles()[r].0)
                .await
                .expect("set role");
        }
    }
    auth
}

async fn casbin_rbac(f: &Fixture) -> Enforcer {
    let model = DefaultModel::from_str(RBAC).await.expect("model");
    let mut e = Enforcer::new(model, MemoryAdapter::default())
        .await
        .expect("enforcer");
    let p = f
        .group_perms
        .iter()
        .enumerate()
        .flat_map(|(g, ps)| ps.iter().map(move |&p| vec![group(g), perm(p)]))
        .collect();
    e.add_policies(p).await.expect("policies");
    let g = (0..USERS)
        .map(|u| vec![user(u), group(u % GROUPS)])
        .collect();
    e.add_grouping_policies(g).await.expect("grouping");
    e
}

async fn casbin_domains(f: &Fixture) -> Enforcer {
    let model = DefaultModel::from_str(RBAC_WITH_DOMAINS)
        .await
        .expect("model");
    let mut e = Enforcer::new(model, MemoryAdapter::default())
        .await
        .expect("enforcer");
    let p = roles()
        .into_iter()
        .flat_map(|(r, ps)| ps.into_iter().map(move |p| vec![r.to_owned(), p]))
        .collect();
    e.add_policies(p).await.expect("policies");
    let g = f
        .user_roles
        .iter()
        .enumerate()
        .flat_map(|(u, rs)| {
            rs.iter()
                .map(move |&(s, r)| vec![user(u), roles()[r].0.to_owned(), scope(s)])
        })
        .collect();
    e.add_grouping_policies(g).await.expect("grouping");
    e
}

fn bench(c: &mut Criterion) {
    // One worker thread for aucheck's background task (denial audit writes),
    // the bench itself on the main thread: a small server's shape.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let f = fixture();
    let (auth, quiet, rbac, domains) = rt.block_on(async {
        (
            aucheck(&f, true).await,
            aucheck(&f, false).await,
            casbin_rbac(&f).await,
            casbin_domains(&f).await,
        )
    });

    // Same answers everywhere (this also fills aucheck's caches).
    let (mut allowed_global, mut allowed_scoped) = (0, 0);
    rt.block_on(async {
        for (u, p) in &f.global {
            let a = auth.check(u, p).await.is_ok();
            assert_eq!(a, quiet.check(u, p).await.is_ok());
            assert_eq!(a, rbac.enforce((u, p)).expect("enforce"), "{u} {p}");
            allowed_global += usize::from(a);
        }
        for (u, p, s) in &f.scoped {
            let a = auth.check_in(u, p, s).await.is_ok();
            assert_eq!(a, quiet.check_in(u, p, s).await.is_ok());
            assert_eq!(
                a,
                domains.enforce((u, s, p)).expect("enforce"),
                "{u} {p} {s}"
            );
            allowed_scoped += usize::from(a);
        }
    });
    assert!(allowed_global > QUERIES / 3 && allowed_global < QUERIES * 2 / 3);
    assert!(allowed_scoped > QUERIES / 4 && allowed_scoped < QUERIES * 3 / 4);

    let mut g = c.benchmark_group("check (1000 users, 50 groups, 100 permissions)");
    let mut i = 0usize;
    g.bench_function("aucheck", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % QUERIES;
            let (u, p) = &f.global[i];
            let auth = &auth;
            async move { auth.check(u, p).await.is_ok() }
        })
    });
    g.bench_function("aucheck, denials not audited", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % QUERIES;
            let (u, p) = &f.global[i];
            let quiet = &quiet;
            async move { quiet.check(u, p).await.is_ok() }
        })
    });
    g.bench_function("casbin", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES;
            let (u, p) = &f.global[i];
            rbac.enforce((u, p)).unwrap_or(false)
        })
    });
    g.finish();

    let mut g = c.benchmark_group("check_in (3 roles on 200 scopes, 5 per user)");
    g.bench_function("aucheck", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % QUERIES;
            let (u, p, s) = &f.scoped[i];
            let auth = &auth;
            async move { auth.check_in(u, p, s).await.is_ok() }
        })
    });
    g.bench_function("aucheck, denials not audited", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % QUERIES;
            let (u, p, s) = &f.scoped[i];
            let quiet = &quiet;
            async move { quiet.check_in(u, p, s).await.is_ok() }
        })
    });
    g.bench_function("casbin", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES;
            let (u, p, s) = &f.scoped[i];
            domains.enforce((u, s, p)).unwrap_or(false)
        })
    });
    g.finish();

    // How much of the denial flood reached the audit log: the queue is
    // bounded, and denials beyond it are counted, not stored.
    let (entries, logged, dropped) = rt.block_on(async {
        let log = auth.audit();
        let (mut entries, mut logged, mut dropped) = (0u64, 0u64, 0u64);
        let mut page = log.newest(aucheck::MAX_PAGE).await.expect("audit");
        while let Some(last) = page.last().map(|e| e.id) {
            for e in &page {
                match e.action {
                    aucheck::AuditAction::Denied { count, .. } => {
                        entries += 1;
                        logged += count;
                    }
                    aucheck::AuditAction::DenialsDropped { count } => dropped += count,
                    _ => {}
                }
            }
            page = log.before(last, aucheck::MAX_PAGE).await.expect("audit");
        }
        (entries, logged, dropped)
    });
    #[expect(clippy::print_stderr, reason = "a bench prints its results")]
    {
        eprintln!(
            "audited manager: {logged} denials logged in {entries} entries, \
             {dropped} dropped (counted) while the queue was full"
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
