//! The Responses front-end and the `api = "responses"` back-end end to end over loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, start};

fn events(body: &str) -> Vec<Value> {
    support::sse_data(body)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

async fn post(llmux: &support::Llmux, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(llmux.url(path))
        .json(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_responses_client_over_an_openai_chat_backend() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "k")],
    )
    .await;
    let request =
        json!({"model": "fake-small", "instructions": "Be terse.", "input": "Say hello."});
    let body: Value = post(&llmux, "/v1/responses", &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["output"][0]["type"], "message");
    assert_eq!(body["output"][0]["content"][0]["text"], "Hello from fake.");
    assert_eq!(body["usage"]["total_tokens"], 16);
    let upstream = fake.last_request().body;
    assert_eq!(
        upstream["messages"][0],
        json!({"role": "system", "content": "Be terse."})
    );
    assert_eq!(
        upstream["messages"][1],
        json!({"role": "user", "content": "Say hello."})
    );

    // Streaming, with the event order Codex and the SDK expect, ending in response.completed.
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let text = post(&llmux, "/v1/responses", &streamed)
        .await
        .text()
        .await
        .unwrap();
    let events = events(&text);
    let kinds = types(&events);
    assert_eq!(kinds.first(), Some(&"response.created"));
    assert_eq!(kinds.last(), Some(&"response.completed"));
    assert!(!text.contains("[DONE]"));
    let deltas: String = events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, "Hello from fake.");
    let sequence: Vec<u64> = events
        .iter()
        .map(|e| e["sequence_number"].as_u64().unwrap())
        .collect();
    assert!(
        sequence.windows(2).all(|w| w[1] == w[0] + 1),
        "{sequence:?}"
    );
}

#[tokio::test]
async fn a_function_call_round_trip_keeps_the_call_id() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "k")],
    )
    .await;
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}, "strict": false}]);
    let request = json!({"model": "fake-small", "input": "Weather in Paris?", "tools": tools});
    let body: Value = post(&llmux, "/v1/responses", &request)
        .await
        .json()
        .await
        .unwrap();
    let call = body["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap()
        .clone();
    assert_eq!(call["call_id"], "call_fake_1");
    assert_eq!(call["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(call["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(
        fake.last_request().body["tools"][0]["function"]["name"],
        "get_weather"
    );

    let followup = json!({"model": "fake-small", "tools": tools, "input": [
        {"role": "user", "content": "Weather in Paris?"},
        call,
        {"type": "function_call_output", "call_id": "call_fake_1", "output": "Sunny"}
    ]});
    let body: Value = post(&llmux, "/v1/responses", &followup)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["output"][0]["content"][0]["text"], "Hello from fake.",
        "{body}"
    );
    let messages = fake.last_request().body["messages"].clone();
    assert_eq!(messages[1]["tool_calls"][0]["id"], "call_fake_1");
    assert_eq!(
        messages[2],
        json!({"role": "tool", "tool_call_id": "call_fake_1", "content": "Sunny"})
    );
}

#[tokio::test]
async fn chat_and_responses_clients_reach_a_responses_backend() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(
            &fake_backend_config(&fake.base_url, "api = \"responses\""),
            &[],
        ),
        &[("FAKE_API_KEY", "k")],
    )
    .await;
    // A chat client, translated to Responses upstream.
    let chat = json!({"model": "fake-small", "messages": [{"role": "user", "content": "hi"}]});
    let body: Value = post(&llmux, "/v1/chat/completions", &chat)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from fake Responses."
    );
    let upstream = fake.last_request();
    assert_eq!(upstream.body["input"][0]["role"], "user");
    assert_eq!(upstream.headers["authorization"], "Bearer k");
    let mut chat_stream = chat.clone();
    chat_stream["stream"] = json!(true);
    let text = post(&llmux, "/v1/chat/completions", &chat_stream)
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(
        support::streamed_text(&support::sse_data(&text)),
        "Hello from fake Responses."
    );
    assert!(text.ends_with("data: [DONE]\n\n"));

    // A Responses client on a Responses back-end: same protocol, fields pass through.
    let request = json!({"model": "fake-small", "input": "hi", "store": false, "metadata": {"run": "7"},
        "include": ["reasoning.encrypted_content"]});
    let body: Value = post(&llmux, "/v1/responses", &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "Hello from fake Responses."
    );
    let sent = fake.last_request().body;
    assert_eq!(sent["store"], false);
    assert_eq!(sent["metadata"], json!({"run": "7"}));
    assert_eq!(sent["include"], json!(["reasoning.encrypted_content"]));
}

