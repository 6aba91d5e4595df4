//! Finding the token in a WebSocket upgrade request: the `Authorization` header, the `token` query
//! parameter, or the `Sec-WebSocket-Protocol` header.

use headers::Header as _;
use headers::authorization::{Authorization, Bearer};
use http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use http::{HeaderMap, HeaderValue};
use secrecy::SecretString;

/// The `Sec-WebSocket-Protocol` entry that marks the other entry as the token.
const BEARER_SUBPROTOCOL: &str = "bearer";

/// The query parameter the platform's browser client puts the token in (`/ws?token=<JWT>`).
const TOKEN_QUERY_PARAMETER: &str = "token";

/// A token found in an upgrade request, and how to answer the browser if it came as a subprotocol.
/// Its `Debug` redacts the token, so logging it is safe.
#[derive(Debug)]
pub(crate) struct ExtractedToken {
    /// The raw token, to pass to [`Authenticator::verify`](super::Authenticator::verify). Never log
    /// what `expose_secret` returns.
    pub(crate) token: SecretString,
    /// The subprotocol the server must select in its handshake response, if the token came from
    /// `Sec-WebSocket-Protocol`: a browser fails the connection unless the server selects one of the
    /// protocols it offered. Always the `bearer` entry as offered, never the token: a selected
    /// protocol is echoed in a response header, where proxies and browser tools record it.
    pub(crate) echo_protocol: Option<String>,
}

/// Where a browser or service put the token, in this order of precedence: `Authorization: Bearer <t>`
/// header, `token` query parameter, `Sec-WebSocket-Protocol`.
///
/// Services can set headers; browsers cannot set headers on a WebSocket, so the platform's client
/// sends `?token=` (which is why request URIs must never be logged in full), and a client that keeps
/// tokens out of URLs offers subprotocols `["bearer", "<token>"]` instead. `query` is the raw query
/// string without the `?`. An empty token counts as none, so that a later source can still supply one.
pub(crate) fn extract_token(headers: &HeaderMap, query: Option<&str>) -> Option<ExtractedToken> {
    bearer_token(headers)
        .map(|token| ExtractedToken { token, echo_protocol: None })
        .or_else(|| query.and_then(token_from_query_string))
        .or_else(|| token_from_websocket_protocol_header(headers))
}

/// The credentials of the first `Authorization: Bearer <token>` header with a non-empty token. The
/// scheme is matched without regard to case; whitespace around the value and the token is ignored.
fn bearer_token(headers: &HeaderMap) -> Option<SecretString> {
    headers.get_all(AUTHORIZATION).iter().find_map(|header_value| {
        // `headers` expects the scheme at the very start, as HTTP parsers leave it.
        let trimmed = HeaderValue::from_bytes(header_value.as_bytes().trim_ascii()).ok()?;
        let Authorization(bearer) = Authorization::<Bearer>::decode(&mut std::iter::once(&trimmed)).ok()?;
        let token = bearer.token().trim();
        (!token.is_empty()).then(|| SecretString::from(token))
    })
}

/// The first non-empty `token` parameter, decoded as browsers' `URLSearchParams` encode it (`%XX`
/// escapes, `+` for space; a `%` not followed by two hex digits is kept as it is).
fn token_from_query_string(query: &str) -> Option<ExtractedToken> {
    form_urlencoded::parse(query.as_bytes()).find_map(|(name, value)| {
        (name == TOKEN_QUERY_PARAMETER && !value.is_empty())
            .then(|| ExtractedToken { token: SecretString::from(value.into_owned()), echo_protocol: None })
    })
}

/// A browser offers subprotocols as one comma-separated header (or several). With `bearer` among
/// them, the token is another entry, preferring one shaped like a JWT (so that an application
/// protocol offered alongside is not mistaken for it). Without `bearer` there is no token here: the
/// only protocol herald could select would be the token itself, echoing the secret in a response
/// header, so a client offering a bare token is answered as one offering none (1008,
/// `TOKEN_MISSING`).
fn token_from_websocket_protocol_header(headers: &HeaderMap) -> Option<ExtractedToken> {
    let offered_protocols: Vec<&str> = headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|header_value| header_value.to_str().ok())
        .flat_map(|header_value| header_value.split(','))
        .map(str::trim)
        .filter(|protocol| !protocol.is_empty())
        .collect();

    let bearer_protocol =
        offered_protocols.iter().find(|protocol| protocol.eq_ignore_ascii_case(BEARER_SUBPROTOCOL))?;
    let mut candidates = offered_protocols.iter().filter(|protocol| !protocol.eq_ignore_ascii_case(BEARER_SUBPROTOCOL));
    let token = candidates.clone().find(|protocol| looks_like_jwt(protocol)).or_else(|| candidates.next())?;
    // Echo the protocol exactly as offered: browsers compare it case-sensitively.
    Some(ExtractedToken { token: SecretString::from(*token), echo_protocol: Some((*bearer_protocol).to_owned()) })
}

