#!/usr/bin/env python3
"""One turn through an official SDK (openai chat or responses, anthropic, google-genai)
against llmux, with one tool offered, printed as JSON for tests/sdk_steering.rs to check
what llmux's steering stages did to the answer the SDK parsed:

  {"text": "...", "reasoning": "...", "calls": [{"name": ..., "arguments": {...}}],
   "finish": "..."}

The SDK parses llmux's wire format strictly, so a malformed event or body fails here.

Example:
  .venv/bin/python tests/python/steering_sdk_client.py --protocol anthropic --stream \\
      --base-url http://127.0.0.1:8000 --tool Bash --prompt "Start over."
"""

from __future__ import annotations

import argparse
import json
import sys

KEY = "steering-test-key"


def tool_schema() -> dict:
    return {"type": "object", "properties": {"command": {"type": "string"}}}


def openai_chat(args: argparse.Namespace) -> dict:
    import openai

    client = openai.OpenAI(base_url=f"{args.base_url}/v1", api_key=KEY, max_retries=0)
    request = dict(
        model=args.model,
        messages=[{"role": "user", "content": args.prompt}],
        tools=[{"type": "function", "function": {"name": args.tool, "parameters": tool_schema()}}],
    )
    out = {"text": "", "reasoning": "", "calls": [], "finish": None}
    if not args.stream:
        choice = client.chat.completions.create(**request).choices[0]
        out["text"] = choice.message.content or ""
        out["reasoning"] = (choice.message.model_extra or {}).get("reasoning_content") or ""
        for call in choice.message.tool_calls or []:
            out["calls"].append(
                {"name": call.function.name, "arguments": json.loads(call.function.arguments)}
            )
        out["finish"] = choice.finish_reason
        return out
    calls: dict[int, dict] = {}
    for chunk in client.chat.completions.create(stream=True, **request):
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        out["text"] += delta.content or ""
        out["reasoning"] += (delta.model_extra or {}).get("reasoning_content") or ""
        for call in delta.tool_calls or []:
            slot = calls.setdefault(call.index, {"name": "", "arguments": ""})
            if call.function and call.function.name:
                slot["name"] = call.function.name
            if call.function and call.function.arguments:
                slot["arguments"] += call.function.arguments
        if choice.finish_reason:
            out["finish"] = choice.finish_reason
    out["calls"] = [
        {"name": c["name"], "arguments": json.loads(c["arguments"] or "{}")}
        for _, c in sorted(calls.items())
    ]
    return out


def openai_responses(args: argparse.Namespace) -> dict:
    import openai

    client = openai.OpenAI(base_url=f"{args.base_url}/v1", api_key=KEY, max_retries=0)
    request = dict(
        model=args.model,
        input=args.prompt,
        tools=[{"type": "function", "name": args.tool, "parameters": tool_schema()}],
    )
    if args.stream:
        with client.responses.stream(**request) as stream:
            for _ in stream:
                pass
            response = stream.get_final_response()
    else:
        response = client.responses.create(**request)
    out = {"text": response.output_text or "", "reasoning": "", "calls": [], "finish": None}
    for item in response.output:
        if item.type == "function_call":
            out["calls"].append({"name": item.name, "arguments": json.loads(item.arguments)})
        elif item.type == "reasoning":
            out["reasoning"] += "".join(part.text for part in (item.content or []))
            out["reasoning"] += "".join(part.text for part in (item.summary or []))
    out["finish"] = response.status
    return out


def anthropic_messages(args: argparse.Namespace) -> dict:
    import anthropic

    client = anthropic.Anthropic(base_url=args.base_url, api_key=KEY, max_retries=0)
    request = dict(
        model=args.model,
        max_tokens=1024,
        messages=[{"role": "user", "content": args.prompt}],
        tools=[{"name": args.tool, "input_schema": tool_schema()}],
    )
    if args.stream:
        with client.messages.stream(**request) as stream:
            for _ in stream:
                pass
            message = stream.get_final_message()
    else:
        message = client.messages.create(**request)
    out = {"text": "", "reasoning": "", "calls": [], "finish": message.stop_reason}
    for block in message.content:
        if block.type == "text":
            out["text"] += block.text
        elif block.type == "thinking":
            out["reasoning"] += block.thinking
        elif block.type == "tool_use":
            out["calls"].append({"name": block.name, "arguments": block.input})
    return out


def gemini(args: argparse.Namespace) -> dict:
    from google import genai
    from google.genai import types

    client = genai.Client(
        api_key=KEY, http_options=types.HttpOptions(base_url=args.base_url, api_version="v1beta")
    )
    config = types.GenerateContentConfig(
        tools=[
            types.Tool(
                function_declarations=[
                    types.FunctionDeclaration(
                        name=args.tool,
                        parameters=types.Schema(
                            type=types.Type.OBJECT,
                            properties={"command": types.Schema(type=types.Type.STRING)},
                        ),
                    )
                ]
            )
        ],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    if args.stream:
        chunks = list(
            client.models.generate_content_stream(
                model=args.model, contents=args.prompt, config=config
            )
        )
    else:
        chunks = [
            client.models.generate_content(model=args.model, contents=args.prompt, config=config)
        ]
    out = {"text": "", "reasoning": "", "calls": [], "finish": None}
    for chunk in chunks:
        for candidate in chunk.candidates or []:
            if candidate.finish_reason:
                out["finish"] = candidate.finish_reason.name
            for part in (candidate.content.parts if candidate.content else None) or []:
                if part.function_call:
                    out["calls"].append(
                        {"name": part.function_call.name, "arguments": part.function_call.args}
                    )
                elif part.text and part.thought:
                    out["reasoning"] += part.text
                elif part.text:
                    out["text"] += part.text
    return out


PROTOCOLS = {
    "chat": openai_chat,
    "responses": openai_responses,
    "anthropic": anthropic_messages,
    "gemini": gemini,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=sorted(PROTOCOLS), required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--model", default="m")
    parser.add_argument("--tool", default="Bash")
    parser.add_argument("--prompt", default="Go on.")
    parser.add_argument("--stream", action="store_true")
    args = parser.parse_args()
    try:
        out = PROTOCOLS[args.protocol](args)
    except Exception as error:  # the test prints it: which SDK refused what
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
