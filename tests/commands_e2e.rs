//! In-chat commands end to end: local answers in each front-end's protocol, session
//! overrides and their isolation, one-off routes, strict detection.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use support::fake_openai::{FakeOpenAi, Mode};
use support::{client, config, fake_backend_config, start};

const MOCK_TEXT: &str = "Hello from the llmux mock back-end.";

async fn setup(extra: &str) -> (FakeOpenAi, support::Llmux) {
    let fake = FakeOpenAi::start(Mode::Normal).await;
    let toml = format!("{extra}\n{}", fake_backend_config(&fake.base_url, ""));
    let llmux = start(config(&toml, &[]), &[("FAKE_API_KEY", "k")]).await;
    (fake, llmux)
}

async fn chat(llmux: &support::Llmux, session: &str, text: &str, stream: bool) -> String {
    let request = json!({"model": "fake-small", "stream": stream,
        "messages": [{"role": "user", "content": "first message"}, {"role": "assistant", "content": "ok"},
                     {"role": "user", "content": text}]});
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .header("x-session-id", session)
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    support::answer_text(&body, stream)
}

#[tokio::test]
async fn a_command_only_message_is_answered_locally_streaming_and_not() {
    let (fake, llmux) = setup("").await;
    let answer = chat(&llmux, "s1", "!/backend(mock)", false).await;
    assert_eq!(answer, "back-end set to mock");
    let answer = chat(&llmux, "s1", "!/max", true).await;
    assert_eq!(answer, "reasoning effort set to high");
    assert_eq!(fake.hit_count(), 0, "nothing reached a back-end");
    // The session now goes to the mock; another session still goes to the fake.
    assert_eq!(chat(&llmux, "s1", "hello", false).await, MOCK_TEXT);
    assert_eq!(chat(&llmux, "s2", "hello", false).await, "Hello from fake.");
    assert_eq!(fake.hit_count(), 1);
}

#[tokio::test]
async fn commands_are_stripped_and_the_rest_is_forwarded_with_overrides() {
    let (fake, llmux) = setup("").await;
    let answer = chat(
        &llmux,
        "s1",
        "!/set(temperature=0.3, reasoning=low) Say hi",
        false,
    )
    .await;
    assert_eq!(answer, "Hello from fake.");
    let upstream = fake.last_request().body;
    assert_eq!(upstream["messages"][2]["content"], "Say hi");
    assert_eq!(upstream["temperature"], 0.3);
    assert_eq!(upstream["reasoning_effort"], "low");
    // Earlier messages' commands are history, never re-applied or stripped.
    let request = json!({"model": "fake-small", "messages": [
        {"role": "user", "content": "!/backend(mock)"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "again"}]});
    let response = client()
        .post(llmux.url("/v1/chat/completions"))
        .header("x-session-id", "s3")
        .json(&request)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from fake.");
    assert_eq!(
        fake.last_request().body["messages"][0]["content"],
        "!/backend(mock)"
    );
}

#[tokio::test]
async fn oneoff_applies_to_the_next_request_only() {
    let (fake, llmux) = setup("").await;
    assert_eq!(
        chat(&llmux, "s", "!/oneoff(mock/mock-model)", false).await,
        "the next request goes to mock:mock-model"
    );
    assert_eq!(chat(&llmux, "s", "hi", false).await, MOCK_TEXT);
    assert_eq!(chat(&llmux, "s", "hi", false).await, "Hello from fake.");
    assert_eq!(fake.hit_count(), 1);
}

#[tokio::test]
async fn unknown_commands_and_bad_arguments_are_answered_locally_and_nothing_is_forwarded() {
    let (fake, llmux) = setup("").await;
    let answer = chat(&llmux, "s", "!/frobnicate please do it", false).await;
    assert!(answer.contains("unknown command !/frobnicate"), "{answer}");
    let answer = chat(&llmux, "s", "!/backend(nope)", false).await;
    assert!(
        answer.contains("unknown back-end 'nope'") && answer.contains("mock"),
        "{answer}"
    );
    let answer = chat(&llmux, "s", "!/set(temperature=hot)", false).await;
    assert!(answer.contains("temperature must be a number"), "{answer}");
    let answer = chat(&llmux, "s", "!/project-dir(/definitely/not/here)", false).await;
    assert!(answer.contains("not a directory"), "{answer}");
    assert_eq!(fake.hit_count(), 0);
    // A failed command changes nothing.
    assert_eq!(chat(&llmux, "s", "hi", false).await, "Hello from fake.");
}

