//! Google logins for the Code Assist API (the Gemini CLI's back-end).
//!
//! - [`GeminiCli`] (`gemini-cli-oauth-personal`): "Login with Google" in the Gemini CLI,
//!   kept in `~/.gemini/oauth_creds.json` (`$GEMINI_CLI_HOME/.gemini/...`): the
//!   google-auth-library `Credentials` JSON, `{"access_token", "refresh_token", "scope",
//!   "token_type", "id_token", "expiry_date" (Unix ms)}` (gemini-cli
//!   `packages/core/src/code_assist/oauth2.ts`). Refreshed with a form POST to Google's
//!   token endpoint carrying the Gemini CLI's client id and secret; Google's installed-app
//!   clients need the secret, which is public but not shipped here: it comes from
//!   `GEMINI_CLI_OAUTH_CLIENT_SECRET`. The refresh token does not rotate.
//! - [`GoogleAdc`] (`gemini-cli-cloud-project`): application default credentials, a
//!   service-account key (`"type": "service_account"`: a JWT signed with its key is
//!   exchanged for a token, RFC 7523) or a gcloud user login (`"type": "authorized_user"`:
//!   a refresh-token grant with the file's own client). The file only renews; tokens stay
//!   in memory and nothing is written back.

use serde_json::{Value, json};

use super::{AccountInfo, LoginFormat, OAuthClient, RefreshBody, Renewal, Tokens, jwt};
use crate::credentials::Secret;

/// The Gemini CLI's public OAuth client id (`OAUTH_CLIENT_ID` in gemini-cli
/// `packages/core/src/code_assist/oauth2.ts`).
pub const GEMINI_CLI_CLIENT_ID: &str =
    "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com";
/// Where the Gemini CLI's client secret is read from.
pub const CLIENT_SECRET_ENV: &str = "GEMINI_CLI_OAUTH_CLIENT_SECRET";
pub const TOKEN_URL: &str = "https://oauth2.googleapis.com/token";
/// What Code Assist needs (gemini-cli `OAUTH_SCOPE`).
const SCOPES: &str = "https://www.googleapis.com/auth/cloud-platform \
                      https://www.googleapis.com/auth/userinfo.email \
                      https://www.googleapis.com/auth/userinfo.profile";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

