//! JWT access and refresh tokens, validated as RFC 8725 asks.
//!
//! - One algorithm, pinned: HS256 with a key of at least 256 bits from
//!   `api.jwt_key_file`. A token naming any other algorithm (`none`, RS256, …) is
//!   refused before its signature is looked at, so an RS/HS confusion cannot work.
//! - `exp`, `nbf`, `iss`, `aud` and `sub` are required and checked (a leeway of
//!   [`LEEWAY_SECS`] for clock skew between replicas).
//! - The header's `typ` tells the two kinds apart: `at+jwt` (RFC 9068) for access
//!   tokens, `refresh+jwt` for refresh tokens; neither stands in for the other.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// `typ` of access tokens.
pub const ACCESS_TYP: &str = "at+jwt";
/// `typ` of refresh tokens.
pub const REFRESH_TYP: &str = "refresh+jwt";
/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 5;
/// Shortest key accepted, in bytes (256 bits).
pub const MIN_KEY_BYTES: usize = 32;
/// Longest token looked at; anything longer is refused unread.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Which kind of token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Access,
    Refresh,
}

impl Kind {
    const fn typ(self) -> &'static str {
        match self {
            Kind::Access => ACCESS_TYP,
            Kind::Refresh => REFRESH_TYP,
        }
    }
}

/// The claims of both kinds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id, as a string.
    pub sub: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique per token.
    pub jti: String,
    /// Refresh tokens: the family (the id of the login's first refresh token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fam: Option<i64>,
}

/// Why a token is refused; every variant is answered 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token too long")]
    TooLong,
    #[error("token is not valid: {0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet (nbf)")]
    NotYetValid,
    #[error("token was issued for another audience or by another issuer")]
    WrongAudienceOrIssuer,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token algorithm is not accepted (only HS256)")]
    WrongAlgorithm,
    #[error("token type is {found}, {expected} needed")]
    WrongType { found: String, expected: String },
}

impl JwtError {
    /// A short reason for the audit log and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::TooLong => "too_long",
            JwtError::Invalid(_) => "malformed",
            JwtError::Expired => "expired",
            JwtError::NotYetValid => "not_yet_valid",
            JwtError::WrongAudienceOrIssuer => "wrong_audience_or_issuer",
            JwtError::BadSignature => "bad_signature",
            JwtError::WrongAlgorithm => "wrong_algorithm",
            JwtError::WrongType { .. } => "wrong_type",
        }
    }
}

/// Signs and validates the federator's JWTs.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
    audience: String,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Keys from the secret (at least [`MIN_KEY_BYTES`]).
    pub fn new(secret: &[u8], issuer: &str, audience: &str) -> Result<JwtKeys, String> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(format!(
                "the key has {} bytes; HS256 needs at least {MIN_KEY_BYTES} (256 bits)",
                secret.len()
            ));
        }
        Ok(JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// A signed token of `kind` for `user_id`, valid from `now` for `ttl_secs`.
    pub fn issue(
        &self,
        kind: Kind,
        user_id: i64,
        now: i64,
        ttl_secs: i64,
        jti: String,
        family: Option<i64>,
    ) -> Result<String, String> {
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_string(),
            iat: now,
            nbf: now,
            exp: now + ttl_secs,
            jti,
            fam: family,
        };
        self.sign(kind.typ(), &claims)
    }

    /// Signs arbitrary claims with `typ` (tests build hostile tokens with it).
    pub fn sign(&self, typ: &str, claims: &Claims) -> Result<String, String> {
        let header = Header {
            typ: Some(typ.to_owned()),
            ..Header::new(Algorithm::HS256)
        };
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| e.to_string())
    }

    /// Validates `token` as a `kind` token and returns its claims.
    pub fn validate(&self, token: &str, kind: Kind) -> Result<Claims, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLong);
        }
        let mut v = Validation::new(Algorithm::HS256);
        v.algorithms = vec![Algorithm::HS256];
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => JwtError::Expired,
                K::ImmatureSignature => JwtError::NotYetValid,
                K::InvalidAudience | K::InvalidIssuer => JwtError::WrongAudienceOrIssuer,
                K::InvalidSignature => JwtError::BadSignature,
                K::InvalidAlgorithm | K::InvalidAlgorithmName => JwtError::WrongAlgorithm,
                _ => JwtError::Invalid(e.to_string()),
            }
        })?;
        let found = data.header.typ.unwrap_or_default();
        if !found.eq_ignore_ascii_case(kind.typ()) {
            return Err(JwtError::WrongType {
                found: if found.is_empty() {
                    "missing".to_owned()
                } else {
                    found
                },
                expected: kind.typ().to_owned(),
            });
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(&[7u8; 32], "pga-federator", "pga-api").unwrap()
    }

    fn now() -> i64 {
        chrono::Utc::now().timestamp()
    }

    #[test]
    fn an_access_token_round_trips_and_is_not_a_refresh_token() {
        let k = keys();
        let t = k
            .issue(Kind::Access, 42, now(), 900, "j1".into(), None)
            .unwrap();
        let c = k.validate(&t, Kind::Access).unwrap();
        assert_eq!(c.sub, "42");
        assert_eq!(
            k.validate(&t, Kind::Refresh).unwrap_err().reason(),
            "wrong_type"
        );
        let r = k
            .issue(Kind::Refresh, 42, now(), 900, "j2".into(), Some(9))
            .unwrap();
        assert_eq!(k.validate(&r, Kind::Refresh).unwrap().fam, Some(9));
        assert_eq!(
            k.validate(&r, Kind::Access).unwrap_err().reason(),
            "wrong_type"
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(
            JwtKeys::new(&[1u8; 31], "i", "a")
                .unwrap_err()
                .contains("256 bits")
        );
    }

    #[test]
    fn time_audience_issuer_and_signature_are_checked() {
        let k = keys();
        let t = now();
        let expired = k
            .issue(Kind::Access, 1, t - 1000, 10, "a".into(), None)
            .unwrap();
        assert_eq!(k.validate(&expired, Kind::Access), Err(JwtError::Expired));
        let future = k
            .issue(Kind::Access, 1, t + 600, 900, "b".into(), None)
            .unwrap();
        assert_eq!(
            k.validate(&future, Kind::Access),
            Err(JwtError::NotYetValid)
        );
        let other = JwtKeys::new(&[7u8; 32], "pga-federator", "someone-else").unwrap();
        let wrong_aud = other
            .issue(Kind::Access, 1, t, 900, "c".into(), None)
            .unwrap();
        assert_eq!(
            k.validate(&wrong_aud, Kind::Access),
            Err(JwtError::WrongAudienceOrIssuer)
        );
        let wrong_key = JwtKeys::new(&[8u8; 32], "pga-federator", "pga-api").unwrap();
        let forged = wrong_key
            .issue(Kind::Access, 1, t, 900, "d".into(), None)
            .unwrap();
        assert_eq!(
            k.validate(&forged, Kind::Access),
            Err(JwtError::BadSignature)
        );
        assert_eq!(
            k.validate(&"a".repeat(5000), Kind::Access),
            Err(JwtError::TooLong)
        );
    }
}