#[tokio::test]
async fn help_and_status_describe_the_commands_and_the_next_request() {
    let (_fake, llmux) = setup("").await;
    let help = chat(&llmux, "s", "!/help", false).await;
    for command in [
        "!/backend(name)",
        "!/model(name)",
        "!/oneoff(",
        "!/set(",
        "!/unset(",
        "!/max",
        "!/no-think",
        "!/project-dir(",
        "!/status",
        "!/help",
    ] {
        assert!(
            help.contains(command),
            "{command} missing from help:\n{help}"
        );
    }
    chat(&llmux, "s", "!/model(mock:mock-model)", false).await;
    let status = chat(&llmux, "s", "!/status", false).await;
    assert!(
        status.contains("back-end mock, model mock-model"),
        "{status}"
    );
    chat(&llmux, "s", "!/unset(model)", false).await;
    let status = chat(&llmux, "s", "!/status", false).await;
    assert!(
        status.contains("back-end fake, model fake-small"),
        "{status}"
    );
}

#[tokio::test]
async fn help_and_status_beside_text_for_the_model_come_before_its_answer() {
    let (fake, llmux) = setup("").await;
    for stream in [false, true] {
        let answer = chat(&llmux, "s", "!/help explain the diff", stream).await;
        assert!(answer.contains("!/backend(name)"), "{answer}");
        assert!(answer.ends_with("\n\nHello from fake."), "{answer}");
        assert_eq!(
            fake.last_request().body["messages"][2]["content"],
            "explain the diff",
            "the text went on without the command"
        );
    }
    let answer = chat(&llmux, "s", "!/status and now the tests", false).await;
    assert!(
        answer.contains("back-end fake, model fake-small"),
        "{answer}"
    );
    assert!(answer.ends_with("Hello from fake."), "{answer}");
    // Commands that change the session say nothing in the model's answer.
    let answer = chat(&llmux, "s", "!/set(temperature=0.3) go on", false).await;
    assert_eq!(answer, "Hello from fake.");
}

#[tokio::test]
async fn strict_mode_only_takes_a_last_line_of_commands() {
    let (fake, llmux) = setup("strict_command_detection = true").await;
    let answer = chat(&llmux, "s", "I tried !/help but it didn't work", false).await;
    assert_eq!(answer, "Hello from fake.");
    assert_eq!(
        fake.last_request().body["messages"][2]["content"],
        "I tried !/help but it didn't work"
    );
    let answer = chat(&llmux, "s", "Some context\n!/backend(mock)", false).await;
    assert_eq!(answer, MOCK_TEXT, "the context went on to the new back-end");
}

#[tokio::test]
async fn clients_without_a_session_header_get_one_from_their_conversation() {
    let (fake, llmux) = setup("").await;
    let send = |first: &'static str, last: &'static str| {
        let request = json!({"model": "fake-small", "messages": [
            {"role": "user", "content": first}, {"role": "assistant", "content": "ok"},
            {"role": "user", "content": last}]});
        client()
            .post(llmux.url("/v1/chat/completions"))
            .json(&request)
            .send()
    };
    let body: Value = send("task A", "!/backend(mock)")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "back-end set to mock"
    );
    let body: Value = send("task A", "go").await.unwrap().json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], MOCK_TEXT);
    let body: Value = send("task B", "go").await.unwrap().json().await.unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from fake.");
    assert_eq!(fake.hit_count(), 1);
}