fn text(value: &Value, key: &str) -> Option<String> {
    value.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// Stores an access-token answer (`access_token`, `expires_in`, maybe `id_token` and a
/// new `refresh_token`) in google-auth-library's field names.
fn store_google_answer(file: &mut Value, answer: &Value, now_ms: u64) -> Result<(), String> {
    let file = file.as_object_mut().ok_or("not a JSON object")?;
    for field in [
        "access_token",
        "refresh_token",
        "id_token",
        "scope",
        "token_type",
    ] {
        if let Some(value) = answer.get(field).filter(|v| v.is_string()) {
            file.insert(field.to_owned(), value.clone());
        }
    }
    let seconds = answer
        .get("expires_in")
        .and_then(Value::as_u64)
        .unwrap_or(3600);
    file.insert(
        "expiry_date".into(),
        json!(now_ms.saturating_add(seconds.saturating_mul(1000))),
    );
    Ok(())
}

pub struct GeminiCli;

impl LoginFormat for GeminiCli {
    fn cli(&self) -> &'static str {
        "Gemini CLI"
    }

    fn login_command(&self) -> &'static str {
        "gemini (Login with Google)"
    }

    fn read(&self, file: &Value) -> Result<Tokens, String> {
        let access = text(file, "access_token").ok_or("no `access_token`")?;
        let email = file
            .get("id_token")
            .and_then(Value::as_str)
            .and_then(jwt::claims)
            .and_then(|claims| text(&claims, "email"));
        Ok(Tokens {
            access: Secret::new(access),
            refresh: text(file, "refresh_token").map(Secret::new),
            expires_at_ms: file.get("expiry_date").and_then(Value::as_u64),
            account: AccountInfo {
                email,
                ..AccountInfo::default()
            },
            api_base: None,
        })
    }

    fn refresh_body(&self, refresh_token: &str, client: &OAuthClient) -> RefreshBody {
        let mut fields = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh_token.to_owned()),
            ("client_id", client.client_id.clone()),
        ];
        if let Some(secret) = &client.client_secret {
            fields.push(("client_secret", secret.expose().to_owned()));
        }
        RefreshBody::Form(fields)
    }

    fn renewal(
        &self,
        _file: &Value,
        tokens: &Tokens,
        client: &OAuthClient,
    ) -> Result<Renewal, String> {
        let refresh = super::refresh_token(tokens)?;
        let found;
        let client = match (&client.client_secret, &client.installed_cli) {
            (None, Some(cli)) if client.client_id == GEMINI_CLI_CLIENT_ID => {
                found = OAuthClient {
                    client_secret: secret_of_installed_cli(cli).map(Secret::new),
                    ..client.clone()
                };
                &found
            }
            _ => client,
        };
        if client.client_secret.is_none() && client.client_id == GEMINI_CLI_CLIENT_ID {
            return Err(format!(
                "has expired and cannot be refreshed without the Gemini CLI's OAuth client secret \
                 (set {CLIENT_SECRET_ENV}; it is OAUTH_CLIENT_SECRET in the Gemini CLI's \
                 packages/core/src/code_assist/oauth2.ts; llmux reads it from an installed \
                 `gemini` on the PATH), or run `gemini` to renew it"
            ));
        }
        Ok(Renewal {
            url: None,
            body: self.refresh_body(refresh.expose(), client),
        })
    }

    fn store_refresh(&self, file: &mut Value, answer: &Value, now_ms: u64) -> Result<(), String> {
        store_google_answer(file, answer, now_ms)
    }
}

pub struct GoogleAdc;

impl LoginFormat for GoogleAdc {
    fn cli(&self) -> &'static str {
        "gcloud"
    }

    fn login_command(&self) -> &'static str {
        "gcloud auth application-default login"
    }

    /// The credentials, with the token renewed last (kept in the in-memory copy of the
    /// file, never in the file).
    fn read(&self, file: &Value) -> Result<Tokens, String> {
        let kind = text(file, "type").unwrap_or_default();
        let email = match kind.as_str() {
            "service_account" => {
                for field in ["client_email", "private_key"] {
                    if text(file, field).is_none() {
                        return Err(format!("a service-account key without `{field}`"));
                    }
                }
                text(file, "client_email")
            }
            "authorized_user" => {
                for field in ["client_id", "client_secret", "refresh_token"] {
                    if text(file, field).is_none() {
                        return Err(format!("an authorized_user file without `{field}`"));
                    }
                }
                None
            }
            other => {
                return Err(format!(
                    "credentials of type '{other}'; service_account and authorized_user are supported"
                ));
            }
        };
        Ok(Tokens {
            access: Secret::new(text(file, "access_token").unwrap_or_default()),
            refresh: text(file, "refresh_token").map(Secret::new),
            // Never renewed yet: expired, so the first use renews.
            expires_at_ms: Some(file.get("expiry_date").and_then(Value::as_u64).unwrap_or(0)),
            account: AccountInfo {
                email,
                ..AccountInfo::default()
            },
            api_base: None,
        })
    }

    fn refresh_body(&self, refresh_token: &str, client: &OAuthClient) -> RefreshBody {
        GeminiCli.refresh_body(refresh_token, client)
    }

    fn renewal(
        &self,
        file: &Value,
        tokens: &Tokens,
        client: &OAuthClient,
    ) -> Result<Renewal, String> {
        if text(file, "type").as_deref() == Some("service_account") {
            let assertion = service_account_assertion(file, &client.token_url)?;
            return Ok(Renewal {
                url: None,
                body: RefreshBody::Form(vec![
                    ("grant_type", JWT_BEARER.to_owned()),
                    ("assertion", assertion),
                ]),
            });
        }
        // authorized_user: the file's own OAuth client.
        let own = OAuthClient {
            token_url: client.token_url.clone(),
            client_id: text(file, "client_id").unwrap_or_default(),
            client_secret: text(file, "client_secret").map(Secret::new),
            installed_cli: None,
        };
        let refresh = tokens.refresh.as_ref().ok_or("has no refresh_token")?;
        Ok(Renewal {
            url: None,
            body: self.refresh_body(refresh.expose(), &own),
        })
    }

    fn writes_back(&self) -> bool {
        false
    }

    fn store_refresh(&self, file: &mut Value, answer: &Value, now_ms: u64) -> Result<(), String> {
        store_google_answer(file, answer, now_ms)
    }
}

