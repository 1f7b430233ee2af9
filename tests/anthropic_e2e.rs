//! The Anthropic front-end and back-ends end to end over real HTTP on loopback: Anthropic
//! clients to OpenAI and Anthropic providers, OpenAI clients to Anthropic providers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_anthropic::{self, FakeAnthropic};
use support::fake_openai::{self, FakeOpenAi};
use support::{client, config, fake_backend_config, start};

/// (event name, data) pairs of an Anthropic SSE body.
fn events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|frame| {
            let name = frame
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_owned();
            let data = frame
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(|d| serde_json::from_str(d).unwrap())
                .unwrap_or(Value::Null);
            (name, data)
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

fn messages_request(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 1024,
        "stream": stream,
        "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}]
    })
}

fn weather_tool() -> Value {
    json!([{"name": "get_weather", "description": "Weather for a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

async fn post(url: String, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().post(url).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

// ---- Anthropic client -> OpenAI back-end ----

async fn openai_behind(mode: fake_openai::Mode) -> (FakeOpenAi, support::Llmux) {
    let fake = FakeOpenAi::start(mode).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "sk-upstream")],
    )
    .await;
    (fake, llmux)
}

#[tokio::test]
async fn claude_style_stream_of_text_then_tool_call_from_an_openai_backend() {
    let (fake, llmux) = openai_behind(fake_openai::Mode::Normal).await;
    let mut request = messages_request("fake-small", true);
    request["tools"] = weather_tool();
    let response = post(
        llmux.anthropic_url("/v1/messages?beta=true"),
        &request,
        &[
            ("anthropic-beta", "interleaved-thinking-2025-05-14"),
            ("anthropic-version", "2023-06-01"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let events = events(&response.text().await.unwrap());
    assert_eq!(
        names(&events),
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    // Usage in message_start is an estimate, never zero.
    assert!(
        events[0].1["message"]["usage"]["input_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
    // No empty text block before the tool call; the text block is the text.
    assert_eq!(events[2].1["content_block"]["type"], "text");
    assert_eq!(events[3].1["delta"]["text"], "Let me check.");
    // The tool block: its input arrives whole in one delta (tool-call repair checks a
    // call's arguments once they are complete), including the fragment that came in the
    // chunk that opened the call.
    assert_eq!(events[5].1["content_block"]["type"], "tool_use");
    assert_eq!(events[5].1["content_block"]["name"], "get_weather");
    assert_eq!(events[5].1["content_block"]["id"], "call_fake_1");
    let input = events[6].1["delta"]["partial_json"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(input).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(events[8].1["delta"]["stop_reason"], "tool_use");
    assert_eq!(events[8].1["usage"]["output_tokens"], 4);

    let upstream = fake.last_request();
    assert_eq!(
        upstream.body["messages"][0],
        json!({"role": "system", "content": "You are terse."})
    );
    assert_eq!(upstream.body["tools"][0]["function"]["name"], "get_weather");
    // Anthropic headers and cache_control never reach a non-Anthropic provider.
    assert!(upstream.headers.get("anthropic-beta").is_none());
    assert!(upstream.headers.get("anthropic-version").is_none());
    assert!(!upstream.body.to_string().contains("cache_control"));
}

#[tokio::test]
async fn non_streaming_anthropic_over_openai_with_tool_round_trip() {
    let (fake, llmux) = openai_behind(fake_openai::Mode::Normal).await;
    let mut request = messages_request("fake-small", false);
    request["tools"] = weather_tool();
    let body: Value = post(llmux.url("/anthropic/v1/messages"), &request, &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["stop_reason"], "tool_use");
    let tool_use = body["content"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["type"] == "tool_use")
        .unwrap();
    assert_eq!(tool_use["input"], json!({"city": "Paris"}));
    assert_eq!(body["usage"]["input_tokens"], 12);

    // The client answers the call; the ids line up upstream.
    let mut followup = messages_request("fake-small", false);
    followup["tools"] = weather_tool();
    followup["messages"] = json!([
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": [tool_use]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": tool_use["id"], "content": [
                {"type": "text", "text": "Sunny, 21C"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
            ]},
            {"type": "text", "text": "Thanks!"}
        ]}
    ]);
    let body: Value = post(llmux.url("/v1/messages"), &followup, &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["stop_reason"], "end_turn", "{body}");
    let upstream = fake.last_request().body;
    let messages = upstream["messages"].as_array().unwrap();
    let call = &messages[2]["tool_calls"][0];
    assert_eq!(call["id"], tool_use["id"]);
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(messages[3]["role"], "tool");
    assert_eq!(messages[3]["tool_call_id"], tool_use["id"]);
    assert_eq!(messages[3]["content"], "Sunny, 21C");
    // OpenAI takes only text in tool messages: the image follows in a user message.
    assert_eq!(messages[4]["role"], "user");
    assert_eq!(messages[4]["content"][1]["type"], "image_url");
    assert_eq!(messages[5], json!({"role": "user", "content": "Thanks!"}));
}

#[tokio::test]
async fn openai_reasoning_becomes_signed_thinking_blocks_for_claude_code() {
    let (_fake, llmux) = openai_behind(fake_openai::Mode::Reasoning).await;
    let mut request = messages_request("fake-small", true);
    request["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    let events = events(
        &post(llmux.anthropic_url("/v1/messages"), &request, &[])
            .await
            .text()
            .await
            .unwrap(),
    );
    let thinking_start = events
        .iter()
        .position(|(n, e)| n == "content_block_start" && e["content_block"]["type"] == "thinking")
        .unwrap();
    let text_start = events
        .iter()
        .position(|(n, e)| n == "content_block_start" && e["content_block"]["type"] == "text")
        .unwrap();
    assert!(thinking_start < text_start);
    let between = &events[thinking_start..text_start];
    let thinking: String = between
        .iter()
        .filter_map(|(_, e)| e["delta"]["thinking"].as_str())
        .collect();
    assert_eq!(thinking, "Thinking it over.");
    // Closed with a signature before the text starts, and thinking never leaks into text.
    assert!(
        between
            .iter()
            .any(|(_, e)| e["delta"]["type"] == "signature_delta")
    );
    assert!(
        events[text_start..]
            .iter()
            .all(|(_, e)| e["delta"]["type"] != "thinking_delta")
    );
}

// ---- Anthropic client -> Anthropic back-end (same protocol) ----

async fn anthropic_behind(mode: fake_anthropic::Mode) -> (FakeAnthropic, support::Llmux) {
    let fake = FakeAnthropic::start(mode).await;
    let toml = format!(
        "default_backend = \"claude\"\n[backends.claude]\ntype = \"anthropic-compatible\"\nbase_url = \"{}\"\napi_key_env = \"CLAUDE_KEY\"\n",
        fake.base_url
    );
    let llmux = start(config(&toml, &[]), &[("CLAUDE_KEY", "sk-ant-upstream")]).await;
    (fake, llmux)
}

#[tokio::test]
async fn anthropic_to_anthropic_keeps_headers_unknown_fields_and_signatures() {
    let (fake, llmux) = anthropic_behind(fake_anthropic::Mode::Normal).await;
    let mut request = messages_request("claude-fake-1", false);
    request["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    request["service_tier"] = json!("auto");
    request["context_management"] = json!({"edits": []});
    request["messages"] = json!([
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Earlier thought.", "signature": "sig-earlier"},
            {"type": "text", "text": "Hello.", "citations": null}
        ]},
        {"role": "user", "content": [{"type": "text", "text": "And now?", "cache_control": {"type": "ephemeral"}}]}
    ]);
    let response = post(
        llmux.url("/v1/messages"),
        &request,
        &[
            (
                "anthropic-beta",
                "interleaved-thinking-2025-05-14,context-management-2025-06-27",
            ),
            ("anthropic-version", "2023-06-01"),
        ],
    )
    .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["content"][0],
        json!({"type": "thinking", "thinking": "Let me think.", "signature": "sig-from-anthropic"})
    );
    assert_eq!(
        body["usage"],
        json!({"input_tokens": 21, "cache_creation_input_tokens": 3, "cache_read_input_tokens": 100, "output_tokens": 9})
    );
    assert_eq!(body["id"], "msg_fake");

    let upstream = fake.last_request();
    assert_eq!(upstream.headers["x-api-key"], "sk-ant-upstream");
    assert_eq!(
        upstream.headers["anthropic-beta"],
        "interleaved-thinking-2025-05-14,context-management-2025-06-27"
    );
    assert_eq!(upstream.headers["anthropic-version"], "2023-06-01");
    let sent = upstream.body;
    assert_eq!(sent["service_tier"], "auto");
    assert_eq!(sent["context_management"], json!({"edits": []}));
    assert_eq!(
        sent["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_eq!(sent["system"], request["system"]);
    assert_eq!(
        sent["messages"][1]["content"][0],
        request["messages"][1]["content"][0]
    );
    assert_eq!(
        sent["messages"][2]["content"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );
}

#[tokio::test]
async fn anthropic_stream_passes_through_with_cache_usage_in_message_start() {
    let (_fake, llmux) = anthropic_behind(fake_anthropic::Mode::Normal).await;
    let mut request = messages_request("claude-fake-1", true);
    request["tools"] = weather_tool();
    request["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    let events = events(
        &post(llmux.anthropic_url("/v1/messages"), &request, &[])
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(
        events[0].1["message"]["usage"]["cache_read_input_tokens"],
        100
    );
    assert_eq!(events[0].1["message"]["usage"]["input_tokens"], 21);
    let signature: Vec<&str> = events
        .iter()
        .filter_map(|(_, e)| e["delta"]["signature"].as_str())
        .collect();
    assert_eq!(signature, ["sig-from-anthropic"]);
    let input: String = events
        .iter()
        .filter_map(|(_, e)| e["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&input).unwrap(),
        json!({"city": "Paris"})
    );
    let last_delta = events
        .iter()
        .rev()
        .find(|(n, _)| n == "message_delta")
        .unwrap();
    assert_eq!(last_delta.1["delta"]["stop_reason"], "tool_use");
    assert_eq!(events.last().unwrap().0, "message_stop");
}

#[tokio::test]
async fn overloaded_upstream_is_a_529_in_anthropic_shape_and_mid_stream_an_error_event() {
    let (_fake, llmux) = anthropic_behind(fake_anthropic::Mode::Status(529)).await;
    let response = post(
        llmux.url("/v1/messages"),
        &messages_request("claude-fake-1", true),
        &[],
    )
    .await;
    assert_eq!(response.status(), 529);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "overloaded_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("fake says 529")
    );

    let (_fake, llmux) = anthropic_behind(fake_anthropic::Mode::MidStreamError).await;
    let response = post(
        llmux.url("/v1/messages"),
        &messages_request("claude-fake-1", true),
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    let events = events(&response.text().await.unwrap());
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "error");
    assert_eq!(last["error"]["type"], "overloaded_error");
    assert!(!events.iter().any(|(n, _)| n == "message_stop"));
}

// ---- OpenAI client -> Anthropic back-end ----

#[tokio::test]
async fn openai_clients_reach_anthropic_backends_streaming_and_not() {
    let (fake, llmux) = anthropic_behind(fake_anthropic::Mode::Normal).await;
    let request = json!({
        "model": "claude-fake-1",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
        "reasoning_effort": "medium",
        "stop": ["END"],
        "parallel_tool_calls": false
    });
    let body: Value = post(llmux.url("/v1/chat/completions"), &request, &[])
        .await
        .json()
        .await
        .unwrap();
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], "Hello from fake Claude.");
    assert_eq!(message["reasoning_content"], "Let me think.");
    assert_eq!(message["tool_calls"][0]["id"], "toolu_fake_1");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Paris\"}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    // Anthropic counts input without the cache; OpenAI counts it all.
    assert_eq!(body["usage"]["prompt_tokens"], 124);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 100);

    let sent = fake.last_request().body;
    assert_eq!(sent["system"], "Be brief.");
    assert_eq!(
        sent["thinking"],
        json!({"type": "enabled", "budget_tokens": 2048})
    );
    assert_eq!(sent["stop_sequences"], json!(["END"]));
    assert_eq!(
        sent["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert!(sent["max_tokens"].as_u64().unwrap() > 2048);
    assert!(fake.last_request().headers.get("anthropic-beta").is_none());

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let text = post(llmux.url("/v1/chat/completions"), &streamed, &[])
        .await
        .text()
        .await
        .unwrap();
    let frames = support::sse_data(&text);
    assert_eq!(support::streamed_text(&frames), "Hello from fake Claude.");
    assert!(text.contains("\"reasoning_content\":\"Let me think.\""));
    assert!(text.contains("\"finish_reason\":\"tool_calls\""));
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
}

// ---- bad input, auth, routes ----

#[tokio::test]
async fn bad_anthropic_requests_get_anthropic_shaped_400s() {
    let (_fake, llmux) = anthropic_behind(fake_anthropic::Mode::Normal).await;
    let cases = [
        (
            json!({"model": "claude-fake-1", "messages": [{"role": "user", "content": "hi"}]}),
            "max_tokens",
        ),
        (
            json!({"model": "claude-fake-1", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_nope", "content": "x"}]}]}),
            "toolu_nope",
        ),
        (
            json!({"model": "claude-fake-1", "max_tokens": 5, "messages": [{"role": "user", "content": [{"text": "no type"}]}]}),
            "type",
        ),
        (
            json!({"model": "claude-fake-1", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "x"}]}]}),
            "only allowed in user",
        ),
        (
            json!({"model": "claude-fake-1", "max_tokens": "many", "messages": []}),
            "max_tokens",
        ),
    ];
    for (request, needle) in cases {
        let response = post(llmux.anthropic_url("/v1/messages"), &request, &[]).await;
        assert_eq!(response.status(), 422, "{request}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{needle}: {body}"
        );
    }
    let response = client()
        .post(llmux.url("/v1/messages"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn anthropic_auth_takes_x_api_key_and_errors_in_its_shape() {
    let fake = FakeAnthropic::start(fake_anthropic::Mode::Normal).await;
    let toml = format!(
        "default_backend = \"claude\"\n[backends.claude]\ntype = \"anthropic-compatible\"\nbase_url = \"{}\"\n",
        fake.base_url
    );
    let llmux = start(
        config(&toml, &[("LLM_INTERACTIVE_PROXY_API_KEY", "proxy-key")]),
        &[],
    )
    .await;
    let request = messages_request("claude-fake-1", false);
    let response = post(llmux.anthropic_url("/v1/messages"), &request, &[]).await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(
        post(
            llmux.anthropic_url("/v1/messages"),
            &request,
            &[("x-api-key", "proxy-key")]
        )
        .await
        .status(),
        200
    );
    assert_eq!(
        post(
            llmux.url("/anthropic/v1/messages"),
            &request,
            &[("authorization", "Bearer proxy-key")]
        )
        .await
        .status(),
        200
    );
    // Health stays open on both ports.
    assert_eq!(
        client()
            .get(llmux.url("/anthropic/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        client()
            .get(llmux.anthropic_url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let missing = client()
        .get(llmux.anthropic_url("/v2/nothing"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["type"], "not_found_error");
}

#[tokio::test]
async fn count_tokens_and_models_answer_on_both_ports() {
    let (_fake, llmux) = anthropic_behind(fake_anthropic::Mode::Normal).await;
    let request = json!({"model": "claude-fake-1", "messages": [{"role": "user", "content": "a fairly long message to count here"}]});
    for url in [
        llmux.url("/v1/messages/count_tokens?beta=true"),
        llmux.anthropic_url("/v1/messages/count_tokens"),
    ] {
        let body: Value = post(url, &request, &[]).await.json().await.unwrap();
        assert!(body["input_tokens"].as_u64().unwrap() > 0, "{body}");
    }
    for url in [
        llmux.url("/anthropic/v1/models"),
        llmux.anthropic_url("/v1/models"),
    ] {
        let body: Value = client()
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let ids: Vec<&str> = body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap())
            .collect();
        assert!(
            ids.contains(&"claude-fake-1") && ids.contains(&"claude:claude-fake-1"),
            "{ids:?}"
        );
        assert_eq!(body["data"][0]["type"], "model");
    }
}
