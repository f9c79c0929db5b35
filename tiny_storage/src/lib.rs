//! User modelling and accounts: describe your users once — attributes with
//! defaults and validators, a unique name, an argon2id password, an
//! auto-increment number, a creation time — then create, verify, update,
//! delete and list them in any [`nopi`] store (memory, sled, PostgreSQL).
//!
//! The parts every IM product writes first and often gets wrong are done
//! here once: passwords are hashed with argon2id at the OWASP parameters
//! (m = 19456 KiB, t = 2, p = 1) on blocking threads behind a per-core
//! semaphore, stored as PHC strings, upgraded when their parameters are
//! outdated, never stored, returned or printed in clear; an unknown user and
//! a wrong password take the same time and give the same error; duplicate
//! names and numbers are refused atomically, also under concurrent creation;
//! the model's schema is stored with the data and a changed model is
//! detected on open.
//!
//! # Example
//!
//! ```
//! use tiny_storage::{Attribute, NewUser, Secret, UserModel, Users, Validator};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let model = UserModel::builder()
//!     .user_name("name")
//!     .password("password")
//!     .number("number")
//!     .created("created")
//!     // The nickname defaults to the name.
//!     .attribute(
//!         Attribute::text("nickname")
//!             .default_with(|user| user.get("name").cloned())
//!             .validate(Validator::length(1..=32)),
//!     )
//!     .attribute(Attribute::text("email").validate(Validator::email()))
//!     .build()?;
//!
//! let store = nopi::open("memory:").await?; // or "sled:./data", "postgres://..."
//! let users = Users::open(&store, model).await?;
//!
//! let alice = users.create(NewUser::new("alice").password("correct horse")).await?;
//! assert_eq!(alice.text("nickname"), Some("alice"));
//! assert_eq!(alice.number(), Some(1));
//!
//! // Log in by name (or by number: `users.verify(1u64, ...)`); a wrong
//! // password and an unknown user look alike.
//! users.verify("alice", "password", "correct horse").await?;
//! assert_eq!(users.get_by_number(1).await?.map(|u| u.name().to_owned()), Some("alice".into()));
//! let wrong = users.verify("alice", "password", "battery staple").await;
//! let unknown = users.verify("mallory", "password", "correct horse").await;
//! assert_eq!(wrong.unwrap_err().to_string(), unknown.unwrap_err().to_string());
//!
//! // Updates are validated; a new password is hashed.
//! let alice = users.update("alice", "nickname", "Al").await?;
//! assert_eq!(alice.text("nickname"), Some("Al"));
//! assert!(users.update("alice", "email", "not an address").await.is_err());
//!
//! assert!(users.delete("alice").await?);
//! assert!(users.get("alice").await?.is_none());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }
//! ```
//!
//! # Concepts
//!
//! - A [`UserModel`] lists [`Attribute`]s. Each has a [`Kind`], is required or
//!   optional, may have a default (a value, or computed from the other
//!   attributes at creation) and [`Validator`]s (non-empty, length, range,
//!   pattern, e-mail shape, or any closure). Failures are typed:
//!   [`Error::Invalid`] names the attribute and the rule.
//! - [`Users`] stores users of one model in a nopi store; [`NewUser`] is the
//!   input to [`Users::create`], [`User`] what comes back (never with the
//!   password). Passwords travel as [`Secret`], which prints as `REDACTED`.
//! - [`PasswordParams`] sets the argon2id cost; the default is OWASP's.
//!
//! # Limits
//!
//! User names are 1 to [`MAX_USER_NAME`] bytes without control characters;
//! passwords 1 to [`MAX_PASSWORD_LEN`] bytes; text values at most
//! [`DEFAULT_MAX_TEXT_LEN`] bytes (configurable); a model has at most
//! [`MAX_ATTRIBUTES`] attributes; a [`Users::list`] page at most [`MAX_PAGE`]
//! users.
//!
//! # Crate features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `postgres` | no | the `postgres://` store URLs (forwards to nopi's `postgres` feature); also runs this crate's account tests on the PostgreSQL at `DATABASE_URL` |
//! | `test-util` | no | `PasswordParams::insecure_for_tests()`: cheap argon2 parameters so tests creating many users run fast. Enable it in `[dev-dependencies]` only. |

mod attribute;
mod error;
mod model;
pub mod name;
mod password;
mod user;
mod users;
mod validator;
mod value;

pub use attribute::{Attribute, Kind};
pub use error::{Error, ModelError, Result, SchemaChange, UserRef};
pub use model::{
    DEFAULT_MAX_TEXT_LEN, MAX_ATTRIBUTE_NAME, MAX_ATTRIBUTES, MAX_TEXT_LEN_LIMIT, MAX_USER_NAME,
    UserModel, UserModelBuilder,
};
pub use password::{MAX_PASSWORD_LEN, PasswordParams};
pub use user::{NewUser, User};
pub use users::{DEFAULT_TREE, MAX_PAGE, Users, UsersBuilder};
pub use validator::Validator;
pub use value::{Attrs, Secret, Value};
