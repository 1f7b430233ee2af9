//! The claims of a JWT, read without checking its signature: llmux only wants to know
//! when a token it was handed expires and whose it is, as the Codex CLI does
//! (`codex-rs/login/src/token_data.rs`, `parse_jwt_expiration`). The provider checks the
//! signature.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// The payload of `token` as JSON, when it is a JWT.
pub fn claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The `exp` claim (Unix seconds) of `token`.
pub fn expiry(token: &str) -> Option<u64> {
    claims(token)?.get("exp")?.as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expiry_of_a_jwt_and_nothing_of_other_strings() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":1700000000,"email":"a@b"}"#);
        let token = format!("eyJhbGciOiJub25lIn0.{payload}.sig");
        assert_eq!(expiry(&token), Some(1_700_000_000));
        assert_eq!(claims(&token).unwrap()["email"], "a@b");
        assert_eq!(expiry("sk-ant-oat01-opaque"), None);
        assert_eq!(expiry("a.!!!.c"), None);
    }
}