/// The public client secret in the package of an installed Gemini CLI (`gemini` on the
/// PATH, an npm package `@google/gemini-cli`): its `OAUTH_CLIENT_SECRET` constant, in the
/// bundle or in `@google/gemini-cli-core`. Google documents installed-app secrets as not
/// secret (the Gemini CLI keeps it in its repository); llmux reads it from the user's own
/// installation instead of shipping it. Looked up once per executable.
pub fn secret_of_installed_cli(executable: &std::path::Path) -> Option<String> {
    use std::collections::HashMap;
    use std::path::PathBuf;
    use std::sync::{Mutex, OnceLock};
    static FOUND: OnceLock<Mutex<HashMap<PathBuf, Option<String>>>> = OnceLock::new();
    let cache = FOUND.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(found) = cache.lock().ok()?.get(executable) {
        return found.clone();
    }
    let found = scan_package(executable);
    if let Ok(mut cache) = cache.lock() {
        cache.insert(executable.to_owned(), found.clone());
    }
    found
}

fn scan_package(executable: &std::path::Path) -> Option<String> {
    let real = std::fs::canonicalize(executable).ok()?;
    let root = real
        .ancestors()
        .find(|dir| dir.ends_with("@google/gemini-cli"))?
        .to_owned();
    let places = [
        root.join("bundle"),
        root.join("dist"),
        root.join("node_modules/@google/gemini-cli-core/dist"),
        root.with_file_name("gemini-cli-core").join("dist"),
    ];
    let pattern =
        regex::Regex::new(r#"OAUTH_CLIENT_SECRET\s*=\s*["']([A-Za-z0-9_\-]{8,})["']"#).ok()?;
    let mut budget = 2000usize;
    places
        .iter()
        .find_map(|dir| find_in_js(dir, &pattern, 0, &mut budget))
}

/// The first capture of `pattern` in the `.js` files under `dir` (a bounded walk).
fn find_in_js(
    dir: &std::path::Path,
    pattern: &regex::Regex,
    depth: usize,
    budget: &mut usize,
) -> Option<String> {
    if depth > 6 {
        return None;
    }
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        if *budget == 0 {
            return None;
        }
        *budget -= 1;
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_in_js(&path, pattern, depth + 1, budget) {
                return Some(found);
            }
        } else if path.extension().is_some_and(|e| e == "js")
            && let Ok(text) = std::fs::read_to_string(&path)
            && let Some(found) = pattern.captures(&text).and_then(|c| c.get(1))
        {
            return Some(found.as_str().to_owned());
        }
    }
    None
}

