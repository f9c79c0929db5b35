//! Permissions for a chat product in a sled directory: shared groups, a
//! scoped role (owner of one chat group), a guarded function, a personal
//! grant, and the audit log of it all.
//!
//! ```sh
//! cargo run -p aucheck --example permissions
//! ```
#![expect(clippy::print_stdout, reason = "an example shows its results")]

use aucheck::{AuditAction, AuthManager, Caller};
use tiny_storage::NewUser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = nopi::open(&format!("sled:{}", dir.path().display())).await?;
    let auth = AuthManager::builder(&store)
        .permissions(["group.create", "group.post", "group.kick", "user.ban"])
        .role("owner", ["group.post", "group.kick"])
        .role("member", ["group.post"])
        .group("users", ["group.create"])
        .group("moderators", ["group.create", "user.ban"])
        .build()
        .await?;

    // Every change names its actor, for the audit log.
    let root = auth.by("root");
    root.create_user(
        NewUser::new("alice").password("alice's passphrase"),
        Some("users"),
    )
    .await?;
    root.create_user(
        NewUser::new("bob").password("bob's passphrase"),
        Some("users"),
    )
    .await?;
    root.create_user(
        NewUser::new("mod").password("mod's passphrase"),
        Some("moderators"),
    )
    .await?;

    // Deny by default: what no group or role gives is refused.
    auth.check("alice", "group.create").await?;
    let denied = auth
        .check("alice", "user.ban")
        .await
        .expect_err("no group or role gives alice user.ban");
    println!("alice may create groups; user.ban: {denied}");

    // Scoped roles: alice owns the chat group `rust`, bob is a member there.
    root.set_role("alice", "group/rust", "owner").await?;
    root.set_role("bob", "group/rust", "member").await?;
    let kick = auth.guard("group.kick", |caller: Caller, target: &str| {
        let by = caller.user;
        let target = target.to_owned();
        async move { format!("{by} kicked {target}") }
    })?;
    println!("{}", kick.call_in("alice", "group/rust", "bob").await?);
    assert!(kick.call_in("bob", "group/rust", "alice").await.is_err());
    assert!(kick.call_in("alice", "group/go", "bob").await.is_err());
    println!("bob may not kick in group/rust; alice may not kick in group/go");

    // A personal grant copies bob's group for him alone.
    root.grant("bob", "user.ban").await?;
    auth.check("bob", "user.ban").await?;
    assert!(auth.check("alice", "user.ban").await.is_err());
    println!("bob was granted user.ban; alice still is not");

    // The audit log, newest first, denials included.
    auth.audit().flush().await?;
    let log = auth.audit().newest(100).await?;
    for entry in log.iter().take(4) {
        println!(
            "audit: {} -> {}: {:?}",
            entry.actor, entry.subject, entry.action
        );
    }
    let denials = log
        .iter()
        .filter(|e| matches!(e.action, AuditAction::Denied { .. }))
        .count();
    println!("{} entries, {denials} of them denials", log.len());
    assert!(denials >= 3);
    Ok(())
}

#[test]
fn runs() {
    main().expect("the example runs");
}
