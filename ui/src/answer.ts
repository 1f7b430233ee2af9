// What a captured answer said, read back from what llmux sent its client, whichever
// protocol that was: text and tool calls, streamed or not. Unit-tested in answer.test.ts.

export interface ToolCall {
  name: string;
  /** The arguments as JSON text. */
  arguments: string;
}

type Json = Record<string, unknown>;

const obj = (v: unknown): Json => (v && typeof v === "object" ? (v as Json) : {});
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const str = (v: unknown): string => (typeof v === "string" ? v : "");
const jsonText = (v: unknown): string => (typeof v === "string" ? v : JSON.stringify(v ?? {}));

/** The JSON payloads of an SSE body (`data:` lines), skipping `[DONE]` and non-JSON. */
export function sseEvents(body: string): Json[] {
  const events: Json[] = [];
  for (const line of body.split("\n")) {
    if (!line.startsWith("data:")) continue;
    const data = line.slice(5).trim();
    if (!data || data === "[DONE]") continue;
    try {
      events.push(obj(JSON.parse(data)));
    } catch {
      // a comment or keep-alive
    }
  }
  return events;
}

function fromWhole(frontend: string, answer: Json): ToolCall[] {
  switch (frontend) {
    case "anthropic":
      return arr(answer.content)
        .map(obj)
        .filter((b) => b.type === "tool_use")
        .map((b) => ({ name: str(b.name), arguments: jsonText(b.input) }));
    case "gemini": {
      const content = obj(obj(arr(answer.candidates)[0]).content);
      return arr(content.parts)
        .map((p) => obj(obj(p).functionCall))
        .filter((c) => c.name)
        .map((c) => ({ name: str(c.name), arguments: jsonText(c.args) }));
    }
    case "openai_responses":
      return arr(answer.output)
        .map(obj)
        .filter((i) => i.type === "function_call")
        .map((i) => ({ name: str(i.name), arguments: str(i.arguments) }));
    default:
      return arr(obj(obj(arr(answer.choices)[0]).message).tool_calls)
        .map((c) => obj(obj(c).function))
        .map((f) => ({ name: str(f.name), arguments: str(f.arguments) }));
  }
}

function fromStream(frontend: string, events: Json[]): ToolCall[] {
  const calls: ToolCall[] = [];
  const byIndex = new Map<number, ToolCall>();
  for (const event of events) {
    switch (frontend) {
      case "anthropic": {
        const block = obj(event.content_block);
        if (event.type === "content_block_start" && block.type === "tool_use") {
          const call = { name: str(block.name), arguments: "" };
          byIndex.set(Number(event.index), call);
          calls.push(call);
        }
        const delta = obj(event.delta);
        if (event.type === "content_block_delta" && delta.type === "input_json_delta") {
          const call = byIndex.get(Number(event.index));
          if (call) call.arguments += str(delta.partial_json);
        }
        break;
      }
      case "gemini":
        calls.push(...fromWhole("gemini", event));
        break;
      case "openai_responses": {
        const item = obj(event.item);
        if (event.type === "response.output_item.done" && item.type === "function_call") {
          calls.push({ name: str(item.name), arguments: str(item.arguments) });
        }
        break;
      }
      default:
        for (const raw of arr(obj(obj(arr(event.choices)[0]).delta).tool_calls)) {
          const delta = obj(raw);
          const index = Number(delta.index ?? 0);
          let call = byIndex.get(index);
          if (!call) {
            call = { name: "", arguments: "" };
            byIndex.set(index, call);
            calls.push(call);
          }
          const fn = obj(delta.function);
          call.name += str(fn.name);
          call.arguments += str(fn.arguments);
        }
    }
  }
  return calls;
}

/** The tool calls in the answer llmux sent its client. */
export function toolCalls(frontend: string, clientResponse: string, stream: boolean): ToolCall[] {
  if (!clientResponse) return [];
  if (stream) return fromStream(frontend, sseEvents(clientResponse));
  try {
    return fromWhole(frontend, obj(JSON.parse(clientResponse)));
  } catch {
    return [];
  }
}
