import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { parseSecretsKey, SecretBox, SecretOpenError } from "./secret-box.ts";

describe("parseSecretsKey", () => {
  it("takes 32 bytes as hex or base64 (standard or URL-safe, padded or not)", () => {
    const key = randomBytes(32);
    for (const text of [key.toString("hex"), key.toString("hex").toUpperCase(), key.toString("base64"), key.toString("base64url"), ` ${key.toString("base64")}\n`]) {
      const r = parseSecretsKey(text);
      expect(r.ok && r.key.equals(key)).toBe(true);
    }
  });

  it("refuses anything else without repeating it", () => {
    for (const text of ["", "short", randomBytes(16).toString("hex"), randomBytes(31).toString("base64"), randomBytes(33).toString("base64"), "z".repeat(64)]) {
      const r = parseSecretsKey(text);
      expect(r.ok).toBe(false);
      if (!r.ok && text.length > 0) expect(r.reason).not.toContain(text);
    }
  });
});

describe("SecretBox", () => {
  const box = new SecretBox(randomBytes(32));

  it("opens what it sealed, in its context only; each seal differs", () => {
    const a = box.seal("hf_secret", "ep1/env/HF_TOKEN");
    const b = box.seal("hf_secret", "ep1/env/HF_TOKEN");
    expect(a).not.toBe(b);
    expect(a).not.toContain("hf_secret");
    expect(a.startsWith(`hs1.${box.keyId}.`)).toBe(true);
    expect(box.open(a, "ep1/env/HF_TOKEN")).toBe("hf_secret");
    expect(() => box.open(a, "ep2/env/HF_TOKEN")).toThrow(SecretOpenError);
    expect(box.open(box.seal("", "c"), "c")).toBe("");
    expect(box.open(box.seal("ü\u{1F600}", "c"), "c")).toBe("ü\u{1F600}");
  });

  it("refuses altered, truncated and foreign values", () => {
    const sealed = box.seal("value", "c");
    const payload = Buffer.from(sealed.split(".")[2]!, "base64url");
    payload[14] = payload[14]! ^ 1;
    const altered = `hs1.${box.keyId}.${payload.toString("base64url")}`;
    expect(() => box.open(altered, "c")).toThrow(/fails authentication/);
    expect(() => box.open(`hs1.${box.keyId}.AAAA`, "c")).toThrow(/truncated/);
    expect(() => box.open("plaintext", "c")).toThrow(/not a sealed value/);
    expect(() => new SecretBox(randomBytes(32)).open(sealed, "c")).toThrow(/sealed under another key/);
  });
});
