import { describe, expect, it } from "vitest";
import { checkAddress, checkUrl, EMPTY_ALLOW_LIST, parseAllowList, type AllowList, type UrlPolicy } from "./url-policy.ts";

const allow = (text: string): AllowList => {
  const r = parseAllowList(text);
  if (!r.ok) throw new Error(r.errors.join("; "));
  return r.allow;
};
const policy = (list: AllowList = EMPTY_ALLOW_LIST): UrlPolicy => ({ allow: list, schemes: ["https:"], allowListedSchemes: ["http:"], allowListName: "HEARTH_MODEL_ALLOWLIST" });
const verdict = (url: string, p = policy()) => checkUrl(new URL(url), p);

describe("allow-list entries", () => {
  it("takes buckets, host names, addresses and CIDRs, normalised", () => {
    const list = allow(" s3://models , s3://weights/, Models.Internal.Example. ,10.0.0.0/8, 127.0.0.1, [::1], fd00::/8 ");
    expect([...list.s3Buckets]).toEqual(["models", "weights"]);
    expect([...list.hosts]).toEqual(["models.internal.example"]);
    expect(list.cidrs.map((c) => `${c.family}/${c.bits}`)).toEqual(["4/8", "4/32", "6/128", "6/8"]);
    // What is handed to workers parses to the same list.
    expect(allow(list.entries.join(","))).toEqual(list);
  });

  it("reports every bad entry", () => {
    const r = parseAllowList("s3://, s3://b/key, 10.0.0.1/8, http://x.example, 0x7f.1, a b, 300.1.1.1");
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.errors).toHaveLength(7);
    expect(parseAllowList("")).toEqual({ ok: true, allow: EMPTY_ALLOW_LIST });
  });
});

describe("checkUrl", () => {
  it("accepts https to public addresses and names (names still to be resolved)", () => {
    expect(verdict("https://8.8.8.8/m.gguf")).toEqual({ ok: true, resolve: false });
    expect(verdict("https://huggingface.co/x/resolve/main/m.gguf")).toEqual({ ok: true, resolve: true, host: "huggingface.co", allowListedOnly: false });
  });

  it("refuses other schemes, and plain http except to allow-listed hosts and ranges", () => {
    expect(verdict("ftp://example.com/m")).toMatchObject({ ok: false, reason: expect.stringMatching(/ftp:\/\/ URLs are not accepted/) });
    expect(verdict("file:///etc/passwd")).toMatchObject({ ok: false });
    expect(verdict("http://8.8.8.8/m")).toMatchObject({ ok: false, reason: expect.stringMatching(/plain http:\/\/ is accepted only/) });
    expect(verdict("http://example.com/m")).toEqual({ ok: true, resolve: true, host: "example.com", allowListedOnly: true });
    expect(verdict("http://127.0.0.1:9000/m", policy(allow("127.0.0.1")))).toEqual({ ok: true, resolve: false });
    expect(verdict("http://models.lan/m", policy(allow("models.lan")))).toEqual({ ok: true, resolve: false });
  });

  it("refuses literal addresses in every private spelling the URL parser accepts", () => {
    for (const url of [
      "https://127.0.0.1/m",
      "https://10.0.0.1/m",
      "https://[::1]/m",
      "https://[::ffff:127.0.0.1]/m",
      "https://[::ffff:7f00:1]/m",
      "https://169.254.169.254/latest/meta-data/",
      "https://0x7f.1/m",
      "https://2130706433/m",
      "https://0177.0.0.1/m",
      "https://0.0.0.0/m",
      "https://[fd00:ec2::254]/m",
      "https://100.64.0.1/m",
      "https://[fe80::1]/m",
    ]) {
      expect(verdict(url), url).toMatchObject({ ok: false, reason: expect.stringContaining("HEARTH_MODEL_ALLOWLIST") });
    }
  });

  it("refuses local and metadata names whatever they resolve to, unless listed by name", () => {
    for (const url of ["https://localhost/m", "https://LOCALHOST./m", "https://metadata.google.internal/computeMetadata/v1/", "https://a.b.localhost/m", "https://printer.local/m", "https://db.internal/m", "https://metadata/m"]) {
      expect(verdict(url), url).toMatchObject({ ok: false });
    }
    expect(verdict("https://db.internal/m", policy(allow("db.internal")))).toEqual({ ok: true, resolve: false });
  });

  it("lets allow-listed ranges through, including their IPv4-mapped forms", () => {
    const p = policy(allow("10.1.0.0/16"));
    expect(verdict("https://10.1.2.3/m", p)).toEqual({ ok: true, resolve: false });
    expect(verdict("https://[::ffff:10.1.2.3]/m", p)).toEqual({ ok: true, resolve: false });
    expect(verdict("https://10.2.0.1/m", p)).toMatchObject({ ok: false });
  });
});

describe("checkAddress", () => {
  it("judges resolved addresses as literal ones, with allowListedOnly for plain http", () => {
    expect(checkAddress("93.184.215.14", policy(), false)).toEqual({ ok: true });
    expect(checkAddress("127.0.0.1", policy(), false)).toMatchObject({ ok: false, reason: expect.stringMatching(/loopback/) });
    expect(checkAddress("::ffff:127.0.0.1", policy(), false)).toMatchObject({ ok: false });
    expect(checkAddress("93.184.215.14", policy(), true)).toMatchObject({ ok: false, reason: expect.stringMatching(/plain http/) });
    expect(checkAddress("127.0.0.1", policy(allow("127.0.0.0/8")), true)).toEqual({ ok: true });
    expect(checkAddress("not-an-ip", policy(), false)).toMatchObject({ ok: false });
  });
});