#[tokio::test]
async fn bad_responses_requests_are_400s_naming_the_field() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(config(&fake_backend_config(&fake.base_url, ""), &[]), &[]).await;
    for (request, needle) in [
        (
            json!({"model": "fake-small", "input": [{"type": "function_call_output", "output": "x"}]}),
            "call_id",
        ),
        (json!({"model": "fake-small", "input": 5}), "input"),
        (json!({"input": "hi"}), "model"),
    ] {
        let response = post(&llmux, "/v1/responses", &request).await;
        assert_eq!(response.status(), 422, "{request}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["error"]["message"].as_str().unwrap().contains(needle),
            "{needle}: {body}"
        );
    }
    assert_eq!(fake.hit_count(), 0);
}

fn json_schema_request(stream: bool) -> Value {
    json!({"model": "fake-small", "input": "Who?", "stream": stream,
        "text": {"format": {"type": "json_schema", "name": "person", "strict": true, "schema": {
            "type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"], "additionalProperties": false}}}})
}

#[tokio::test]
async fn structured_output_is_repaired_when_it_can_be() {
    let fake = FakeOpenAi::start(Mode::Answer(
        "Here you go:\n```json\n{'name': 'Ada', 'age': 36,}\n```",
    ))
    .await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "k")],
    )
    .await;
    let body: Value = post(&llmux, "/v1/responses", &json_schema_request(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "completed", "{body}");
    let text = body["output"][0]["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"name": "Ada", "age": 36})
    );
    // The schema reached the provider as its response_format.
    assert_eq!(
        fake.last_request().body["response_format"]["type"],
        "json_schema"
    );
    assert_eq!(fake.hit_count(), 1);

    // Streaming clients get the checked answer too.
    let text = post(&llmux, "/v1/responses", &json_schema_request(true))
        .await
        .text()
        .await
        .unwrap();
    let deltas: String = events(&text)
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&deltas).unwrap(),
        json!({"name": "Ada", "age": 36})
    );
}

#[tokio::test]
async fn a_repeated_schema_violation_is_incomplete_with_its_reason() {
    let fake = FakeOpenAi::start(Mode::Answer("{\"name\": \"Ada\", \"age\": \"old\"}")).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "k")],
    )
    .await;
    let body: Value = post(&llmux, "/v1/responses", &json_schema_request(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "incomplete", "{body}");
    assert_eq!(body["incomplete_details"]["reason"], "json_schema_mismatch");
    // It asked once more, telling the model what was wrong.
    assert_eq!(fake.hit_count(), 2);
    let retry = fake.last_request().body;
    let feedback = retry["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(feedback.contains("/age"), "{feedback}");
}

#[tokio::test]
async fn a_valid_structured_answer_passes_untouched() {
    let fake = FakeOpenAi::start(Mode::Answer("{\"name\":\"Ada\",\"age\":36}")).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "k")],
    )
    .await;
    let body: Value = post(&llmux, "/v1/responses", &json_schema_request(false))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "completed");
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "{\"name\":\"Ada\",\"age\":36}"
    );
    assert_eq!(fake.hit_count(), 1);
}

