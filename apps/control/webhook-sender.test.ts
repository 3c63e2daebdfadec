import { randomBytes } from "node:crypto";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it } from "vitest";
import { egressPolicy } from "../../core/config/egress.ts";
import { systemResolveAll, type ResolveAll } from "../../core/net/host-resolution.ts";
import { EMPTY_ALLOW_LIST, parseAllowList, type AllowList } from "../../core/net/url-policy.ts";
import { WebhookSender, type WebhookAttemptRequest } from "./webhook-sender.ts";

const allowList = (text: string): AllowList => {
  const r = parseAllowList(text);
  if (!r.ok) throw new Error(r.errors.join("; "));
  return r.allow;
};
/** Local receivers: plain http to 127.0.0.1 only, as an operator would allow for local use. */
const LOCAL = egressPolicy(true, allowList("127.0.0.1/32"));
const newSecret = () => `whsec_${randomBytes(24).toString("base64")}`;

interface Received {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** A real receiver on loopback: records each request, answers with `reply`. */
async function receiver(reply: (req: http.IncomingMessage, res: http.ServerResponse) => void) {
  const received: Received[] = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      received.push({ method: req.method ?? "", url: req.url ?? "", headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
      reply(req, res);
    });
  });
  server.on("connection", () => void connections++);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  servers.push(server);
  return { url: `http://127.0.0.1:${port}`, port, received, connections: () => connections };
}

const servers: http.Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

const attempt = (url: string, secrets = [newSecret()]): WebhookAttemptRequest => ({
  url,
  webhookId: `msg_${randomBytes(8).toString("hex")}`,
  body: JSON.stringify({ id: "job-1", status: "COMPLETED", output: { text: "héllo ✓" } }),
  secrets,
  timestampMs: Date.now(),
});

/** What `standardwebhooks` needs from a received request. */
const signedHeaders = (r: Received) => ({
  "webhook-id": String(r.headers["webhook-id"]),
  "webhook-timestamp": String(r.headers["webhook-timestamp"]),
  "webhook-signature": String(r.headers["webhook-signature"]),
});

