// The settings page at /ui/#/settings, end to end: the real binary with a config file, a fake
// OpenAI provider on loopback, Debian's chromium via playwright-core. Add a back-end whose
// key comes from llmux's environment, see a validation error beside its field, change the
// port, and see each change take effect.
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { startFakeOpenAI } from "./fake-openai.mjs";
import { startLlmux, targetDir } from "./llmux.mjs";

const WAIT = { timeout: 15_000 };
const KEY = "sk-local-e2e-key-0123456789";
const LOGIN_SECRET = "rt-e2e-refresh-token-never-shown";
let provider;
let llmux;
let browser;
let page;
let dir;
let config;

/** A loopback port nobody listens on right now. */
function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

const shot = (name) => page.screenshot({ path: path.join(targetDir, "screenshots", `settings-${name}.png`), fullPage: true });

before(async () => {
  mkdirSync(path.join(targetDir, "screenshots"), { recursive: true });
  dir = mkdtempSync(path.join(tmpdir(), "llmux-settings-"));
  provider = await startFakeOpenAI();
  config = path.join(dir, "llmux.toml");
  writeFileSync(config, '# my llmux\ndefault_backend = "mock"\n\n[proxy]\nanthropic_port = 0\n');
  // A Codex CLI login for a subscription back-end (tokens are unsigned JWTs; nothing checks them).
  const jwt = (claims) => `e30.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.c2ln`;
  const auth = path.join(dir, "auth.json");
  writeFileSync(
    auth,
    JSON.stringify({
      tokens: {
        access_token: jwt({ exp: Math.floor(Date.now() / 1000) + 3600 }),
        refresh_token: LOGIN_SECRET,
        id_token: jwt({ email: "dev@example.com", "https://api.openai.com/auth": { chatgpt_plan_type: "plus" } }),
        account_id: "acct-1",
      },
    }),
  );
  writeFileSync(config, `${readFileSync(config, "utf8")}\n[backends.chatgpt]\ntype = "openai-oauth"\ncredentials_path = "${auth}"\n`);
  // The main port comes from the file from now on: no --port flag, which would override it.
  const port = await freePort();
  writeFileSync(config, readFileSync(config, "utf8").replace("[proxy]\n", `[proxy]\nport = ${port}\n`));
  llmux = await startLlmux(["--config", config], { LOCAL_LLM_KEY: KEY }, { port: null });
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
});

