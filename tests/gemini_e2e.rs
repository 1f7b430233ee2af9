//! The Gemini front-end and back-end end to end over real HTTP on loopback: Gemini
//! clients to OpenAI, Anthropic and Gemini providers; OpenAI and Anthropic clients to a
//! Gemini provider. The fakes speak the real wire formats and record what reached them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_anthropic::{self, FakeAnthropic};
use support::fake_gemini::{self, FakeGemini};
use support::fake_openai::{self, FakeOpenAi};
use support::{Llmux, client, config, fake_backend_config, sse_data, start, streamed_text};

const PROXY_KEY: &str = "gemini-proxy-key";

async fn post(url: String, body: &Value, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().post(url).json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// `/v1beta/models/{model}:{method}` with an optional query.
fn gen_url(llmux: &Llmux, model: &str, method: &str, query: &str) -> String {
    let query = if query.is_empty() {
        String::new()
    } else {
        format!("?{query}")
    };
    llmux.url(&format!("/v1beta/models/{model}:{method}{query}"))
}

fn generate_request() -> Value {
    json!({
        "systemInstruction": {"parts": [{"text": "You are terse."}]},
        "contents": [{"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}],
        "generationConfig": {"temperature": 0.2, "maxOutputTokens": 256, "stopSequences": ["END"]}
    })
}

/// A tool declared the way Gemini clients do: OpenAPI-style upper-case types.
fn gemini_weather_tool() -> Value {
    json!([{"functionDeclarations": [{
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "OBJECT", "properties": {"city": {"type": "STRING", "description": "City name"}},
                       "required": ["city"]}
    }]}])
}

/// The records of a Gemini SSE body.
fn sse_records(body: &str) -> Vec<Value> {
    sse_data(body)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
        .collect()
}

/// The answer text (thoughts left out) of Gemini records.
fn answer_text(records: &[Value]) -> String {
    records
        .iter()
        .flat_map(|r| {
            r["candidates"][0]["content"]["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|p| p["thought"] != true)
        .filter_map(|p| p["text"].as_str().map(str::to_owned))
        .collect()
}

/// Every part of Gemini records, in order.
fn all_parts(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .flat_map(|r| {
            r["candidates"][0]["content"]["parts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect()
}

fn function_calls(parts: &[Value]) -> Vec<Value> {
    parts
        .iter()
        .filter_map(|p| p.get("functionCall").cloned())
        .collect()
}

// ---- Gemini client -> OpenAI back-end ----

async fn openai_behind(mode: fake_openai::Mode) -> (FakeOpenAi, Llmux) {
    let fake = FakeOpenAi::start(mode).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "sk-upstream")],
    )
    .await;
    (fake, llmux)
}

#[tokio::test]
async fn generate_content_over_an_openai_backend() {
    let (fake, llmux) = openai_behind(fake_openai::Mode::Normal).await;
    let response = post(
        gen_url(&llmux, "fake-small", "generateContent", ""),
        &generate_request(),
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    let candidate = &body["candidates"][0];
    assert_eq!(candidate["content"]["role"], "model");
    assert_eq!(answer_text(std::slice::from_ref(&body)), "Hello from fake.");
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(body["usageMetadata"]["promptTokenCount"], 12);
    assert_eq!(body["usageMetadata"]["candidatesTokenCount"], 4);
    assert_eq!(body["usageMetadata"]["totalTokenCount"], 16);
    assert_eq!(body["modelVersion"], "fake-small");
    assert!(body["responseId"].as_str().is_some_and(|id| !id.is_empty()));

    let upstream = fake.last_request();
    assert_eq!(upstream.body["model"], "fake-small");
    assert_ne!(upstream.body["stream"], true);
    assert_eq!(
        upstream.body["messages"],
        json!([
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the weather in Paris?"}
        ])
    );
    assert_eq!(upstream.body["temperature"], 0.2);
    assert!(
        upstream.body["stop"] == json!(["END"]) || upstream.body["stop"] == "END",
        "{}",
        upstream.body
    );
    let max = upstream
        .body
        .get("max_completion_tokens")
        .or_else(|| upstream.body.get("max_tokens"));
    assert_eq!(max, Some(&json!(256)), "{}", upstream.body);
    assert_eq!(upstream.headers["authorization"], "Bearer sk-upstream");
    // Gemini's own fields never reach an OpenAI provider.
    let sent = upstream.body.to_string();
    assert!(!sent.contains("generationConfig") && !sent.contains("systemInstruction"));
}

#[tokio::test]
async fn stream_generate_content_as_sse_over_an_openai_backend() {
    let (fake, llmux) = openai_behind(fake_openai::Mode::Normal).await;
    let response = post(
        gen_url(&llmux, "fake-small", "streamGenerateContent", "alt=sse"),
        &generate_request(),
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let records = sse_records(&response.text().await.unwrap());
    assert!(records.len() >= 2, "{records:?}");
    assert_eq!(answer_text(&records), "Hello from fake.");
    // Every record is a whole GenerateContentResponse; the last carries the finish
    // reason and the usage (Gemini CLI insists on both).
    for record in &records {
        assert_eq!(record["candidates"][0]["content"]["role"], "model");
        assert_eq!(record["modelVersion"], "fake-small");
    }
    let last = records.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    assert_eq!(last["usageMetadata"]["totalTokenCount"], 16);
    assert!(
        records[..records.len() - 1]
            .iter()
            .all(|r| r["candidates"][0].get("finishReason").is_none())
    );

    let upstream = fake.last_request();
    assert_eq!(upstream.body["stream"], true);
    assert_eq!(upstream.body["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn stream_generate_content_without_alt_is_a_streamed_json_array() {
    let (_fake, llmux) = openai_behind(fake_openai::Mode::Normal).await;
    let response = post(
        gen_url(&llmux, "fake-small", "streamGenerateContent", ""),
        &generate_request(),
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with('[') && text.trim_end().ends_with(']'),
        "{text}"
    );
    let records: Vec<Value> = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(records.len() >= 2);
    assert_eq!(answer_text(&records), "Hello from fake.");
    assert_eq!(
        records.last().unwrap()["candidates"][0]["finishReason"],
        "STOP"
    );
    // An explicit `alt=json` is the same array.
    let text = post(
        gen_url(&llmux, "fake-small", "streamGenerateContent", "alt=json"),
        &generate_request(),
        &[],
    )
    .await
    .text()
    .await
    .unwrap();
    let again: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(answer_text(&again), "Hello from fake.");
}

#[tokio::test]
async fn function_calls_round_trip_with_ids_synthesized_and_matched() {
    let (fake, llmux) = openai_behind(fake_openai::Mode::Normal).await;
    let mut request = generate_request();
    request["tools"] = gemini_weather_tool();
    request["toolConfig"] = json!({"functionCallingConfig": {"mode": "AUTO"}});

    // Not streaming: the call comes back whole, with OpenAI's id (a real one).
    let body: Value = post(
        gen_url(&llmux, "fake-small", "generateContent", ""),
        &request,
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    let parts = all_parts(std::slice::from_ref(&body));
    let calls = function_calls(&parts);
    assert_eq!(calls.len(), 1, "{body}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(calls[0]["args"], json!({"city": "Paris"}));
    assert_eq!(calls[0]["id"], "call_fake_1");
    // Gemini has no "tool calls" finish reason.
    assert_eq!(body["candidates"][0]["finishReason"], "STOP");

    // The declaration went upstream as JSON Schema.
    let upstream = fake.last_request().body;
    let function = &upstream["tools"][0]["function"];
    assert_eq!(function["name"], "get_weather");
    assert_eq!(function["parameters"]["type"], "object");
    assert_eq!(
        function["parameters"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(upstream["tool_choice"], "auto");

    // Streaming (SSE): OpenAI's argument fragments arrive as one whole functionCall.
    let records = sse_records(
        &post(
            gen_url(&llmux, "fake-small", "streamGenerateContent", "alt=sse"),
            &request,
            &[],
        )
        .await
        .text()
        .await
        .unwrap(),
    );
    let parts = all_parts(&records);
    let calls = function_calls(&parts);
    assert_eq!(calls.len(), 1, "{records:?}");
    assert_eq!(calls[0]["args"], json!({"city": "Paris"}));
    assert_eq!(answer_text(&records), "Let me check.");
    assert_eq!(
        records.last().unwrap()["candidates"][0]["finishReason"],
        "STOP"
    );

    // The answer, sent back the way the Developer API's clients do: calls and responses
    // without ids, matched by name and order. Two parallel calls of the same function.
    let mut followup = generate_request();
    followup["tools"] = gemini_weather_tool();
    followup["contents"] = json!([
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {"role": "model", "parts": [
            {"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
            {"functionCall": {"name": "get_weather", "args": {"city": "Rome"}}}
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"name": "get_weather", "response": {"output": "Sunny, 21C"}}},
            {"functionResponse": {"name": "get_weather", "response": {"temp": 25, "sky": "clear"}}}
        ]}
    ]);
    let body: Value = post(
        gen_url(&llmux, "fake-small", "generateContent", ""),
        &followup,
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(answer_text(std::slice::from_ref(&body)), "Hello from fake.");
    let upstream = fake.last_request().body;
    let messages = upstream["messages"].as_array().unwrap();
    let assistant = messages.iter().find(|m| m["role"] == "assistant").unwrap();
    let ids: Vec<&str> = assistant["tool_calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    assert!(ids.iter().all(|id| !id.is_empty()));
    assert_eq!(
        serde_json::from_str::<Value>(
            assistant["tool_calls"][1]["function"]["arguments"]
                .as_str()
                .unwrap()
        )
        .unwrap(),
        json!({"city": "Rome"})
    );
    let results: Vec<&Value> = messages.iter().filter(|m| m["role"] == "tool").collect();
    assert_eq!(results.len(), 2);
    assert_eq!(results[0]["tool_call_id"], ids[0]);
    assert_eq!(results[0]["content"], "Sunny, 21C");
    assert_eq!(results[1]["tool_call_id"], ids[1]);
    assert_eq!(
        serde_json::from_str::<Value>(results[1]["content"].as_str().unwrap()).unwrap(),
        json!({"temp": 25, "sky": "clear"})
    );

    // The same history sent twice gives the same ids (stable for caches and loops).
    post(
        gen_url(&llmux, "fake-small", "generateContent", ""),
        &followup,
        &[],
    )
    .await;
    let again = fake.last_request().body;
    assert_eq!(again["messages"], upstream["messages"]);

    // With the ids the client got back, those ids go upstream.
    followup["contents"] = json!([
        {"role": "user", "parts": [{"text": "What is the weather in Paris?"}]},
        {"role": "model", "parts": [
            {"functionCall": {"id": "call_fake_1", "name": "get_weather", "args": {"city": "Paris"}}}
        ]},
        {"role": "user", "parts": [
            {"functionResponse": {"id": "call_fake_1", "name": "get_weather", "response": {"output": "Sunny"}}}
        ]}
    ]);
    let response = post(
        gen_url(&llmux, "fake-small", "generateContent", ""),
        &followup,
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    let upstream = fake.last_request().body;
    let messages = upstream["messages"].as_array().unwrap();
    let assistant = messages.iter().find(|m| m["role"] == "assistant").unwrap();
    assert_eq!(assistant["tool_calls"][0]["id"], "call_fake_1");
    let result = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(result["tool_call_id"], "call_fake_1");
}

#[tokio::test]
async fn count_tokens_answers_locally_in_both_request_forms() {
    let (fake, llmux) = openai_behind(fake_openai::Mode::Normal).await;
    let contents = json!([{"role": "user", "parts": [{"text": "Count these tokens, please."}]}]);
    let response = post(
        gen_url(&llmux, "fake-small", "countTokens", ""),
        &json!({ "contents": contents }),
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    let counted: Value = response.json().await.unwrap();
    let total = counted["totalTokens"].as_u64().unwrap();
    assert!(total > 0, "{counted}");

    let mut whole = generate_request();
    whole["contents"] = contents;
    whole["model"] = json!("models/fake-small");
    let counted: Value = post(
        gen_url(&llmux, "fake-small", "countTokens", ""),
        &json!({ "generateContentRequest": whole }),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    // The system instruction counts too.
    assert!(
        counted["totalTokens"].as_u64().unwrap() > total,
        "{counted}"
    );

    // Neither form has contents: a Google-shaped 422 (a missing field).
    let response = post(
        gen_url(&llmux, "fake-small", "countTokens", ""),
        &json!({}),
        &[],
    )
    .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(fake.hit_count(), 0, "countTokens never calls the provider");
}

#[tokio::test]
async fn models_are_listed_in_gemini_shape() {
    let (fake, llmux) = openai_behind(fake_openai::Mode::Normal).await;
    let body: Value = client()
        .get(llmux.url("/v1beta/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let models = body["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    // The default back-end's models plain, every back-end's prefixed.
    for expected in [
        "models/fake-small",
        "models/fake-large",
        "models/fake:fake-small",
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }
    let small = models
        .iter()
        .find(|m| m["name"] == "models/fake-small")
        .unwrap();
    assert!(
        small["supportedGenerationMethods"]
            .as_array()
            .unwrap()
            .contains(&json!("generateContent"))
    );
    assert!(
        fake.model_list_hits
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );

    // One model, with or without the `models/` prefix in the path.
    let one: Value = client()
        .get(llmux.url("/v1beta/models/fake-small"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(one["name"], "models/fake-small");
}

/// A Google error envelope: `{"error":{"code","message","status"}}`, code = HTTP status.
async fn google_error(response: reqwest::Response, status: u16, name: &str) -> String {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], status, "{body}");
    assert_eq!(body["error"]["status"], name, "{body}");
    body["error"]["message"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn bad_gemini_requests_get_google_shaped_4xx() {
    let (fake, llmux) = openai_behind(fake_openai::Mode::Normal).await;
    let url = gen_url(&llmux, "fake-small", "generateContent", "");

    // A part of a type llmux does not know.
    let request = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}, {"videoFrame": {"n": 1}}]}]});
    let message = google_error(
        post(url.clone(), &request, &[]).await,
        422,
        "INVALID_ARGUMENT",
    )
    .await;
    assert!(message.contains("contents[0].parts[1]"), "{message}");

    // A part with two kinds of data.
    let request = json!({"contents": [{"role": "user", "parts": [{"text": "hi", "inlineData": {"mimeType": "image/png", "data": "AAAA"}}]}]});
    let message = google_error(
        post(url.clone(), &request, &[]).await,
        422,
        "INVALID_ARGUMENT",
    )
    .await;
    assert!(message.contains("contents[0].parts[0]"), "{message}");

    // A functionResponse that answers no call.
    let request = json!({"contents": [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "x"}}}]}
    ]});
    let message = google_error(
        post(url.clone(), &request, &[]).await,
        422,
        "INVALID_ARGUMENT",
    )
    .await;
    assert!(
        message.contains("contents[1].parts[0]") && message.contains("get_weather"),
        "{message}"
    );

    // A role Gemini does not have.
    let request = json!({"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]});
    let message = google_error(
        post(url.clone(), &request, &[]).await,
        422,
        "INVALID_ARGUMENT",
    )
    .await;
    assert!(message.contains("role"), "{message}");

    // No contents.
    google_error(
        post(url.clone(), &json!({"contents": []}), &[]).await,
        422,
        "INVALID_ARGUMENT",
    )
    .await;

    // Not JSON at all, streaming or not: still a JSON error, never an SSE stream.
    for url in [
        url.clone(),
        gen_url(&llmux, "fake-small", "streamGenerateContent", "alt=sse"),
    ] {
        let response = client()
            .post(url)
            .header("content-type", "application/json")
            .body("{\"contents\": [")
            .send()
            .await
            .unwrap();
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        google_error(response, 400, "INVALID_ARGUMENT").await;
    }

    // An unknown method on a model.
    let response = post(
        gen_url(&llmux, "fake-small", "embedContent", ""),
        &generate_request(),
        &[],
    )
    .await;
    google_error(response, 404, "NOT_FOUND").await;

    assert_eq!(fake.hit_count(), 0, "no bad request reached the provider");
}

#[tokio::test]
async fn upstream_rate_limits_are_resource_exhausted() {
    let (fake, llmux) = openai_behind(fake_openai::Mode::Status(429)).await;
    for (method, query) in [
        ("generateContent", ""),
        ("streamGenerateContent", "alt=sse"),
        ("streamGenerateContent", ""),
    ] {
        let response = post(
            gen_url(&llmux, "fake-small", method, query),
            &generate_request(),
            &[],
        )
        .await;
        assert_eq!(
            response
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap()),
            Some("7"),
            "{method}?{query}"
        );
        let message = google_error(response, 429, "RESOURCE_EXHAUSTED").await;
        assert!(message.contains("fake says 429"), "{message}");
        assert!(!message.contains("sk-upstream"));
    }
    assert!(fake.hit_count() >= 3);

    let (_fake, llmux) = openai_behind(fake_openai::Mode::Status(400)).await;
    let response = post(
        gen_url(&llmux, "fake-small", "generateContent", ""),
        &generate_request(),
        &[],
    )
    .await;
    google_error(response, 400, "INVALID_ARGUMENT").await;
}

#[tokio::test]
async fn gemini_clients_authenticate_with_x_goog_api_key_or_the_key_parameter() {
    let fake = FakeOpenAi::start(fake_openai::Mode::Normal).await;
    let llmux = start(
        config(
            &fake_backend_config(&fake.base_url, ""),
            &[("LLM_INTERACTIVE_PROXY_API_KEY", PROXY_KEY)],
        ),
        &[("FAKE_API_KEY", "sk-upstream")],
    )
    .await;
    let url = gen_url(&llmux, "fake-small", "generateContent", "");

    // No key, a wrong key: Google-shaped 401s, and nothing reaches the provider.
    google_error(
        post(url.clone(), &generate_request(), &[]).await,
        401,
        "UNAUTHENTICATED",
    )
    .await;
    google_error(
        post(
            url.clone(),
            &generate_request(),
            &[("x-goog-api-key", "wrong")],
        )
        .await,
        401,
        "UNAUTHENTICATED",
    )
    .await;
    google_error(
        post(
            gen_url(&llmux, "fake-small", "generateContent", "key=wrong"),
            &generate_request(),
            &[],
        )
        .await,
        401,
        "UNAUTHENTICATED",
    )
    .await;
    let response = client()
        .get(llmux.url("/v1beta/models"))
        .send()
        .await
        .unwrap();
    google_error(response, 401, "UNAUTHENTICATED").await;
    assert_eq!(fake.hit_count(), 0);

    // The header (what the SDKs and Gemini CLI send).
    let response = post(
        url.clone(),
        &generate_request(),
        &[("x-goog-api-key", PROXY_KEY)],
    )
    .await;
    assert_eq!(response.status(), 200);
    // The `key` query parameter (curl examples, older clients), streaming too.
    let response = post(
        gen_url(
            &llmux,
            "fake-small",
            "streamGenerateContent",
            &format!("alt=sse&key={PROXY_KEY}"),
        ),
        &generate_request(),
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    let records = sse_records(&response.text().await.unwrap());
    assert_eq!(answer_text(&records), "Hello from fake.");
    let response = client()
        .get(llmux.url(&format!("/v1beta/models?key={PROXY_KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // The client's key never travels upstream; the provider's does.
    for request in fake.requests.lock().unwrap().iter() {
        assert_eq!(request.headers["authorization"], "Bearer sk-upstream");
        assert!(request.headers.get("x-goog-api-key").is_none());
        assert!(!format!("{:?}", request.headers).contains(PROXY_KEY));
    }
}

#[tokio::test]
async fn the_v1_paths_serve_gemini_too() {
    let (fake, llmux) = openai_behind(fake_openai::Mode::Normal).await;
    // google-genai 2 and later use the v1 API by default.
    let body: Value = post(
        llmux.url("/v1/models/fake-small:generateContent"),
        &generate_request(),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(answer_text(std::slice::from_ref(&body)), "Hello from fake.");
    assert_eq!(fake.last_request().body["model"], "fake-small");
    // A `backend:model` in the path (the model may hold colons; the method follows the
    // last one).
    let response = post(
        llmux.url("/v1beta/models/fake:fake-large:streamGenerateContent?alt=sse"),
        &generate_request(),
        &[],
    )
    .await;
    assert_eq!(response.status(), 200);
    let records = sse_records(&response.text().await.unwrap());
    assert_eq!(answer_text(&records), "Hello from fake.");
    assert_eq!(fake.last_request().body["model"], "fake-large");
}

// ---- OpenAI client -> Gemini back-end ----

async fn gemini_behind(mode: fake_gemini::Mode) -> (FakeGemini, Llmux) {
    let fake = FakeGemini::start(mode).await;
    let toml = format!(
        "default_backend = \"gem\"\n[backends.gem]\ntype = \"gemini\"\nbase_url = \"{}\"\napi_key_env = \"GEM_KEY\"\n",
        fake.base_url
    );
    let llmux = start(config(&toml, &[]), &[("GEM_KEY", "goog-upstream-key")]).await;
    (fake, llmux)
}

/// An OpenAI tool whose schema uses keywords Gemini's `parameters` rejects.
fn openai_weather_tool() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "strict": true,
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name"},
                "unit": {"type": ["string", "null"], "enum": ["c", "f", null]}
            },
            "required": ["city", "unit"],
            "additionalProperties": false
        }
    }}])
}

fn assert_sane_upstream(call: &fake_gemini::Call, model: &str, stream: bool) {
    if stream {
        assert_eq!(
            call.path,
            format!("/v1beta/models/{model}:streamGenerateContent")
        );
        assert_eq!(
            call.query.as_deref(),
            Some("alt=sse"),
            "llmux must ask for SSE"
        );
    } else {
        assert_eq!(call.path, format!("/v1beta/models/{model}:generateContent"));
        assert_eq!(call.query, None);
    }
    assert_eq!(call.api_key(), Some("goog-upstream-key"));
    assert!(call.headers.get("authorization").is_none());
    assert!(call.body.get("model").is_none(), "the model is in the URL");
}

#[tokio::test]
async fn openai_clients_reach_a_gemini_backend_with_tools_and_usage() {
    let (fake, llmux) = gemini_behind(fake_gemini::Mode::Normal).await;
    let request = json!({
        "model": "gemini-fake-flash",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "What is the weather in Paris?"}
        ],
        "tools": openai_weather_tool(),
        "tool_choice": "auto",
        "max_tokens": 300,
        "temperature": 0.5
    });
    let response = post(llmux.url("/v1/chat/completions"), &request, &[]).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let message = &body["choices"][0]["message"];
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls", "{body}");
    assert_eq!(message["content"], "Let me check.");
    let call = &message["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["function"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    // Gemini gave no id; llmux made one up.
    let id = call["id"].as_str().unwrap().to_owned();
    assert!(!id.is_empty());
    assert_eq!(body["usage"]["prompt_tokens"], 11);
    assert_eq!(body["usage"]["completion_tokens"], 7);
    assert_eq!(body["usage"]["total_tokens"], 18);

    let upstream = fake.last_call();
    assert_sane_upstream(&upstream, "gemini-fake-flash", false);
    let sent = &upstream.body;
    assert_eq!(
        sent["systemInstruction"]["parts"],
        json!([{"text": "You are terse."}])
    );
    assert_eq!(
        sent["contents"],
        json!([{"role": "user", "parts": [{"text": "What is the weather in Paris?"}]}])
    );
    assert_eq!(sent["generationConfig"]["maxOutputTokens"], 300);
    assert_eq!(sent["generationConfig"]["temperature"], 0.5);
    assert_eq!(sent["toolConfig"]["functionCallingConfig"]["mode"], "AUTO");
    // The schema was cut down to what `parameters` takes (the fake rejects the rest).
    let parameters = &sent["tools"][0]["functionDeclarations"][0]["parameters"];
    let text = parameters.to_string();
    assert!(
        !text.contains("additionalProperties") && !text.contains("$schema"),
        "{text}"
    );
    assert!(!text.contains("strict"));
    assert_eq!(parameters["properties"]["city"]["description"], "City name");
    assert_eq!(parameters["properties"]["unit"]["nullable"], true, "{text}");

    // The tool result goes back; the call is sent without llmux's made-up id, the result
    // names the function, and the fake (which checks pairing) answers.
    let followup = json!({
        "model": "gemini-fake-flash",
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": "Let me check.", "tool_calls": [call]},
            {"role": "tool", "tool_call_id": id, "content": "Sunny, 21C"}
        ],
        "tools": openai_weather_tool()
    });
    let response = post(llmux.url("/v1/chat/completions"), &followup, &[]).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from fake Gemini."
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let sent = fake.last_call().body;
    let contents = sent["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3, "{sent}");
    assert_eq!(contents[1]["role"], "model");
    let model_parts = contents[1]["parts"].as_array().unwrap();
    let call_part = model_parts
        .iter()
        .find(|p| p.get("functionCall").is_some())
        .unwrap();
    assert_eq!(
        call_part["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Paris"}})
    );
    assert_eq!(
        contents[2]["parts"][0]["functionResponse"],
        json!({"name": "get_weather", "response": {"output": "Sunny, 21C"}})
    );
}

#[tokio::test]
async fn openai_streams_from_a_gemini_backend_with_tools_and_usage() {
    let (fake, llmux) = gemini_behind(fake_gemini::Mode::Normal).await;
    let request = json!({
        "model": "gemini-fake-flash",
        "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": "Say hello."}]
    });
    let frames = sse_data(
        &post(llmux.url("/v1/chat/completions"), &request, &[])
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(streamed_text(&frames), "Hello from fake Gemini.");
    assert_eq!(frames.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = frames
        .iter()
        .filter(|f| *f != "[DONE]")
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    let usage = chunks
        .iter()
        .find_map(|c| c.get("usage").filter(|u| !u.is_null()))
        .unwrap();
    assert_eq!(usage["prompt_tokens"], 11);
    assert_eq!(usage["completion_tokens"], 7);
    assert_sane_upstream(&fake.last_call(), "gemini-fake-flash", true);

    // With tools: text, then one call whose arguments arrive whole.
    let mut request = request;
    request["messages"] = json!([{"role": "user", "content": "Weather in Paris?"}]);
    request["tools"] = openai_weather_tool();
    let frames = sse_data(
        &post(llmux.url("/v1/chat/completions"), &request, &[])
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(streamed_text(&frames), "Let me check.");
    let chunks: Vec<Value> = frames
        .iter()
        .filter(|f| *f != "[DONE]")
        .map(|f| serde_json::from_str(f).unwrap())
        .collect();
    let deltas: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]["tool_calls"][0]
                .as_object()
                .map(|_| &c["choices"][0]["delta"]["tool_calls"][0])
        })
        .collect();
    assert!(!deltas.is_empty());
    assert_eq!(deltas[0]["function"]["name"], "get_weather");
    assert!(deltas[0]["id"].as_str().is_some_and(|id| !id.is_empty()));
    let arguments: String = deltas
        .iter()
        .filter_map(|d| d["function"]["arguments"].as_str())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&arguments).unwrap(),
        json!({"city": "Paris"})
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "tool_calls")
    );
    let call = fake.last_call();
    assert_sane_upstream(&call, "gemini-fake-flash", true);
    assert!(
        !call.body["tools"]
            .to_string()
            .contains("additionalProperties"),
        "{}",
        call.body
    );
    // Every stream llmux opened asked for SSE.
    assert!(
        fake.all_calls()
            .iter()
            .filter(|c| c.method == "streamGenerateContent")
            .all(|c| c.query.as_deref() == Some("alt=sse"))
    );
}

#[tokio::test]
async fn gemini_3_calls_from_other_protocols_carry_the_placeholder_signature() {
    let (fake, llmux) = gemini_behind(fake_gemini::Mode::Normal).await;
    let model = "gemini-3-fake-pro";
    let request = json!({
        "model": model,
        "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        "tools": openai_weather_tool()
    });
    let body: Value = post(llmux.url("/v1/chat/completions"), &request, &[])
        .await
        .json()
        .await
        .unwrap();
    let call = body["choices"][0]["message"]["tool_calls"][0].clone();
    // An OpenAI client cannot carry Gemini's signature back; Gemini 3 rejects a call
    // without one, so llmux sends the documented placeholder.
    let followup = json!({
        "model": model,
        "messages": [
            {"role": "user", "content": "What is the weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": "Sunny"}
        ],
        "tools": openai_weather_tool()
    });
    let response = post(llmux.url("/v1/chat/completions"), &followup, &[]).await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    let sent = fake.last_call().body;
    assert_eq!(
        sent["contents"][1]["parts"][0]["thoughtSignature"], "skip_thought_signature_validator",
        "{sent}"
    );
}

#[tokio::test]
async fn gemini_backend_errors_reach_openai_clients_in_their_shape() {
    let (_fake, llmux) = gemini_behind(fake_gemini::Mode::Status(429)).await;
    let request =
        json!({"model": "gemini-fake-flash", "messages": [{"role": "user", "content": "hi"}]});
    let response = post(llmux.url("/v1/chat/completions"), &request, &[]).await;
    assert_eq!(response.status(), 429);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exhausted"),
        "{body}"
    );

    // A Gemini client behind it sees Google's own status name.
    let response = post(
        gen_url(&llmux, "gemini-fake-flash", "generateContent", ""),
        &generate_request(),
        &[],
    )
    .await;
    google_error(response, 429, "RESOURCE_EXHAUSTED").await;

    let (_fake, llmux) = gemini_behind(fake_gemini::Mode::Status(503)).await;
    let response = post(
        gen_url(
            &llmux,
            "gemini-fake-flash",
            "streamGenerateContent",
            "alt=sse",
        ),
        &generate_request(),
        &[],
    )
    .await;
    google_error(response, 503, "UNAVAILABLE").await;
}

