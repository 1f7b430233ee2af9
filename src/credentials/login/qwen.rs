//! `qwen-oauth`: the Qwen Code login in `~/.qwen/oauth_creds.json`. Qwen discontinued the
//! free OAuth tier on 2026-04-15; this stays for accounts that still have access.
//!
//! Layout (`QwenLM/qwen-code`, `packages/core/src/qwen/sharedTokenManager.ts`
//! `validateCredentials`): `{"access_token", "refresh_token", "token_type", "expiry_date"
//! (Unix ms), "resource_url"}`. `resource_url` is the API host, often without a scheme;
//! the API root is `https://<resource_url>/v1` (`qwenContentGenerator.ts`,
//! `getCurrentEndpoint`). The refresh is a form POST to
//! `https://chat.qwen.ai/api/v1/oauth2/token`; a new refresh token may or may not come back.

use serde_json::{Value, json};

use super::{AccountInfo, LoginFormat, OAuthClient, RefreshBody, Tokens};
use crate::credentials::Secret;

/// Qwen Code's public OAuth client (`QWEN_OAUTH_CLIENT_ID` in `qwenOAuth2.ts`).
pub const CLIENT_ID: &str = "f0304373b74a44d2b584a3fb70ca9e56";
pub const TOKEN_URL: &str = "https://chat.qwen.ai/api/v1/oauth2/token";

pub struct Qwen;

/// The API root a `resource_url` names: a scheme added when missing, `/v1` appended.
pub fn api_base(resource_url: &str) -> String {
    let url = resource_url.trim().trim_end_matches('/');
    let url = if url.starts_with("http://") || url.starts_with("https://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    if url.ends_with("/v1") {
        url
    } else {
        format!("{url}/v1")
    }
}

impl LoginFormat for Qwen {
    fn cli(&self) -> &'static str {
        "Qwen Code"
    }

    fn login_command(&self) -> &'static str {
        "qwen (then /auth)"
    }

    fn read(&self, file: &Value) -> Result<Tokens, String> {
        let text = |key: &str| file.get(key).and_then(Value::as_str).map(str::to_owned);
        let access = text("access_token").ok_or("no `access_token`")?;
        Ok(Tokens {
            access: Secret::new(access),
            refresh: text("refresh_token").map(Secret::new),
            expires_at_ms: file.get("expiry_date").and_then(Value::as_u64),
            account: AccountInfo::default(),
            api_base: text("resource_url")
                .filter(|u| !u.trim().is_empty())
                .map(|u| api_base(&u)),
        })
    }

    /// `oauth_creds.lock` beside the file (`QWEN_LOCK_FILENAME` in `sharedTokenManager.ts`).
    fn refresh_lock(&self, path: &std::path::Path) -> Option<std::path::PathBuf> {
        Some(path.with_file_name("oauth_creds.lock"))
    }

    fn refresh_body(&self, refresh_token: &str, client: &OAuthClient) -> RefreshBody {
        RefreshBody::Form(vec![
            ("grant_type", "refresh_token".into()),
            ("refresh_token", refresh_token.into()),
            ("client_id", client.client_id.clone()),
        ])
    }

    fn store_refresh(&self, file: &mut Value, answer: &Value, now_ms: u64) -> Result<(), String> {
        let file = file.as_object_mut().ok_or("not a JSON object")?;
        for field in [
            "access_token",
            "refresh_token",
            "token_type",
            "resource_url",
        ] {
            if let Some(value) = answer.get(field).filter(|v| v.is_string()) {
                file.insert(field.to_owned(), value.clone());
            }
        }
        if let Some(seconds) = answer.get("expires_in").and_then(Value::as_u64) {
            file.insert(
                "expiry_date".into(),
                json!(now_ms.saturating_add(seconds.saturating_mul(1000))),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_resource_url_becomes_an_api_root() {
        assert_eq!(api_base("portal.qwen.ai"), "https://portal.qwen.ai/v1");
        assert_eq!(api_base("http://127.0.0.1:9/"), "http://127.0.0.1:9/v1");
        assert_eq!(api_base("https://x/v1"), "https://x/v1");
    }

    #[test]
    fn a_refresh_without_a_new_refresh_token_keeps_the_old_one() {
        let mut file = json!({"access_token": "a", "refresh_token": "r", "token_type": "Bearer",
                              "expiry_date": 1, "resource_url": "portal.qwen.ai"});
        Qwen.store_refresh(
            &mut file,
            &json!({"access_token": "b", "expires_in": 60}),
            1_000,
        )
        .unwrap();
        assert_eq!(file["refresh_token"], "r");
        assert_eq!(file["expiry_date"], 61_000);
        let tokens = Qwen.read(&file).unwrap();
        assert_eq!(
            tokens.api_base.as_deref(),
            Some("https://portal.qwen.ai/v1")
        );
    }
}
