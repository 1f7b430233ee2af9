//! One descriptor per back-end kind: its name in the config, the wire it speaks, its
//! provider's API root and key variable, whether it needs a key, whether a back-end of that
//! kind exists without configuration, and the headers that identify llmux to it. Adding a
//! provider that speaks a wire llmux already has is one entry here.

use crate::config::{BackendConfig, BackendKind};
use crate::credentials::login::{LoginFormat, claude, codex, google, qwen};
use crate::model::Protocol;

/// Where a subscription-login kind's CLI keeps its login, and the OAuth client it
/// refreshes as.
pub struct LoginDefaults {
    pub format: &'static dyn LoginFormat,
    /// A variable naming the credential file itself (`GOOGLE_APPLICATION_CREDENTIALS`).
    pub file_env: Option<&'static str>,
    /// The variable that moves the CLI's directory (`CODEX_HOME`), when it has one.
    pub home_env: Option<&'static str>,
    /// The CLI's directory under the user's home.
    pub home_dir: &'static str,
    /// The credential file in that directory.
    pub file: &'static str,
    pub token_url: &'static str,
    pub client_id: &'static str,
    /// The variable holding the OAuth client's secret, for clients that have one.
    pub client_secret_env: Option<&'static str>,
    /// The CLI's executable, whose installed package holds that secret.
    pub cli_executable: Option<&'static str>,
}