#[tokio::test]
async fn a_gemini_stream_without_a_finish_reason_is_not_a_clean_end() {
    let (_fake, llmux) = gemini_behind(fake_gemini::Mode::NoFinish).await;
    let request = json!({"model": "gemini-fake-flash", "stream": true,
                         "messages": [{"role": "user", "content": "hi"}]});
    let body = post(llmux.url("/v1/chat/completions"), &request, &[])
        .await
        .text()
        .await
        .unwrap();
    let frames = sse_data(&body);
    assert_ne!(frames.last().map(String::as_str), Some("[DONE]"), "{body}");
    assert!(frames.iter().any(|f| f.contains("\"error\"")), "{body}");
}

#[tokio::test]
async fn a_blocked_prompt_is_a_content_filter_not_an_empty_success() {
    let (_fake, llmux) = gemini_behind(fake_gemini::Mode::Blocked).await;
    let request =
        json!({"model": "gemini-fake-flash", "messages": [{"role": "user", "content": "hi"}]});
    let body: Value = post(llmux.url("/v1/chat/completions"), &request, &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["choices"][0]["finish_reason"], "content_filter",
        "{body}"
    );

    // A Gemini client gets the promptFeedback back.
    let body: Value = post(
        gen_url(&llmux, "gemini-fake-flash", "generateContent", ""),
        &generate_request(),
        &[],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["promptFeedback"]["blockReason"], "SAFETY", "{body}");
}

