// Starts the llmux binary for end-to-end tests and stops it again, by PID.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import path from "node:path";

export const targetDir = process.env.CARGO_TARGET_DIR ?? path.join(homedir(), ".cache/llmux/target");

/** The debug binary scripts/test builds, unless LLMUX_BIN names another. */
export const llmuxBin = process.env.LLMUX_BIN ?? path.join(targetDir, "debug/llmux");

/**
 * Runs `llmux serve --host 127.0.0.1 --port 0 ...args` and resolves once it listens, to
 * { url, stop, output() }. Rejects if it exits or says nothing within 20 s.
 * `{ port: null }` leaves --host and --port out (the config file's values apply).
 */
export function startLlmux(args, env = {}, { port = 0 } = {}) {
  const address = port === null ? [] : ["--host", "127.0.0.1", "--port", String(port)];
  // A throwaway HOME: llmux never sees the user's CLI logins (~/.codex, ~/.claude, ...).
  const home = mkdtempSync(path.join(tmpdir(), "llmux-e2e-home-"));
  const child = spawn(llmuxBin, ["serve", ...address, ...args], {
    env: { ...process.env, HOME: home, NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  // The HOME goes with the process; tests read it only while llmux runs.
  child.once("exit", () => rmSync(home, { recursive: true, force: true }));
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`llmux did not start within 20 s:\n${output}`));
    }, 20_000);
    const onData = (data) => {
      output += data;
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({
          url: match[1],
          home,
          output: () => output,
          stop: () =>
            new Promise((done) => {
              if (child.exitCode !== null) return done();
              const force = setTimeout(() => child.kill("SIGKILL"), 10_000);
              child.once("exit", () => {
                clearTimeout(force);
                done();
              });
              child.kill("SIGTERM");
            }),
        });
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`llmux exited with ${code} before listening:\n${output}`));
    });
  });
}
