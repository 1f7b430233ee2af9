import { describe, expect, it } from "vitest";
import { sseEvents, toolCalls } from "./answer";

const sse = (...events: object[]) => events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join("") + "data: [DONE]\n\n";

describe("tool calls in captured answers", () => {
  it("reads OpenAI chat answers, whole and streamed by index", () => {
    const whole = JSON.stringify({
      choices: [{ message: { tool_calls: [{ function: { name: "read", arguments: '{"p":"a"}' } }] } }],
    });
    expect(toolCalls("openai_chat", whole, false)).toEqual([{ name: "read", arguments: '{"p":"a"}' }]);
    const stream = sse(
      { choices: [{ delta: { tool_calls: [{ index: 0, function: { name: "read", arguments: "" } }] } }] },
      { choices: [{ delta: { tool_calls: [{ index: 1, function: { name: "ls", arguments: "{}" } }] } }] },
      { choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: '{"p":' } }] } }] },
      { choices: [{ delta: { tool_calls: [{ index: 0, function: { arguments: '"a"}' } }] } }] },
    );
    expect(toolCalls("openai_chat", stream, true)).toEqual([
      { name: "read", arguments: '{"p":"a"}' },
      { name: "ls", arguments: "{}" },
    ]);
  });

  it("reads Anthropic tool_use blocks and input_json_delta", () => {
    const whole = JSON.stringify({ content: [{ type: "text", text: "hi" }, { type: "tool_use", name: "bash", input: { cmd: "ls" } }] });
    expect(toolCalls("anthropic", whole, false)).toEqual([{ name: "bash", arguments: '{"cmd":"ls"}' }]);
    const stream = [
      'event: content_block_start\ndata: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","name":"bash","input":{}}}',
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\\"cmd\\":"}}',
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\\"ls\\"}"}}',
    ].join("\n\n");
    expect(toolCalls("anthropic", stream, true)).toEqual([{ name: "bash", arguments: '{"cmd":"ls"}' }]);
  });

  it("reads Gemini functionCall parts and Responses function_call items", () => {
    const gemini = { candidates: [{ content: { parts: [{ functionCall: { name: "f", args: { a: 1 } } }] } }] };
    expect(toolCalls("gemini", JSON.stringify(gemini), false)).toEqual([{ name: "f", arguments: '{"a":1}' }]);
    expect(toolCalls("gemini", sse(gemini), true)).toEqual([{ name: "f", arguments: '{"a":1}' }]);
    const item = { type: "function_call", name: "g", arguments: "{}" };
    expect(toolCalls("openai_responses", JSON.stringify({ output: [item] }), false)).toEqual([{ name: "g", arguments: "{}" }]);
    expect(toolCalls("openai_responses", sse({ type: "response.output_item.done", item }), true)).toEqual([
      { name: "g", arguments: "{}" },
    ]);
  });

  it("answers nothing for empty, broken or text-only bodies", () => {
    expect(toolCalls("openai_chat", "", false)).toEqual([]);
    expect(toolCalls("openai_chat", "{not json", false)).toEqual([]);
    expect(toolCalls("anthropic", JSON.stringify({ content: [{ type: "text", text: "x" }] }), false)).toEqual([]);
    expect(sseEvents(": keep-alive\n\ndata: oops\n\n")).toEqual([]);
  });
});
