//! Password hashing: Argon2id in PHC strings.
//!
//! The parameters come from `[api]` (`argon2_memory_kib`, `argon2_iterations`,
//! `argon2_parallelism`) and may never be set below OWASP's minimum for Argon2id
//! (m = 19 MiB, t = 2, p = 1, the `argon2` crate's default). A stored hash made
//! with weaker parameters (or another algorithm or version) still verifies, and
//! [`Hasher::needs_rehash`] says to replace it at the next successful login.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// OWASP's minimum memory cost for Argon2id, in KiB (19 MiB).
pub const MIN_MEMORY_KIB: u32 = 19 * 1024;
/// OWASP's minimum iterations at that memory.
pub const MIN_ITERATIONS: u32 = 2;

/// Argon2id parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        HashParams {
            memory_kib: MIN_MEMORY_KIB,
            iterations: MIN_ITERATIONS,
            parallelism: 1,
        }
    }
}

/// A password hash that cannot be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("Argon2 parameters refused: {0}")]
    Params(String),
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

/// Hashes and verifies passwords with fixed parameters.
#[derive(Debug, Clone)]
pub struct Hasher {
    params: HashParams,
    argon: Argon2<'static>,
    /// A hash of a random password with the same parameters, verified against when
    /// the user does not exist so that the answer takes as long as for one who does.
    dummy: String,
}

impl Hasher {
    /// A hasher with `params` (refused below the OWASP minimum).
    pub fn new(params: HashParams) -> Result<Hasher, PasswordError> {
        if params.memory_kib < MIN_MEMORY_KIB || params.iterations < MIN_ITERATIONS {
            return Err(PasswordError::Params(format!(
                "m = {} KiB, t = {} is below OWASP's minimum (m = {MIN_MEMORY_KIB} KiB, t = {MIN_ITERATIONS})",
                params.memory_kib, params.iterations
            )));
        }
        let p = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| PasswordError::Params(e.to_string()))?;
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, p);
        let mut h = Hasher {
            params,
            argon,
            dummy: String::new(),
        };
        let mut random = [0u8; 24];
        getrandom::getrandom(&mut random).map_err(|e| PasswordError::Hash(e.to_string()))?;
        h.dummy = h.hash(&format!("{random:?}"))?;
        Ok(h)
    }

    pub fn params(&self) -> HashParams {
        self.params
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`) for `password`.
    pub fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    }

    /// Whether `password` matches `phc`. A missing or unreadable hash never
    /// matches, after the same work as a real check.
    pub fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let parsed = phc.and_then(|p| PasswordHash::new(p).ok());
        match parsed {
            Some(h) => self.argon.verify_password(password.as_bytes(), &h).is_ok(),
            None => {
                if let Ok(h) = PasswordHash::new(&self.dummy) {
                    let _matches = self.argon.verify_password(password.as_bytes(), &h).is_ok();
                }
                false
            }
        }
    }

    /// Whether `phc` was made with another algorithm or version, or with any
    /// parameter below the current ones: then it is replaced at the next login.
    pub fn needs_rehash(&self, phc: &str) -> bool {
        let Ok(h) = PasswordHash::new(phc) else {
            return true;
        };
        if h.algorithm.as_str() != "argon2id" || h.version != Some(0x13) {
            return true;
        }
        let Ok(p) = Params::try_from(&h) else {
            return true;
        };
        p.m_cost() < self.params.memory_kib
            || p.t_cost() < self.params.iterations
            || p.p_cost() < self.params.parallelism
    }
}

/// A password for `users add` when none is given: 20 characters from 62, about
/// 119 bits.
pub fn generate() -> Result<String, getrandom::Error> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(20);
    while out.len() < 20 {
        let mut b = [0u8; 32];
        getrandom::getrandom(&mut b)?;
        // Rejection sampling: 248 = 4 × 62 keeps every character equally likely.
        out.extend(
            b.iter()
                .filter(|&&x| x < 248)
                .map(|&x| ALPHABET[(x % 62) as usize] as char)
                .take(20 - out.len()),
        );
    }
    Ok(out)
}

/// Refuses passwords a person should not be allowed to set.
pub fn check_strength(password: &str, username: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < 12 {
        return Err(format!(
            "the password has {n} characters; use at least 12 (a passphrase of a few words works)"
        ));
    }
    if n > 256 {
        return Err("the password is longer than 256 characters".to_owned());
    }
    if password.eq_ignore_ascii_case(username) {
        return Err("the password must not be the user name".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_weaker_ones_are_rehashed() {
        let h = Hasher::new(HashParams::default()).unwrap();
        let phc = h.hash("correct horse battery").unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(h.verify("correct horse battery", Some(&phc)));
        assert!(!h.verify("wrong", Some(&phc)));
        assert!(!h.verify("anything", None));
        assert!(!h.verify("anything", Some("not a phc string")));
        assert!(!h.needs_rehash(&phc));

        let stronger = Hasher::new(HashParams {
            memory_kib: MIN_MEMORY_KIB,
            iterations: 3,
            parallelism: 1,
        })
        .unwrap();
        // The old hash still verifies, and is due for a rehash.
        assert!(stronger.verify("correct horse battery", Some(&phc)));
        assert!(stronger.needs_rehash(&phc));
        let argon2i =
            "$argon2i$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A";
        assert!(h.needs_rehash(argon2i));
    }

    #[test]
    fn parameters_below_owasp_are_refused() {
        let e = Hasher::new(HashParams {
            memory_kib: 4096,
            iterations: 2,
            parallelism: 1,
        })
        .unwrap_err();
        assert!(e.to_string().contains("OWASP"), "{e}");
    }

    #[test]
    fn generated_passwords_are_long_and_differ() {
        let a = generate().unwrap();
        let b = generate().unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert!(check_strength(&a, "admin").is_ok());
        assert!(check_strength("short", "admin").is_err());
        assert!(check_strength("administrator", "Administrator").is_err());
    }
}
