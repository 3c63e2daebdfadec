import { chmod, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * A stand-in for a GPU engine's server (`vllm serve …`), for tests of what the worker does around
 * an engine on machines without a GPU: it serves `/health` and a one-word chat completion on its
 * `--port`, and at start prints one JSON line counting the files in `VLLM_CACHE_ROOT` (what a real
 * vLLM would find there to skip its compilation). Written as `<dir>/<name>`, world-readable and
 * executable, for a PATH the worker's engines inherit.
 */
export async function writeFakeEngine(dir: string, name = "vllm"): Promise<string> {
  await mkdir(dir, { recursive: true });
  await chmod(dir, 0o755);
  const path = join(dir, name);
  await writeFile(
    path,
    `#!/usr/bin/env node
const http = require("node:http");
const fs = require("node:fs");
const path = require("node:path");
const args = process.argv.slice(2);
const port = Number(args[args.indexOf("--port") + 1]);
const name = args[args.indexOf("--served-model-name") + 1];
const count = (dir) => {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? count(path.join(dir, e.name)) : 1;
  return n;
};
const root = process.env.VLLM_CACHE_ROOT;
let cacheFiles = 0;
try { cacheFiles = root ? count(root) : 0; } catch {}
console.log(JSON.stringify({ msg: "fake engine start", cacheFiles, user: process.getuid() }));
http.createServer((req, res) => {
  if (req.url === "/health") return res.end("ok");
  if (req.url === "/v1/models") return res.end(JSON.stringify({ object: "list", data: [{ id: name, object: "model" }] }));
  req.resume();
  req.on("end", () => {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ id: "x", object: "chat.completion", model: name, choices: [{ index: 0, message: { role: "assistant", content: "ok" }, finish_reason: "stop" }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
  });
}).listen(port, "127.0.0.1");
process.on("SIGTERM", () => process.exit(0));
`,
  );
  await chmod(path, 0o755);
  return path;
}