/// What llmux knows about a kind of back-end.
pub struct Provider {
    pub kind: BackendKind,
    /// `type = "..."` in a `[backends.ID]` table.
    pub name: &'static str,
    /// The protocol it speaks (`None`: the mock, which answers in process).
    pub wire: Option<Protocol>,
    /// The provider's API root, when the kind has a fixed provider.
    pub default_base_url: Option<&'static str>,
    /// The environment variable its key is read from by default.
    pub key_env: Option<&'static str>,
    /// Requests fail without a key.
    pub requires_key: bool,
    /// It may speak the OpenAI Responses API instead of chat completions (`api = "responses"`).
    pub responses_api: bool,
    /// A back-end with this kind's name exists without configuration.
    pub builtin: bool,
    /// Headers that identify the app to the provider, on every request.
    pub identity: fn(&BackendConfig) -> Vec<(&'static str, String)>,
    /// A subscription login instead of keys.
    pub login: Option<LoginDefaults>,
}

fn no_identity(_: &BackendConfig) -> Vec<(&'static str, String)> {
    Vec::new()
}

/// Every kind, in the order the settings page offers them.
pub static PROVIDERS: [Provider; 15] = [
    Provider {
        kind: BackendKind::OpenAi,
        name: "openai",
        wire: Some(Protocol::OpenAiChat),
        default_base_url: Some("https://api.openai.com/v1"),
        key_env: Some("OPENAI_API_KEY"),
        requires_key: true,
        responses_api: true,
        builtin: true,
        identity: no_identity,
        login: None,
    },
    Provider {
        kind: BackendKind::OpenRouter,
        name: "openrouter",
        wire: Some(Protocol::OpenAiChat),
        default_base_url: Some("https://openrouter.ai/api/v1"),
        key_env: Some("OPENROUTER_API_KEY"),
        requires_key: true,
        responses_api: false,
        builtin: true,
        identity: super::openrouter::identity_headers,
        login: None,
    },
    Provider {
        kind: BackendKind::Zai,
        name: "zai",
        wire: Some(Protocol::OpenAiChat),
        // The seed's default; international accounts use https://api.z.ai/api/paas/v4.
        default_base_url: Some("https://open.bigmodel.cn/api/paas/v4"),
        key_env: Some("ZAI_API_KEY"),
        requires_key: true,
        responses_api: false,
        builtin: true,
        identity: no_identity,
        login: None,
    },
    Provider {
        kind: BackendKind::OpenAiCompatible,
        name: "openai-compatible",
        wire: Some(Protocol::OpenAiChat),
        default_base_url: None,
        key_env: None,
        requires_key: false,
        responses_api: true,
        builtin: false,
        identity: no_identity,
        login: None,
    },
    Provider {
        kind: BackendKind::Anthropic,
        name: "anthropic",
        wire: Some(Protocol::Anthropic),
        // Anthropic-protocol bases are host roots, as in the Anthropic SDKs: llmux appends
        // /v1/messages.
        default_base_url: Some("https://api.anthropic.com"),
        key_env: Some("ANTHROPIC_API_KEY"),
        requires_key: true,
        responses_api: false,
        builtin: true,
        identity: no_identity,
        login: None,
    },
    Provider {
        kind: BackendKind::AnthropicCompatible,
        name: "anthropic-compatible",
        wire: Some(Protocol::Anthropic),
        default_base_url: None,
        key_env: None,
        requires_key: false,
        responses_api: false,
        builtin: false,
        identity: no_identity,
        login: None,
    },
    Provider {
        kind: BackendKind::ZaiCodingPlan,
        name: "zai-coding-plan",
        wire: Some(Protocol::Anthropic),
        default_base_url: Some("https://api.z.ai/api/anthropic"),
        key_env: Some("ZAI_API_KEY"),
        requires_key: true,
        responses_api: false,
        builtin: true,
        identity: no_identity,
        login: None,
    },
    Provider {
        kind: BackendKind::Gemini,
        name: "gemini",
        wire: Some(Protocol::Gemini),
        // The google-genai convention: the host root; llmux appends /v1beta/models/...
        default_base_url: Some("https://generativelanguage.googleapis.com"),
        key_env: Some("GEMINI_API_KEY"),
        requires_key: true,
        responses_api: false,
        builtin: true,
        identity: no_identity,
        login: None,
    },
    Provider {
        kind: BackendKind::OpenAiOAuth,
        name: "openai-oauth",
        wire: Some(Protocol::OpenAiResponses),
        // The ChatGPT back-end the Codex CLI calls: the Responses API at {base}/responses.
        default_base_url: Some("https://chatgpt.com/backend-api/codex"),
        key_env: None,
        requires_key: false,
        responses_api: false,
        builtin: true,
        identity: super::subscription::codex_identity,
        login: Some(LoginDefaults {
            format: &crate::credentials::login::codex::Codex,
            file_env: None,
            home_env: Some("CODEX_HOME"),
            home_dir: ".codex",
            file: "auth.json",
            token_url: codex::TOKEN_URL,
            client_id: codex::CLIENT_ID,
            client_secret_env: None,
            cli_executable: None,
        }),
    },
    Provider {
        kind: BackendKind::AnthropicOAuth,
        name: "anthropic-oauth",
        wire: Some(Protocol::Anthropic),
        default_base_url: Some("https://api.anthropic.com"),
        key_env: None,
        requires_key: false,
        responses_api: false,
        builtin: true,
        identity: super::subscription::claude_identity,
        login: Some(LoginDefaults {
            format: &crate::credentials::login::claude::Claude,
            file_env: None,
            home_env: Some("CLAUDE_CONFIG_DIR"),
            home_dir: ".claude",
            file: ".credentials.json",
            token_url: claude::TOKEN_URL,
            client_id: claude::CLIENT_ID,
            client_secret_env: None,
            cli_executable: None,
        }),
    },
    Provider {
        kind: BackendKind::QwenOAuth,
        name: "qwen-oauth",
        wire: Some(Protocol::OpenAiChat),
        // Used when the login names no resource_url (LIP's and CLIProxyAPI's default).
        default_base_url: Some("https://portal.qwen.ai/v1"),
        key_env: None,
        requires_key: false,
        responses_api: false,
        builtin: true,
        identity: super::subscription::qwen_identity,
        login: Some(LoginDefaults {
            format: &crate::credentials::login::qwen::Qwen,
            file_env: None,
            home_env: None,
            home_dir: ".qwen",
            file: "oauth_creds.json",
            token_url: qwen::TOKEN_URL,
            client_id: qwen::CLIENT_ID,
            client_secret_env: None,
            cli_executable: None,
        }),
    },
    Provider {
        kind: BackendKind::GeminiCliOAuthPersonal,
        name: "gemini-cli-oauth-personal",
        wire: Some(Protocol::Gemini),
        default_base_url: Some("https://cloudcode-pa.googleapis.com/v1internal"),
        key_env: None,
        requires_key: false,
        responses_api: false,
        builtin: true,
        identity: super::code_assist::identity,
        login: Some(LoginDefaults {
            format: &google::GeminiCli,
            file_env: None,
            home_env: Some("GEMINI_CLI_HOME"),
            home_dir: "",
            file: ".gemini/oauth_creds.json",
            token_url: google::TOKEN_URL,
            client_id: google::GEMINI_CLI_CLIENT_ID,
            client_secret_env: Some(google::CLIENT_SECRET_ENV),
            cli_executable: Some("gemini"),
        }),
    },
    Provider {
        kind: BackendKind::GeminiCliCloudProject,
        name: "gemini-cli-cloud-project",
        wire: Some(Protocol::Gemini),
        default_base_url: Some("https://cloudcode-pa.googleapis.com/v1internal"),
        key_env: None,
        requires_key: false,
        responses_api: false,
        builtin: true,
        identity: super::code_assist::identity,
        login: Some(LoginDefaults {
            format: &google::GoogleAdc,
            file_env: Some("GOOGLE_APPLICATION_CREDENTIALS"),
            home_env: Some("CLOUDSDK_CONFIG"),
            home_dir: ".config/gcloud",
            file: "application_default_credentials.json",
            token_url: google::TOKEN_URL,
            client_id: "",
            client_secret_env: None,
            cli_executable: None,
        }),
    },
    Provider {
        kind: BackendKind::GeminiCliAcp,
        name: "gemini-cli-acp",
        // Answers in process, from the agent's output: no HTTP wire.
        wire: None,
        default_base_url: None,
        key_env: None,
        requires_key: false,
        responses_api: false,
        builtin: true,
        identity: no_identity,
        login: None,
    },
    Provider {
        kind: BackendKind::Mock,
        name: "mock",
        wire: None,
        default_base_url: None,
        key_env: None,
        requires_key: false,
        responses_api: false,
        builtin: true,
        identity: no_identity,
        login: None,
    },
];

/// The descriptor of `kind`.
pub fn of(kind: BackendKind) -> &'static Provider {
    PROVIDERS
        .iter()
        .find(|p| p.kind == kind)
        .unwrap_or(&PROVIDERS[PROVIDERS.len() - 1])
}

/// The subscription-login kinds, for messages.
pub fn login_kind_names() -> String {
    PROVIDERS
        .iter()
        .filter(|p| p.login.is_some())
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The back-ends that exist without configuration, each named after its kind.
pub fn builtin() -> impl Iterator<Item = &'static str> {
    PROVIDERS.iter().filter(|p| p.builtin).map(|p| p.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_descriptor_and_names_are_unique() {
        for provider in &PROVIDERS {
            assert!(
                std::ptr::eq(of(provider.kind), provider),
                "{}",
                provider.name
            );
            let same_name = PROVIDERS.iter().filter(|p| p.name == provider.name).count();
            assert_eq!(same_name, 1, "{}", provider.name);
            assert!(
                !provider.requires_key || provider.key_env.is_some(),
                "{} needs a key but names no variable",
                provider.name
            );
        }
    }
}
