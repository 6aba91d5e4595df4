//! HS256 tokens as the platform's identity service issues them: `sub` is the user id, with `exp`,
//! `iat` and, when the server requires them, `aud` and `iss`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
}

/// A token for `user`, signed with `secret`, valid for `lifetime_seconds` from now.
pub fn sign(
    secret: &str,
    user: &str,
    audience: Option<&str>,
    issuer: Option<&str>,
    lifetime_seconds: u64,
) -> Result<String, String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    let claims = Claims { sub: user, exp: now + lifetime_seconds, iat: now, aud: audience, iss: issuer };
    jsonwebtoken::encode(&Header::default(), &claims, &EncodingKey::from_secret(secret.as_bytes()))
        .map_err(|error| format!("cannot sign a token for {user}: {error}"))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    use super::*;

    #[test]
    fn tokens_carry_the_user_and_the_scope_asked_for() {
        let token = sign("s3cret", "teacher-1", Some("huleedu-platform"), Some("huleedu-identity"), 60).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&["huleedu-platform"]);
        validation.set_issuer(&["huleedu-identity"]);
        let decoded =
            jsonwebtoken::decode::<serde_json::Value>(&token, &DecodingKey::from_secret(b"s3cret"), &validation)
                .unwrap();
        assert_eq!(decoded.claims["sub"], "teacher-1");
        let unscoped = sign("s3cret", "teacher-1", None, None, 60).unwrap();
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_aud = false;
        let decoded =
            jsonwebtoken::decode::<serde_json::Value>(&unscoped, &DecodingKey::from_secret(b"s3cret"), &validation)
                .unwrap();
        assert!(decoded.claims.get("aud").is_none() && decoded.claims.get("iss").is_none());
    }
}
