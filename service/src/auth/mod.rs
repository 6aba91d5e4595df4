//! Who is connecting: finding the JWT in a WebSocket upgrade request and verifying it.
//!
//! The platform's identity service issues the tokens; herald only verifies them. An [`Authenticator`]
//! is built once at start-up from an [`AuthConfig`] (a bad key fails start-up, not the first
//! connection) and shared by every connection behind an `Arc`.
//!
//! Verification, in order:
//!
//! 1. The token must be three dot-separated base64url segments whose header is a JWS header
//!    (`jsonwebtoken::decode_header`).
//! 2. The header's `alg` must be exactly the algorithm the configured key implies (HS256 for a shared
//!    secret, RS256 or ES256 for a PEM public key). The token never chooses how it is checked, which
//!    rules out `alg: none` and the RS256-to-HS256 confusion attack (an attacker signing with the
//!    public key as an HMAC secret). A header naming `crit` extensions is rejected, because RFC 7515
//!    requires refusing extensions the recipient does not understand, and herald understands none.
//! 3. The signature (by `jsonwebtoken`).
//! 4. `exp` is required; `nbf` and `iat` are honoured when present; all three with the configured
//!    leeway for clock skew.
//! 5. `aud` and `iss` are required and must match when configured, and ignored when not.
//! 6. `sub` must be a non-empty string: it is the user id, and names the Redis channel `ws:{sub}`.
//!    It must name a user by the platform's rule (`herald::runtime::event::is_real_user_id`): the
//!    placeholder `"unknown"` never does.
//!
//! Tokens are bearer credentials: nothing here puts one into an error, and `ExtractedToken` holds
//! its token as a [`secrecy::SecretString`], whose `Debug` redacts it, so logging either is safe. The
//! HS256 secret is held the same way.
//!
//! The parts:
//!
//! - `extract`: where the token is in an upgrade request ([`extract_token`]).
//! - `keys`: the configured key ([`KeyConfig`]) and its checks at start-up ([`AuthSetupError`]).
//! - `token`: verification ([`Authenticator`]) and why a token is refused ([`AuthError`]).
//!
//! Decoding is left to crates: `jsonwebtoken` (header, signature, claims), `form_urlencoded` (the
//! query string), `headers` (the `Authorization` header).

mod extract;
mod keys;
mod token;

pub(crate) use extract::extract_token;
pub use keys::AuthSetupError;
pub(crate) use keys::KeyConfig;
pub(crate) use token::{AuthError, Authenticator, Verified};

/// Everything [`Authenticator::new`] needs.
#[derive(Debug)]
pub(crate) struct AuthConfig {
    /// The verification key, which also pins the algorithm.
    pub(crate) key: KeyConfig,
    /// The `aud` every token must carry (e.g. `huleedu-platform`). When `None`, `aud` is not checked
    /// at all, even if a token carries one: older deployments issue tokens with an `aud` before the
    /// gateway is configured to expect it, and rejecting them would lock every user out.
    pub(crate) audience: Option<String>,
    /// The `iss` every token must carry (e.g. `huleedu-identity-service`); unchecked when `None`.
    pub(crate) issuer: Option<String>,
    /// Clock skew tolerated when checking `exp`, `nbf` and `iat`, in seconds (the service's default
    /// is 30). At most one hour.
    pub(crate) leeway_seconds: u64,
}

/// An HS256 token for `user`, valid for `lifetime`, carrying the configured `aud` and `iss` (when
/// set, verification requires them): what embedded mode prints and its demo page uses, so that a
/// person can connect on a fresh machine.
pub(crate) fn development_token(
    secret: &[u8],
    user: &str,
    lifetime: std::time::Duration,
    audience: Option<&str>,
    issuer: Option<&str>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = jsonwebtoken::get_current_timestamp();
    let mut claims = serde_json::json!({ "sub": user, "iat": now, "exp": now + lifetime.as_secs() });
    if let Some(audience) = audience {
        claims["aud"] = audience.into();
    }
    if let Some(issuer) = issuer {
        claims["iss"] = issuer.into();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
}
