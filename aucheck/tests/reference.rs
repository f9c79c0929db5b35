//! Property test: random sequences of changes, made through two managers on
//! one store, against a reference model (plain maps and sets). After every
//! step the model's permission matrix — every user, every permission
//! (declared or not), globally and on every scope — must equal what `check`
//! and `check_in` answer on both managers.
mod support;

use std::collections::{BTreeMap, BTreeSet};

use aucheck::{AuthManager, DeleteRule};
use nopi::Store;
use proptest::prelude::*;
use tiny_storage::NewUser;

const USERS: &[&str] = &["ann", "ben", "cat", "dan", "eve"];
const GROUPS: &[&str] = &["g0", "g1", "g2"];
const SCOPES: &[&str] = &["group/rust", "group/go"];
const ROLES: &[&str] = &["owner", "admin", "member"];
/// Declared permissions, plus one that is not.
const PERMS: &[&str] = support::PERMISSIONS;
const UNDECLARED: &str = "no.such";

fn role_perms(role: &str) -> &'static [&'static str] {
    match role {
        "owner" => &["group.read", "group.post", "group.kick", "group.delete"],
        "admin" => &["group.read", "group.post", "group.kick"],
        _ => &["group.read", "group.post"],
    }
}

/// A permission list: a subset of the declared permissions, or `*`.
#[derive(Debug, Clone)]
struct Perms {
    all: bool,
    set: BTreeSet<&'static str>,
}

impl Perms {
    fn holds(&self, p: &str) -> bool {
        PERMS.contains(&p) && (self.all || self.set.contains(p))
    }

    fn names(&self) -> Vec<&'static str> {
        if self.all {
            vec!["*"]
        } else {
            self.set.iter().copied().collect()
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    CreateGroup(usize, Perms),
    SetGroup(usize, Perms),
    DeleteGroup(usize, Option<usize>),
    CreateUser(usize, Option<usize>),
    DeleteUser(usize),
    Assign(usize, usize),
    Grant(usize, usize),
    Revoke(usize, usize),
    SetRole(usize, usize, usize),
    RemoveRole(usize, usize),
    RemoveScope(usize),
}

fn perms() -> impl Strategy<Value = Perms> {
    (any::<u8>(), 0..8u8).prop_map(|(bits, wild)| Perms {
        all: wild == 0,
        set: PERMS
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, p)| *p)
            .collect(),
    })
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS.len();
    let g = 0..GROUPS.len();
    let p = 0..PERMS.len();
    let s = 0..SCOPES.len();
    prop_oneof![
        2 => (g.clone(), perms()).prop_map(|(g, p)| Op::CreateGroup(g, p)),
        1 => (g.clone(), perms()).prop_map(|(g, p)| Op::SetGroup(g, p)),
        1 => (g.clone(), proptest::option::of(g.clone())).prop_map(|(g, t)| Op::DeleteGroup(g, t)),
        3 => (u.clone(), proptest::option::of(g.clone())).prop_map(|(u, g)| Op::CreateUser(u, g)),
        1 => u.clone().prop_map(Op::DeleteUser),
        2 => (u.clone(), g).prop_map(|(u, g)| Op::Assign(u, g)),
        2 => (u.clone(), p.clone()).prop_map(|(u, p)| Op::Grant(u, p)),
        2 => (u.clone(), p).prop_map(|(u, p)| Op::Revoke(u, p)),
        2 => (u.clone(), s.clone(), 0..ROLES.len()).prop_map(|(u, s, r)| Op::SetRole(u, s, r)),
        1 => (u, s.clone()).prop_map(|(u, s)| Op::RemoveRole(u, s)),
        1 => s.prop_map(Op::RemoveScope),
    ]
}

/// Where a user's permissions come from.
#[derive(Debug, Clone)]
enum Source {
    Shared(&'static str),
    Personal(Perms),
}

/// The reference: what every operation should do, in plain data.
#[derive(Debug, Default)]
struct Model {
    groups: BTreeMap<&'static str, Perms>,
    users: BTreeMap<&'static str, Source>,
    roles: BTreeMap<(&'static str, &'static str), &'static str>,
}

impl Model {
    fn perms_of(&self, user: &str) -> Option<Perms> {
        match self.users.get(user)? {
            Source::Shared(g) => self.groups.get(g).cloned(),
            Source::Personal(p) => Some(p.clone()),
        }
    }

