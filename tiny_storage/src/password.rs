//! Password hashing: argon2id with OWASP parameters, PHC strings, run on
//! blocking threads behind a semaphore.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{
    self, Output, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use crate::error::{Error, ModelError, Result};
use crate::value::Secret;

/// Longest password accepted, in bytes. Longer ones are refused before any
/// hashing, so the work per login is bounded.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Largest memory cost (KiB) accepted in a stored hash: 1 GiB.
const MAX_STORED_MEMORY_KIB: u32 = 1 << 20;
/// Largest time cost accepted in a stored hash.
const MAX_STORED_ITERATIONS: u32 = 64;
/// Largest parallelism accepted in a stored hash.
const MAX_STORED_LANES: u32 = 64;
/// Length of the hash output in bytes.
const OUTPUT_LEN: usize = 32;

/// The argon2id cost parameters new password hashes are made with.
///
/// The default is [`PasswordParams::OWASP`] (m = 19456 KiB, t = 2, p = 1,
/// from the OWASP Password Storage Cheat Sheet). [`new`](Self::new) accepts
/// only parameters at least that costly. Hashes stored with other parameters
/// (for example by an older release) still verify, and are re-hashed with
/// these on the next successful verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordParams {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self::OWASP
    }
}

impl PasswordParams {
    /// m = 19456 KiB (19 MiB), t = 2, p = 1.
    pub const OWASP: Self = PasswordParams {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };

    /// Parameters at least as costly as [`OWASP`](Self::OWASP) in memory and
    /// iterations, and at most 1 GiB, 64 iterations and 64 lanes.
    pub fn new(memory_kib: u32, iterations: u32, parallelism: u32) -> Result<Self, ModelError> {
        let check = |what, ok: bool, expected: String, actual: u32| {
            if ok {
                Ok(())
            } else {
                Err(ModelError::InvalidSetting {
                    what,
                    expected,
                    actual: actual.to_string(),
                })
            }
        };
        let (m, t) = (Self::OWASP.memory_kib, Self::OWASP.iterations);
        check(
            "argon2 memory cost (KiB)",
            (m..=MAX_STORED_MEMORY_KIB).contains(&memory_kib),
            format!("{m} to {MAX_STORED_MEMORY_KIB}"),
            memory_kib,
        )?;
        check(
            "argon2 iterations",
            (t..=MAX_STORED_ITERATIONS).contains(&iterations),
            format!("{t} to {MAX_STORED_ITERATIONS}"),
            iterations,
        )?;
        check(
            "argon2 parallelism",
            (1..=MAX_STORED_LANES).contains(&parallelism),
            format!("1 to {MAX_STORED_LANES}"),
            parallelism,
        )?;
        Ok(PasswordParams {
            memory_kib,
            iterations,
            parallelism,
        })
    }

    /// **Insecure**: the cheapest argon2id parameters (m = 8 KiB, t = 1,
    /// p = 1), so that tests creating many users run fast in debug builds.
    ///
    /// Only compiled with the `test-util` feature, which belongs in
    /// `[dev-dependencies]`: a production build cannot reach it. Hashes made
    /// with it are upgraded as soon as a store opened with the real
    /// parameters verifies them.
    #[cfg(any(test, feature = "test-util"))]
    pub fn insecure_for_tests() -> Self {
        PasswordParams {
            memory_kib: 8,
            iterations: 1,
            parallelism: 1,
        }
    }

    /// Memory cost in KiB.
    pub fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// Time cost (passes over memory).
    pub fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Degree of parallelism (lanes).
    pub fn parallelism(&self) -> u32 {
        self.parallelism
    }

    fn argon2(&self) -> Result<Params> {
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(OUTPUT_LEN),
        )
        .map_err(|e| Error::Hashing {
            reason: format!("argon2 refused its parameters: {e}"),
        })
    }
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Wrong password, no hash stored, or no such user.
    Wrong,
    /// Right password; `rehash` when the stored hash has other parameters.
    Right { rehash: bool },
}

/// Hashes and verifies passwords on blocking threads, at most `permits` at a time.
#[derive(Debug)]
pub(crate) struct Hasher {
    params: PasswordParams,
    argon: Params,
    permits: Arc<Semaphore>,
    /// A well-formed hash of nothing anybody knows, with the current
    /// parameters: verified against for unknown users, so they cost the same.
    dummy: String,
}

