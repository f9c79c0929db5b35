//! Random sequences of creations, number changes and deletions against a
//! `BTreeMap` reference: the store refuses exactly the duplicates the
//! reference refuses, and ends up holding the same users and numbers.

mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use support::fast_users;
use tiny_storage::{Error, NewUser, UserModel};

#[derive(Debug, Clone)]
enum Op {
    Create { name: u8, number: Option<u64> },
    SetNumber { name: u8, number: u64 },
    Delete { name: u8 },
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0u8..6;
    let number = 1u64..8;
    prop_oneof![
        (name.clone(), proptest::option::of(number.clone()))
            .prop_map(|(name, number)| Op::Create { name, number }),
        (name.clone(), number).prop_map(|(name, number)| Op::SetNumber { name, number }),
        name.prop_map(|name| Op::Delete { name }),
    ]
}

/// What the reference expects of one operation.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    NameTaken,
    NumberTaken,
    NotFound,
    Deleted(bool),
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_a_btreemap(ops in proptest::collection::vec(op(), 1..30)) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let store = nopi::open("memory:").await.expect("store");
            let model = UserModel::builder()
                .user_name("name")
                .number("number")
                .build()
                .expect("model");
            let users = fast_users(&store, model).await;
            let mut reference: BTreeMap<String, u64> = BTreeMap::new();
            let mut next_auto = 1u64;
            for op in ops {
                let (expected, got) = match op {
                    Op::Create { name, number } => {
                        let name = format!("user{name}");
                        let taken = |n: u64| reference.values().any(|&m| m == n);
                        let expected = if reference.contains_key(&name) {
                            Outcome::NameTaken
                        } else if let Some(n) = number {
                            if taken(n) { Outcome::NumberTaken } else { Outcome::Ok }
                        } else {
                            Outcome::Ok
                        };
                        let mut input = NewUser::new(name.as_str());
                        if let Some(n) = number {
                            input = input.number(n);
                        }
                        let got = match users.create(input).await {
                            Ok(u) => {
                                let n = u.number().expect("numbered");
                                if number.is_none() {
                                    // Automatic numbers increase and skip taken ones.
                                    assert!(n >= next_auto && !taken(n), "auto number {n}");
                                    next_auto = n + 1;
                                }
                                reference.insert(name, n);
                                Outcome::Ok
                            }
                            Err(Error::NameTaken { .. }) => Outcome::NameTaken,
                            Err(Error::NumberTaken { .. }) => Outcome::NumberTaken,
                            Err(e) => panic!("unexpected {e}"),
                        };
                        (expected, got)
                    }
                    Op::SetNumber { name, number } => {
                        let name = format!("user{name}");
                        let expected = match reference.get(&name) {
                            None => Outcome::NotFound,
                            Some(&own) if own == number => Outcome::Ok,
                            Some(_) if reference.values().any(|&m| m == number) => {
                                Outcome::NumberTaken
                            }
                            Some(_) => Outcome::Ok,
                        };
                        let got = match users.update(&name, "number", number as i64).await {
                            Ok(u) => {
                                assert_eq!(u.number(), Some(number));
                                reference.insert(name, number);
                                Outcome::Ok
                            }
                            Err(Error::NotFound { .. }) => Outcome::NotFound,
                            Err(Error::NumberTaken { .. }) => Outcome::NumberTaken,
                            Err(e) => panic!("unexpected {e}"),
                        };
                        (expected, got)
                    }
                    Op::Delete { name } => {
                        let name = format!("user{name}");
                        let expected = Outcome::Deleted(reference.remove(&name).is_some());
                        let got = Outcome::Deleted(users.delete(&name).await.expect("delete"));
                        (expected, got)
                    }
                };
                assert_eq!(got, expected);
            }
            let stored: BTreeMap<String, u64> = users
                .list(None, 100)
                .await
                .expect("list")
                .into_iter()
                .map(|u| (u.name().to_owned(), u.number().expect("numbered")))
                .collect();
            assert_eq!(stored, reference);
            for (name, n) in &reference {
                let u = users.get_by_number(*n).await.expect("get").expect("by number");
                assert_eq!(u.name(), name);
            }
        });
    }
}
