//! The official Google Gen AI Python SDK (`google-genai`, installed into .venv by
//! scripts/setup) driving llmux's Gemini front-end, with an OpenAI-protocol fake and a
//! Gemini fake behind it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::fake_gemini::{self, FakeGemini};
use support::fake_openai::{self, FakeOpenAi};
use support::{config, fake_backend_config, start};

const CHECKS: [&str; 5] = [
    "generate",
    "stream",
    "function_call",
    "count_tokens",
    "models_list",
];

async fn run_client(args: &[&str]) -> (bool, String) {
    support::python::run_script("genai_sdk_client.py", args).await
}

fn assert_checks_passed(ok: bool, output: &str, checks: &[&str]) {
    assert!(ok, "the google-genai client failed:\n{output}");
    for check in checks {
        assert!(
            output.contains(&format!("ok {check}")),
            "{check} did not pass:\n{output}"
        );
    }
}

/// Runs the client twice: with the SDK's default API version (`v1`, whose `GET
/// /v1/models` is still the OpenAI front-end's: see `models_list_on_the_default_v1_api`)
/// and with `v1beta` (what Gemini CLI uses), every check.
async fn run_both_versions(common: &[&str]) {
    let mut args = common.to_vec();
    for check in &CHECKS[..4] {
        args.extend(["--only", check]);
    }
    let (ok, output) = run_client(&args).await;
    assert_checks_passed(ok, &output, &CHECKS[..4]);
    let mut args = common.to_vec();
    args.extend(["--api-version", "v1beta"]);
    let (ok, output) = run_client(&args).await;
    assert_checks_passed(ok, &output, &CHECKS);
}

#[tokio::test]
async fn the_genai_sdk_works_against_an_openai_backend() {
    let fake = FakeOpenAi::start(fake_openai::Mode::Normal).await;
    let llmux = start(
        config(
            &fake_backend_config(&fake.base_url, ""),
            &[("LLM_INTERACTIVE_PROXY_API_KEY", "sdk-proxy-key")],
        ),
        &[("FAKE_API_KEY", "sk-upstream")],
    )
    .await;
    let base = llmux.url("");
    run_both_versions(&[
        "--base-url",
        &base,
        "--api-key",
        "sdk-proxy-key",
        "--model",
        "fake-small",
        "--expect-model",
        "fake-small",
        "--expect-model",
        "fake:fake-large",
    ])
    .await;
    assert!(fake.hit_count() >= 12, "{} hits", fake.hit_count());

    // The function response reached OpenAI as a tool message answering the call.
    let requests = fake.requests.lock().unwrap().clone();
    let answered = requests.iter().any(|r| {
        let messages = r.body["messages"].as_array().cloned().unwrap_or_default();
        let call_ids: Vec<&str> = messages
            .iter()
            .filter_map(|m| m["tool_calls"].as_array())
            .flatten()
            .filter_map(|c| c["id"].as_str())
            .collect();
        messages.iter().any(|m| {
            m["role"] == "tool"
                && m["tool_call_id"]
                    .as_str()
                    .is_some_and(|id| call_ids.contains(&id))
        })
    });
    assert!(answered, "no matched tool result reached the provider");
    // The SDK's key authenticated it with llmux and went no further.
    assert!(
        requests
            .iter()
            .all(|r| r.headers["authorization"] == "Bearer sk-upstream")
    );
}

#[tokio::test]
async fn the_genai_sdk_works_against_a_gemini_backend() {
    let fake = FakeGemini::start(fake_gemini::Mode::Normal).await;
    let toml = format!(
        "default_backend = \"gem\"\n[backends.gem]\ntype = \"gemini\"\nbase_url = \"{}\"\napi_key_env = \"GEM_KEY\"\n",
        fake.base_url
    );
    let llmux = start(
        config(&toml, &[("LLM_INTERACTIVE_PROXY_API_KEY", "sdk-proxy-key")]),
        &[("GEM_KEY", "goog-upstream-key")],
    )
    .await;
    let base = llmux.url("");
    // A Gemini 3 model: the fake rejects a call sent back without its signature.
    run_both_versions(&[
        "--base-url",
        &base,
        "--api-key",
        "sdk-proxy-key",
        "--model",
        "gemini-3-fake-pro",
        "--expect-model",
        "gemini-fake-flash",
        "--expect-model",
        "gem:gemini-3-fake-pro",
    ])
    .await;

    let calls = fake.all_calls();
    assert!(calls.len() >= 12, "{} calls", calls.len());
    for call in &calls {
        assert_eq!(call.api_key(), Some("goog-upstream-key"));
        if call.method == "streamGenerateContent" {
            assert_eq!(call.query.as_deref(), Some("alt=sse"));
        }
    }
    // The follow-up carried Gemini's own signature back on the call, and no invented id.
    let followup = calls
        .iter()
        .find(|c| c.body.to_string().contains("functionResponse"))
        .expect("no function response reached the provider");
    let model_turn = &followup.body["contents"][1];
    let call_part = model_turn["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p.get("functionCall").is_some())
        .unwrap();
    assert_eq!(
        call_part["thoughtSignature"],
        fake_gemini::CALL_SIGNATURE,
        "{}",
        followup.body
    );
    assert!(call_part["functionCall"].get("id").is_none());
}

#[tokio::test]
async fn the_genai_sdk_sees_a_wrong_proxy_key_as_an_error() {
    let fake = FakeOpenAi::start(fake_openai::Mode::Normal).await;
    let llmux = start(
        config(
            &fake_backend_config(&fake.base_url, ""),
            &[("LLM_INTERACTIVE_PROXY_API_KEY", "sdk-proxy-key")],
        ),
        &[],
    )
    .await;
    let base = llmux.url("");
    let (ok, output) = run_client(&[
        "--base-url",
        &base,
        "--api-key",
        "wrong",
        "--model",
        "fake-small",
        "--only",
        "generate",
    ])
    .await;
    assert!(!ok, "{output}");
    assert!(
        output.contains("401") && output.contains("UNAUTHENTICATED"),
        "{output}"
    );
    assert_eq!(fake.hit_count(), 0);
}

/// google-genai 2 and later list models at `GET /v1/models`, the OpenAI front-end's path;
/// llmux recognises Gemini clients there (`frontend::gemini::is_gemini_client`) and
/// answers in Gemini's shape.
#[tokio::test]
async fn models_list_on_the_default_v1_api() {
    let fake = FakeOpenAi::start(fake_openai::Mode::Normal).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "sk-upstream")],
    )
    .await;
    let base = llmux.url("");
    let (ok, output) = run_client(&[
        "--base-url",
        &base,
        "--api-key",
        "unused",
        "--model",
        "fake-small",
        "--expect-model",
        "fake-small",
        "--only",
        "models_list",
    ])
    .await;
    assert_checks_passed(ok, &output, &["models_list"]);
}
