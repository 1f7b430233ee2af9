"""Reads llmux's Responses client fixtures with the official OpenAI Python SDK.

Usage: responses_sdk_check.py FILE...

- `*.sse`: streamed through `client.responses.stream()`, the SDK's typed accumulator (it
  rebuilds the response from the events and asserts on their order), and through
  `client.responses.create(stream=True)`; a stream that ends in `response.completed` must
  give a final response whose text and calls match the completed event.
- `*.json`: validated strictly as the SDK's `Response` model.

Prints one line per file and exits non-zero on the first failure.
"""

import json
import sys
import typing

import httpx
from openai import OpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import ValidationError


def client_for(body: bytes) -> OpenAI:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return OpenAI(
        api_key="sk-test",
        base_url="http://llmux.test/v1",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )


def event_classes() -> dict:
    """The SDK's stream event models by their `type`."""
    union = typing.get_args(ResponseStreamEvent)[0]
    classes = {}
    for cls in typing.get_args(union):
        literal = cls.model_fields["type"].annotation
        for value in typing.get_args(literal):
            classes[value] = cls
    return classes


def check_stream(path: str) -> str:
    body = open(path, "rb").read()
    classes = event_classes()
    # Every frame validates strictly as the SDK's model of its type.
    for number, block in enumerate(body.decode().split("\n\n")):
        data = [line[len("data: "):] for line in block.splitlines() if line.startswith("data: ")]
        if not data:
            continue
        event = json.loads("\n".join(data))
        cls = classes.get(event["type"])
        if cls is None:
            continue  # a forwarded event newer than this SDK
        try:
            cls.model_validate(event)
        except ValidationError as error:
            raise AssertionError(f"frame {number} ({event['type']}): {error}") from None

    raw = list(client_for(body).responses.create(model="m", input="hi", stream=True))
    last = raw[-1].type
    with client_for(body).responses.stream(model="m", input="hi") as stream:
        kinds = [event.type for event in stream]
        if last == "response.completed":
            final = stream.get_final_response()
            completed = raw[-1].response
            assert final.output_text == completed.output_text, (final.output_text, completed.output_text)
            calls = [(o.call_id, o.name, o.arguments) for o in final.output if o.type == "function_call"]
            expected = [(o.call_id, o.name, o.arguments) for o in completed.output if o.type == "function_call"]
            assert calls == expected, (calls, expected)
            Response.model_validate(completed.to_dict())
        elif last in ("response.failed", "response.incomplete"):
            snapshot = raw[-1].response
            Response.model_validate(snapshot.to_dict())
        else:
            raise AssertionError(f"stream ends with {last}")
    return f"{len(kinds)} events, ends with {last}"


def check_body(path: str) -> str:
    response = Response.model_validate(json.load(open(path)))
    return f"{response.status}, {len(response.output)} output items, text {response.output_text!r:.40}"


def main() -> int:
    for path in sys.argv[1:]:
        try:
            what = check_stream(path) if path.endswith(".sse") else check_body(path)
        except Exception as error:  # noqa: BLE001 - report which fixture and why
            print(f"FAIL {path}: {type(error).__name__}: {error}")
            return 1
        print(f"ok   {path}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
