#!/usr/bin/env python3
"""Exercise the official OpenAI Python SDK against an OpenAI-compatible server (llmux).

Checks the OpenAI Chat Completions and Models contract as the SDK sees it:

  chat              non-streaming chat returns a non-empty assistant message
  chat_stream       streaming chat with stream_options.include_usage: non-empty content
                    deltas, a finish_reason, and a final usage chunk with empty choices
  tool_call         tools + tool_choice: message.tool_calls[0] calls get_weather with
                    JSON-object arguments
  tool_call_stream  the same, streamed; tool call deltas are accumulated by index
  tool_result       a conversation holding an assistant tool call and its tool result
                    gets a non-empty assistant answer
  models_list       client.models.list() is non-empty and holds every --expect-model

Each check prints "ok <name>" or "FAIL <name>: <why>"; the exit code is 1 if any failed.

Example:
  .venv/bin/python tests/python/openai_sdk_client.py \\
      --base-url http://127.0.0.1:8000/v1 --api-key test-key --model fake-model \\
      --expect-model fake-model
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

import openai
from openai import OpenAI

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. Paris"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
WEATHER_CHOICE: dict[str, Any] = {"type": "function", "function": {"name": "get_weather"}}

CHAT_MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are a terse test assistant."},
    {"role": "user", "content": "Reply with one short sentence that says hello."},
]
TOOL_MESSAGES: list[dict[str, Any]] = [
    {"role": "user", "content": "What is the weather in Paris? Use the get_weather tool."},
]


class CheckFailed(Exception):
    """A contract violation found by a check."""


def require(condition: bool, why: str) -> None:
    if not condition:
        raise CheckFailed(why)


def preview(value: Any, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def describe_error(err: BaseException) -> str:
    """One line saying why an SDK call failed."""
    if isinstance(err, CheckFailed):
        return str(err)
    if isinstance(err, openai.APIStatusError):
        body = err.body if err.body is not None else err.response.text
        return f"HTTP {err.status_code} ({type(err).__name__}): {preview(body, 400)}"
    if isinstance(err, openai.APITimeoutError):
        return "request timed out"
    if isinstance(err, openai.APIConnectionError):
        cause = err.__cause__ or err
        return f"connection error: {type(cause).__name__}: {cause}"
    if isinstance(err, openai.APIResponseValidationError):
        return f"response did not match the SDK's types: {err}"
    return f"{type(err).__name__}: {err}"


def check_tool_arguments(arguments: str | None) -> dict[str, Any]:
    require(arguments is not None, "tool call has no arguments")
    try:
        parsed = json.loads(arguments or "")
    except json.JSONDecodeError as err:
        raise CheckFailed(f"tool call arguments are not JSON ({err}): {preview(arguments)}") from err
    require(isinstance(parsed, dict), f"tool call arguments are not a JSON object: {preview(arguments)}")
    return parsed


def check_usage(usage: Any, where: str) -> None:
    for name in ("prompt_tokens", "completion_tokens", "total_tokens"):
        value = getattr(usage, name, None)
        require(
            isinstance(value, int) and value >= 0,
            f"{where}: usage.{name} is {value!r}, want a non-negative integer",
        )


# --------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------


def check_chat(client: OpenAI, args: argparse.Namespace) -> None:
    completion = client.chat.completions.create(model=args.model, messages=CHAT_MESSAGES)
    require(len(completion.choices) >= 1, "response has no choices")
    choice = completion.choices[0]
    message = choice.message
    require(message.role == "assistant", f"message.role is {message.role!r}, want 'assistant'")
    require(
        isinstance(message.content, str) and message.content.strip() != "",
        f"message.content is empty: {message.content!r}",
    )
    require(choice.finish_reason is not None, "choices[0].finish_reason is missing")
    if completion.usage is not None:
        check_usage(completion.usage, "response")


def check_chat_stream(client: OpenAI, args: argparse.Namespace) -> None:
    stream = client.chat.completions.create(
        model=args.model,
        messages=CHAT_MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    content: list[str] = []
    finish_reason: str | None = None
    chunks = 0
    usage_chunks: list[int] = []  # positions of chunks that carry usage
    last_usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage_chunks.append(chunks)
            last_usage = chunk
        chunks += 1
        for choice in chunk.choices:
            delta = choice.delta
            if delta.role is not None:
                require(delta.role == "assistant", f"delta.role is {delta.role!r}, want 'assistant'")
            if delta.content:
                content.append(delta.content)
            if choice.finish_reason is not None:
                finish_reason = choice.finish_reason
    text = "".join(content)
    require(chunks > 0, "stream yielded no chunks")
    require(text.strip() != "", f"concatenated content deltas are empty ({chunks} chunks)")
    require(finish_reason is not None, "no chunk carried a finish_reason")
    require(
        last_usage is not None,
        "no usage chunk although stream_options.include_usage was true",
    )
    require(
        usage_chunks == [chunks - 1],
        f"usage must be on the final chunk only; found it on chunk(s) {usage_chunks} of {chunks}",
    )
    assert last_usage is not None
    require(
        len(last_usage.choices) == 0,
        f"the usage chunk must have empty choices, got {len(last_usage.choices)}",
    )
    check_usage(last_usage.usage, "usage chunk")


def check_tool_call(client: OpenAI, args: argparse.Namespace) -> None:
    completion = client.chat.completions.create(
        model=args.model,
        messages=TOOL_MESSAGES,
        tools=[WEATHER_TOOL],
        tool_choice=WEATHER_CHOICE,
    )
    require(len(completion.choices) >= 1, "response has no choices")
    choice = completion.choices[0]
    message = choice.message
    require(message.role == "assistant", f"message.role is {message.role!r}, want 'assistant'")
    require(bool(message.tool_calls), f"message.tool_calls is empty (content: {preview(message.content)})")
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    require(call.type == "function", f"tool_calls[0].type is {call.type!r}, want 'function'")
    require(bool(call.id), "tool_calls[0].id is empty")
    name = call.function.name  # type: ignore[union-attr]
    require(name == "get_weather", f"tool_calls[0].function.name is {name!r}, want 'get_weather'")
    check_tool_arguments(call.function.arguments)  # type: ignore[union-attr]
    # OpenAI answers a forced named tool_choice with "stop", an "auto" choice with "tool_calls".
    require(
        choice.finish_reason in ("tool_calls", "stop"),
        f"finish_reason is {choice.finish_reason!r}, want 'tool_calls' (or 'stop')",
    )


@dataclass
class ToolCallAcc:
    id: str | None = None
    type: str | None = None
    name: str = ""
    arguments: str = ""
    deltas: int = field(default=0)


def check_tool_call_stream(client: OpenAI, args: argparse.Namespace) -> None:
    stream = client.chat.completions.create(
        model=args.model,
        messages=TOOL_MESSAGES,
        tools=[WEATHER_TOOL],
        tool_choice=WEATHER_CHOICE,
        stream=True,
    )
    calls: dict[int, ToolCallAcc] = {}
    finish_reason: str | None = None
    chunks = 0
    for chunk in stream:
        chunks += 1
        for choice in chunk.choices:
            for delta in choice.delta.tool_calls or []:
                require(isinstance(delta.index, int), f"tool call delta without an integer index: {delta!r}")
                acc = calls.setdefault(delta.index, ToolCallAcc())
                acc.deltas += 1
                if delta.id:
                    require(
                        acc.id in (None, delta.id),
                        f"tool call {delta.index} changed id from {acc.id!r} to {delta.id!r}",
                    )
                    acc.id = delta.id
                if delta.type:
                    acc.type = delta.type
                if delta.function is not None:
                    # Like the SDK's own stream accumulator: string fragments concatenate.
                    acc.name += delta.function.name or ""
                    acc.arguments += delta.function.arguments or ""
            if choice.finish_reason is not None:
                finish_reason = choice.finish_reason
    require(chunks > 0, "stream yielded no chunks")
    require(bool(calls), f"no tool call deltas in {chunks} chunks")
    require(0 in calls, f"tool call indexes {sorted(calls)} do not start at 0")
    first = calls[0]
    require(bool(first.id), "tool call 0 never got an id")
    require(first.type in (None, "function"), f"tool call 0 type is {first.type!r}, want 'function'")
    require(first.name == "get_weather", f"accumulated tool call 0 name is {first.name!r}, want 'get_weather'")
    check_tool_arguments(first.arguments)
    require(
        finish_reason in ("tool_calls", "stop"),
        f"finish_reason is {finish_reason!r}, want 'tool_calls' (or 'stop')",
    )


def check_tool_result(client: OpenAI, args: argparse.Namespace) -> None:
    messages: list[dict[str, Any]] = [
        *TOOL_MESSAGES,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_llmux_test_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})},
                }
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_llmux_test_1",
            "content": json.dumps({"city": "Paris", "temperature_c": 18, "sky": "clear"}),
        },
    ]
    completion = client.chat.completions.create(model=args.model, messages=messages)
    require(len(completion.choices) >= 1, "response has no choices")
    message = completion.choices[0].message
    require(message.role == "assistant", f"message.role is {message.role!r}, want 'assistant'")
    require(
        isinstance(message.content, str) and message.content.strip() != "",
        f"message.content is empty: {message.content!r}",
    )


def check_models_list(client: OpenAI, args: argparse.Namespace) -> None:
    ids = [model.id for model in client.models.list()]
    require(len(ids) > 0, "models.list() returned no models")
    missing = [m for m in args.expect_model if m not in ids]
    require(not missing, f"expected model(s) {missing} not listed; got {preview(ids, 400)}")


CHECKS: dict[str, Callable[[OpenAI, argparse.Namespace], None]] = {
    "chat": check_chat,
    "chat_stream": check_chat_stream,
    "tool_call": check_tool_call,
    "tool_call_stream": check_tool_call_stream,
    "tool_result": check_tool_result,
    "models_list": check_models_list,
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="checks: " + ", ".join(CHECKS),
    )
    parser.add_argument("--base-url", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--api-key", required=True, help="API key sent as a Bearer token")
    parser.add_argument("--model", required=True, help="model to use for the chat and tool checks")
    parser.add_argument(
        "--expect-model",
        action="append",
        default=[],
        metavar="ID",
        help="a model id that models.list() must contain (repeatable)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(CHECKS),
        metavar="CHECK",
        help="run only this check (repeatable); default: all",
    )
    parser.add_argument(
        "--skip", action="append", default=[], choices=list(CHECKS), metavar="CHECK", help="skip this check (repeatable)"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request (default: 30)")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    # No SDK retries: a failure should show up as a failure, not be hidden by a retry.
    client = OpenAI(base_url=args.base_url, api_key=args.api_key, timeout=args.timeout, max_retries=0)
    selected = [name for name in (args.only or list(CHECKS)) if name not in args.skip]
    failures = 0
    for name in selected:
        try:
            CHECKS[name](client, args)
        except Exception as err:  # noqa: BLE001 - every failure is reported, none ends the run
            failures += 1
            print(f"FAIL {name}: {describe_error(err)}", flush=True)
        else:
            print(f"ok {name}", flush=True)
    print(f"openai_sdk_client: {len(selected) - failures} passed, {failures} failed", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
