// Real-window test of the desktop app: tauri-driver + WebKitWebDriver over plain fetch.
//
// Run by tests/desktop/in-session.sh inside `xvfb-run ... dbus-run-session` with an unlocked
// gnome-keyring and a tray host (trayer); scripts/test-desktop sets that up. Environment:
//   LLMUX_DESKTOP_BIN   absolute path of the debug app binary
//   WEBDRIVER_URL       tauri-driver's address (http://127.0.0.1:PORT)
//   APP_PORT, ANTHROPIC_PORT   free loopback ports the app's proxy listens on
//   SCREENSHOT_DIR      where screenshots go
//   HOME                a throwaway home: the app's config, data and log dirs live under it
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { readFileSync, readdirSync, readlinkSync, statSync, mkdirSync, existsSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import http from "node:http";
import net from "node:net";

const run = promisify(execFile);
const BIN = need("LLMUX_DESKTOP_BIN");
const WD = need("WEBDRIVER_URL");
const PORT = Number(need("APP_PORT"));
const ANTHROPIC_PORT = Number(need("ANTHROPIC_PORT"));
const SHOTS = need("SCREENSHOT_DIR");
const HOME = need("HOME");
const IDENTIFIER = "dev.llmux.desktop";
const LOG_FILE = join(HOME, ".local/share", IDENTIFIER, "logs/llmux.log");
const W3C_ELEMENT = "element-6066-11e4-a52e-4f735466cecf";
mkdirSync(SHOTS, { recursive: true });

function need(name) {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run scripts/test-desktop)`);
  return value;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One WebDriver request; every one has a timeout (a hung webview must not hang the test). */
async function wd(method, path, body, timeoutMs = 15_000) {
  const res = await fetch(`${WD}${path}`, {
    method,
    headers: body ? { "content-type": "application/json" } : {},
    body: body ? JSON.stringify(body) : undefined,
    signal: AbortSignal.timeout(timeoutMs),
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json.value)}`);
  return json.value;
}

let session;
const s = (path) => `/session/${session}${path}`;

/** Calls a Tauri command from the webview, as the UI (ui/src/api.ts) does. */
async function invoke(command, args = {}) {
  const result = await wd("POST", s("/execute/async"), {
    script: `const done = arguments[arguments.length - 1];
      window.__TAURI_INTERNALS__.invoke(arguments[0], arguments[1])
        .then((value) => done({ ok: value }), (error) => done({ error: String(error) }));`,
    args: [command, args],
  });
  if (result && "error" in result) throw new Error(`${command}: ${result.error}`);
  return result.ok;
}

/** Resolves true when the port accepts a TCP connection, false when it refuses. */
function accepts(port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.setTimeout(2000);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
    socket.once("timeout", () => {
      socket.destroy();
      resolve(false);
    });
  });
}

async function waitFor(what, check, timeoutMs = 10_000, stepMs = 50) {
  const start = Date.now();
  for (;;) {
    if (await check()) return Date.now() - start;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(stepMs);
  }
}

/** A chat request to the mock back-end through the proxy; throws when it fails. */
async function chat(port = PORT, path = "/v1/chat/completions") {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "mock:mock-model", messages: [{ role: "user", content: "hi" }] }),
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

async function anthropicMessage(port = ANTHROPIC_PORT) {
  const res = await fetch(`http://127.0.0.1:${port}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" },
    body: JSON.stringify({
      model: "mock:mock-model",
      max_tokens: 20,
      messages: [{ role: "user", content: "hi" }],
    }),
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(res.status, 200, await res.clone().text());
  return res.json();
}

async function screenshot(name) {
  const file = join(SHOTS, `${name}.png`);
  await run("import", ["-window", "root", file], { timeout: 15_000 });
  return file;
}

/** The app's process: the one whose executable is our binary (started by WebKitWebDriver). */
function appPid() {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/exe`) === BIN) return Number(entry);
    } catch {
      // Not ours, or gone.
    }
  }
  return undefined;
}

function rssMiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]);
  return Math.round((kb / 1024) * 10) / 10;
}

/** Every regular file under `dir` whose bytes contain `needle`. */
function filesContaining(dir, needle) {
  const found = [];
  if (!existsSync(dir)) return found;
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const path = join(d, name);
      const st = statSync(path, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(path);
      else if (st.isFile() && readFileSync(path).includes(needle)) found.push(path);
    }
  };
  walk(dir);
  return found;
}

