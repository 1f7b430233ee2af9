#!/usr/bin/env python3
"""Exercise the official Google Gen AI Python SDK (google-genai) against a Gemini API
compatible server (llmux).

Checks, each printing "ok <name>" or "FAIL <name>: <why>" (exit code 1 if any failed):

  generate         models.generate_content returns model text, a finish reason and usage
  stream           models.generate_content_stream yields text chunks; the last one has a
                   finish reason and usage
  function_call    a function is offered; the answer is a function call with object args
                   (streaming and not); the function response sent back gets a text answer
  count_tokens     models.count_tokens returns a positive total_tokens
  models_list      models.list holds every --expect-model

Example:
  .venv/bin/python tests/python/genai_sdk_client.py \\
      --base-url http://127.0.0.1:8000 --api-key test-key --model fake-small
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from google import genai
from google.genai import errors, types

WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="Get the current weather for a city.",
    parameters=types.Schema(
        type=types.Type.OBJECT,
        properties={"city": types.Schema(type=types.Type.STRING, description="City name")},
        required=["city"],
    ),
)
QUESTION = "What is the weather in Paris? Use the tool."


class Failure(Exception):
    pass


def expect(condition: bool, why: str) -> None:
    if not condition:
        raise Failure(why)


def tool_config() -> types.GenerateContentConfig:
    return types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        # The SDK would call Python functions itself; we drive the round trip by hand.
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )


def check_generate(client: genai.Client, model: str, _: list[str]) -> None:
    response = client.models.generate_content(
        model=model,
        contents="Say hello.",
        config=types.GenerateContentConfig(
            system_instruction="You are terse.", temperature=0.2, max_output_tokens=256
        ),
    )
    expect(bool(response.text), f"no text in {response!r}")
    candidate = response.candidates[0]
    expect(candidate.content.role == "model", f"role {candidate.content.role!r}")
    expect(candidate.finish_reason == types.FinishReason.STOP, f"finish {candidate.finish_reason!r}")
    usage = response.usage_metadata
    expect(usage is not None and (usage.prompt_token_count or 0) > 0, f"usage {usage!r}")
    expect((usage.total_token_count or 0) >= (usage.prompt_token_count or 0), f"usage {usage!r}")


def check_stream(client: genai.Client, model: str, _: list[str]) -> None:
    chunks = list(client.models.generate_content_stream(model=model, contents="Say hello."))
    expect(len(chunks) > 0, "no chunks")
    text = "".join(c.text or "" for c in chunks)
    expect(text != "", "no streamed text")
    last = chunks[-1]
    expect(
        last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP,
        f"last chunk has no STOP: {last!r}",
    )
    expect(last.usage_metadata is not None and (last.usage_metadata.total_token_count or 0) > 0,
           f"last chunk has no usage: {last!r}")
    whole = client.models.generate_content(model=model, contents="Say hello.")
    expect(whole.text == text, f"streamed {text!r} != whole {whole.text!r}")


def check_function_call(client: genai.Client, model: str, _: list[str]) -> None:
    config = tool_config()
    for streamed in (False, True):
        if streamed:
            chunks = list(
                client.models.generate_content_stream(model=model, contents=QUESTION, config=config)
            )
            calls = [call for c in chunks for call in (c.function_calls or [])]
            parts = [p for c in chunks if c.candidates for p in (c.candidates[0].content.parts or [])]
        else:
            response = client.models.generate_content(model=model, contents=QUESTION, config=config)
            calls = response.function_calls or []
            parts = response.candidates[0].content.parts or []
        expect(len(calls) == 1, f"streamed={streamed}: expected one function call, got {calls!r}")
        call = calls[0]
        expect(call.name == "get_weather", f"name {call.name!r}")
        expect(isinstance(call.args, dict) and call.args.get("city"), f"args {call.args!r}")
    # Send the model's turn back as the SDK got it (the streamed parts, the call's id if
    # it had one), then the function's response, the way the SDK's docs show.
    followup = client.models.generate_content(
        model=model,
        contents=[
            types.Content(role="user", parts=[types.Part.from_text(text=QUESTION)]),
            types.Content(role="model", parts=[p for p in parts if p.function_call or p.text]),
            types.Content(
                role="user",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(
                            id=call.id, name=call.name, response={"output": "Sunny, 21C"}
                        )
                    )
                ],
            ),
        ],
        config=config,
    )
    expect(bool(followup.text), f"no answer after the function response: {followup!r}")
    expect(not followup.function_calls, f"called again: {followup.function_calls!r}")


def check_count_tokens(client: genai.Client, model: str, _: list[str]) -> None:
    counted = client.models.count_tokens(model=model, contents="Count these tokens, please.")
    expect((counted.total_tokens or 0) > 0, f"total_tokens {counted.total_tokens!r}")


def check_models_list(client: genai.Client, _: str, expected: list[str]) -> None:
    names = [m.name for m in client.models.list()]
    expect(len(names) > 0, "empty model list")
    for model in expected:
        expect(f"models/{model}" in names, f"models/{model} not in {names!r}")


CHECKS: dict[str, Callable[[genai.Client, str, list[str]], None]] = {
    "generate": check_generate,
    "stream": check_stream,
    "function_call": check_function_call,
    "count_tokens": check_count_tokens,
    "models_list": check_models_list,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="the server's root, e.g. http://127.0.0.1:8000")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--expect-model", action="append", default=[])
    parser.add_argument("--only", action="append", choices=list(CHECKS))
    parser.add_argument(
        "--api-version",
        help="v1 or v1beta; default: the SDK's own (v1 since google-genai 2, v1beta before)",
    )
    args = parser.parse_args()

    options = types.HttpOptions(base_url=args.base_url, timeout=30_000)
    if args.api_version:
        options.api_version = args.api_version
    client = genai.Client(api_key=args.api_key, http_options=options)
    failed = False
    for name in args.only or CHECKS:
        try:
            CHECKS[name](client, args.model, args.expect_model)
            print(f"ok {name}")
        except Failure as err:
            failed = True
            print(f"FAIL {name}: {err}")
        except errors.APIError as err:
            failed = True
            print(f"FAIL {name}: {type(err).__name__} {err.code} {err.status}: {err.message}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
