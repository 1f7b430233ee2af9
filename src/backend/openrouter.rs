//! `openrouter`: OpenRouter (https://openrouter.ai/api/v1), key in OPENROUTER_API_KEY.
//!
//! Attribution headers (https://openrouter.ai/docs/app-attribution): `HTTP-Referer` is the
//! app's URL; the title goes out both as the older `X-Title` most clients send and as the
//! current `X-OpenRouter-Title`. Both values are configurable (`app_url`, `app_title`).
//! OpenRouter streams reasoning as `delta.reasoning` and sends `:` keep-alive comments,
//! which the SSE reader skips.

use crate::config::BackendConfig;

/// Attribution headers sent on every request.
pub fn identity_headers(config: &BackendConfig) -> Vec<(&'static str, String)> {
    vec![
        ("http-referer", config.app_url.clone()),
        ("x-title", config.app_title.clone()),
        ("x-openrouter-title", config.app_title.clone()),
    ]
}
