// A fake OpenAI chat-completions provider on loopback for the inspector's end-to-end test:
// answers in the real wire format (https://platform.openai.com/docs/api-reference/chat),
// streamed or not, with usage, and streams its words with a small delay between frames so
// the inspector has arrival times to show.
import http from "node:http";

const WORDS = ["Captured", " answers", " arrive", " word", " by", " word."];

function completion(model) {
  return {
    id: "chatcmpl-fake-1",
    object: "chat.completion",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [
      { index: 0, message: { role: "assistant", content: WORDS.join("") }, finish_reason: "stop" },
    ],
    usage: { prompt_tokens: 11, completion_tokens: 6, total_tokens: 17 },
  };
}

function chunk(model, delta, finish = null) {
  return {
    id: "chatcmpl-fake-1",
    object: "chat.completion.chunk",
    created: Math.floor(Date.now() / 1000),
    model,
    choices: [{ index: 0, delta, finish_reason: finish }],
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function stream(res, model, includeUsage) {
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
  const send = (obj) => res.write(`data: ${JSON.stringify(obj)}\n\n`);
  send(chunk(model, { role: "assistant", content: "" }));
  for (const word of WORDS) {
    await sleep(15);
    send(chunk(model, { content: word }));
  }
  send(chunk(model, {}, "stop"));
  if (includeUsage) {
    send({ ...chunk(model, {}), choices: [], usage: { prompt_tokens: 11, completion_tokens: 6, total_tokens: 17 } });
  }
  res.end("data: [DONE]\n\n");
}

/** Starts the provider on 127.0.0.1 and a free port; resolves to { url, requests, close }. */
export function startFakeOpenAI() {
  const requests = [];
  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (part) => (body += part));
    req.on("end", () => {
      if (req.method === "GET" && req.url === "/v1/models") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ object: "list", data: [{ id: "gpt-fake", object: "model" }] }));
        return;
      }
      if (req.method !== "POST" || req.url !== "/v1/chat/completions") {
        res.writeHead(404, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: `no route ${req.url}`, type: "invalid_request_error" } }));
        return;
      }
      let parsed;
      try {
        parsed = JSON.parse(body);
      } catch {
        res.writeHead(400, { "content-type": "application/json" });
        res.end(JSON.stringify({ error: { message: "invalid JSON", type: "invalid_request_error" } }));
        return;
      }
      requests.push({ headers: req.headers, body: parsed });
      // Offered a Bash tool: answer with a call a careless agent might make.
      if (parsed.tools?.some((t) => t.function?.name === "Bash")) {
        const call = { id: "call_1", type: "function",
          function: { name: "Bash", arguments: JSON.stringify({ command: "git reset --hard" }) } };
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify({ ...completion(parsed.model),
          choices: [{ index: 0, message: { role: "assistant", content: null, tool_calls: [call] },
            finish_reason: "tool_calls" }] }));
        return;
      }
      if (parsed.stream) {
        stream(res, parsed.model, parsed.stream_options?.include_usage);
      } else {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(completion(parsed.model)));
      }
    });
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      resolve({
        url: `http://127.0.0.1:${port}/v1`,
        requests,
        close: () => new Promise((done) => server.close(done)),
      });
    });
  });
}
