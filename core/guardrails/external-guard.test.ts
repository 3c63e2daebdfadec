import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { egressPolicy } from "../config/egress.ts";
import { EMPTY_ALLOW_LIST, parseAllowList } from "../net/url-policy.ts";
import { ExternalGuardClient } from "./external-guard.ts";

/** The client against a real local server whose answer each path chooses. */
describe("ExternalGuardClient", () => {
  let server: Server;
  let base: string;
  const loopback = parseAllowList("127.0.0.0/8");
  if (!loopback.ok) throw new Error("allow-list");
  const client = new ExternalGuardClient({ policy: egressPolicy(true, loopback.allow), maxResponseBytes: 1024 });
  const guard = (path: string, timeoutMs = 2000) => ({ url: `${base}${path}`, timeoutMs, onError: "block" as const });
  const check = { direction: "input" as const, endpointId: "ep1", content: { text: "hi" } };

  beforeAll(async () => {
    server = createServer((req, res) => {
      req.resume();
      req.on("end", () => {
        if (req.url === "/allow") return res.end('{"allow": true, "extra": 1}');
        if (req.url === "/deny") return res.end('{"allow": false, "rule": "toxicity"}');
        if (req.url === "/bad-rule") return res.end('{"allow": false, "rule": "Not A Rule!"}');
        if (req.url === "/html") return res.end("<html>");
        if (req.url === "/big") return res.end(JSON.stringify({ allow: true, pad: "x".repeat(5000) }));
        if (req.url === "/500") {
          res.statusCode = 500;
          return res.end('{"allow": true}');
        }
        // /hang: never answers
      });
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it("reads allow and deny answers", async () => {
    expect(await client.check(guard("/allow"), check)).toEqual({ ok: true, allow: true });
    expect(await client.check(guard("/deny"), check)).toEqual({ ok: true, allow: false, rule: "toxicity" });
  });

  it("treats every other answer as an error", async () => {
    expect(await client.check(guard("/bad-rule"), check)).toMatchObject({ ok: false });
    expect(await client.check(guard("/html"), check)).toEqual({ ok: false, error: "answer is not JSON" });
    expect(await client.check(guard("/big"), check)).toEqual({ ok: false, error: "answer over 1024 bytes" });
    expect(await client.check(guard("/500"), check)).toEqual({ ok: false, error: "answered HTTP 500" });
    expect(await client.check(guard("/hang", 100), check)).toEqual({ ok: false, error: "no answer within 100 ms" });
  });

  it("checks the egress policy at use: loopback refused without the allow-list, http refused without HEARTH_EGRESS_ALLOW_HTTP", async () => {
    const strict = new ExternalGuardClient({ policy: egressPolicy(true, EMPTY_ALLOW_LIST) });
    const r = await strict.check(guard("/allow"), check);
    expect(r).toMatchObject({ ok: false });
    expect((r as { error: string }).error).toContain("HEARTH_EGRESS_ALLOWLIST");
    const httpsOnly = new ExternalGuardClient({ policy: egressPolicy(false, loopback.allow) });
    expect((await httpsOnly.check(guard("/allow"), check)) as { error: string }).toMatchObject({ ok: false, error: expect.stringContaining("http:") });
  });

  it("refuses a name that resolves to a private address at connect time (DNS rebinding)", async () => {
    const rebinding = new ExternalGuardClient({ policy: egressPolicy(true, EMPTY_ALLOW_LIST), resolve: async () => [{ address: "127.0.0.1", family: 4 }] });
    const port = (server.address() as AddressInfo).port;
    const r = await rebinding.check({ url: `http://guard.example.com:${port}/allow`, timeoutMs: 2000, onError: "block" }, check);
    expect(r).toMatchObject({ ok: false, error: expect.stringContaining("refused: guard.example.com resolves to") });
  });
});