describe("WebhookSender", () => {
  it("POSTs the body signed with Standard Webhooks; a 2xx is delivered", async () => {
    const rx = await receiver((_req, res) => res.writeHead(204).end());
    const req = attempt(`${rx.url}/hook?x=1`);
    const outcome = await new WebhookSender({ policy: LOCAL }).send(req);
    expect(outcome).toMatchObject({ kind: "delivered", status: 204, latencyMs: expect.any(Number) });
    const [got] = rx.received;
    expect(got).toMatchObject({ method: "POST", url: "/hook?x=1", body: req.body });
    expect(got!.headers).toMatchObject({ "content-type": "application/json", "webhook-id": req.webhookId, "webhook-timestamp": String(Math.floor(req.timestampMs / 1000)), "user-agent": "Hearth-Webhooks/1" });
    expect(new Webhook(req.secrets[0]!).verify(got!.body, signedHeaders(got!))).toEqual(JSON.parse(req.body));
    expect(() => new Webhook(newSecret()).verify(got!.body, signedHeaders(got!))).toThrow(/No matching signature/);
    expect(() => new Webhook(req.secrets[0]!).verify(`${got!.body} `, signedHeaders(got!))).toThrow(/No matching signature/);
  });

  it("signs with both secrets during a rotation: a receiver holding either verifies", async () => {
    const rx = await receiver((_req, res) => res.writeHead(200).end("ok"));
    const [oldSecret, newer] = [newSecret(), newSecret()];
    const req = attempt(`${rx.url}/hook`, [newer, oldSecret]);
    expect(await new WebhookSender({ policy: LOCAL }).send(req)).toMatchObject({ kind: "delivered", status: 200 });
    const got = rx.received[0]!;
    expect(String(got.headers["webhook-signature"]).split(" ")).toHaveLength(2);
    for (const secret of [oldSecret, newer]) expect(new Webhook(secret).verify(got.body, signedHeaders(got))).toEqual(JSON.parse(req.body));
    expect(() => new Webhook(newSecret()).verify(got.body, signedHeaders(got))).toThrow();
  });

  it("retries a 5xx and a 429, honouring Retry-After", async () => {
    const rx = await receiver((req, res) => {
      if (req.url === "/busy") res.writeHead(429, { "retry-after": "7" }).end();
      else res.writeHead(500).end("oops");
    });
    const sender = new WebhookSender({ policy: LOCAL });
    const failed = await sender.send(attempt(`${rx.url}/fail`));
    expect(failed).toMatchObject({ kind: "retry", status: 500, error: "HTTP 500" });
    expect(failed).not.toHaveProperty("retryAfterMs");
    expect(await sender.send(attempt(`${rx.url}/busy`))).toMatchObject({ kind: "retry", status: 429, retryAfterMs: 7000 });
  });

  it("stops on other 4xx", async () => {
    const rx = await receiver((_req, res) => res.writeHead(404).end());
    expect(await new WebhookSender({ policy: LOCAL }).send(attempt(`${rx.url}/gone`))).toMatchObject({ kind: "stop", status: 404, error: "HTTP 404" });
  });

  it("does not follow a redirect, and names where it pointed", async () => {
    const rx = await receiver((req, res) => (req.url === "/moved" ? res.writeHead(302, { location: "http://169.254.169.254/latest/meta-data/" }).end() : res.writeHead(200).end()));
    const outcome = await new WebhookSender({ policy: LOCAL }).send(attempt(`${rx.url}/moved`));
    expect(outcome).toMatchObject({ kind: "stop", status: 302, error: "HTTP 302: redirect to http://169.254.169.254/latest/meta-data/ not followed" });
    expect(rx.received.map((r) => r.url)).toEqual(["/moved"]);
  });

  it("retries when the receiver does not answer in time", async () => {
    const rx = await receiver(() => {}); // reads the request, never answers
    const outcome = await new WebhookSender({ policy: LOCAL, timeoutMs: 300 }).send(attempt(`${rx.url}/slow`));
    expect(outcome).toMatchObject({ kind: "retry", error: "ETIMEDOUT: no response within 300 ms" });
    expect(outcome).not.toHaveProperty("status");
    expect(outcome.latencyMs).toBeGreaterThanOrEqual(290);
    expect(outcome.latencyMs).toBeLessThan(2000);
  });

  it("is not held by a response body that never ends or never stops", async () => {
    const rx = await receiver((req, res) => {
      res.writeHead(200, { "content-type": "text/plain" });
      if (req.url === "/stall") return void res.write("partial"); // headers, a little body, then nothing
      const chunk = Buffer.alloc(16 * 1024, "x");
      const pump = () => {
        while (res.write(chunk));
        res.once("drain", pump);
      };
      pump();
    });
    const sender = new WebhookSender({ policy: LOCAL, timeoutMs: 400 });
    const t0 = Date.now();
    expect(await sender.send(attempt(`${rx.url}/stream`))).toMatchObject({ kind: "delivered", status: 200 });
    expect(Date.now() - t0).toBeLessThan(400); // cut at the byte cap, not the timeout
    expect(await sender.send(attempt(`${rx.url}/stall`))).toMatchObject({ kind: "delivered", status: 200 });
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it("retries when the connection is refused", async () => {
    const rx = await receiver(() => {});
    const closed = servers.pop()!;
    await new Promise<void>((r) => closed.close(() => r()));
    expect(await new WebhookSender({ policy: LOCAL }).send(attempt(`${rx.url}/hook`))).toMatchObject({ kind: "retry", error: expect.stringMatching(/^ECONNREFUSED/) });
  });

  it("refuses, at connect and without retrying, a name that resolves to a forbidden address", async () => {
    const rx = await receiver((_req, res) => res.writeHead(200).end());
    const resolve: ResolveAll = async () => [{ address: "127.0.0.1", family: 4 }];
    // Public-only policy with http allowed: the name passes checkUrl, its address does not.
    const publicOnly = new WebhookSender({ policy: egressPolicy(true, EMPTY_ALLOW_LIST), resolve });
    const outcome = await publicOnly.send(attempt(`http://rebind.example:${rx.port}/hook`));
    expect(outcome).toMatchObject({ kind: "stop", error: "refused: rebind.example resolves to 127.0.0.1 is a loopback address; not reachable unless HEARTH_EGRESS_ALLOWLIST permits it" });
    expect(rx.connections()).toBe(0);
    // The same name where the allow-list permits its address: the resolved address is the one connected to.
    expect(await new WebhookSender({ policy: LOCAL, resolve }).send(attempt(`http://rebind.example:${rx.port}/hook`))).toMatchObject({ kind: "delivered" });
    expect(rx.connections()).toBe(1);
  });

  it("refuses a name the system resolves to loopback (the hosts file)", async (ctx) => {
    const name = await firstLoopbackName([hostname(), "vm", "runsc"]);
    if (name === undefined) return ctx.skip();
    const rx = await receiver((_req, res) => res.writeHead(200).end());
    const outcome = await new WebhookSender({ policy: egressPolicy(true, EMPTY_ALLOW_LIST) }).send(attempt(`http://${name}:${rx.port}/hook`));
    expect(outcome).toMatchObject({ kind: "stop", error: expect.stringMatching(new RegExp(`^refused: ${name} resolves to 127\\.`)) });
    expect(rx.connections()).toBe(0);
  });

  it("refuses literal private addresses, local names and plain http without connecting", async () => {
    const rx = await receiver((_req, res) => res.writeHead(200).end());
    const publicOnly = new WebhookSender({ policy: egressPolicy(true, EMPTY_ALLOW_LIST) });
    expect(await publicOnly.send(attempt(`${rx.url}/hook`))).toMatchObject({ kind: "stop", error: expect.stringMatching(/^refused: 127\.0\.0\.1 is a loopback address/) });
    expect(await publicOnly.send(attempt("http://10.0.0.7/hook"))).toMatchObject({ kind: "stop", error: expect.stringMatching(/private/) });
    expect(await publicOnly.send(attempt("http://169.254.169.254/latest/meta-data/"))).toMatchObject({ kind: "stop", error: expect.stringMatching(/link-local/) });
    expect(await publicOnly.send(attempt(`http://localhost:${rx.port}/hook`))).toMatchObject({ kind: "stop", error: expect.stringMatching(/localhost is the loopback host/) });
    const httpsOnly = new WebhookSender({ policy: egressPolicy(false, allowList("127.0.0.1/32")) });
    expect(await httpsOnly.send(attempt(`${rx.url}/hook`))).toMatchObject({ kind: "stop", error: "refused: http:// URLs are not accepted (accepted: https:)" });
    expect(rx.connections()).toBe(0);
  });

  it("never shows a secret, even a malformed one", async () => {
    const rx = await receiver((_req, res) => res.writeHead(200).end());
    const sender = new WebhookSender({ policy: LOCAL });
    const bad = "whsec_!!not-base64!!";
    const outcome = await sender.send(attempt(`${rx.url}/hook`, [bad]));
    expect(outcome).toMatchObject({ kind: "stop", error: "a signing secret is malformed" });
    expect(JSON.stringify(outcome)).not.toContain("not-base64");
    expect(await sender.send(attempt(`${rx.url}/hook`, []))).toMatchObject({ kind: "stop", error: "no signing secret for this webhook" });
    // What cannot be sent at all is an answer too, never a throw.
    expect(await sender.send({ ...attempt(`${rx.url}/hook`), webhookId: "msg\r\nx-injected: 1" })).toMatchObject({ kind: "stop", error: expect.stringMatching(/^cannot send: /) });
    expect(rx.connections()).toBe(0);
  });
});

async function firstLoopbackName(candidates: string[]): Promise<string | undefined> {
  for (const name of candidates) {
    const found = await systemResolveAll(name).catch(() => []);
    if (found.length > 0 && found.every((a) => a.address.startsWith("127."))) return name;
  }
  return undefined;
}
