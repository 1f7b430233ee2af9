#!/usr/bin/env python3
"""Exercise the official Anthropic Python SDK against an Anthropic-compatible server (llmux).

Checks, each printing "ok <name>" or "FAIL <name>: <why>" (exit code 1 if any failed):

  create        messages.create returns an assistant message with text and a stop_reason
  stream        messages.stream yields text deltas and a final message with usage
  tool_use      a tool is offered; the answer is a tool_use block with an object input;
                the tool_result sent back gets a text answer
  count_tokens  messages.count_tokens returns a positive input_tokens
  models_list   models.list holds every --expect-model

Example:
  .venv/bin/python tests/python/anthropic_sdk_client.py \\
      --base-url http://127.0.0.1:8001 --api-key test-key --model claude-fake-1
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

import anthropic

WEATHER_TOOL: dict[str, Any] = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]


class Failure(Exception):
    pass


def expect(condition: bool, why: str) -> None:
    if not condition:
        raise Failure(why)


def check_create(client: anthropic.Anthropic, model: str, _: list[str]) -> None:
    message = client.messages.create(
        model=model,
        max_tokens=256,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hello."}],
    )
    expect(message.role == "assistant", f"role {message.role!r}")
    text = "".join(b.text for b in message.content if b.type == "text")
    expect(bool(text), f"no text in {message.content!r}")
    expect(message.stop_reason is not None, "no stop_reason")
    expect(message.usage.input_tokens > 0, f"input_tokens {message.usage.input_tokens}")


def check_stream(client: anthropic.Anthropic, model: str, _: list[str]) -> None:
    pieces: list[str] = []
    with client.messages.stream(
        model=model, max_tokens=256, messages=[{"role": "user", "content": "Say hello."}]
    ) as stream:
        for text in stream.text_stream:
            pieces.append(text)
        final = stream.get_final_message()
    expect(len(pieces) > 0 and "".join(pieces) != "", "no text deltas")
    text = "".join(b.text for b in final.content if b.type == "text")
    expect(text == "".join(pieces), f"final text {text!r} != streamed {''.join(pieces)!r}")
    expect(final.stop_reason is not None, "no stop_reason")
    expect(final.usage.output_tokens > 0, "no output usage")


def check_tool_use(client: anthropic.Anthropic, model: str, _: list[str]) -> None:
    for streamed in (False, True):
        if streamed:
            with client.messages.stream(
                model=model, max_tokens=256, tools=[WEATHER_TOOL], messages=QUESTION
            ) as stream:
                message = stream.get_final_message()
        else:
            message = client.messages.create(
                model=model, max_tokens=256, tools=[WEATHER_TOOL], messages=QUESTION
            )
        uses = [b for b in message.content if b.type == "tool_use"]
        expect(len(uses) == 1, f"streamed={streamed}: expected one tool_use, got {message.content!r}")
        use = uses[0]
        expect(use.name == "get_weather", f"tool name {use.name!r}")
        expect(isinstance(use.input, dict) and use.input.get("city"), f"input {use.input!r}")
        expect(message.stop_reason == "tool_use", f"stop_reason {message.stop_reason!r}")
    follow = client.messages.create(
        model=model,
        max_tokens=256,
        tools=[WEATHER_TOOL],
        messages=QUESTION
        + [
            {"role": "assistant", "content": [b.model_dump() for b in message.content]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 21C"}
            ]},
        ],
    )
    text = "".join(b.text for b in follow.content if b.type == "text")
    expect(bool(text), f"no answer after the tool result: {follow.content!r}")


def check_count_tokens(client: anthropic.Anthropic, model: str, _: list[str]) -> None:
    counted = client.messages.count_tokens(
        model=model, messages=[{"role": "user", "content": "Count these tokens, please."}]
    )
    expect(counted.input_tokens > 0, f"input_tokens {counted.input_tokens}")


def check_models_list(client: anthropic.Anthropic, _: str, expected: list[str]) -> None:
    ids = [m.id for m in client.models.list()]
    expect(len(ids) > 0, "empty model list")
    for model in expected:
        expect(model in ids, f"{model!r} not in {ids!r}")


CHECKS: dict[str, Callable[[anthropic.Anthropic, str, list[str]], None]] = {
    "create": check_create,
    "stream": check_stream,
    "tool_use": check_tool_use,
    "count_tokens": check_count_tokens,
    "models_list": check_models_list,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8001 or http://127.0.0.1:8000/anthropic")
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--expect-model", action="append", default=[])
    parser.add_argument("--only", action="append", choices=list(CHECKS))
    args = parser.parse_args()

    client = anthropic.Anthropic(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=30.0)
    failed = False
    for name in args.only or CHECKS:
        try:
            CHECKS[name](client, args.model, args.expect_model)
            print(f"ok {name}")
        except Failure as err:
            failed = True
            print(f"FAIL {name}: {err}")
        except anthropic.APIError as err:
            failed = True
            status = getattr(err, "status_code", "")
            print(f"FAIL {name}: {type(err).__name__} {status}: {err}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
