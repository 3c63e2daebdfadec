import { spawn, type ChildProcess } from "node:child_process";
import { newAdminToken } from "../../core/ids/random-id.ts";
import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { fileURLToPath, pathToFileURL } from "node:url";
import { join } from "node:path";
import { loadApiConfig } from "../../core/config/process-configs.ts";
import { defaultHandlerDir } from "../../core/config/handler-dirs.ts";
import { migrateDb } from "../../core/db/client.ts";
import { ensureTinyLlamaFile } from "../../core/gguf/tiny-llama-file.ts";
import { ensureLocalServices } from "./local-services.ts";
import { launcherFetch, type LauncherFetch } from "./launcher-fetch.ts";
import { errorFields, logLevel, processLog } from "../../core/log/process-log.ts";

/**
 * `npm start`: Hearth's embedded default on one machine. Starts Redis/Postgres if they are
 * installed and down (Redis with an append-only file under .hearth/), migrates, runs the API, the
 * control plane (the event log's consumers) and the scheduler (which runs workers as local
 * processes) as child processes, makes a demo tenant and endpoint, and prints how to call it.
 * Ctrl-C stops everything; the scheduler drains and stops its workers before it exits.
 */
const root = fileURLToPath(new URL("../..", import.meta.url));
// Lines about the launcher itself, as structured as its children's; the quick-start banner below is for people and printed as text.
const lines = processLog("local", { level: logLevel.catch("info").parse(process.env.HEARTH_LOG_LEVEL?.toLowerCase() || "info") });
const log = (msg: string) => lines({ msg });

async function main(): Promise<void> {
  const env = { ...process.env };
  env.HEARTH_ADMIN_TOKEN ||= newAdminToken();
  env.HEARTH_SECRETS_KEY ||= await localSecretsKey();
  const config = loadApiConfig(env); // fails here, naming the variable, if the environment is wrong
  await ensureLocalServices(config.redisUrl, config.databaseUrl, log);
  await migrateDb(config.databaseUrl);

  const children: ChildProcess[] = [];
  const run = (name: string, entry: string) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(root, entry)], { cwd: root, env, stdio: ["ignore", "inherit", "inherit"] });
    child.on("exit", (code, signal) => {
      if (!stopping) {
        log(`${name} exited (${signal ?? code}); stopping`);
        void stop(1);
      }
    });
    children.push(child);
  };
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    log("stopping: draining workers");
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once("exit", () => resolve());
            c.kill("SIGTERM");
          }),
      ),
    );
    process.exit(code);
  };
  process.on("SIGINT", () => void stop(0));
  process.on("SIGTERM", () => void stop(0));

  run("control", "apps/control/main.ts");
  run("scheduler", "scheduler/main.ts");
  run("api", "apps/api/main.ts");

  // HEARTH_TLS_CERT and HEARTH_TLS_KEY reach the API in `env` like every variable; loadApiConfig has read and checked them.
  const base = `${config.tls ? "https" : "http"}://${config.host === "0.0.0.0" ? "127.0.0.1" : config.host}:${config.port}`;
  const call = launcherFetch(config.tls);
  await waitReady(base, call);
  const demo = await demoEndpoint(base, config.adminToken, call);
  // A client must trust the certificate: curl takes it as --cacert, Node programs as NODE_EXTRA_CA_CERTS (read at their start).
  const curlCa = config.tls ? ` --cacert ${config.tls.certPath}` : "";
  const nodeCa = config.tls ? `NODE_EXTRA_CA_CERTS=${config.tls.certPath} ` : "";

  console.log(`
Hearth is running.
  API          ${base}
  admin token  ${config.adminToken}
  API key      ${demo.apiKey}
  endpoint     ${demo.endpointId}  (handler images/handler/examples/echo.mjs)
  LLM endpoint ${demo.llmEndpointId}  (embedded engine, the project's tiny llama model: fast gibberish)

curl:
  curl -s${curlCa} -X POST ${base}/v2/${demo.endpointId}/runsync \\
    -H 'Authorization: Bearer ${demo.apiKey}' -H 'Content-Type: application/json' \\
    -d '{"input": {"prompt": "hello"}}'

runpod-sdk (npm i runpod-sdk), in an .mjs file run as \`${nodeCa}node file.mjs\`:
  import runpodSdk from "runpod-sdk";
  const runpod = runpodSdk("${demo.apiKey}", { baseUrl: "${base}/v2" });
  console.log(await runpod.endpoint("${demo.endpointId}").runSync({ input: { prompt: "hello" } }));

openai (npm i openai), in an .mjs file run the same way; the first request starts the LLM worker (a few seconds):
  import OpenAI from "openai";
  const openai = new OpenAI({ baseURL: "${base}/v2/${demo.llmEndpointId}/openai/v1", apiKey: "${demo.apiKey}" });
  const stream = await openai.chat.completions.create({
    model: "tiny-llama", messages: [{ role: "user", content: "Hello!" }], max_tokens: 40, stream: true,
  });
  for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? "");

Ctrl-C stops Hearth and its workers.`);
}

