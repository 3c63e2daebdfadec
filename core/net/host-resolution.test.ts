import http from "node:http";
import { hostname } from "node:os";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AddressRefusedError, checkUrlAtSubmission, guardedLookup, systemResolveAll, type ResolveAll } from "./host-resolution.ts";
import { EMPTY_ALLOW_LIST, parseAllowList, type UrlPolicy } from "./url-policy.ts";

const policy = (allowList = ""): UrlPolicy => {
  const r = parseAllowList(allowList);
  if (!r.ok) throw new Error(r.errors.join("; "));
  return { allow: r.allow, schemes: ["https:"], allowListedSchemes: ["http:"], allowListName: "TEST_ALLOWLIST" };
};
/** A resolver with fixed answers: the name → addresses the test wants, ENOTFOUND for the rest. */
const fixed =
  (answers: Record<string, string[]>): ResolveAll =>
  async (host) => {
    const found = answers[host];
    if (found === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
    return found.map((address) => ({ address, family: address.includes(":") ? 6 : 4 }));
  };

describe("checkUrlAtSubmission", () => {
  it("refuses a name when any address it resolves to is forbidden", async () => {
    const resolve = fixed({ "rebind.example": ["93.184.215.14", "127.0.0.1"], "pub.example": ["93.184.215.14", "2606:4700::1"] });
    expect(await checkUrlAtSubmission(new URL("https://rebind.example/m"), policy(), { resolve })).toMatchObject({ ok: false, reason: expect.stringMatching(/rebind\.example resolves to 127\.0\.0\.1 is a loopback/) });
    expect(await checkUrlAtSubmission(new URL("https://pub.example/m"), policy(), { resolve })).toEqual({ ok: true, deferred: false });
  });

  it("accepts, deferred, a name that does not resolve here or whose resolver does not answer", async () => {
    expect(await checkUrlAtSubmission(new URL("https://nowhere.example/m"), policy(), { resolve: fixed({}) })).toEqual({ ok: true, deferred: true });
    const silent: ResolveAll = () => new Promise(() => {});
    expect(await checkUrlAtSubmission(new URL("https://slow.example/m"), policy(), { resolve: silent, timeoutMs: 20 })).toEqual({ ok: true, deferred: true });
  });

  it("refuses a name the system resolves to loopback (the hosts file), with the system resolver", async (ctx) => {
    // Many hosts files map the machine's own name to 127.0.x.x; skipped where none does.
    const loopbackName = await firstLoopbackName([hostname(), "vm", "runsc"]);
    if (loopbackName === undefined) return ctx.skip();
    expect(await checkUrlAtSubmission(new URL(`https://${loopbackName}/m`), policy())).toMatchObject({ ok: false, reason: expect.stringMatching(/loopback/) });
  });
});

describe("guardedLookup", () => {
  let server: http.Server;
  let port: number;
  beforeAll(async () => {
    server = http.createServer((_req, res) => res.end("ok"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    port = (server.address() as { port: number }).port;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const get = (lookup: ReturnType<typeof guardedLookup>) =>
    new Promise<string>((resolve, reject) => {
      // agent: false, so no pooled socket from another request is reused and the lookup always runs.
      http.get(`http://models.example.test:${port}/`, { lookup, agent: false }, (res) => {
        let body = "";
        res.on("data", (c: Buffer) => (body += c.toString()));
        res.on("end", () => resolve(body));
      }).on("error", reject);
    });
  const toLoopback = fixed({ "models.example.test": ["127.0.0.1"] });

  it("stops the connection when the name resolves to a forbidden address", async () => {
    const err = await get(guardedLookup(policy(), false, toLoopback)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AddressRefusedError);
    expect((err as Error).message).toMatch(/models\.example\.test resolves to 127\.0\.0\.1 is a loopback/);
  });

  it("connects when the address is in an allow-listed range, and passes the address the socket uses", async () => {
    expect(await get(guardedLookup(policy("127.0.0.0/8"), true, toLoopback))).toBe("ok");
    // Plain http to a public address that is not allow-listed: refused before any connect.
    const toPublic = fixed({ "models.example.test": ["93.184.215.14"] });
    expect(await get(guardedLookup(policy("127.0.0.0/8"), true, toPublic)).catch((e: unknown) => e)).toBeInstanceOf(AddressRefusedError);
  });

  it("passes a resolver's own failure through", async () => {
    const err = await get(guardedLookup({ ...policy(), allow: EMPTY_ALLOW_LIST }, false, fixed({}))).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "ENOTFOUND" });
  });
});

async function firstLoopbackName(names: string[]): Promise<string | undefined> {
  for (const name of names) {
    const found = await systemResolveAll(name).catch(() => []);
    if (found.length > 0 && found.every((a) => a.address.startsWith("127.") || a.address === "::1")) return name;
  }
  return undefined;
}