/// A service account's signed request for a token: a JWT from `client_email` to
/// `audience` asking for the Code Assist scopes, valid an hour, signed RS256 with the
/// account's private key (`kid` its `private_key_id`).
fn service_account_assertion(file: &Value, audience: &str) -> Result<String, String> {
    let email = text(file, "client_email").ok_or("no client_email")?;
    let pem = text(file, "private_key").ok_or("no private_key")?;
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|e| format!("its private_key is not an RSA key in PEM form ({e})"))?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = text(file, "private_key_id");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let claims = json!({
        "iss": email,
        "scope": SCOPES,
        "aud": audience,
        "iat": now,
        "exp": now + 3600,
    });
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|e| format!("cannot sign a token request: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(secret: Option<&str>) -> OAuthClient {
        OAuthClient {
            token_url: TOKEN_URL.into(),
            client_id: GEMINI_CLI_CLIENT_ID.into(),
            client_secret: secret.map(Secret::new),
            installed_cli: None,
        }
    }

    #[test]
    fn a_gemini_login_refreshes_only_with_the_client_secret_and_keeps_its_refresh_token() {
        let mut file = json!({"access_token": "ya29.old", "refresh_token": "1//rt", "scope": "s",
                              "token_type": "Bearer", "expiry_date": 1});
        let tokens = GeminiCli.read(&file).unwrap();
        let err = GeminiCli
            .renewal(&file, &tokens, &client(None))
            .err()
            .unwrap();
        assert!(err.contains(CLIENT_SECRET_ENV), "{err}");
        let renewal = GeminiCli
            .renewal(&file, &tokens, &client(Some("public-secret")))
            .unwrap();
        let RefreshBody::Form(fields) = renewal.body else {
            panic!("Google takes a form")
        };
        assert!(fields.contains(&("client_secret", "public-secret".into())));
        GeminiCli
            .store_refresh(
                &mut file,
                &json!({"access_token": "ya29.new", "expires_in": 3599}),
                1_000,
            )
            .unwrap();
        assert_eq!(file["refresh_token"], "1//rt");
        assert_eq!(file["expiry_date"], 3_600_000);
    }

    #[test]
    fn the_secret_is_read_from_an_installed_gemini_cli() {
        let dir = tempfile::tempdir().unwrap();
        let package = dir.path().join("lib/node_modules/@google/gemini-cli");
        let core = package.join("node_modules/@google/gemini-cli-core/dist/src/code_assist");
        std::fs::create_dir_all(package.join("dist")).unwrap();
        std::fs::create_dir_all(&core).unwrap();
        std::fs::write(
            package.join("dist/index.js"),
            "#!/usr/bin/env node\nimport './x.js';\n",
        )
        .unwrap();
        std::fs::write(
            core.join("oauth2.js"),
            "const OAUTH_CLIENT_ID = 'x.apps.googleusercontent.com';\nconst OAUTH_CLIENT_SECRET = 'test-installed-app-secret';\n",
        )
        .unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(package.join("dist/index.js"), bin.join("gemini")).unwrap();
        #[cfg(unix)]
        assert_eq!(
            secret_of_installed_cli(&bin.join("gemini")).as_deref(),
            Some("test-installed-app-secret")
        );
        assert_eq!(secret_of_installed_cli(&dir.path().join("nothing")), None);
        // Renewal uses it when nothing is configured.
        #[cfg(unix)]
        {
            let file = json!({"access_token": "a", "refresh_token": "r", "expiry_date": 1});
            let tokens = GeminiCli.read(&file).unwrap();
            let mut client = client(None);
            client.installed_cli = Some(bin.join("gemini"));
            let RefreshBody::Form(fields) =
                GeminiCli.renewal(&file, &tokens, &client).unwrap().body
            else {
                panic!("a form")
            };
            assert!(fields.contains(&("client_secret", "test-installed-app-secret".into())));
        }
    }

    #[test]
    fn adc_files_of_unknown_types_or_missing_fields_are_refused() {
        assert!(
            GoogleAdc
                .read(&json!({"type": "external_account"}))
                .is_err()
        );
        assert!(
            GoogleAdc
                .read(&json!({"type": "authorized_user", "client_id": "c"}))
                .is_err()
        );
        let user = json!({"type": "authorized_user", "client_id": "c", "client_secret": "s",
                          "refresh_token": "r"});
        let tokens = GoogleAdc.read(&user).unwrap();
        assert_eq!(tokens.expires_at_ms, Some(0), "renewed before first use");
        let renewal = GoogleAdc.renewal(&user, &tokens, &client(None)).unwrap();
        let RefreshBody::Form(fields) = renewal.body else {
            panic!("Google takes a form")
        };
        assert!(fields.contains(&("client_id", "c".into())));
        assert!(!GoogleAdc.writes_back());
    }
}