/**
 * The local default's HEARTH_SECRETS_KEY: generated at first start into `.hearth/secrets.key` (readable
 * by this user only) and reused after, so endpoint secrets stored by one start open on the next.
 * Losing the file loses those secrets (their endpoints then fail to start until they are set again).
 */
async function localSecretsKey(): Promise<string> {
  const file = join(root, ".hearth", "secrets.key");
  const saved = await readFile(file, "utf8").then((s) => s.trim(), () => undefined);
  if (saved) return saved;
  await mkdir(join(root, ".hearth"), { recursive: true });
  const key = randomBytes(32).toString("base64");
  // "wx": two starts at once must not each write a key of their own.
  await writeFile(file, `${key}\n`, { mode: 0o600, flag: "wx" }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== "EEXIST") throw err;
  });
  const kept = (await readFile(file, "utf8")).trim();
  log(`endpoint secrets are sealed with the key generated in ${file} (set HEARTH_SECRETS_KEY to use your own)`);
  return kept;
}

async function waitReady(base: string, fetch: LauncherFetch): Promise<void> {
  for (let i = 0; i < 300; i++) {
    const ok = await fetch(`${base}/readyz`).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`API did not become ready at ${base}`);
}

interface Demo {
  apiKey: string;
  endpointId: string;
  llmEndpointId: string;
}

/** Reuses the demo from the last start when its key and endpoint still work, so the printed values stay the same. */
async function demoEndpoint(base: string, adminToken: string, fetch: LauncherFetch): Promise<Demo> {
  const stateFile = join(root, ".hearth", "demo.json");
  const saved = await readFile(stateFile, "utf8").then((s) => JSON.parse(s) as Demo, () => undefined);
  if (saved?.llmEndpointId) {
    const ok = await Promise.all(
      [saved.endpointId, saved.llmEndpointId].map((id) => fetch(`${base}/api/v1/endpoints/${id}`, { headers: { authorization: `Bearer ${saved.apiKey}` } }).then((r) => r.ok)),
    );
    if (ok.every(Boolean)) return saved;
  }
  const post = async (path: string, token: string, body: unknown, headers: Record<string, string> = {}) => {
    const r = await fetch(`${base}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
      body: JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
    return (await r.json()) as Record<string, string>;
  };
  const tenant = await post("/admin/tenants", adminToken, { name: "demo" });
  // HEARTH_BILLING_MODE=enforce (the default) starts a tenant at zero: the demo gets $10 of worker
  // time (about 140 hours at the cpu price), once (the Idempotency-Key).
  await post(`/admin/tenants/${tenant.id!}/credits`, adminToken, { amountMicros: 10_000_000, reason: "npm start demo credit" }, { "idempotency-key": "demo-credit" });
  const ep = await post("/api/v1/endpoints", tenant.apiKey!, {
    name: "demo-echo",
    engine: { kind: "handler", module: join(defaultHandlerDir, "echo.mjs") },
  });
  // The model is made by the project's own code: nothing is downloaded.
  const model = ensureTinyLlamaFile(join(root, ".hearth", "models", "tiny-llama.gguf"));
  const llm = await post("/api/v1/endpoints", tenant.apiKey!, {
    name: "demo-llm",
    engine: { kind: "openai", profile: "embedded", model: pathToFileURL(model).href, concurrency: 8 },
    idleTimeout: 300,
  });
  const demo = { apiKey: tenant.apiKey!, endpointId: ep.id!, llmEndpointId: llm.id! };
  await mkdir(join(root, ".hearth"), { recursive: true });
  await writeFile(stateFile, JSON.stringify(demo, null, 2));
  return demo;
}

main().catch((err) => {
  lines({ level: "fatal", msg: "cannot start", ...errorFields(err) });
  process.exit(1);
});
