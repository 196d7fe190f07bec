//! API tokens for automation, in the form GitHub and Grafana use: a recognisable
//! prefix, random characters and a checksum.
//!
//! `pga_` + 32 base62 characters (about 190 bits from the OS's random source) + 6
//! base62 characters of CRC-32C over everything before them: 42 characters. The
//! prefix lets secret scanners find a leaked token; the checksum lets the server
//! refuse a mistyped or made-up token without a database lookup. Only the token's
//! SHA-256 is stored; the token itself is shown once. Stored and presented hashes
//! are compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What every API token starts with.
pub const PREFIX: &str = "pga_";
const RANDOM_LEN: usize = 32;
const CHECKSUM_LEN: usize = 6;
/// Length of a whole token.
pub const TOKEN_LEN: usize = PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Why a presented string is not an API token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenFormatError {
    #[error("not an API token: it does not start with pga_ or has the wrong length")]
    Shape,
    #[error("not an API token: its checksum does not match (mistyped or made up)")]
    Checksum,
}

fn base62_fixed(mut n: u64, width: usize) -> String {
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap_or_default()
}

fn checksum(body: &str) -> String {
    base62_fixed(u64::from(crc32c::crc32c(body.as_bytes())), CHECKSUM_LEN)
}

/// A new random API token.
pub fn generate() -> Result<String, getrandom::Error> {
    let mut body = String::with_capacity(TOKEN_LEN);
    body.push_str(PREFIX);
    while body.len() < PREFIX.len() + RANDOM_LEN {
        let mut b = [0u8; 48];
        getrandom::getrandom(&mut b)?;
        // 248 = 4 × 62: rejection sampling keeps the characters uniform.
        for &x in b.iter().filter(|&&x| x < 248) {
            if body.len() == PREFIX.len() + RANDOM_LEN {
                break;
            }
            body.push(BASE62[(x % 62) as usize] as char);
        }
    }
    let sum = checksum(&body);
    body.push_str(&sum);
    Ok(body)
}

/// Checks shape and checksum of a presented token.
pub fn check(token: &str) -> Result<(), TokenFormatError> {
    if token.len() != TOKEN_LEN
        || !token.starts_with(PREFIX)
        || !token[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
    {
        return Err(TokenFormatError::Shape);
    }
    let (body, sum) = token.split_at(TOKEN_LEN - CHECKSUM_LEN);
    if checksum(body).as_bytes().ct_eq(sum.as_bytes()).into() {
        Ok(())
    } else {
        Err(TokenFormatError::Checksum)
    }
}

/// Whether a bearer credential looks like an API token (rather than a JWT).
pub fn looks_like_api_token(credential: &str) -> bool {
    credential.starts_with(PREFIX)
}

/// The SHA-256 of a secret (API token or refresh token), as stored.
pub fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Constant-time equality of two digests.
pub fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// The first characters of a token, safe to show in lists and logs.
pub fn display_prefix(token: &str) -> String {
    token.chars().take(PREFIX.len() + 4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_have_the_shape_and_a_valid_checksum() {
        let t = generate().unwrap();
        assert_eq!(t.len(), TOKEN_LEN);
        assert!(t.starts_with("pga_"));
        assert_eq!(check(&t), Ok(()));
        assert_ne!(t, generate().unwrap());
        assert!(looks_like_api_token(&t));
        assert_eq!(display_prefix(&t).len(), 8);
    }

    #[test]
    fn a_changed_character_breaks_the_checksum() {
        let t = generate().unwrap();
        let mut bytes = t.into_bytes();
        bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
        let changed = String::from_utf8(bytes).unwrap();
        assert_eq!(check(&changed), Err(TokenFormatError::Checksum));
        assert_eq!(check("pga_short"), Err(TokenFormatError::Shape));
        assert_eq!(check(&"x".repeat(TOKEN_LEN)), Err(TokenFormatError::Shape));
        let non_ascii = format!("pga_{}", "é".repeat(19));
        assert_eq!(check(&non_ascii), Err(TokenFormatError::Shape));
    }

    #[test]
    fn digests_compare() {
        let a = digest("pga_x");
        assert_eq!(a.len(), 32);
        assert!(digests_equal(&a, &digest("pga_x")));
        assert!(!digests_equal(&a, &digest("pga_y")));
    }
}