after(async () => {
  await browser?.close();
  await llmux?.stop();
  await provider?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("a back-end added with its key from the environment serves requests", async () => {
  await page.goto(`${llmux.url}/ui/#/settings`);
  await page.getByTestId("backends").waitFor(WAIT);
  await page.getByRole("button", { name: "Add a back-end" }).click();
  await page.getByLabel("back-end name").fill("local");
  await page.getByLabel("back-end type").selectOption("openai-compatible");
  await page.getByLabel("base URL").fill(provider.url);
  await page.getByLabel("key variable").fill("LOCAL_LLM_KEY");
  await page.getByLabel("models").fill("gpt-fake");
  await page.getByRole("button", { name: "Save back-end" }).click();
  await page.getByRole("status").getByText("applied").waitFor(WAIT);
  const row = page.locator('tr[data-backend="local"]');
  await row.getByText("key LOCAL_LLM_KEY").waitFor(WAIT);
  await shot("backend-added");

  const saved = readFileSync(config, "utf8");
  assert.match(saved, /^# my llmux\n/);
  assert.match(saved, /\[backends\.local\]/);
  assert.ok(!saved.includes(KEY), "the key is not written to the file");

  const answer = await fetch(`${llmux.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "local:gpt-fake", messages: [{ role: "user", content: "hi" }] }),
  });
  assert.equal(answer.status, 200, await answer.text());
  assert.equal(provider.requests.at(-1).headers.authorization, `Bearer ${KEY}`);
});

test("a back-end with a bad base URL is refused in its form, and nothing is saved", async () => {
  const before = readFileSync(config, "utf8");
  await page.getByRole("button", { name: "Add a back-end" }).click();
  const form = page.getByRole("form", { name: "back-end" });
  await form.getByLabel("back-end name").fill("broken");
  await form.getByLabel("base URL").fill("::not a url::");
  await form.getByRole("button", { name: "Save back-end" }).click();
  const problem = form.getByRole("alert");
  await problem.waitFor(WAIT);
  assert.match(await problem.innerText(), /backends\.broken\.base_url/);
  assert.match(await problem.innerText(), /must start with http/);
  assert.equal(readFileSync(config, "utf8"), before, "nothing was written");
  assert.equal(await page.locator('tr[data-backend="broken"]').count(), 0);
});

test("an invalid port shows the engine's message beside the field and saves nothing", async () => {
  const before = readFileSync(config, "utf8");
  const port = page.locator('[data-key="proxy.port"]');
  await port.locator("input").fill("70000");
  await page.getByRole("button", { name: /Save 1 change/ }).click();
  const problem = port.getByRole("alert");
  await problem.waitFor(WAIT);
  assert.match(await problem.innerText(), /proxy\.port/);
  assert.match(await problem.innerText(), /70000/);
  await shot("validation-error");
  assert.equal(readFileSync(config, "utf8"), before, "nothing was written");
  await page.getByRole("button", { name: "discard" }).click();
});

test("a subscription login shows its account, its token's life and the command to log in again", async () => {
  await page.goto(`${llmux.url}/ui/#/settings`);
  const accounts = page.getByTestId("accounts");
  await accounts.waitFor(WAIT);
  const row = accounts.locator('tr[data-login^="chatgpt:"]');
  await row.getByText("dev@example.com").waitFor(WAIT);
  assert.match(await row.innerText(), /plan: plus/);
  assert.match(await row.innerText(), /valid until/);
  await row.getByRole("button", { name: "How to log in" }).click();
  await row.getByText("codex login").waitFor(WAIT);
  await shot("accounts");
  assert.ok(!(await page.content()).includes(LOGIN_SECRET), "no token reaches the page");
});

test("Codex CLI is connected from the Clients section after its diff is shown, and disconnected again", async () => {
  await page.goto(`${llmux.url}/ui/#/settings`);
  const row = page.getByTestId("clients").locator('tr[data-client="codex"]');
  await row.getByRole("button", { name: "Connect" }).waitFor(WAIT);
  await row.getByRole("button", { name: "Connect" }).click();
  const dialog = page.getByRole("dialog", { name: "client change" });
  await dialog.waitFor(WAIT);
  assert.match(await dialog.innerText(), /model_provider = "llmux"/);
  assert.match(await dialog.innerText(), /wire_api = "responses"/);
  await shot("clients-diff");
  const file = path.join(llmux.home, ".codex", "config.toml");
  assert.throws(() => readFileSync(file), "nothing is written before Apply");
  await dialog.getByRole("button", { name: "Apply" }).click();
  await row.getByText("uses llmux").waitFor(WAIT);
  assert.match(readFileSync(file, "utf8"), /\[model_providers\.llmux\]/);
  await shot("clients-connected");
  await row.getByRole("button", { name: "Disconnect" }).click();
  await page.getByRole("dialog", { name: "client change" }).getByRole("button", { name: "Apply" }).click();
  await row.getByRole("button", { name: "Connect" }).waitFor(WAIT);
  assert.ok(!readFileSync(file, "utf8").includes("llmux"), "undone");
});

/** GET `path` from llmux with this Host header (fetch cannot set one): the status. */
function statusWithHost(host, pathname) {
  return new Promise((resolve, reject) => {
    const request = http.get({ host: "127.0.0.1", port: new URL(llmux.url).port, path: pathname, headers: { host } }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    });
    request.on("error", reject);
  });
}

test("a host name added to the allowed hosts on the page is answered after saving", async () => {
  assert.equal(await statusWithHost("llmux.test", "/v1/models"), 403);
  const hosts = page.locator('[data-key="proxy.allowed_hosts"]');
  await hosts.locator("input").fill("llmux.test");
  await page.getByRole("button", { name: /Save 1 change/ }).click();
  await page.getByRole("status").getByText("applied").waitFor(WAIT);
  assert.match(readFileSync(config, "utf8"), /allowed_hosts = \["llmux\.test"\]/);
  let status;
  for (let i = 0; i < 50 && status !== 200; i++) {
    status = await statusWithHost("llmux.test", "/v1/models").catch(() => 0);
    if (status !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(status, 200);
  assert.equal(await statusWithHost("other.test", "/v1/models"), 403);
  await page.locator('[data-key="proxy.allowed_origins"]').scrollIntoViewIfNeeded(WAIT);
  await shot("allowed-hosts");
});

test("a setting with no value yet is listed with its help and, once set, routes requests", async () => {
  const route = page.locator('[data-key="static_route"]');
  await route.scrollIntoViewIfNeeded(WAIT);
  assert.match(await route.locator(".help").innerText(), /Send every request to BACKEND:MODEL.*STATIC_ROUTE.*--static-route/);
  assert.equal(await route.locator("input").inputValue(), "");
  await route.locator("input").fill("local:gpt-fake");
  await page.getByRole("button", { name: /Save 1 change/ }).click();
  await page.getByRole("status").getByText("applied").waitFor(WAIT);
  assert.match(readFileSync(config, "utf8"), /static_route = "local:gpt-fake"/);
  const saved = page.locator('[data-key="static_route"]');
  await saved.locator(".source", { hasText: /^file / }).waitFor(WAIT);
  assert.equal(await saved.locator("input").inputValue(), "local:gpt-fake");
  await saved.scrollIntoViewIfNeeded(WAIT);
  await shot("static-route");
  let answer;
  for (let i = 0; i < 50 && answer?.status !== 200; i++) {
    answer = await fetch(`${llmux.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "any-model", messages: [{ role: "user", content: "route me" }] }),
    }).catch(() => undefined);
    if (answer?.status !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(answer.status, 200);
  assert.equal(provider.requests.at(-1).body.model, "gpt-fake", "the static route sent it to the local back-end");
});

test("a new port takes effect and the page follows llmux there", async () => {
  const next = await freePort();
  const port = page.locator('[data-key="proxy.port"]');
  await port.locator("input").fill(String(next));
  await page.getByRole("button", { name: /Save 1 change/ }).click();
  await page.waitForURL(new RegExp(`:${next}/ui/`), WAIT);
  const moved = page.locator('[data-key="proxy.port"]');
  await moved.locator("input").waitFor(WAIT);
  assert.equal(await moved.locator("input").inputValue(), String(next));
  assert.match(await moved.locator(".source").innerText(), /^file /);
  await shot("port-changed");
  const health = await fetch(`http://127.0.0.1:${next}/health`);
  assert.equal(health.status, 200);
  await assert.rejects(fetch(`${llmux.url}/health`), "the old port is closed");
});
