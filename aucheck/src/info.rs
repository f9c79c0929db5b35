//! What reads return: [`Member`] and [`GroupInfo`].

use uuid::Uuid;

/// A user's aucheck record: who they are and which group gives them their
/// permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// The user's name (tiny_storage's unique name).
    pub name: String,
    /// The user's uuid: it names their personal group.
    pub id: Uuid,
    /// Their group: a shared group's name, or their personal group's name
    /// (the uuid, hyphenated).
    pub group: String,
    /// True when `group` is the user's personal group.
    pub personal: bool,
}

/// A permission group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// The group's name (a uuid for a personal group).
    pub name: String,
    /// The group holds every permission, including ones declared later.
    pub all: bool,
    /// The declared permissions it holds, in declaration order (`["*"]` when
    /// `all`).
    pub permissions: Vec<String>,
    /// For a personal group: its user.
    pub personal_of: Option<String>,
    /// A deletion started and has not finished.
    pub deleting: bool,
}