/// The process-wide hashing permits: one per core, shared by every [`Users`]
/// handle that does not bring its own, so several user stores in one process
/// still cannot occupy more than the cores with argon2.
///
/// [`Users`]: crate::Users
pub(crate) fn shared_permits() -> Arc<Semaphore> {
    static PERMITS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    PERMITS
        .get_or_init(|| Arc::new(Semaphore::new(cores())))
        .clone()
}

/// The number of cores available to this process (at least 1).
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Hasher {
    pub(crate) fn new(params: PasswordParams, permits: Arc<Semaphore>) -> Result<Self> {
        let argon = params.argon2()?;
        let salt = SaltString::generate(&mut OsRng);
        let mut out = [0u8; OUTPUT_LEN];
        OsRng.fill_bytes(&mut out);
        let out = Output::new(&out).map_err(hashing)?;
        let dummy = format!(
            "$argon2id$v=19$m={},t={},p={}${}${}",
            params.memory_kib,
            params.iterations,
            params.parallelism,
            salt.as_str(),
            out
        );
        Ok(Hasher {
            params,
            argon,
            permits,
            dummy,
        })
    }

    pub(crate) fn params(&self) -> PasswordParams {
        self.params
    }

    /// A PHC string for `password` with a fresh random salt.
    pub(crate) async fn hash(&self, password: &Secret) -> Result<String> {
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.argon.clone());
        let password = password.clone();
        self.blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon
                .hash_password(password.expose().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(hashing)
        })
        .await?
    }

    /// Check `password` against `stored` (a PHC string); with no stored hash,
    /// against a dummy one, so that the answer takes the same time.
    ///
    /// `Err(reason)` inside means the stored hash cannot be read.
    pub(crate) async fn verify(
        &self,
        password: &Secret,
        stored: Option<&str>,
    ) -> Result<Result<Verdict, String>> {
        let real = stored.is_some();
        let phc = stored.unwrap_or(&self.dummy).to_owned();
        let password = password.clone();
        let target = self.params;
        let verdict = self
            .blocking(move || check(&password, &phc, target))
            .await?;
        Ok(match verdict {
            Ok(Verdict::Right { .. }) if !real => Ok(Verdict::Wrong),
            v => v,
        })
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Hashing {
                reason: "the hashing permits were closed".to_owned(),
            })?;
        tokio::task::spawn_blocking(move || {
            let out = f();
            drop(permit);
            out
        })
        .await
        .map_err(|e| Error::Hashing {
            reason: format!("the blocking hashing task failed: {e}"),
        })
    }
}

fn check(password: &Secret, phc: &str, target: PasswordParams) -> Result<Verdict, String> {
    let hash = PasswordHash::new(phc).map_err(|e| format!("stored password hash: {e}"))?;
    let algorithm = Algorithm::try_from(hash.algorithm).map_err(|_| {
        format!(
            "stored password hash uses {}, expected argon2",
            hash.algorithm
        )
    })?;
    let params = Params::try_from(&hash).map_err(|e| format!("stored password hash: {e}"))?;
    if params.m_cost() > MAX_STORED_MEMORY_KIB
        || params.t_cost() > MAX_STORED_ITERATIONS
        || params.p_cost() > MAX_STORED_LANES
    {
        return Err(format!(
            "stored password hash costs m={},t={},p={}, beyond the accepted maximum",
            params.m_cost(),
            params.t_cost(),
            params.p_cost()
        ));
    }
    match Argon2::default().verify_password(password.expose().as_bytes(), &hash) {
        Ok(()) => {
            let current = algorithm == Algorithm::Argon2id
                && hash.version == Some(Version::V0x13.into())
                && params.m_cost() == target.memory_kib
                && params.t_cost() == target.iterations
                && params.p_cost() == target.parallelism
                && hash.hash.is_some_and(|h| h.len() == OUTPUT_LEN);
            Ok(Verdict::Right { rehash: !current })
        }
        Err(password_hash::Error::Password) => Ok(Verdict::Wrong),
        Err(e) => Err(format!("stored password hash: {e}")),
    }
}

