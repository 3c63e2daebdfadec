import { describe, expect, it } from "vitest";
import { checkUrlAtSubmission, type ResolveAll } from "../net/host-resolution.ts";
import { checkUrl, EMPTY_ALLOW_LIST, parseAllowList, type AllowList } from "../net/url-policy.ts";
import { egressPolicy } from "./egress.ts";
import { ConfigError } from "./parse-env.ts";
import { loadApiConfig, loadControlConfig } from "./process-configs.ts";

const allowList = (text: string): AllowList => {
  const r = parseAllowList(text);
  if (!r.ok) throw new Error(r.errors.join("; "));
  return r.allow;
};
const verdict = (url: string, allowHttp = false, allow: AllowList = EMPTY_ALLOW_LIST) => checkUrl(new URL(url), egressPolicy(allowHttp, allow));
const noDns: ResolveAll = async (host) => {
  throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND" });
};

describe("HEARTH_EGRESS_ALLOW_HTTP and HEARTH_EGRESS_ALLOWLIST", () => {
  it("default to refusing: no plain http, an empty allow-list", () => {
    for (const c of [loadApiConfig({}), loadControlConfig({})]) {
      expect(c.egressAllowHttp).toBe(false);
      expect(c.egressAllowList.entries).toEqual([]);
    }
  });

  it("are read alike by the API and the control plane", () => {
    const env = { HEARTH_EGRESS_ALLOW_HTTP: "1", HEARTH_EGRESS_ALLOWLIST: "127.0.0.1/32, 10.1.0.0/16,hooks.corp.example" };
    for (const c of [loadApiConfig(env), loadControlConfig(env)]) {
      expect(c.egressAllowHttp).toBe(true);
      expect(c.egressAllowList.entries).toEqual(["127.0.0.1/32", "10.1.0.0/16", "hooks.corp.example"]);
      expect([...c.egressAllowList.hosts]).toEqual(["hooks.corp.example"]);
    }
    expect(loadApiConfig({ HEARTH_EGRESS_ALLOW_HTTP: "0" }).egressAllowHttp).toBe(false);
  });

  it("stop the process at start naming the variable", () => {
    expect(() => loadApiConfig({ HEARTH_EGRESS_ALLOW_HTTP: "maybe" })).toThrow(ConfigError);
    expect(() => loadControlConfig({ HEARTH_EGRESS_ALLOW_HTTP: "maybe" })).toThrow(/HEARTH_EGRESS_ALLOW_HTTP: must be on or off/);
    expect(() => loadApiConfig({ HEARTH_EGRESS_ALLOWLIST: "127.0.0.1/8" })).toThrow(/HEARTH_EGRESS_ALLOWLIST: 127\.0\.0\.1\/8: not an s3:\/\/bucket, a host name/);
    expect(() => loadControlConfig({ HEARTH_EGRESS_ALLOWLIST: "s3://weights" })).toThrow(/HEARTH_EGRESS_ALLOWLIST: s3:\/\/ entries are not egress destinations/);
  });
});

describe("egressPolicy", () => {
  it("refuses loopback, private, link-local (metadata) and CGNAT addresses by default", () => {
    expect(verdict("https://127.0.0.1/hook")).toMatchObject({ ok: false, reason: expect.stringMatching(/127\.0\.0\.1 is a loopback address; not reachable unless HEARTH_EGRESS_ALLOWLIST permits it/) });
    expect(verdict("https://10.20.30.40/hook")).toMatchObject({ ok: false, reason: expect.stringMatching(/private/) });
    expect(verdict("https://169.254.169.254/latest/meta-data/")).toMatchObject({ ok: false, reason: expect.stringMatching(/link-local \(incl\. cloud metadata\)/) });
    expect(verdict("https://100.64.0.1/hook")).toMatchObject({ ok: false, reason: expect.stringMatching(/CGNAT/) });
    expect(verdict("https://[::1]/hook")).toMatchObject({ ok: false, reason: expect.stringMatching(/loopback/) });
    expect(verdict("https://[::ffff:10.0.0.1]/hook")).toMatchObject({ ok: false, reason: expect.stringMatching(/private/) });
    expect(verdict("https://localhost/hook")).toMatchObject({ ok: false, reason: expect.stringMatching(/localhost is the loopback host; not reachable unless HEARTH_EGRESS_ALLOWLIST lists it/) });
    expect(verdict("https://metadata.google.internal/")).toMatchObject({ ok: false, reason: expect.stringMatching(/cloud metadata/) });
  });

  it("refuses plain http:// without HEARTH_EGRESS_ALLOW_HTTP, even towards an allow-listed address", () => {
    expect(verdict("http://example.com/hook")).toMatchObject({ ok: false, reason: "http:// URLs are not accepted (accepted: https:)" });
    expect(verdict("http://127.0.0.1/hook", false, allowList("127.0.0.1/32"))).toMatchObject({ ok: false });
    expect(verdict("ftp://example.com/hook", true)).toMatchObject({ ok: false });
  });

  it("accepts public https://, and http:// with the flag; non-public addresses only where allow-listed", () => {
    expect(verdict("https://example.com/hook")).toEqual({ ok: true, resolve: true, host: "example.com", allowListedOnly: false });
    expect(verdict("https://93.184.215.14/hook")).toEqual({ ok: true, resolve: false });
    expect(verdict("http://example.com/hook", true)).toMatchObject({ ok: true, resolve: true });
    const loopback = allowList("127.0.0.1/32");
    expect(verdict("http://127.0.0.1:8080/hook", true, loopback)).toEqual({ ok: true, resolve: false });
    expect(verdict("https://127.0.0.1/hook", false, loopback)).toEqual({ ok: true, resolve: false });
    // The allow-list is exact: 127.0.0.2 is not 127.0.0.1/32, and http does not widen it.
    expect(verdict("http://127.0.0.2/hook", true, loopback)).toMatchObject({ ok: false, reason: expect.stringMatching(/loopback/) });
    expect(verdict("http://10.0.0.1/hook", true, loopback)).toMatchObject({ ok: false, reason: expect.stringMatching(/private/) });
  });

  it("judges names by what they resolve to at submission, and defers those that do not resolve here", async () => {
    const resolve: ResolveAll = async (host) => (host === "rebind.example" ? [{ address: "127.0.0.1", family: 4 }] : noDns(host));
    const policy = egressPolicy(false, EMPTY_ALLOW_LIST);
    expect(await checkUrlAtSubmission(new URL("https://rebind.example/h"), policy, { resolve })).toMatchObject({ ok: false, reason: expect.stringMatching(/rebind\.example resolves to 127\.0\.0\.1 is a loopback/) });
    expect(await checkUrlAtSubmission(new URL("https://hooks.example/h"), policy, { resolve })).toEqual({ ok: true, deferred: true });
    expect(await checkUrlAtSubmission(new URL("https://rebind.example/h"), egressPolicy(false, allowList("127.0.0.0/8")), { resolve })).toEqual({ ok: true, deferred: false });
  });
});
