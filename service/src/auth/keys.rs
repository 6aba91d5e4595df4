//! The verification key: which one is configured, and turning it into a `jsonwebtoken` key at
//! start-up, refusing keys that would make every connection fail (or, for an empty secret, succeed).

use std::fmt;

use jsonwebtoken::{Algorithm, DecodingKey};
use secrecy::{ExposeSecret, SecretSlice};

/// The key that verifies token signatures. It also fixes the one algorithm accepted.
pub(crate) enum KeyConfig {
    /// HS256 with a secret shared with the identity service: the platform's default. Held as a
    /// secret, so `Debug` never shows it.
    Hs256 { secret: SecretSlice<u8> },
    /// RS256 with the identity service's RSA public key, PEM-encoded (`-----BEGIN PUBLIC KEY-----` or
    /// `-----BEGIN RSA PUBLIC KEY-----`).
    Rs256 { public_key_pem: Vec<u8> },
    /// ES256 with the identity service's P-256 public key, PEM-encoded (`-----BEGIN PUBLIC KEY-----`).
    Es256 { public_key_pem: Vec<u8> },
}

impl KeyConfig {
    /// The one algorithm tokens may name.
    pub(super) fn algorithm(&self) -> Algorithm {
        match self {
            KeyConfig::Hs256 { .. } => Algorithm::HS256,
            KeyConfig::Rs256 { .. } => Algorithm::RS256,
            KeyConfig::Es256 { .. } => Algorithm::ES256,
        }
    }
}

/// Written by hand to show a PEM key's size rather than its bytes; the secret redacts itself.
impl fmt::Debug for KeyConfig {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyConfig::Hs256 { secret } => formatter.debug_struct("Hs256").field("secret", secret).finish(),
            KeyConfig::Rs256 { public_key_pem } => formatter
                .debug_struct("Rs256")
                .field("public_key_pem", &format_args!("<{} bytes of PEM>", public_key_pem.len()))
                .finish(),
            KeyConfig::Es256 { public_key_pem } => formatter
                .debug_struct("Es256")
                .field("public_key_pem", &format_args!("<{} bytes of PEM>", public_key_pem.len()))
                .finish(),
        }
    }
}

/// Why an [`AuthConfig`](super::AuthConfig) cannot be used. Each message says what to fix; none
/// contains key material.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// HMAC with an empty key would accept tokens anyone can sign.
    #[error("the HS256 secret is empty: configure the secret the identity service signs tokens with")]
    EmptyHmacSecret,
    /// The key is not a PEM public key block: often a private key, a certificate or a file path
    /// mistaken for the key's contents.
    #[error(
        "the {algorithm} key must be a PEM public key ('-----BEGIN PUBLIC KEY-----'), but {found}: \
         configure the identity service's public key"
    )]
    NotAPublicKeyPem {
        /// The configured algorithm, `RS256` or `ES256`.
        algorithm: &'static str,
        /// What was found instead, e.g. "it starts with '-----BEGIN PRIVATE KEY-----'".
        found: String,
    },
    /// A PEM public key that does not suit the algorithm, e.g. an EC key for RS256 or a P-384 key
    /// for ES256.
    #[error("the {algorithm} public key cannot be used: {expected} ({source})")]
    UnusablePublicKey {
        /// The configured algorithm, `RS256` or `ES256`.
        algorithm: &'static str,
        /// The kind of key the algorithm needs.
        expected: &'static str,
        /// What `jsonwebtoken` or AWS-LC said about the key.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A leeway so large that it is surely a mistake (minutes given as milliseconds, say).
    #[error(
        "the token leeway of {leeway_seconds} s exceeds the maximum of {maximum_seconds} s: \
         it tolerates clock skew and is normally about 30 s"
    )]
    LeewayTooLarge {
        /// The configured leeway.
        leeway_seconds: u64,
        /// The largest leeway accepted.
        maximum_seconds: u64,
    },
    /// An audience or issuer configured as the empty string, usually an environment variable set
    /// to nothing; no real token would match it.
    #[error("the required `{claim}` is configured as an empty string: set it, or unset it to skip the check")]
    EmptyRequiredClaim {
        /// `aud` or `iss`.
        claim: &'static str,
    },
}