#[tokio::test]
async fn anthropic_clients_get_local_answers_in_their_protocol() {
    let (fake, llmux) = setup("").await;
    for stream in [false, true] {
        let request = json!({"model": "fake-small", "max_tokens": 100, "stream": stream,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "!/low"}]}]});
        let response = client()
            .post(llmux.anthropic_url("/v1/messages"))
            .header("x-session-id", "a")
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body = response.text().await.unwrap();
        if stream {
            assert!(
                body.contains("event: message_start") && body.contains("event: message_stop"),
                "{body}"
            );
            assert!(body.contains("reasoning effort set to low"), "{body}");
        } else {
            let value: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(value["content"][0]["text"], "reasoning effort set to low");
            assert_eq!(value["stop_reason"], "end_turn");
        }
    }
    assert_eq!(fake.hit_count(), 0);
}

#[tokio::test]
async fn aliases_force_model_and_static_route_route_requests() {
    // An alias sends gpt-* to the mock; other models stay on the fake.
    let (fake, llmux) =
        setup("model_aliases = [{ pattern = \"^gpt-(.*)\", replacement = \"mock:mock-\\\\1\" }]")
            .await;
    let request =
        |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let body: Value = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&request("gpt-4o"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], MOCK_TEXT);
    assert_eq!(body["model"], "mock-4o");
    let body: Value = client()
        .post(llmux.url("/v1/chat/completions"))
        .json(&request("fake-small"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], "Hello from fake.");
    assert_eq!(fake.hit_count(), 1);

    // --force-model replaces every model; a session override still wins over it.
    let (fake, llmux) = setup("force_model = \"fake-large\"").await;
    assert_eq!(chat(&llmux, "s", "hi", false).await, "Hello from fake.");
    assert_eq!(fake.last_request().body["model"], "fake-large");
    chat(&llmux, "s", "!/model(mock:mock-model)", false).await;
    assert_eq!(chat(&llmux, "s", "hi", false).await, MOCK_TEXT);

    // --static-route sends everything to one back-end and model.
    let (fake, llmux) = setup("static_route = \"mock:mock-model\"").await;
    assert_eq!(chat(&llmux, "s", "hi", false).await, MOCK_TEXT);
    assert_eq!(fake.hit_count(), 0);
}

#[tokio::test]
async fn the_planning_phase_routes_early_turns_to_the_strong_model_until_a_file_write() {
    let (fake, llmux) = setup(
        "session.planning_phase = { enabled = true, strong_model = \"fake:fake-large\", max_turns = 3, \
         overrides = { temperature = 0.2 } }",
    )
    .await;
    // The fake calls the first offered tool: offering `Write` makes the model write a file.
    let send = |tools: Value| {
        let request = json!({"model": "fake-small", "tools": tools,
            "messages": [{"role": "user", "content": "plan the work"}]});
        client()
            .post(llmux.url("/v1/chat/completions"))
            .header("x-session-id", "plan")
            .json(&request)
            .send()
    };
    let read_tool = json!([{"type": "function", "function": {"name": "Read", "parameters": {"type": "object"}}}]);
    let write_tool = json!([{"type": "function", "function": {"name": "Write", "parameters": {"type": "object"}}}]);
    send(read_tool.clone()).await.unwrap().text().await.unwrap();
    assert_eq!(fake.last_request().body["model"], "fake-large");
    assert_eq!(fake.last_request().body["temperature"], 0.2);
    send(write_tool).await.unwrap().text().await.unwrap();
    assert_eq!(fake.last_request().body["model"], "fake-large");
    // The model wrote a file: planning is over although turns remain.
    send(read_tool).await.unwrap().text().await.unwrap();
    assert_eq!(fake.last_request().body["model"], "fake-small");
    assert!(fake.last_request().body.get("temperature").is_none());
}

#[tokio::test]
async fn the_planning_phase_works_on_the_names_aliases_rewrote() {
    // As the seed says: an alias rewrites the client's model, and the planning phase still
    // sends the session's first turns to the strong model; once it is over, the alias holds.
    let (fake, llmux) = setup(
        "model_aliases = [{ pattern = \"^cheap$\", replacement = \"fake:fake-small\" }]\n\
         session.planning_phase = { enabled = true, strong_model = \"fake:fake-large\", max_turns = 1 }",
    )
    .await;
    let send = || {
        client()
            .post(llmux.url("/v1/chat/completions"))
            .header("x-session-id", "aliased")
            .json(&json!({"model": "cheap",
                "messages": [{"role": "user", "content": "plan the work"}]}))
            .send()
    };
    send().await.unwrap().text().await.unwrap();
    assert_eq!(fake.last_request().body["model"], "fake-large");
    send().await.unwrap().text().await.unwrap();
    assert_eq!(fake.last_request().body["model"], "fake-small");
}