fn hashing(e: password_hash::Error) -> Error {
    Error::Hashing {
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hasher(params: PasswordParams) -> Hasher {
        Hasher::new(params, Arc::new(Semaphore::new(2))).expect("valid params")
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let h = hasher(PasswordParams::insecure_for_tests());
        let phc = h.hash(&Secret::new("pw")).await.expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{phc}");
        let right = h
            .verify(&Secret::new("pw"), Some(&phc))
            .await
            .expect("verify");
        assert_eq!(right, Ok(Verdict::Right { rehash: false }));
        let wrong = h
            .verify(&Secret::new("pW"), Some(&phc))
            .await
            .expect("verify");
        assert_eq!(wrong, Ok(Verdict::Wrong));
        // Two hashes of one password differ (random salt).
        assert_ne!(phc, h.hash(&Secret::new("pw")).await.expect("hash"));
    }

    #[tokio::test]
    async fn missing_hash_never_verifies() {
        let h = hasher(PasswordParams::insecure_for_tests());
        assert!(h.dummy.starts_with("$argon2id$v=19$m=8,t=1,p=1$"));
        let v = h.verify(&Secret::new(""), None).await.expect("verify");
        assert_eq!(v, Ok(Verdict::Wrong));
    }

    #[tokio::test]
    async fn other_parameters_ask_for_a_rehash() {
        let weak = hasher(PasswordParams::insecure_for_tests());
        let phc = weak.hash(&Secret::new("pw")).await.expect("hash");
        let target = PasswordParams {
            memory_kib: 16,
            iterations: 1,
            parallelism: 1,
        };
        let v = check(&Secret::new("pw"), &phc, target);
        assert_eq!(v, Ok(Verdict::Right { rehash: true }));
        // argon2i hashes verify too, and are upgraded.
        let argon2i = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x13,
            PasswordParams::insecure_for_tests()
                .argon2()
                .expect("params"),
        );
        let salt = SaltString::generate(&mut OsRng);
        let phc = argon2i
            .hash_password(b"pw", &salt)
            .expect("hash")
            .to_string();
        let v = check(
            &Secret::new("pw"),
            &phc,
            PasswordParams::insecure_for_tests(),
        );
        assert_eq!(v, Ok(Verdict::Right { rehash: true }));
    }

    #[tokio::test]
    async fn hashing_waits_for_a_permit() {
        let permits = Arc::new(Semaphore::new(1));
        let h = Hasher::new(PasswordParams::insecure_for_tests(), permits.clone()).expect("params");
        let held = permits.clone().acquire_owned().await.expect("permit");
        let pw = Secret::new("pw");
        let waiting = tokio::time::timeout(Duration::from_millis(200), h.hash(&pw)).await;
        assert!(waiting.is_err(), "hashed without a permit");
        let phc = h.verify(&pw, None);
        tokio::pin!(phc);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut phc)
                .await
                .is_err(),
            "verified without a permit"
        );
        drop(held);
        assert_eq!(phc.await.expect("verify"), Ok(Verdict::Wrong));
        assert_eq!(permits.available_permits(), 1, "the permit is given back");
    }

    #[test]
    fn unreadable_hashes_are_reported() {
        let t = PasswordParams::insecure_for_tests();
        assert!(check(&Secret::new("pw"), "plain text", t).is_err());
        let huge = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let err = check(&Secret::new("pw"), huge, t).expect_err("too costly");
        assert!(err.contains("beyond the accepted maximum"), "{err}");
        let scrypt = "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E";
        assert!(check(&Secret::new("pw"), scrypt, t).is_err());
    }

    #[test]
    fn params_below_owasp_are_refused() {
        assert_eq!(PasswordParams::default(), PasswordParams::OWASP);
        assert!(PasswordParams::new(19_456, 2, 1).is_ok());
        assert!(PasswordParams::new(65_536, 3, 4).is_ok());
        let err = PasswordParams::new(4096, 2, 1).expect_err("too weak");
        assert_eq!(
            err.to_string(),
            "invalid argon2 memory cost (KiB): expected 19456 to 1048576, got 4096"
        );
        assert!(PasswordParams::new(19_456, 1, 1).is_err());
        assert!(PasswordParams::new(19_456, 2, 0).is_err());
    }
}