#[tokio::test]
async fn structured_output_reaches_anthropic_backends_as_a_forced_tool() {
    let fake =
        support::fake_anthropic::FakeAnthropic::start(support::fake_anthropic::Mode::Normal).await;
    let toml = format!(
        "default_backend = \"claude\"\n[backends.claude]\ntype = \"anthropic-compatible\"\nbase_url = \"{}\"\n",
        fake.base_url
    );
    let llmux = start(config(&toml, &[]), &[]).await;
    let request = json!({"model": "claude-fake-1", "input": "Where?",
        "text": {"format": {"type": "json_schema", "name": "place", "strict": true, "schema": {
            "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}});
    let body: Value = post(&llmux, "/v1/responses", &request)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "completed", "{body}");
    let message = body["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "message")
        .unwrap();
    let text = message["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap(),
        json!({"city": "Paris"})
    );
    let sent = fake.last_request().body;
    assert_eq!(sent["tools"][0]["name"], "llmux_json_response");
    assert_eq!(
        sent["tools"][0]["input_schema"]["required"],
        json!(["city"])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "llmux_json_response"})
    );
}

/// The JSON answer tool is Anthropic's wire for a response schema: with checking off, the
/// answer must still reach the client as text, never as a call to a tool it did not offer.
#[tokio::test]
async fn with_checking_off_an_anthropic_json_answer_is_still_text() {
    let fake =
        support::fake_anthropic::FakeAnthropic::start(support::fake_anthropic::Mode::Normal).await;
    let toml = format!(
        "default_backend = \"claude\"\n[structured_output]\nvalidate = false\n\
         [backends.claude]\ntype = \"anthropic-compatible\"\nbase_url = \"{}\"\n",
        fake.base_url
    );
    let llmux = start(config(&toml, &[]), &[]).await;
    let format = json!({"type": "json_schema", "json_schema": {"name": "place", "strict": true,
        "schema": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}}});
    let ask = |stream: bool| {
        json!({"model": "claude-fake-1", "stream": stream, "response_format": format,
            "messages": [{"role": "user", "content": "Where?"}]})
    };
    let body: Value = post(&llmux, "/v1/chat/completions", &ask(false))
        .await
        .json()
        .await
        .unwrap();
    let message = &body["choices"][0]["message"];
    assert!(message["tool_calls"].is_null(), "{body}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop", "{body}");
    // The fake also says a line of text before the call; unchecked, it stays in front.
    let json_of = |text: &str| -> Value {
        let start = text
            .find('{')
            .unwrap_or_else(|| panic!("no JSON in {text:?}"));
        serde_json::from_str(&text[start..]).unwrap()
    };
    let text = message["content"].as_str().unwrap();
    assert_eq!(json_of(text), json!({"city": "Paris"}));

    let streamed = post(&llmux, "/v1/chat/completions", &ask(true))
        .await
        .text()
        .await
        .unwrap();
    let frames = support::sse_data(&streamed);
    assert!(!streamed.contains("tool_calls"), "{streamed}");
    assert!(!streamed.contains("llmux_json_response"), "{streamed}");
    let text = support::streamed_text(&frames);
    assert_eq!(json_of(&text), json!({"city": "Paris"}));
    assert!(
        streamed.contains("\"finish_reason\":\"stop\""),
        "{streamed}"
    );
}

#[tokio::test]
async fn previous_response_id_continues_on_a_chat_backend_and_responses_can_be_fetched_and_deleted()
{
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "k")],
    )
    .await;
    let first: Value = post(
        &llmux,
        "/v1/responses",
        &json!({"model": "fake-small", "instructions": "Be terse.", "input": "My name is Ada."}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("resp_"), "{id}");

    // Streamed answers are stored too.
    let text = post(
        &llmux,
        "/v1/responses",
        &json!({"model": "fake-small", "input": "Say hi.", "stream": true}),
    )
    .await
    .text()
    .await
    .unwrap();
    let streamed_id = events(&text)[0]["response"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let fetched: Value = client()
        .get(llmux.url(&format!("/v1/responses/{streamed_id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        fetched["output"][0]["content"][0]["text"],
        "Hello from fake."
    );

    let second: Value = post(
        &llmux,
        "/v1/responses",
        &json!({"model": "fake-small", "previous_response_id": id, "input": "What is my name?"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(second["status"], "completed", "{second}");
    let messages = fake.last_request().body["messages"].clone();
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": "Be terse."})
    );
    assert_eq!(
        messages[1],
        json!({"role": "user", "content": "My name is Ada."})
    );
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["content"], "Hello from fake.");
    assert_eq!(
        messages[3],
        json!({"role": "user", "content": "What is my name?"})
    );
    assert!(
        fake.last_request()
            .body
            .get("previous_response_id")
            .is_none()
    );

    let fetched: Value = client()
        .get(llmux.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched["id"], id);
    assert_eq!(fetched["instructions"], "Be terse.");
    let deleted: Value = client()
        .delete(llmux.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], true);
    let gone = client()
        .get(llmux.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let response = post(
        &llmux,
        "/v1/responses",
        &json!({"model": "fake-small", "previous_response_id": "resp_nope", "input": "hi"}),
    )
    .await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resp_nope")
    );
}

#[tokio::test]
async fn responses_clients_reach_anthropic_and_gemini_backends_with_tools() {
    let tools = json!([{"type": "function", "name": "get_weather", "description": "Weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]);

    // Anthropic, streamed: the tool call arrives as a function_call item with its call_id.
    let claude =
        support::fake_anthropic::FakeAnthropic::start(support::fake_anthropic::Mode::Normal).await;
    let toml = format!(
        "default_backend = \"claude\"\n[backends.claude]\ntype = \"anthropic-compatible\"\nbase_url = \"{}\"\n",
        claude.base_url
    );
    let llmux = start(config(&toml, &[]), &[]).await;
    let request = json!({"model": "claude-fake-1", "input": "Weather in Paris?", "tools": tools, "stream": true});
    let text = post(&llmux, "/v1/responses", &request)
        .await
        .text()
        .await
        .unwrap();
    let events = events(&text);
    assert_eq!(types(&events).last(), Some(&"response.completed"));
    let done = events
        .iter()
        .find(|e| e["type"] == "response.output_item.done" && e["item"]["type"] == "function_call")
        .unwrap();
    assert_eq!(done["item"]["call_id"], "toolu_fake_1");
    assert_eq!(
        serde_json::from_str::<Value>(done["item"]["arguments"].as_str().unwrap()).unwrap(),
        json!({"city": "Paris"})
    );
    assert_eq!(
        claude.last_request().body["tools"][0]["name"],
        "get_weather"
    );

    // Gemini, not streamed.
    let gemini = support::fake_gemini::FakeGemini::start(support::fake_gemini::Mode::Normal).await;
    let toml = format!(
        "default_backend = \"g\"\n[backends.g]\ntype = \"gemini\"\nbase_url = \"{}\"\napi_key_env = \"G_KEY\"\n",
        gemini.base_url
    );
    let llmux = start(config(&toml, &[]), &[("G_KEY", "g-key")]).await;
    let body: Value = post(
        &llmux,
        "/v1/responses",
        &json!({"model": "gemini-2.5-flash", "input": "Say hello."}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["status"], "completed", "{body}");
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "Hello from fake Gemini."
    );
    let request =
        json!({"model": "gemini-2.5-flash", "input": "Weather in Paris?", "tools": tools});
    let body: Value = post(&llmux, "/v1/responses", &request)
        .await
        .json()
        .await
        .unwrap();
    let call = body["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap();
    assert_eq!(call["name"], "get_weather");
    assert!(!call["call_id"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn store_false_answers_are_not_kept() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "k")],
    )
    .await;
    let body: Value = post(
        &llmux,
        "/v1/responses",
        &json!({"model": "fake-small", "input": "hi", "store": false}),
    )
    .await
    .json()
    .await
    .unwrap();
    let id = body["id"].as_str().unwrap();
    let response = client()
        .get(llmux.url(&format!("/v1/responses/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(llmux.engine.responses().len(), 0);
}

/// An agent's tools are echoed in every Response object as the values it sent: the whole
/// answer, each Response event of a stream (whose `data:` lines stay one line when the
/// client wrote its tools over many), and the answer fetched later; also when the same list
/// comes again (read from the tools memo) and reaches the back-end as before.
#[tokio::test]
async fn the_tools_sent_are_echoed_in_every_response_object_and_stored() {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let llmux = start(
        config(&fake_backend_config(&fake.base_url, ""), &[]),
        &[("FAKE_API_KEY", "k")],
    )
    .await;
    let tools = json!([
        {"type": "function", "name": "shell", "description": "Runs \"a\"\ncommand. ".repeat(60),
         "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}, "strict": false},
        {"type": "web_search"}
    ]);
    let pretty = |stream: bool| {
        serde_json::to_string_pretty(
            &json!({"model": "fake-small", "input": "Say hi.", "tools": tools, "stream": stream}),
        )
        .unwrap()
    };
    let send = |body: String| {
        client()
            .post(llmux.url("/v1/responses"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for time in ["first", "again"] {
        let whole: Value = send(pretty(false)).await.unwrap().json().await.unwrap();
        assert_eq!(whole["tools"], tools, "{time}");
        assert_eq!(
            fake.last_request().body["tools"][0]["function"]["name"],
            "shell",
            "{time}"
        );
        let fetched: Value = client()
            .get(llmux.url(&format!("/v1/responses/{}", whole["id"].as_str().unwrap())))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(fetched["tools"], tools, "{time}: stored");

        let streamed = send(pretty(true)).await.unwrap().text().await.unwrap();
        let events = events(&streamed);
        let objects: Vec<&Value> = events.iter().filter_map(|e| e.get("response")).collect();
        assert_eq!(
            objects.len(),
            3,
            "created, in_progress, completed: {streamed}"
        );
        for object in objects {
            assert_eq!(object["tools"], tools, "{time}");
        }
    }
}