    fn allows(&self, user: &str, perm: &str, scope: Option<&str>) -> bool {
        let Some(perms) = self.perms_of(user) else {
            return false;
        };
        if perms.holds(perm) {
            return true;
        }
        scope
            .and_then(|s| {
                self.roles
                    .iter()
                    .find(|((u, sc), _)| *u == user && *sc == s)
            })
            .is_some_and(|(_, role)| PERMS.contains(&perm) && role_perms(role).contains(&perm))
    }

    /// Apply `op`; the value the operation should return, or `Err(())` when
    /// it should fail.
    fn apply(&mut self, op: &Op) -> Result<String, ()> {
        match *op {
            Op::CreateGroup(g, ref p) => {
                let g = GROUPS[g];
                if self.groups.contains_key(g) {
                    return Err(());
                }
                self.groups.insert(g, p.clone());
                Ok(String::new())
            }
            Op::SetGroup(g, ref p) => {
                let g = GROUPS[g];
                let slot = self.groups.get_mut(g).ok_or(())?;
                *slot = p.clone();
                Ok(String::new())
            }
            Op::DeleteGroup(g, target) => {
                let g = GROUPS[g];
                if target.is_some_and(|t| GROUPS[t] == g) {
                    return Err(());
                }
                let perms = self.groups.get(g).cloned().ok_or(())?;
                if let Some(t) = target
                    && !self.groups.contains_key(GROUPS[t])
                {
                    return Err(());
                }
                let mut moved = 0;
                for source in self.users.values_mut() {
                    if matches!(source, Source::Shared(x) if *x == g) {
                        moved += 1;
                        *source = match target {
                            Some(t) => Source::Shared(GROUPS[t]),
                            None => Source::Personal(perms.clone()),
                        };
                    }
                }
                self.groups.remove(g);
                Ok(moved.to_string())
            }
            Op::CreateUser(u, g) => {
                let u = USERS[u];
                if self.users.contains_key(u) {
                    return Err(());
                }
                let source = match g {
                    Some(g) if self.groups.contains_key(GROUPS[g]) => Source::Shared(GROUPS[g]),
                    Some(_) => return Err(()),
                    None => Source::Personal(Perms {
                        all: false,
                        set: BTreeSet::new(),
                    }),
                };
                self.users.insert(u, source);
                Ok(String::new())
            }
            Op::DeleteUser(u) => {
                let u = USERS[u];
                self.roles.retain(|(user, _), _| *user != u);
                Ok(self.users.remove(u).is_some().to_string())
            }
            Op::Assign(u, g) => {
                let (u, g) = (USERS[u], GROUPS[g]);
                let source = self.users.get(u).ok_or(())?;
                if matches!(source, Source::Shared(x) if *x == g) {
                    return Ok(false.to_string());
                }
                if !self.groups.contains_key(g) {
                    return Err(());
                }
                self.users.insert(u, Source::Shared(g));
                Ok(true.to_string())
            }
            Op::Grant(u, p) | Op::Revoke(u, p) => {
                let grant = matches!(op, Op::Grant(..));
                let (u, p) = (USERS[u], PERMS[p]);
                // Missing shared group (cannot happen) would read as empty.
                let mut perms = self.perms_of(u).unwrap_or(Perms {
                    all: false,
                    set: BTreeSet::new(),
                });
                if !self.users.contains_key(u) {
                    return Err(());
                }
                if perms.holds(p) == grant {
                    return Ok(false.to_string());
                }
                if grant {
                    perms.set.insert(p);
                } else {
                    if perms.all {
                        perms.all = false;
                        perms.set = PERMS.iter().copied().collect();
                    }
                    perms.set.remove(p);
                }
                self.users.insert(u, Source::Personal(perms));
                Ok(true.to_string())
            }
            Op::SetRole(u, s, r) => {
                let (u, s, r) = (USERS[u], SCOPES[s], ROLES[r]);
                if !self.users.contains_key(u) {
                    return Err(());
                }
                Ok(format!("{:?}", self.roles.insert((u, s), r)))
            }
            Op::RemoveRole(u, s) => Ok(format!("{:?}", self.roles.remove(&(USERS[u], SCOPES[s])))),
            Op::RemoveScope(s) => {
                let before = self.roles.len();
                self.roles.retain(|(_, scope), _| *scope != SCOPES[s]);
                Ok((before - self.roles.len()).to_string())
            }
        }
    }
}

/// Apply `op` through `auth`, rendering the result like [`Model::apply`].
async fn run(auth: &AuthManager, op: &Op) -> Result<String, aucheck::Error> {
    let root = auth.by("prop");
    let unit = |_| String::new();
    match *op {
        Op::CreateGroup(g, ref p) => root.create_group(GROUPS[g], p.names()).await.map(unit),
        Op::SetGroup(g, ref p) => root
            .set_group_permissions(GROUPS[g], p.names())
            .await
            .map(unit),
        Op::DeleteGroup(g, t) => {
            let rule = match t {
                Some(t) => DeleteRule::move_to(GROUPS[t]),
                None => DeleteRule::Personal,
            };
            root.delete_group(GROUPS[g], rule)
                .await
                .map(|n| n.to_string())
        }
        Op::CreateUser(u, g) => root
            .create_user(NewUser::new(USERS[u]).password("pw"), g.map(|g| GROUPS[g]))
            .await
            .map(|_| String::new()),
        Op::DeleteUser(u) => root.delete_user(USERS[u]).await.map(|b| b.to_string()),
        Op::Assign(u, g) => root
            .assign(USERS[u], GROUPS[g])
            .await
            .map(|b| b.to_string()),
        Op::Grant(u, p) => root.grant(USERS[u], PERMS[p]).await.map(|b| b.to_string()),
        Op::Revoke(u, p) => root.revoke(USERS[u], PERMS[p]).await.map(|b| b.to_string()),
        Op::SetRole(u, s, r) => root
            .set_role(USERS[u], SCOPES[s], ROLES[r])
            .await
            .map(|prev| format!("{:?}", prev.as_deref())),
        Op::RemoveRole(u, s) => root
            .remove_role(USERS[u], SCOPES[s])
            .await
            .map(|prev| format!("{:?}", prev.as_deref())),
        Op::RemoveScope(s) => root.remove_scope(SCOPES[s]).await.map(|n| n.to_string()),
    }
}

/// The whole matrix must agree with the model.
async fn compare(auth: &AuthManager, model: &Model, who: &str, step: usize) -> Result<(), String> {
    let perms = PERMS.iter().copied().chain([UNDECLARED]);
    for user in USERS {
        for perm in perms.clone() {
            for scope in [None, Some(SCOPES[0]), Some(SCOPES[1])] {
                let expected = model.allows(user, perm, scope);
                let actual = match scope {
                    None => auth.check(user, perm).await.is_ok(),
                    Some(s) => auth.check_in(user, perm, s).await.is_ok(),
                };
                if expected != actual {
                    return Err(format!(
                        "step {step}, manager {who}: check({user}, {perm}, {scope:?}) = {actual}, \
                         reference says {expected}\nmodel: {model:#?}"
                    ));
                }
            }
        }
    }
    Ok(())
}

fn run_case(ops: Vec<(bool, Op)>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let store = Store::memory();
        let a = support::builder(&store)
            .audit_denials(false)
            .build()
            .await
            .expect("build a");
        let b = support::builder(&store)
            .audit_denials(false)
            .build()
            .await
            .expect("build b");
        let mut model = Model::default();
        for (step, (through_b, op)) in ops.iter().enumerate() {
            let (doer, other) = if *through_b { (&b, &a) } else { (&a, &b) };
            let expected = model.apply(op);
            let actual = run(doer, op).await;
            match (&expected, &actual) {
                (Ok(e), Ok(a)) => prop_assert_eq!(e, a, "step {}: {:?}", step, op),
                (Err(()), Err(_)) => {}
                _ => prop_assert!(
                    false,
                    "step {step}: {op:?}: reference {expected:?}, aucheck {actual:?}"
                ),
            }
            // The manager that made the change answers at once; the other
            // after a refresh. Both keep their caches between steps.
            compare(doer, &model, "doer", step)
                .await
                .map_err(TestCaseError::fail)?;
            other.refresh().await.expect("refresh");
            compare(other, &model, "other", step)
                .await
                .map_err(TestCaseError::fail)?;
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn check_matches_the_reference_matrix(ops in proptest::collection::vec((any::<bool>(), op()), 1..30)) {
        run_case(ops)?;
    }
}