/// Three non-empty base64url segments separated by dots: the shape of a signed JWT.
fn looks_like_jwt(candidate: &str) -> bool {
    let segments: Vec<&str> = candidate.split('.').collect();
    segments.len() == 3
        && segments.iter().all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|character| character.is_ascii_alphanumeric() || character == b'-' || character == b'_')
        })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use secrecy::ExposeSecret;

    use super::*;

    const JWT_SHAPED: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ0In0.c2lnbmF0dXJl";

    #[track_caller]
    fn check_extraction(headers: &[(&str, &str)], query: Option<&str>, expected: Option<(&str, Option<&str>)>) {
        let mut header_map = HeaderMap::new();
        for (name, value) in headers {
            header_map
                .append(http::HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
        }
        let extracted = extract_token(&header_map, query);
        let extracted =
            extracted.as_ref().map(|extracted| (extracted.token.expose_secret(), extracted.echo_protocol.as_deref()));
        assert_eq!(extracted, expected, "headers {headers:?}, query {query:?}");
    }

    #[test]
    fn token_from_the_authorization_header() {
        check_extraction(&[("authorization", "Bearer abc.def.ghi")], None, Some(("abc.def.ghi", None)));
        check_extraction(&[("authorization", "bearer abc.def.ghi")], None, Some(("abc.def.ghi", None)));
        check_extraction(&[("authorization", "BEARER abc.def.ghi")], None, Some(("abc.def.ghi", None)));
        check_extraction(&[("authorization", "  Bearer \t abc.def.ghi  ")], None, Some(("abc.def.ghi", None)));
        check_extraction(&[("authorization", "Bearer")], None, None);
        check_extraction(&[("authorization", "Bearer    ")], None, None);
        check_extraction(&[("authorization", "Basic dXNlcjpwYXNz")], None, None);
        check_extraction(&[("authorization", "Bearerabc.def.ghi")], None, None);
        check_extraction(
            &[("authorization", "Basic dXNlcjpwYXNz"), ("authorization", "Bearer abc.def.ghi")],
            None,
            Some(("abc.def.ghi", None)),
        );
    }

    #[test]
    fn token_from_the_query_string() {
        check_extraction(&[], Some("token=abc.def.ghi"), Some(("abc.def.ghi", None)));
        check_extraction(&[], Some("a=1&token=abc.def.ghi&b=2"), Some(("abc.def.ghi", None)));
        check_extraction(&[], Some("token=abc%2Edef%2eghi"), Some(("abc.def.ghi", None)));
        check_extraction(&[], Some("to%6Ben=abc.def.ghi"), Some(("abc.def.ghi", None)));
        check_extraction(&[], Some("token=a+b"), Some(("a b", None)));
        check_extraction(&[], Some("token=100%"), Some(("100%", None)));
        check_extraction(&[], Some("token=%zz%4"), Some(("%zz%4", None)));
        check_extraction(&[], Some("token=&token=abc.def.ghi"), Some(("abc.def.ghi", None)));
        check_extraction(&[], Some("token=first&token=second"), Some(("first", None)));
        check_extraction(&[], Some("token"), None);
        check_extraction(&[], Some("token="), None);
        check_extraction(&[], Some("tokens=abc.def.ghi"), None);
        check_extraction(&[], Some("mytoken=abc.def.ghi"), None);
        check_extraction(&[], Some("x=token%3Dabc"), None);
        check_extraction(&[], Some(""), None);
    }

    #[test]
    fn token_from_the_websocket_protocol_header() {
        let protocol = "sec-websocket-protocol";
        check_extraction(&[(protocol, &format!("bearer, {JWT_SHAPED}"))], None, Some((JWT_SHAPED, Some("bearer"))));
        check_extraction(&[(protocol, &format!("{JWT_SHAPED},bearer"))], None, Some((JWT_SHAPED, Some("bearer"))));
        check_extraction(&[(protocol, &format!("Bearer, {JWT_SHAPED}"))], None, Some((JWT_SHAPED, Some("Bearer"))));
        check_extraction(
            &[(protocol, &format!("bearer, herald.v1, {JWT_SHAPED}"))],
            None,
            Some((JWT_SHAPED, Some("bearer"))),
        );
        check_extraction(&[(protocol, "bearer"), (protocol, JWT_SHAPED)], None, Some((JWT_SHAPED, Some("bearer"))));
        // Not shaped like a JWT, but `bearer` says it is the token; verification will call it malformed.
        check_extraction(&[(protocol, "bearer, not-a-jwt")], None, Some(("not-a-jwt", Some("bearer"))));
        // A bare token is not taken: selecting it would echo the secret in the response.
        check_extraction(&[(protocol, JWT_SHAPED)], None, None);
        check_extraction(&[(protocol, &format!("herald.v1, {JWT_SHAPED}"))], None, None);
        check_extraction(&[(protocol, "bearer")], None, None);
        check_extraction(&[(protocol, "bearer, ")], None, None);
        check_extraction(&[(protocol, "herald.v1")], None, None);
        check_extraction(&[(protocol, "a.b")], None, None);
        check_extraction(&[(protocol, "a..c")], None, None);
        check_extraction(&[(protocol, "a.b.c+")], None, None);
    }

    #[test]
    fn header_then_query_then_protocol() {
        let authorization = ("authorization", "Bearer from-header");
        let protocol = ("sec-websocket-protocol", "bearer, from-protocol");
        let query = Some("token=from-query");
        check_extraction(&[authorization, protocol], query, Some(("from-header", None)));
        check_extraction(&[protocol], query, Some(("from-query", None)));
        check_extraction(&[protocol], None, Some(("from-protocol", Some("bearer"))));
        check_extraction(&[("authorization", "Basic dXNlcjpwYXNz"), protocol], query, Some(("from-query", None)));
        check_extraction(&[protocol], Some("token="), Some(("from-protocol", Some("bearer"))));
    }

    #[test]
    fn no_token_anywhere() {
        check_extraction(&[], None, None);
        check_extraction(&[("cookie", "token=abc.def.ghi"), ("origin", "https://huleedu.example")], Some("a=1"), None);
    }

    #[test]
    fn extracted_tokens_never_show_the_token() {
        let token = JWT_SHAPED;
        let mut headers = HeaderMap::new();
        headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(&format!("bearer, {token}")).unwrap());
        headers.insert(AUTHORIZATION, HeaderValue::from_str(&format!("Bearer {token}")).unwrap());
        let from_header = extract_token(&headers, None).unwrap();
        let from_query = extract_token(&HeaderMap::new(), Some(&format!("token={token}"))).unwrap();
        headers.remove(AUTHORIZATION);
        let from_protocol = extract_token(&headers, None).unwrap();
        for extracted in [&from_header, &from_query, &from_protocol] {
            for formatted in [format!("{extracted:?}"), format!("{extracted:#?}")] {
                assert!(!formatted.contains(token), "{formatted}");
                for segment in token.split('.') {
                    assert!(!formatted.contains(segment), "{formatted}");
                }
                assert!(formatted.contains("REDACTED"), "{formatted}");
            }
        }
        assert!(format!("{from_protocol:?}").contains(r#"Some("bearer")"#));
    }

    /// Any bytes a header value can hold (visible ASCII, tabs, spaces and obs-text).
    fn header_value() -> impl Strategy<Value = HeaderValue> {
        proptest::collection::vec(prop_oneof![Just(b'\t'), 0x20u8..0x7f, 0x80u8..=0xff], 0..64)
            .prop_map(|bytes| HeaderValue::from_bytes(&bytes).unwrap())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn extraction_never_panics(
            authorization in proptest::collection::vec(header_value(), 0..3),
            protocols in proptest::collection::vec(header_value(), 0..3),
            query in proptest::option::of(".{0,64}"),
        ) {
            let mut headers = HeaderMap::new();
            for value in authorization {
                headers.append(AUTHORIZATION, value);
            }
            for value in protocols {
                headers.append(SEC_WEBSOCKET_PROTOCOL, value);
            }
            if let Some(extracted) = extract_token(&headers, query.as_deref()) {
                prop_assert!(!extracted.token.expose_secret().is_empty());
                if let Some(protocol) = &extracted.echo_protocol {
                    prop_assert!(protocol.eq_ignore_ascii_case(BEARER_SUBPROTOCOL));
                }
            }
        }

        #[test]
        fn query_tokens_round_trip(token in "[^\u{0}]{1,40}", other in "[a-z]{0,8}") {
            let encoded: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("lang", &other)
                .append_pair(TOKEN_QUERY_PARAMETER, &token)
                .finish();
            let extracted = extract_token(&HeaderMap::new(), Some(&encoded));
            prop_assert_eq!(extracted.map(|extracted| extracted.token.expose_secret().to_owned()), Some(token));
        }
    }
}