#[tokio::test]
async fn the_gemini_backend_lists_its_models() {
    let (fake, llmux) = gemini_behind(fake_gemini::Mode::Normal).await;
    let body: Value = client()
        .get(llmux.url("/v1/models"))
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
    for expected in [
        "gemini-fake-flash",
        "gem:gemini-fake-flash",
        "gem:gemini-3-fake-pro",
    ] {
        assert!(ids.contains(&expected), "{expected} not in {ids:?}");
    }
    let body: Value = client()
        .get(llmux.url("/v1beta/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        body["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "models/gemini-3-fake-pro")
    );
    assert!(
        fake.model_list_hits
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
}

// ---- Anthropic client -> Gemini back-end ----

#[tokio::test]
async fn anthropic_clients_get_gemini_thoughts_as_thinking_blocks() {
    let (fake, llmux) = gemini_behind(fake_gemini::Mode::Normal).await;
    let request = json!({
        "model": "gemini-fake-flash",
        "max_tokens": 4096,
        "stream": true,
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "Say hello."}]
    });
    let body = post(llmux.anthropic_url("/v1/messages"), &request, &[])
        .await
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = sse_data(&body)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"message_stop"), "{kinds:?}");
    let starts: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "content_block_start")
        .map(|e| e["content_block"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(starts, ["thinking", "text"], "{body}");
    let thinking: String = events
        .iter()
        .filter_map(|e| e["delta"]["thinking"].as_str())
        .collect();
    assert_eq!(thinking, "Let me think.");
    let signature: String = events
        .iter()
        .filter_map(|e| e["delta"]["signature"].as_str())
        .collect();
    assert!(!signature.is_empty(), "{body}");
    let text: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello from fake Gemini.");
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(
        delta["usage"]["output_tokens"].as_u64().unwrap() >= 7,
        "{delta}"
    );

    let call = fake.last_call();
    assert_sane_upstream(&call, "gemini-fake-flash", true);
    let thinking_config = &call.body["generationConfig"]["thinkingConfig"];
    assert_eq!(thinking_config["includeThoughts"], true, "{}", call.body);
    assert_eq!(thinking_config["thinkingBudget"], 2048, "{}", call.body);
    assert_eq!(call.body["generationConfig"]["maxOutputTokens"], 4096);
    assert_eq!(
        call.body["systemInstruction"]["parts"][0]["text"],
        "You are terse."
    );
    assert!(call.headers.get("anthropic-version").is_none());
}

#[tokio::test]
async fn anthropic_tool_round_trip_through_a_gemini_backend_with_thinking() {
    let (fake, llmux) = gemini_behind(fake_gemini::Mode::Normal).await;
    let tools = json!([{"name": "get_weather", "description": "Weather for a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                         "required": ["city"], "additionalProperties": false}}]);
    for model in ["gemini-fake-flash", "gemini-3-fake-pro"] {
        let question = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
        let request = json!({
            "model": model, "max_tokens": 4096,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": tools, "messages": question
        });
        let response = post(llmux.url("/anthropic/v1/messages"), &request, &[]).await;
        let status = response.status();
        let message: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{message}");
        assert_eq!(message["stop_reason"], "tool_use", "{message}");
        let content = message["content"].as_array().unwrap();
        assert_eq!(content[0]["type"], "thinking", "{message}");
        assert_eq!(content[0]["thinking"], "Let me think.");
        assert_eq!(content[0]["signature"], fake_gemini::THOUGHT_SIGNATURE);
        let tool_use = content.iter().find(|b| b["type"] == "tool_use").unwrap();
        assert_eq!(tool_use["input"], json!({"city": "Paris"}));
        let id = tool_use["id"].as_str().unwrap();
        // Anthropic ids are [A-Za-z0-9_-]+.
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'),
            "{id}"
        );

        // Claude Code sends the whole assistant turn back, thinking included.
        let followup = json!({
            "model": model, "max_tokens": 4096,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "tools": tools,
            "messages": [
                question[0],
                {"role": "assistant", "content": content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "Sunny, 21C"}]}
            ]
        });
        let response = post(llmux.url("/anthropic/v1/messages"), &followup, &[]).await;
        let status = response.status();
        let message: Value = response.json().await.unwrap();
        assert_eq!(status, 200, "{model}: {message}");
        assert_eq!(message["stop_reason"], "end_turn");
        let sent = fake.last_call().body;
        let contents = sent["contents"].as_array().unwrap();
        let model_turn = &contents[1];
        assert_eq!(model_turn["role"], "model");
        let call_part = model_turn["parts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p.get("functionCall").is_some())
            .unwrap();
        assert!(call_part["functionCall"].get("id").is_none(), "{sent}");
        // The call carries a signature (the fake insists on Gemini 3): Gemini's own, or
        // the documented placeholder, since the Anthropic thinking blocks that carried
        // Gemini's signatures to the client are not Gemini parts on the way back.
        let signature = call_part["thoughtSignature"].as_str().unwrap_or_default();
        assert!(
            signature == fake_gemini::CALL_SIGNATURE
                || signature == "skip_thought_signature_validator",
            "{model}: {sent}"
        );
        assert_eq!(
            contents[2]["parts"][0]["functionResponse"]["name"],
            "get_weather"
        );
    }
}

// ---- Gemini client -> Anthropic back-end ----

async fn anthropic_behind(mode: fake_anthropic::Mode) -> (FakeAnthropic, Llmux) {
    let fake = FakeAnthropic::start(mode).await;
    let toml = format!(
        "default_backend = \"claude\"\n[backends.claude]\ntype = \"anthropic-compatible\"\nbase_url = \"{}\"\napi_key_env = \"CLAUDE_KEY\"\n",
        fake.base_url
    );
    let llmux = start(config(&toml, &[]), &[("CLAUDE_KEY", "sk-ant-upstream")]).await;
    (fake, llmux)
}

#[tokio::test]
async fn gemini_clients_reach_an_anthropic_backend_with_tools_and_thinking() {
    let (fake, llmux) = anthropic_behind(fake_anthropic::Mode::Normal).await;
    let mut request = generate_request();
    request["tools"] = gemini_weather_tool();
    request["generationConfig"]["thinkingConfig"] =
        json!({"includeThoughts": true, "thinkingBudget": 2048});
    request["generationConfig"]["maxOutputTokens"] = json!(4096);

    let records = sse_records(
        &post(
            gen_url(&llmux, "claude-fake-1", "streamGenerateContent", "alt=sse"),
            &request,
            &[],
        )
        .await
        .text()
        .await
        .unwrap(),
    );
    let parts = all_parts(&records);
    let thought = parts.iter().find(|p| p["thought"] == true).unwrap();
    assert_eq!(thought["text"], "Let me think.");
    assert_eq!(answer_text(&records), "Hello from fake Claude.");
    let calls = function_calls(&parts);
    assert_eq!(calls.len(), 1, "{parts:?}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(calls[0]["args"], json!({"city": "Paris"}));
    assert_eq!(calls[0]["id"], "toolu_fake_1");
    let last = records.last().unwrap();
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
    // Anthropic's input tokens, cache reads included.
    assert!(
        last["usageMetadata"]["promptTokenCount"].as_u64().unwrap() >= 21,
        "{last}"
    );
    assert!(
        parts.iter().any(|p| p.get("thoughtSignature").is_some()),
        "{parts:?}"
    );

    let upstream = fake.last_request();
    assert_eq!(upstream.headers["x-api-key"], "sk-ant-upstream");
    assert_eq!(upstream.body["model"], "claude-fake-1");
    assert_eq!(upstream.body["stream"], true);
    assert_eq!(upstream.body["max_tokens"], 4096);
    assert_eq!(upstream.body["thinking"]["type"], "enabled");
    assert_eq!(upstream.body["thinking"]["budget_tokens"], 2048);
    assert_eq!(upstream.body["tools"][0]["name"], "get_weather");
    assert_eq!(upstream.body["tools"][0]["input_schema"]["type"], "object");
    assert_eq!(
        upstream.body["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    let system = upstream.body["system"].to_string();
    assert!(system.contains("You are terse."), "{system}");

    // The client sends the turn back as it got it (thought and signature included) with
    // the function's response; the ids line up upstream.
    let model_parts: Vec<Value> = parts.iter().filter(|p| p["text"] != "").cloned().collect();
    let mut followup = request.clone();
    followup["contents"] = json!([
        request["contents"][0],
        {"role": "model", "parts": model_parts},
        {"role": "user", "parts": [{"functionResponse": {"id": "toolu_fake_1", "name": "get_weather",
                                    "response": {"output": "Sunny, 21C"}}}]}
    ]);
    let response = post(
        gen_url(&llmux, "claude-fake-1", "generateContent", ""),
        &followup,
        &[],
    )
    .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        answer_text(std::slice::from_ref(&body)),
        "Hello from fake Claude."
    );
    let upstream = fake.last_request().body;
    let messages = upstream["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 3, "{upstream}");
    let assistant = messages[1]["content"].as_array().unwrap();
    let tool_use = assistant.iter().find(|b| b["type"] == "tool_use").unwrap();
    assert_eq!(tool_use["id"], "toolu_fake_1");
    let result = &messages[2]["content"][0];
    assert_eq!(result["type"], "tool_result");
    assert_eq!(result["tool_use_id"], "toolu_fake_1");
    assert!(result.to_string().contains("Sunny, 21C"), "{result}");
}

#[tokio::test]
async fn gemini_over_anthropic_errors_keep_googles_shape() {
    let (_fake, llmux) = anthropic_behind(fake_anthropic::Mode::Status(529)).await;
    let response = post(
        gen_url(&llmux, "claude-fake-1", "generateContent", ""),
        &generate_request(),
        &[],
    )
    .await;
    google_error(response, 503, "UNAVAILABLE").await;
}

// ---- Gemini client -> Gemini back-end (same protocol) ----

#[tokio::test]
async fn gemini_to_gemini_keeps_unknown_fields_ids_and_signatures() {
    let (fake, llmux) = gemini_behind(fake_gemini::Mode::Normal).await;
    let mut request = generate_request();
    request["tools"] = gemini_weather_tool();
    request["safetySettings"] =
        json!([{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]);
    request["generationConfig"]["thinkingConfig"] =
        json!({"includeThoughts": true, "thinkingBudget": 512});
    request["generationConfig"]["responseModalities"] = json!(["TEXT"]);
    request["cachedContent"] = json!("cachedContents/abc");

    let records = sse_records(
        &post(
            gen_url(
                &llmux,
                "gemini-3-fake-pro",
                "streamGenerateContent",
                "alt=sse",
            ),
            &request,
            &[("x-goog-api-key", "client-key-not-forwarded")],
        )
        .await
        .text()
        .await
        .unwrap(),
    );
    let call = fake.last_call();
    assert_sane_upstream(&call, "gemini-3-fake-pro", true);
    assert_eq!(call.body["safetySettings"], request["safetySettings"]);
    assert_eq!(call.body["cachedContent"], "cachedContents/abc");
    assert_eq!(
        call.body["generationConfig"]["responseModalities"],
        json!(["TEXT"])
    );
    assert_eq!(
        call.body["generationConfig"]["thinkingConfig"],
        json!({"includeThoughts": true, "thinkingBudget": 512})
    );
    // The client's schema went as the client wrote it.
    assert_eq!(
        call.body["tools"],
        gemini_weather_tool(),
        "{}",
        call.body["tools"]
    );

    let parts = all_parts(&records);
    let thought = parts.iter().find(|p| p["thought"] == true).unwrap();
    assert_eq!(thought["text"], "Let me think.");
    assert_eq!(thought["thoughtSignature"], fake_gemini::THOUGHT_SIGNATURE);
    let call_part = parts
        .iter()
        .find(|p| p.get("functionCall").is_some())
        .unwrap();
    // No made-up id reaches a Gemini client, and the signature stays on the call's part.
    assert_eq!(
        call_part["functionCall"],
        json!({"name": "get_weather", "args": {"city": "Paris"}})
    );
    assert_eq!(call_part["thoughtSignature"], fake_gemini::CALL_SIGNATURE);

    // Sent back as Gemini CLI does (without the empty closing part), the history
    // reaches the fake exactly: no id invented, the signature on the call (which the fake checks).
    let model_parts: Vec<Value> = parts.iter().filter(|p| p["text"] != "").cloned().collect();
    let mut followup = request.clone();
    followup["contents"] = json!([
        request["contents"][0],
        {"role": "model", "parts": model_parts},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {"output": "Sunny"}}}]}
    ]);
    let response = post(
        gen_url(&llmux, "gemini-3-fake-pro", "generateContent", ""),
        &followup,
        &[],
    )
    .await;
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        answer_text(std::slice::from_ref(&body)),
        "Hello from fake Gemini."
    );
    let sent = fake.last_call();
    assert_sane_upstream(&sent, "gemini-3-fake-pro", false);
    assert_eq!(sent.body["contents"], followup["contents"], "{}", sent.body);
}