#[tokio::test]
async fn a_failed_edit_makes_the_next_request_precise() {
    let (fake, llmux) = setup("edit_precision = { override_top_p = true }").await;
    let request = json!({"model": "fake-small", "max_tokens": 100, "temperature": 0.8,
    "messages": [
        {"role": "user", "content": "Fix the typo."},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Edit",
            "input": {"file_path": "a.txt", "old_string": "teh", "new_string": "the"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "is_error": true,
            "content": "<tool_use_error>String to replace not found in file.</tool_use_error>"}]}
    ]});
    let response = client()
        .post(llmux.anthropic_url("/v1/messages"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let sent = fake.last_request().body;
    assert_eq!(sent["temperature"], 0.1);
    assert_eq!(sent["top_p"], 0.3);

    // A successful edit leaves sampling alone.
    let mut fine = request.clone();
    fine["messages"][2]["content"][0]["content"] = json!("The file a.txt has been updated.");
    fine["messages"][2]["content"][0]["is_error"] = json!(false);
    client()
        .post(llmux.anthropic_url("/v1/messages"))
        .json(&fine)
        .send()
        .await
        .unwrap();
    assert_eq!(fake.last_request().body["temperature"], 0.8);
}

#[tokio::test]
async fn reasoning_aliases_apply_per_model_settings_from_their_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("reasoning_aliases.toml");
    std::fs::write(
        &file,
        "[[models]]\npattern = \"^fake-\"\n[models.max]\ntemperature = 0.6\nmax_tokens = 4000\n\
         prompt_prefix = \"Think step by step.\"\n",
    )
    .unwrap();
    let (fake, llmux) = setup(&format!("reasoning_aliases_file = \"{}\"", file.display())).await;
    assert_eq!(
        chat(&llmux, "s", "!/max", false).await,
        "reasoning effort set to high"
    );
    chat(&llmux, "s", "hello", false).await;
    let sent = fake.last_request().body;
    assert_eq!(sent["temperature"], 0.6);
    assert_eq!(sent["max_tokens"], 4000);
    assert_eq!(sent["reasoning_effort"], "high");
    let last = sent["messages"].as_array().unwrap().last().unwrap().clone();
    assert!(
        last["content"].to_string().contains("Think step by step."),
        "{last}"
    );
    // Without the alias nothing changes.
    chat(&llmux, "other", "hello", false).await;
    assert!(fake.last_request().body.get("temperature").is_none());
}

#[tokio::test]
async fn gemini_and_responses_clients_get_local_answers_in_their_protocol() {
    let (fake, llmux) = setup("").await;
    // Gemini, not streamed and streamed as SSE.
    let request = json!({"contents": [{"role": "user", "parts": [{"text": "!/medium"}]}]});
    let body: Value = client()
        .post(llmux.url("/v1beta/models/fake-small:generateContent"))
        .header("x-session-id", "g")
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body["candidates"][0]["content"]["parts"][0]["text"],
        "reasoning effort set to medium"
    );
    let text = client()
        .post(llmux.url("/v1beta/models/fake-small:streamGenerateContent?alt=sse"))
        .header("x-session-id", "g")
        .json(&request)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("reasoning effort set to medium")
            && text.contains("\"finishReason\":\"STOP\""),
        "{text}"
    );

    // Responses, not streamed and streamed.
    for stream in [false, true] {
        let request = json!({"model": "fake-small", "input": "!/no-think", "stream": stream});
        let text = client()
            .post(llmux.url("/v1/responses"))
            .header("x-session-id", "r")
            .json(&request)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("reasoning effort set to none"), "{text}");
        if stream {
            assert!(text.contains("response.completed"), "{text}");
        }
    }
    assert_eq!(fake.hit_count(), 0);
}
