//! `openai-oauth`: the ChatGPT login the Codex CLI keeps in `$CODEX_HOME/auth.json`
//! (`~/.codex/auth.json`).
//!
//! Layout (`openai/codex`, `codex-rs/login/src/auth/storage.rs` `AuthDotJson` and
//! `token_data.rs`): `{"tokens": {"id_token", "access_token", "refresh_token",
//! "account_id"}, "last_refresh", ...}`. There is no expiry field: the access token is a
//! JWT and its `exp` says. The account id, email and plan are claims of the id token
//! (`https://api.openai.com/auth` → `chatgpt_account_id`, `chatgpt_plan_type`). The refresh
//! is a JSON POST to `https://auth.openai.com/oauth/token`; the refresh token rotates.

use serde_json::{Value, json};

use super::{AccountInfo, LoginFormat, OAuthClient, RefreshBody, Tokens, jwt};
use crate::credentials::Secret;

/// The Codex CLI's public OAuth client (`CLIENT_ID` in `codex-rs/login`).
pub const CLIENT_ID: &str = "app_EMoamEEZ73f0CkXaXp7hrann";
pub const TOKEN_URL: &str = "https://auth.openai.com/oauth/token";

pub struct Codex;

const AUTH_CLAIMS: &str = "https://api.openai.com/auth";
const PROFILE_CLAIMS: &str = "https://api.openai.com/profile";

fn text(value: Option<&Value>) -> Option<String> {
    value.and_then(Value::as_str).map(str::to_owned)
}

impl LoginFormat for Codex {
    fn cli(&self) -> &'static str {
        "Codex CLI"
    }

    fn login_command(&self) -> &'static str {
        "codex login"
    }

    fn read(&self, file: &Value) -> Result<Tokens, String> {
        let Some(tokens) = file.get("tokens").filter(|t| t.is_object()) else {
            return Err(
                if file.get("OPENAI_API_KEY").is_some_and(|k| !k.is_null()) {
                    "it holds an API key, not a ChatGPT login; use a back-end of type openai".into()
                } else {
                    "no `tokens` object".into()
                },
            );
        };
        let access = text(tokens.get("access_token")).ok_or("no `tokens.access_token`")?;
        let id_claims = tokens
            .get("id_token")
            .and_then(Value::as_str)
            .and_then(jwt::claims)
            .unwrap_or(Value::Null);
        let auth = &id_claims[AUTH_CLAIMS];
        let account = AccountInfo {
            email: text(id_claims.get("email"))
                .or_else(|| text(id_claims[PROFILE_CLAIMS].get("email"))),
            plan: text(auth.get("chatgpt_plan_type")),
            id: text(tokens.get("account_id")).or_else(|| text(auth.get("chatgpt_account_id"))),
        };
        Ok(Tokens {
            expires_at_ms: jwt::expiry(&access).map(|s| s.saturating_mul(1000)),
            access: Secret::new(access),
            refresh: text(tokens.get("refresh_token")).map(Secret::new),
            account,
            api_base: None,
        })
    }

    fn refresh_body(&self, refresh_token: &str, client: &OAuthClient) -> RefreshBody {
        // As the Codex CLI sends it (`RefreshRequest` in codex-rs/login/src/auth/manager.rs).
        RefreshBody::Json(json!({
            "client_id": client.client_id,
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
        }))
    }

    fn store_refresh(&self, file: &mut Value, answer: &Value, now_ms: u64) -> Result<(), String> {
        let tokens = file
            .get_mut("tokens")
            .and_then(Value::as_object_mut)
            .ok_or("no `tokens` object to update")?;
        for field in ["access_token", "refresh_token", "id_token"] {
            if let Some(value) = answer.get(field).filter(|v| v.is_string()) {
                tokens.insert(field.to_owned(), value.clone());
            }
        }
        if let Some(file) = file.as_object_mut() {
            let now = std::time::Duration::from_millis(now_ms);
            file.insert(
                "last_refresh".into(),
                Value::String(crate::capture::iso8601(now)),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn jwt(claims: Value) -> String {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        format!("e30.{payload}.c2ln")
    }

    #[test]
    fn tokens_account_and_expiry_come_from_the_file_and_its_jwts() {
        let file = json!({
            "auth_mode": "chatgpt",
            "tokens": {
                "access_token": jwt(json!({"exp": 1_900_000_000u64})),
                "refresh_token": "rt-1",
                "id_token": jwt(json!({"email": "dev@example.com", AUTH_CLAIMS: {
                    "chatgpt_plan_type": "pro", "chatgpt_account_id": "acct-9"}})),
            },
            "future_field": {"kept": true},
        });
        let tokens = Codex.read(&file).unwrap();
        assert_eq!(tokens.expires_at_ms, Some(1_900_000_000_000));
        assert_eq!(tokens.account.email.as_deref(), Some("dev@example.com"));
        assert_eq!(tokens.account.plan.as_deref(), Some("pro"));
        assert_eq!(tokens.account.id.as_deref(), Some("acct-9"));

        let mut file = file;
        let answer =
            json!({"access_token": "new-access", "refresh_token": "rt-2", "expires_in": 3600});
        Codex.store_refresh(&mut file, &answer, 1_000).unwrap();
        assert_eq!(file["tokens"]["refresh_token"], "rt-2");
        assert_eq!(file["tokens"]["access_token"], "new-access");
        assert_eq!(file["future_field"]["kept"], true);
        assert_eq!(file["last_refresh"], "1970-01-01T00:00:01.000000+00:00");
    }

    #[test]
    fn an_api_key_file_is_told_apart() {
        let err = Codex
            .read(&json!({"OPENAI_API_KEY": "sk-x", "tokens": null}))
            .err()
            .unwrap();
        assert!(err.contains("type openai"), "{err}");
    }
}
