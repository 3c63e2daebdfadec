import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect as h2connect, constants as h2, type ClientHttp2Session } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import OpenAI from "openai";
import runpodSdk from "runpod-sdk";
import { Agent, getGlobalDispatcher, setGlobalDispatcher, type Dispatcher } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_CONCURRENT_STREAMS } from "../apps/api/node-listener.ts";
import { loadApiConfig } from "../core/config/process-configs.ts";
import { ensureTinyLlamaFile } from "../core/gguf/tiny-llama-file.ts";
import { apiMain, spawnEntry } from "./support/entry-process.ts";
import { examplesDir, fixturesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { hasOpenssl, makeSelfSignedCert, type SelfSignedCert } from "./support/self-signed-cert.ts";
import { waitFor } from "./support/services.ts";

/**
 * Shortened so a test can hold a read open longer than every one of them in seconds: the
 * production values (300 s, 60 s, 75 s) mean the same thing, only later.
 */
const CONNECTIONS = { requestTimeoutMs: 2000, headersTimeoutMs: 1000, keepAliveTimeoutMs: 2000, checkIntervalMs: 250 };

interface H2Answer {
  status: number;
  text: string;
  /** When each piece of the body arrived (ms since the epoch). */
  times: number[];
  endedAt: number;
}

/** One request on an HTTP/2 session, its whole body read. */
function h2Call(session: ClientHttp2Session, path: string, key: string, body?: unknown): Promise<H2Answer> {
  return new Promise((resolve, reject) => {
    const req = session.request({
      ":method": body === undefined ? "GET" : "POST",
      ":path": path,
      authorization: `Bearer ${key}`,
      ...(body !== undefined && { "content-type": "application/json" }),
    });
    let status = 0;
    let text = "";
    const times: number[] = [];
    req.on("response", (headers) => (status = Number(headers[":status"])));
    req.setEncoding("utf8");
    req.on("data", (d: string) => {
      times.push(Date.now());
      text += d;
    });
    req.on("end", () => resolve({ status, text, times, endedAt: Date.now() }));
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

/** The `data:` payloads of an SSE body, comments (`: keep-alive`) left out. */
const sseData = (text: string) =>
  text
    .split("\n\n")
    .filter((e) => e.startsWith("data: "))
    .map((e) => e.slice("data: ".length));

const contentOf = (events: string[]) =>
  events
    .filter((e) => e !== "[DONE]")
    .map((e) => (JSON.parse(e) as { choices: { delta: { content?: string } }[] }).choices[0]?.delta.content ?? "")
    .join("");

describe.skipIf(!hasOpenssl())("the API over HTTPS and HTTP/2 (self-signed certificate made at run time)", () => {
  let cert: SelfSignedCert;
  let stack: Stack;
  let key: string;
  let echoEp: string;
  let sleepEp: string;
  let slowSseEp: string;
  let llmEp: string;
  let modelDir: string;
  let previousDispatcher: Dispatcher;
  let trusting: Agent;

  beforeAll(async () => {
    cert = await makeSelfSignedCert();
    // Through the API's own config path, as `npm start` and apps/api/main.ts read it.
    const tls = loadApiConfig({ HEARTH_TLS_CERT: cert.certPath, HEARTH_TLS_KEY: cert.keyPath }).tls;
    // Both SDKs call the global fetch (runpod-sdk through xior, which takes no fetch of ours), and
    // NODE_EXTRA_CA_CERTS is read only at process start: so the global dispatcher trusts this certificate,
    // as an operator's client would trust a private CA. Verification stays on (see the refusal test).
    previousDispatcher = getGlobalDispatcher();
    trusting = new Agent({ connect: { ca: cert.cert } });
    setGlobalDispatcher(trusting);
    stack = await startStack({ ...(tls && { tls }), connections: CONNECTIONS });
    key = await stack.tenant("tls");
    modelDir = await mkdtemp(join(tmpdir(), "hearth-tls-model-"));
    await chmod(modelDir, 0o755); // the engine runs as nobody
    const modelPath = ensureTinyLlamaFile(join(modelDir, "tiny-llama.gguf"));
    [echoEp, sleepEp, slowSseEp, llmEp] = await Promise.all([
      stack.endpoint(key, { engine: { kind: "handler", module: join(examplesDir, "echo.mjs") }, workersMin: 1 }),
      stack.endpoint(key, { engine: { kind: "handler", module: join(fixturesDir, "sleep.mjs") }, workersMin: 1 }),
      stack.endpoint(key, { engine: { kind: "handler", module: join(fixturesDir, "openai-slow-stream.mjs") }, workersMin: 1 }),
      stack.endpoint(key, {
        engine: { kind: "openai", profile: "embedded", model: `file://${modelPath}`, args: { threads: 1, "ctx-size": 1024 }, concurrency: 4 },
        workersMin: 1,
        workersMax: 1,
      }),
    ]);
    for (const ep of [echoEp, sleepEp, slowSseEp, llmEp]) {
      await waitFor(async () => (await stack.call("GET", `/v2/${ep}/health`, { key })).body.workers.idle === 1, 60_000);
    }
  }, 120_000);
  afterAll(async () => {
    await stack?.close();
    if (previousDispatcher) setGlobalDispatcher(previousDispatcher);
    await trusting?.close();
    await Promise.all([cert && rm(cert.dir, { recursive: true, force: true }), modelDir && rm(modelDir, { recursive: true, force: true })]);
  });

  it("serves https:// and the real runpod-sdk runs /runsync over it, including a job that outlasts every connection timeout", async () => {
    expect(stack.api.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const runpod = runpodSdk(key, { baseUrl: `${stack.api.url}/v2` });
    const r = await runpod.endpoint(echoEp)!.runSync({ input: { over: "tls" } });
    expect(r).toMatchObject({ status: "COMPLETED", output: { echo: { over: "tls" } } });
    // 4 s of silence on the response: twice the request and keep-alive timeouts, four times the header one.
    const started = Date.now();
    const slow = await runpod.endpoint(sleepEp)!.runSync({ input: { ms: 4000 } });
    expect(slow).toMatchObject({ status: "COMPLETED", output: { slept: 4000 } });
    expect(Date.now() - started).toBeGreaterThanOrEqual(4000);
  });

  it("refuses to talk to a client that does not trust the certificate (verification is on)", async () => {
    const untrusting = new Agent(); // the system's roots only
    setGlobalDispatcher(untrusting);
    try {
      const runpod = runpodSdk(key, { baseUrl: `${stack.api.url}/v2` });
      const err: unknown = await runpod.endpoint(echoEp)!.runSync({ input: {} }).then(() => undefined, (e: unknown) => e);
      expect(err).toBeDefined();
      const causes: string[] = [];
      for (let e = err as { message?: string; code?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) causes.push(`${e.code ?? ""} ${e.message ?? ""}`);
      expect(causes.join(" | ")).toMatch(/self[- ]signed|SELF_SIGNED|certificate/i);
    } finally {
      setGlobalDispatcher(trusting);
      await untrusting.close();
    }
  });

  it("streams a chat completion from the embedded engine to the real openai client over https", async () => {
    const openai = new OpenAI({ baseURL: `${stack.api.url}/v2/${llmEp}/openai/v1`, apiKey: key, maxRetries: 0 });
    const params = { model: "tiny-llama", messages: [{ role: "user" as const, content: "Tell me a story" }], max_tokens: 24, temperature: 0 };
    const whole = await openai.chat.completions.create(params);
    let text = "";
    let chunks = 0;
    for await (const chunk of await openai.chat.completions.create({ ...params, stream: true })) {
      chunks++;
      text += chunk.choices[0]?.delta.content ?? "";
    }
    expect(chunks).toBeGreaterThan(3);
    expect(text).toBe(whole.choices[0]!.message.content);
  });

  it("multiplexes two streamed chat completions from the engine on one HTTP/2 connection, both whole", async () => {
    const session = h2connect(stack.api.url, { ca: cert.cert });
    try {
      await new Promise<void>((resolve, reject) => session.once("connect", () => resolve()).once("error", reject));
      expect(session.alpnProtocol).toBe("h2");
      // The server bounds the streams one connection may hold open (Node's own default is 2^32-1).
      await waitFor(() => session.remoteSettings.maxConcurrentStreams === MAX_CONCURRENT_STREAMS);
      const path = `/v2/${llmEp}/openai/v1/chat/completions`;
      const prompts = ["Tell me a story", "Once upon a time"];
      const [a, b] = await Promise.all(
        prompts.map((content) => h2Call(session, path, key, { model: "tiny-llama", messages: [{ role: "user", content }], max_tokens: 24, temperature: 0, stream: true })),
      );
      for (const [i, answer] of [a!, b!].entries()) {
        expect(answer.status).toBe(200);
        const events = sseData(answer.text);
        expect(events.at(-1)).toBe("[DONE]");
        const whole = await h2Call(session, path, key, { model: "tiny-llama", messages: [{ role: "user", content: prompts[i] }], max_tokens: 24, temperature: 0 });
        expect(contentOf(events)).toBe((JSON.parse(whole.text) as { choices: { message: { content: string } }[] }).choices[0]!.message.content);
      }
    } finally {
      session.close();
    }
  });

  it("keeps two slow SSE streams and a quiet /runsync open together on one HTTP/2 session past the idle timeout, then closes the idle session", async () => {
    const session = h2connect(stack.api.url, { ca: cert.cert });
    let goawayAt: number | undefined;
    let closedAt: number | undefined;
    session.on("goaway", () => (goawayAt ??= Date.now()));
    session.on("close", () => (closedAt = Date.now()));
    session.on("error", () => {});
    await new Promise<void>((resolve, reject) => session.once("connect", () => resolve()).once("error", reject));
    // Each stream is silent 1.2 s between chunks (no keep-alive comment before 15 s) and open 3.6 s: longer than the 2 s idle time.
    const slow = () =>
      h2Call(session, `/v2/${slowSseEp}/openai/v1/chat/completions`, key, { model: "slow", messages: [{ role: "user", content: JSON.stringify({ count: 3, delayMs: 1200 }) }], stream: true });
    const [s1, s2, sync] = await Promise.all([slow(), slow(), h2Call(session, `/v2/${sleepEp}/runsync`, key, { input: { ms: 3000 } })]);
    const lastEnd = Math.max(s1.endedAt, s2.endedAt, sync.endedAt);
    for (const s of [s1, s2]) {
      expect(s.status).toBe(200);
      expect(contentOf(sseData(s.text))).toBe("012");
      expect(sseData(s.text).at(-1)).toBe("[DONE]");
    }
    expect(sync.status).toBe(200);
    expect(JSON.parse(sync.text)).toMatchObject({ status: "COMPLETED", output: { slept: 3000 } });
    // Really at the same time: each stream had data before the other one ended.
    expect(s1.times[0]!).toBeLessThan(s2.endedAt);
    expect(s2.times[0]!).toBeLessThan(s1.endedAt);
    expect(goawayAt).toBeUndefined();
    // Idle now: the server closes the session after its keep-alive time (2 s), gracefully (GOAWAY).
    await waitFor(() => closedAt !== undefined, 8000);
    expect(goawayAt).toBeGreaterThanOrEqual(lastEnd + CONNECTIONS.keepAliveTimeoutMs - 100);
  });

  it("resets an HTTP/2 request still arriving after the request timeout, and answers a slow HTTP/1.1 header or body with 408", async () => {
    const session = h2connect(stack.api.url, { ca: cert.cert });
    try {
      const req = session.request({ ":method": "POST", ":path": `/v2/${echoEp}/run`, authorization: `Bearer ${key}`, "content-type": "application/json" });
      req.write('{"input": {'); // and never the rest
      req.on("error", () => {});
      req.resume();
      const started = Date.now();
      const rstCode = await new Promise<number>((resolve) => req.on("close", () => resolve(req.rstCode)));
      expect(rstCode).toBe(h2.NGHTTP2_CANCEL);
      expect(Date.now() - started).toBeGreaterThanOrEqual(CONNECTIONS.requestTimeoutMs - 100);
    } finally {
      session.close();
    }

    const { port } = new URL(stack.api.url);
    const http1 = async (partial: string) => {
      const socket = tlsConnect({ host: "127.0.0.1", port: Number(port), ca: cert.cert, servername: "localhost", ALPNProtocols: ["http/1.1"] });
      await new Promise<void>((resolve, reject) => socket.once("secureConnect", resolve).once("error", reject));
      expect(socket.alpnProtocol).toBe("http/1.1");
      socket.write(partial);
      let text = "";
      socket.setEncoding("utf8");
      socket.on("data", (d: string) => (text += d));
      await new Promise((resolve) => socket.once("close", resolve));
      return text;
    };
    expect(await http1("GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")).toMatch(/^HTTP\/1\.1 408 /);
    expect(await http1(`POST /v2/${echoEp}/run HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"input":`)).toMatch(/^HTTP\/1\.1 408 /);
  });
});

describe.skipIf(!hasOpenssl())("the API process refuses a wrong TLS configuration, naming the variable", () => {
  let cert: SelfSignedCert;
  beforeAll(async () => {
    cert = await makeSelfSignedCert();
  });
  afterAll(async () => {
    await rm(cert.dir, { recursive: true, force: true });
  });

  it("one variable without the other, an unreadable path, a file that is not PEM", async () => {
    const junk = join(cert.dir, "junk.pem");
    await writeFile(junk, "not a certificate\n");
    const cases: [Record<string, string>, RegExp][] = [
      [{ HEARTH_TLS_CERT: cert.certPath }, /HEARTH_TLS_KEY: must be set together with HEARTH_TLS_CERT/],
      [{ HEARTH_TLS_KEY: cert.keyPath }, /HEARTH_TLS_CERT: must be set together with HEARTH_TLS_KEY/],
      [{ HEARTH_TLS_CERT: join(cert.dir, "missing.pem"), HEARTH_TLS_KEY: cert.keyPath }, /HEARTH_TLS_CERT: cannot read .*missing\.pem: ENOENT/],
      [{ HEARTH_TLS_CERT: junk, HEARTH_TLS_KEY: cert.keyPath }, /HEARTH_TLS_CERT: .*junk\.pem is not a PEM certificate/],
      [{ HEARTH_TLS_CERT: cert.certPath, HEARTH_TLS_KEY: junk }, /HEARTH_TLS_KEY: .*junk\.pem is not a PEM private key/],
    ];
    await Promise.all(
      cases.map(async ([env, message]) => {
        // Nothing listens on this port: a process that got past its config would fail on the database, not on TLS.
        const api = await spawnEntry(apiMain, { env: { ...env, PORT: "0", DATABASE_URL: "postgres://nobody@127.0.0.1:1/none", HEARTH_ADMIN_TOKEN: "tls-test-admin-token-0123" } });
        const { code } = await api.exited;
        expect(code).toBe(1);
        expect(api.output()).toMatch(/cannot start/);
        expect(api.output()).toMatch(message);
      }),
    );
  }, 60_000);
});
