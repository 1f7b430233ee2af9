//! `anthropic-oauth`: the Claude subscription login Claude Code keeps in
//! `$CLAUDE_CONFIG_DIR/.credentials.json` (`~/.claude/.credentials.json`; on macOS the
//! Keychain item `Claude Code-credentials` holds the same JSON).
//!
//! Layout: `{"claudeAiOauth": {"accessToken", "refreshToken", "expiresAt" (Unix ms),
//! "scopes", "subscriptionType", ...}, "mcpOAuth": ...}`. Claude Code drops into API-key
//! mode when a rewrite loses `subscriptionType` (NousResearch/hermes-agent#83338), so a
//! refresh changes the three token fields and nothing else. The refresh is a JSON POST to
//! `https://platform.claude.com/v1/oauth/token`; the refresh token rotates.

use serde_json::{Value, json};

use super::{AccountInfo, LoginFormat, OAuthClient, RefreshBody, Tokens};
use crate::credentials::Secret;

/// Claude Code's public OAuth client.
pub const CLIENT_ID: &str = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
pub const TOKEN_URL: &str = "https://platform.claude.com/v1/oauth/token";
/// The scopes Claude Code asks for on a refresh.
const SCOPES: &str =
    "user:profile user:inference user:sessions:claude_code user:mcp_servers user:file_upload";

pub struct Claude;

const SECTION: &str = "claudeAiOauth";

impl LoginFormat for Claude {
    fn cli(&self) -> &'static str {
        "Claude Code"
    }

    fn login_command(&self) -> &'static str {
        "claude /login"
    }

    fn read(&self, file: &Value) -> Result<Tokens, String> {
        let oauth = file
            .get(SECTION)
            .filter(|o| o.is_object())
            .ok_or("no `claudeAiOauth` object (an MCP-only file, or not logged in)")?;
        let text = |key: &str| oauth.get(key).and_then(Value::as_str).map(str::to_owned);
        let access = text("accessToken").ok_or("no `claudeAiOauth.accessToken`")?;
        Ok(Tokens {
            access: Secret::new(access),
            refresh: text("refreshToken").map(Secret::new),
            expires_at_ms: oauth.get("expiresAt").and_then(Value::as_u64),
            account: AccountInfo {
                email: None,
                plan: text("subscriptionType"),
                id: None,
            },
            api_base: None,
        })
    }

    fn refresh_body(&self, refresh_token: &str, client: &OAuthClient) -> RefreshBody {
        RefreshBody::Json(json!({
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client.client_id,
            "scope": SCOPES,
        }))
    }

    fn store_refresh(&self, file: &mut Value, answer: &Value, now_ms: u64) -> Result<(), String> {
        let oauth = file
            .get_mut(SECTION)
            .and_then(Value::as_object_mut)
            .ok_or("no `claudeAiOauth` object to update")?;
        if let Some(access) = answer.get("access_token") {
            oauth.insert("accessToken".into(), access.clone());
        }
        if let Some(refresh) = answer.get("refresh_token").filter(|v| v.is_string()) {
            oauth.insert("refreshToken".into(), refresh.clone());
        }
        if let Some(seconds) = answer.get("expires_in").and_then(Value::as_u64) {
            oauth.insert(
                "expiresAt".into(),
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
    fn a_refresh_changes_the_tokens_and_keeps_the_subscription() {
        let mut file = json!({
            SECTION: {"accessToken": "sk-ant-oat01-a", "refreshToken": "sk-ant-ort01-a",
                      "expiresAt": 5_000, "scopes": ["user:inference"], "subscriptionType": "max"},
            "mcpOAuth": {"server": {}},
        });
        let tokens = Claude.read(&file).unwrap();
        assert_eq!(tokens.expires_at_ms, Some(5_000));
        assert_eq!(tokens.account.plan.as_deref(), Some("max"));
        let answer = json!({"access_token": "sk-ant-oat01-b", "refresh_token": "sk-ant-ort01-b",
                            "expires_in": 28_800, "token_type": "Bearer"});
        Claude.store_refresh(&mut file, &answer, 10_000).unwrap();
        assert_eq!(file[SECTION]["expiresAt"], 28_810_000);
        assert_eq!(file[SECTION]["refreshToken"], "sk-ant-ort01-b");
        assert_eq!(file[SECTION]["subscriptionType"], "max");
        assert_eq!(file["mcpOAuth"], json!({"server": {}}));
        assert!(Claude.read(&json!({"mcpOAuth": {}})).is_err());
    }
}