async function xdotool(...args) {
  const { stdout } = await run("xdotool", args, { timeout: 10_000 });
  return stdout.trim();
}

before(async () => {
  await waitFor("tauri-driver up", async () => {
    try {
      await wd("GET", "/status", undefined, 2000);
      return true;
    } catch {
      return false;
    }
  });
  assert.equal(await accepts(PORT), false, `port ${PORT} is taken before the app started`);
  const t0 = Date.now();
  // No `--show`: a first run (a fresh HOME, no config file) with no provider (the mock does
  // not count) opens the settings window by itself, and the session attaches to it.
  const created = await wd(
    "POST",
    "/session",
    { capabilities: { alwaysMatch: { "tauri:options": { application: BIN, args: [] } } } },
    60_000,
  );
  session = created.sessionId;
  const listening = await waitFor("proxy listening", () => accepts(PORT));
  console.log(`# session ${Date.now() - t0} ms; proxy accepted connections ${listening} ms after the session was created`);
});

after(async () => {
  if (session) await wd("DELETE", s(""), undefined, 20_000).catch((e) => console.log(`# ${e}`));
});

test("a first run opens the settings window on its guide and serves the proxy on its port", async () => {
  const title = await wd("GET", s("/title"));
  assert.match(title, /llmux/);
  const url = await wd("GET", s("/url"));
  assert.match(url, /#\/settings$/, url);
  assert.ok(
    readFileSync(LOG_FILE, "utf8").includes("first run: opening the settings window's guide"),
    "the window was opened by the first-run rule",
  );
  const body = await chat();
  assert.equal(body.choices[0].message.content, "Hello from the llmux mock back-end.");
  const message = await anthropicMessage();
  assert.equal(message.content[0].text, "Hello from the llmux mock back-end.");

  const log = readFileSync(LOG_FILE, "utf8");
  const started = /proxy listening (\d+) ms after the app started/.exec(log);
  assert.ok(started, `no start time in ${LOG_FILE}`);
  // Reported, not asserted: speed is measured, never a pass/fail condition of a test.
  console.log(`# cold start to listening (app's own clock): ${started[1]} ms`);

  const status = await invoke("proxy_status");
  assert.equal(status.state, "running");
  assert.equal(status.address, `127.0.0.1:${PORT}`);
  assert.equal(status.default_backend, "mock");
  assert.ok(status.requests_served >= 2, JSON.stringify(status));

  await sleep(2500); // idle
  const pid = appPid();
  assert.ok(pid, "app process not found");
  console.log(`# idle RSS of the app process (pid ${pid}, webview process not counted): ${rssMiB(pid)} MiB`);
  await screenshot("01-window-settings");
});

/** One raw HTTP request to the app's port with exactly these headers: {status, body}. */
function rawRequest(method, path, headers, body = "") {
  return new Promise((resolve, reject) => {
    const socket = net.connect(PORT, "127.0.0.1", () => {
      const lines = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join("");
      // write, not end: a half-closed socket makes the server drop the request unanswered.
      socket.write(`${method} ${path} HTTP/1.1\r\n${lines}content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    });
    let raw = "";
    socket.on("data", (chunk) => (raw += chunk));
    socket.on("end", () => {
      const [head, ...rest] = raw.split("\r\n\r\n");
      resolve({ status: Number(head.split(" ")[1]), head, body: rest.join("\r\n\r\n") });
    });
    socket.on("error", reject);
  });
}

test("web pages are refused on the app's port, keyless, while its windows keep working", async () => {
  // A page that rebound its name to 127.0.0.1 reads the captured prompts: refused.
  const rebound = await rawRequest("GET", "/admin/api/requests", { host: `evil.example:${PORT}` });
  assert.equal(rebound.status, 403, rebound.body);
  assert.match(rebound.body, /proxy\.allowed_hosts/);
  // A cross-site form post spends the user's tokens: refused.
  const posted = await rawRequest(
    "POST",
    "/v1/chat/completions",
    { host: `127.0.0.1:${PORT}`, origin: "http://evil.example", "content-type": "text/plain" },
    JSON.stringify({ model: "mock-model", messages: [{ role: "user", content: "spend" }] }),
  );
  assert.equal(posted.status, 403, posted.body);
  assert.ok(!/access-control-/i.test(posted.head), posted.head);
  // The app itself needs no key: its proxy answers on loopback, its window's commands work,
  // and its settings window lists the allowed hosts and origins to edit.
  assert.equal((await chat()).choices[0].message.content, "Hello from the llmux mock back-end.");
  const settings = await invoke("admin_settings");
  const keys = settings.values.map((v) => v.key);
  assert.ok(keys.includes("proxy.allowed_hosts"), keys.join(", "));
  assert.ok(keys.includes("proxy.allowed_origins"), keys.join(", "));
});

/** Every element matching `css` in the window, as WebDriver element ids (waits for one). */
async function findAll(css) {
  let ids = [];
  await waitFor(css, async () => {
    const found = await wd("POST", s("/elements"), { using: "css selector", value: css });
    ids = found.map((e) => e[W3C_ELEMENT]);
    return ids.length > 0;
  });
  return ids;
}

async function findOne(css) {
  return (await findAll(css))[0];
}

/** Runs an app command from the window and answers {ok} or {error} (the error object kept). */
async function invokeRaw(command, args = {}) {
  return wd("POST", s("/execute/async"), {
    script: `const done = arguments[arguments.length - 1];
      window.__TAURI_INTERNALS__.invoke(arguments[0], arguments[1])
        .then((value) => done({ ok: value }), (error) => done({ error }));`,
    args: [command, args],
  });
}

test("the inspector reads the app's capture store, on by default, through its commands", async () => {
  const prompt = "desktop inspector pelican";
  const res = await fetch(`http://127.0.0.1:${PORT}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "mock:mock-model", messages: [{ role: "user", content: prompt }] }),
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(res.status, 200);
  let rows = [];
  await waitFor("the request in the store", async () => {
    rows = await invoke("admin_requests", { params: { q: "pelican" } });
    return rows.length === 1;
  });
  assert.equal(rows[0].backend, "mock");
  assert.equal(rows[0].prompt_text, prompt);
  assert.ok(existsSync(join(HOME, ".local/share", IDENTIFIER, "capture.sqlite")), "store in the data dir");
  const detail = await invoke("admin_request", { id: rows[0].id });
  assert.match(detail.client_request, /desktop inspector pelican/);
  const stats = await invoke("admin_stats");
  assert.ok(stats.requests >= 1, JSON.stringify(stats));

  // The inspector page shows it, through the same commands.
  await wd("POST", s("/execute/sync"), { script: "location.hash = '#/'; return true;", args: [] });
  await findOne('[data-testid="request-row"]');
  await screenshot("02-window-inspector");

  // Settings through the app: a bad value comes back with its key, nothing saved.
  const settings = await invoke("admin_settings");
  assert.ok(settings.values.some((v) => v.key === "proxy.port"), "settings list proxy.port");
  const refused = await invokeRaw("admin_change_settings", { change: { set: { "proxy.port": 70000 }, remove: [] } });
  assert.ok(refused.error, JSON.stringify(refused));
  assert.equal(refused.error.status, 400);
  assert.equal(refused.error.problems[0].key, "proxy.port");

  // A valid change is saved and applied: the proxy restarts with the new back-end.
  const backends = async () => {
    const res = await fetch(`http://127.0.0.1:${PORT}/`, { signal: AbortSignal.timeout(2000) }).catch(() => null);
    return res?.ok ? (await res.json()).backends.map((b) => b.id) : [];
  };
  const saved = await invoke("admin_change_settings", {
    change: { set: { "backends.desktop-extra.type": "mock" }, remove: [] },
  });
  assert.match(saved.file, /llmux\.toml$/);
  await waitFor("the new back-end served", async () => (await backends()).includes("desktop-extra"));
  assert.match(readFileSync(saved.file, "utf8"), /\[backends\.desktop-extra\]/);
  await invoke("admin_change_settings", { change: { set: {}, remove: ["backends.desktop-extra"] } });
  await waitFor("the back-end gone again", async () => {
    const ids = await backends();
    return ids.length > 0 && !ids.includes("desktop-extra");
  });
  await wd("POST", s("/execute/sync"), { script: "location.hash = '#/settings'; return true;", args: [] });
});

test("toggling the proxy off makes the port refuse; on serves again", async () => {
  let status = await invoke("set_proxy_enabled", { enabled: false });
  assert.equal(status.state, "stopped");
  assert.equal(await accepts(PORT), false, "main port still accepts after toggling off");
  assert.equal(await accepts(ANTHROPIC_PORT), false, "Anthropic port still accepts after toggling off");
  await assert.rejects(chat());

  status = await invoke("set_proxy_enabled", { enabled: true });
  assert.equal(status.state, "running");
  await chat();
  await anthropicMessage();
});

test("the tray menu toggles the proxy and start at login (trayer + xdotool)", async () => {
  const ids = (await xdotool("search", "--classname", "tray-icon tray app")).split("\n").filter(Boolean);
  assert.ok(ids.length > 0, "no tray icon window on the display");
  const icon = ids[ids.length - 1];
  await sleep(2500); // the tray refreshes its status line every 2 s
  // Opens the menu and picks "Proxy enabled" (the status line above it is disabled, so it is
  // the first item the keyboard reaches). A menu that opened too late for the keys gets
  // another try, at most three in all; the proxy must end in `want` either way.
  const toggleFromTray = async (want, shot) => {
    for (let attempt = 1; ; attempt++) {
      await xdotool("mousemove", "--window", icon, "12", "12", "click", "1");
      await sleep(700 * attempt);
      if (attempt === 1) await screenshot(shot);
      await xdotool("key", "Down", "Return");
      const reached = await waitFor(`proxy ${want} after the tray toggle`, async () => {
        return (await invoke("proxy_status")).state === want && (await accepts(PORT)) === (want === "running");
      }, 5000).then(() => true, () => false);
      if (reached) return;
      if (attempt === 3) assert.fail(`the tray did not turn the proxy ${want} in 3 tries`);
      await xdotool("key", "Escape");
      console.log(`# tray toggle attempt ${attempt} did not land; trying again`);
    }
  };
  await toggleFromTray("stopped", "02-tray-menu-running");
  await sleep(300);
  await toggleFromTray("running", "03-tray-menu-stopped");
  await chat();

  // "Start at login", the item below: an XDG autostart entry appears, then goes.
  const entry = join(process.env.XDG_CONFIG_HOME ?? join(HOME, ".config"), "autostart", "llmux.desktop");
  assert.equal(existsSync(entry), false);
  await sleep(300);
  await xdotool("mousemove", "--window", icon, "12", "12", "click", "1");
  await sleep(700);
  await xdotool("key", "Down", "Down", "Return");
  await waitFor("the autostart entry", () => existsSync(entry), 5000);
  assert.match(readFileSync(entry, "utf8"), new RegExp(`Exec=.*${BIN.split("/").pop()}`));
  await sleep(300);
  await xdotool("mousemove", "--window", icon, "12", "12", "click", "1");
  await sleep(700);
  await screenshot("03b-tray-menu-start-at-login");
  await xdotool("key", "Down", "Down", "Return");
  await waitFor("the autostart entry gone", () => !existsSync(entry), 5000);
});

test("saving a key puts it in the keyring and in no file; listings never show it", async () => {
  const secret = `sk-desktop-test-${Math.random().toString(36).slice(2)}${Date.now()}`;
  // Through the settings window's form, as a user would.
  await wd("POST", s("/execute/sync"), { script: "location.hash = '#/settings'; return true;", args: [] });
  const form = 'form[aria-label="add a key"]';
  await findOne(`${form} select`);
  // WebKitWebDriver cannot click an option of a closed select: set it as a user's pick would.
  await wd("POST", s("/execute/sync"), {
    script: `const select = document.querySelector(arguments[0]);
      Object.getOwnPropertyDescriptor(HTMLSelectElement.prototype, "value").set.call(select, "openai");
      select.dispatchEvent(new Event("change", { bubbles: true }));
      select.scrollIntoView({ block: "center" });
      return select.value;`,
    args: [`${form} select`],
  });
  await wd("POST", s(`/element/${await findOne(`${form} input[aria-label="key name"]`)}/value`), {
    text: "OPENAI_API_KEY",
  });
  await wd("POST", s(`/element/${await findOne(`${form} input[aria-label="key secret"]`)}/value`), { text: secret });
  await wd("POST", s(`/element/${await findOne(`${form} button[type="submit"]`)}/click`), {});
  await waitFor("the window saying the key is saved", async () => {
    const shown = await wd("POST", s("/execute/sync"), {
      script: "return document.querySelector('[role=status]')?.textContent ?? '';",
      args: [],
    });
    return shown.startsWith("Saved OPENAI_API_KEY for openai");
  });
  await sleep(500); // let the webview paint before the screen is grabbed
  await screenshot("03-window-key-saved");
  const listed = await invoke("list_keys");
  const openai = listed.find((b) => b.backend === "openai");
  assert.deepEqual(openai.keys[0], { name: "OPENAI_API_KEY", source: { kind: "keychain" } });
  assert.ok(!JSON.stringify(listed).includes(secret), "save_key returned the secret");

  const { stdout } = await run(
    "secret-tool",
    ["lookup", "service", "llmux", "username", "openai/OPENAI_API_KEY"],
    { timeout: 10_000 },
  );
  assert.equal(stdout, secret);

  // The proxy restarted with the key and still serves.
  assert.equal((await invoke("proxy_status")).state, "running");
  await chat();
  // The Keys section shows what the running proxy says of the key (uses, cooling down).
  await waitFor("the key's health beside it", async () => {
    const shown = await wd("POST", s("/execute/sync"), {
      script: `return [...document.querySelectorAll('[data-keys="openai"] .key-chip')]
        .map((chip) => chip.textContent).join(" | ");`,
      args: [],
    });
    return /OPENAI_API_KEY.*\d+ uses/.test(shown);
  });

  const again = await invoke("list_keys");
  assert.ok(!JSON.stringify(again).includes(secret));
  assert.equal(again.find((b) => b.backend === "openai").keys[0].source.kind, "keychain");

  // Nowhere in the app's dirs (config, data, logs, cache) nor anywhere else in this HOME
  // (gnome-keyring's own file is encrypted).
  const leaks = filesContaining(HOME, Buffer.from(secret));
  assert.deepEqual(leaks, [], `the key is in plain text in ${leaks.join(", ")}`);

  const after = await invoke("delete_key", { backend: "openai", name: "OPENAI_API_KEY" });
  assert.ok(!after.find((b) => b.backend === "openai").keys.some((k) => k.source.kind === "keychain"));
  await assert.rejects(
    run("secret-tool", ["lookup", "service", "llmux", "username", "openai/OPENAI_API_KEY"], { timeout: 10_000 }),
  );
  await screenshot("04-window-after-keys");
});

test("the settings window makes clients need a generated proxy key, kept in the keychain", async () => {
  await wd("POST", s("/execute/sync"), { script: "location.hash = '#/settings'; return true;", args: [] });
  const button = async (text) => {
    let id;
    await waitFor(`the "${text}" button`, async () => {
      const found = await wd("POST", s("/elements"), { using: "xpath", value: `//button[text()='${text}']` });
      id = found[0]?.[W3C_ELEMENT];
      return Boolean(id);
    });
    await wd("POST", s("/execute/sync"), {
      script: "arguments[0].scrollIntoView({ block: 'center' }); return true;",
      args: [{ [W3C_ELEMENT]: id }],
    });
    await wd("POST", s(`/element/${id}/click`), {});
  };
  await button("Require a key");
  await waitFor("the proxy requiring a key", async () => {
    const res = await fetch(`http://127.0.0.1:${PORT}/v1/models`, { signal: AbortSignal.timeout(2000) }).catch(() => null);
    return res?.status === 401;
  });
  const { stdout: key } = await run("secret-tool", ["lookup", "service", "llmux", "username", "proxy/api_key"], {
    timeout: 10_000,
  });
  assert.match(key, /^llmux-[0-9a-f]{64}$/);
  const keyed = await fetch(`http://127.0.0.1:${PORT}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: "mock:mock-model", messages: [{ role: "user", content: "hi" }] }),
    signal: AbortSignal.timeout(5000),
  });
  assert.equal(keyed.status, 200);
  assert.deepEqual(filesContaining(HOME, Buffer.from(key)), [], "the proxy key is in no file");
  const shown = await wd("POST", s("/execute/sync"), { script: "return document.body.innerText;", args: [] });
  assert.ok(!shown.includes(key), "the window never shows the key");
  await sleep(500);
  await screenshot("05-window-proxy-key");

  await button("Stop requiring");
  await waitFor("the proxy open to loopback clients again", async () => {
    const res = await fetch(`http://127.0.0.1:${PORT}/v1/models`, { signal: AbortSignal.timeout(2000) }).catch(() => null);
    return res?.status === 200;
  });
  await assert.rejects(run("secret-tool", ["lookup", "service", "llmux", "username", "proxy/api_key"], { timeout: 10_000 }));
});

test("the app offers an update from a signed manifest and keeps only a package whose signature checks", async () => {
  const port = Number(need("UPDATE_PORT"));
  const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
  const pkg = join(HOME, "update", "llmux_9.9.9_amd64.AppImage.tar.gz");
  const good = Buffer.from(`the 9.9.9 package ${"x".repeat(4096)}`);
  writeFileSync(pkg, good);
  await run("npx", ["--prefix", root, "tauri", "signer", "sign", "-f", need("UPDATE_KEY_FILE"), "-p", "", pkg], {
    timeout: 60_000,
  });
  const signature = readFileSync(`${pkg}.sig`, "utf8").trim();
  let served = good;
  const manifest = {
    version: "9.9.9",
    notes: "Faster streams.",
    pub_date: "2026-12-01T00:00:00Z",
    platforms: { "linux-x86_64": { signature, url: `http://127.0.0.1:${port}/package` } },
  };
  const server = http.createServer((req, res) => {
    if (req.url.startsWith("/latest.json")) {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify(manifest));
    } else if (req.url === "/package") {
      res.end(served);
    } else {
      res.statusCode = 404;
      res.end();
    }
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  try {
    const before = await invoke("update_status");
    assert.equal(before.enabled, true, JSON.stringify(before));
    assert.equal(before.available, null);

    const checked = await invoke("check_for_update");
    assert.equal(checked.available?.version, "9.9.9", JSON.stringify(checked));
    assert.equal(checked.available.notes, "Faster streams.");
    // The settings window offers it.
    await wd("POST", s("/execute/sync"), { script: "location.hash = '#/'; return true;", args: [] });
    await wd("POST", s("/execute/sync"), { script: "location.hash = '#/settings'; return true;", args: [] });
    await waitFor("the settings window offering 9.9.9", async () => {
      const line = await wd("POST", s("/execute/sync"), {
        script: `const line = document.querySelector('[data-update-line]');
          line?.scrollIntoView({ block: "center" });
          return line?.textContent ?? "";`,
        args: [],
      });
      return line.includes("llmux 9.9.9 is available");
    });
    await sleep(500);
    await screenshot("06-update-offered");

    const downloaded = await invoke("download_update");
    assert.equal(downloaded.downloaded, true, JSON.stringify(downloaded));

    // A package that is not the one signed is refused and not kept.
    served = Buffer.concat([good, Buffer.from("tampered")]);
    await invoke("check_for_update");
    await assert.rejects(invoke("download_update"), /signature/i);
    const after = await invoke("update_status");
    assert.equal(after.downloaded, false);
    assert.match(after.last_error, /signature/i);
  } finally {
    server.close();
  }
});

test("a port in use is the error state, not a crash; the port freed, the toggle recovers", async () => {
  await invoke("set_proxy_enabled", { enabled: false });
  const blocker = net.createServer();
  await new Promise((resolve, reject) => {
    blocker.once("error", reject);
    blocker.listen(PORT, "127.0.0.1", resolve);
  });
  try {
    const status = await invoke("set_proxy_enabled", { enabled: true });
    assert.equal(status.state, "error");
    assert.match(status.error, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${PORT}`));
    assert.ok(appPid(), "the app exited on a bind error");
    await waitFor(
      "the error notification",
      () => readFileSync(LOG_FILE, "utf8").includes("notification: llmux: the proxy is not running: cannot listen on"),
      5000,
    );
    await sleep(2500);
    const ids = (await xdotool("search", "--classname", "tray-icon tray app")).split("\n").filter(Boolean);
    await xdotool("mousemove", "--window", ids[ids.length - 1], "12", "12", "click", "1");
    await sleep(700);
    await screenshot("05-tray-menu-error");
    await xdotool("key", "Escape");
  } finally {
    await new Promise((resolve) => blocker.close(resolve));
  }
  const status = await invoke("set_proxy_enabled", { enabled: true });
  assert.equal(status.state, "running");
  await chat();
});
