#!/usr/bin/env python3
"""Drive the official OpenAI Python SDK's Responses API against llmux.

Checks, each printing "ok <name>" or "FAIL <name>: <why>" (exit code 1 if any failed):

  create       responses.create returns output_text
  stream       responses.stream yields text deltas and a completed response with usage
  tool_call    a function tool is called; its function_call_output gets a text answer
  parse        responses.parse with a pydantic model returns a parsed object
  previous     previous_response_id continues a conversation; responses.retrieve finds it
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable

from openai import OpenAI
from pydantic import BaseModel

TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Get the weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    }
]


class Failure(Exception):
    pass


def expect(condition: bool, why: str) -> None:
    if not condition:
        raise Failure(why)


def check_create(client: OpenAI, model: str) -> None:
    response = client.responses.create(model=model, instructions="Be terse.", input="Say hello.")
    expect(response.status == "completed", f"status {response.status!r}")
    expect(bool(response.output_text), f"no output_text in {response.output!r}")
    expect(response.usage is not None and response.usage.total_tokens > 0, "no usage")


def check_stream(client: OpenAI, model: str) -> None:
    deltas: list[str] = []
    with client.responses.stream(model=model, input="Say hello.") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    expect(len(deltas) > 0, "no text deltas")
    expect(final.output_text == "".join(deltas), f"{final.output_text!r} != {''.join(deltas)!r}")
    expect(final.usage is not None, "no usage on the completed response")


def check_tool_call(client: OpenAI, model: str) -> None:
    first = client.responses.create(model=model, input="Weather in Paris?", tools=TOOLS)
    calls = [item for item in first.output if item.type == "function_call"]
    expect(len(calls) == 1, f"expected one function_call, got {first.output!r}")
    call = calls[0]
    expect(call.name == "get_weather", f"name {call.name!r}")
    second = client.responses.create(
        model=model,
        tools=TOOLS,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            call.model_dump(exclude_none=True),
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny"},
        ],
    )
    expect(bool(second.output_text), f"no answer after the tool output: {second.output!r}")


def check_previous(client: OpenAI, model: str) -> None:
    first = client.responses.create(model=model, input="My name is Ada.")
    second = client.responses.create(model=model, previous_response_id=first.id, input="Who am I?")
    expect(bool(second.output_text), "no answer to the continued conversation")
    fetched = client.responses.retrieve(first.id)
    expect(fetched.id == first.id, f"retrieved {fetched.id!r}, expected {first.id!r}")


class Greeting(BaseModel):
    greeting: str


def check_parse(client: OpenAI, model: str) -> None:
    response = client.responses.parse(model=model, input="Greet me.", text_format=Greeting)
    expect(response.output_parsed is not None, f"nothing parsed from {response.output_text!r}")


CHECKS: dict[str, Callable[[OpenAI, str], None]] = {
    "create": check_create,
    "stream": check_stream,
    "tool_call": check_tool_call,
    "parse": check_parse,
    "previous": check_previous,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--only", action="append", choices=list(CHECKS))
    args = parser.parse_args()
    client = OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=30.0)
    failed = False
    for name in args.only or CHECKS:
        try:
            CHECKS[name](client, args.model)
            print(f"ok {name}")
        except Failure as err:
            failed = True
            print(f"FAIL {name}: {err}")
        except Exception as err:  # noqa: BLE001 - report any SDK error as a failed check
            failed = True
            print(f"FAIL {name}: {type(err).__name__}: {err}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
