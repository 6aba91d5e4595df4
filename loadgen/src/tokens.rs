//! Who the connections are: one user id and token per user, signed here or read from a file.

use crate::options::Options;

/// One user: the id events are addressed to and the token its connections present.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub user: String,
    pub token: String,
}

/// The users of this run, from `--tokens-file` or signed with `--jwt-secret`.
pub(crate) fn identities(options: &Options) -> Result<Vec<Identity>, String> {
    if let Some(path) = &options.tokens_file {
        let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        let identities = parse_tokens_file(&text).map_err(|error| format!("{}: {error}", path.display()))?;
        if identities.len() > options.connections {
            return Err(format!(
                "{} holds {} users but only {} connections were asked for: every user needs a connection",
                path.display(),
                identities.len(),
                options.connections
            ));
        }
        return Ok(identities);
    }
    let secret = options.jwt_secret.as_deref().ok_or("give --jwt-secret or --tokens-file")?;
    (0..options.users)
        .map(|index| {
            let user = format!("{}{index}", options.user_prefix);
            let token = herald_loadgen::token::sign(
                secret,
                &user,
                options.jwt_audience.as_deref(),
                options.jwt_issuer.as_deref(),
                options.token_lifetime_seconds,
            )?;
            Ok(Identity { user, token })
        })
        .collect()
}

fn parse_tokens_file(text: &str) -> Result<Vec<Identity>, String> {
    let mut identities = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some(user), Some(token), None) => {
                identities.push(Identity { user: user.to_owned(), token: token.to_owned() })
            }
            _ => return Err(format!("line {}: expected `USER_ID TOKEN`", number + 1)),
        }
    }
    if identities.is_empty() {
        return Err("no `USER_ID TOKEN` lines".into());
    }
    Ok(identities)
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};

    use super::*;

    #[test]
    fn signed_tokens_carry_the_user_and_the_configured_claims() {
        let options = Options::parse_from([
            "herald-loadgen",
            "--brokers=b",
            "--jwt-secret=s3cret",
            "--users=3",
            "--connections=3",
            "--jwt-audience=huleedu-platform",
        ]);
        let identities = identities(&options).unwrap();
        assert_eq!(identities.len(), 3);
        assert_eq!(identities[2].user, "loadgen-user-2");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&["huleedu-platform"]);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &identities[2].token,
            &DecodingKey::from_secret(b"s3cret"),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims["sub"], "loadgen-user-2");
        assert!(decoded.claims.get("iss").is_none());
    }

    #[test]
    fn tokens_file_lines() {
        let parsed = parse_tokens_file("# users\nteacher-1 a.b.c\n\n  teacher-2\tx.y.z \n").unwrap();
        let pairs: Vec<(&str, &str)> = parsed.iter().map(|i| (i.user.as_str(), i.token.as_str())).collect();
        assert_eq!(pairs, [("teacher-1", "a.b.c"), ("teacher-2", "x.y.z")]);
        assert_eq!(parse_tokens_file("teacher-1\n").unwrap_err(), "line 1: expected `USER_ID TOKEN`");
        assert_eq!(parse_tokens_file("a b c\n").unwrap_err(), "line 1: expected `USER_ID TOKEN`");
        assert!(parse_tokens_file("# nothing\n").is_err());
    }
}