/// Parses the configured key once, so that a key `jsonwebtoken` cannot use stops the service at
/// start-up.
pub(super) fn decoding_key(key: &KeyConfig) -> Result<DecodingKey, AuthSetupError> {
    match key {
        KeyConfig::Hs256 { secret } => {
            if secret.expose_secret().is_empty() {
                return Err(AuthSetupError::EmptyHmacSecret);
            }
            Ok(DecodingKey::from_secret(secret.expose_secret()))
        }
        KeyConfig::Rs256 { public_key_pem } => {
            const EXPECTED: &str = "RS256 needs an RSA public key";
            check_pem_is_public_key("RS256", public_key_pem, &["PUBLIC KEY", "RSA PUBLIC KEY"])?;
            let unusable = |source: Box<dyn std::error::Error + Send + Sync>| AuthSetupError::UnusablePublicKey {
                algorithm: "RS256",
                expected: EXPECTED,
                source,
            };
            let decoding_key = DecodingKey::from_rsa_pem(public_key_pem).map_err(|error| unusable(error.into()))?;
            probe_verifier(&decoding_key, &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256)
                .map_err(|error| unusable(error.into()))?;
            Ok(decoding_key)
        }
        KeyConfig::Es256 { public_key_pem } => {
            const EXPECTED: &str = "ES256 needs an EC public key on curve P-256";
            check_pem_is_public_key("ES256", public_key_pem, &["PUBLIC KEY"])?;
            let unusable = |source: Box<dyn std::error::Error + Send + Sync>| AuthSetupError::UnusablePublicKey {
                algorithm: "ES256",
                expected: EXPECTED,
                source,
            };
            let decoding_key = DecodingKey::from_ec_pem(public_key_pem).map_err(|error| unusable(error.into()))?;
            probe_verifier(&decoding_key, &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED)
                .map_err(|error| unusable(error.into()))?;
            Ok(decoding_key)
        }
    }
}

/// `jsonwebtoken` reads any PEM block it recognises, private keys and certificates included; a
/// private RSA key would then load without complaint and make every signature check fail. So the
/// block's label is checked first.
fn check_pem_is_public_key(
    algorithm: &'static str,
    pem: &[u8],
    accepted_labels: &[&str],
) -> Result<(), AuthSetupError> {
    let not_a_public_key = |found: String| AuthSetupError::NotAPublicKeyPem { algorithm, found };
    let Ok(pem_text) = std::str::from_utf8(pem) else {
        return Err(not_a_public_key("it is not text".to_owned()));
    };
    let Some(after_begin) = pem_text.split_once("-----BEGIN ").map(|(_, rest)| rest) else {
        return Err(not_a_public_key("it has no '-----BEGIN' line".to_owned()));
    };
    let label = after_begin.split_once("-----").map_or("", |(label, _)| label);
    if accepted_labels.contains(&label) {
        Ok(())
    } else {
        let label_for_message: String = label.chars().take(40).collect();
        Err(not_a_public_key(format!("it starts with '-----BEGIN {label_for_message}-----'")))
    }
}

/// Parses the key as `jsonwebtoken`'s AWS-LC backend does inside every verification, so that a key
/// it cannot use (an EC point not on P-256, an RSA key shorter than 2,048 bits) is reported at
/// start-up rather than as a bad signature on every token.
fn probe_verifier(
    decoding_key: &DecodingKey,
    algorithm: &'static dyn aws_lc_rs::signature::VerificationAlgorithm,
) -> Result<(), aws_lc_rs::error::KeyRejected> {
    aws_lc_rs::signature::ParsedPublicKey::new(algorithm, decoding_key.as_bytes()).map(|_parsed| ())
}
