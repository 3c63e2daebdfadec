import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { directoryDigest, etagMd5, fragmentSha256, s3ChecksumToHex } from "./model-digest.ts";

const hex = "ab".repeat(32);
const sha = (s: string) => createHash("sha256").update(s).digest("hex");

describe("model digests", () => {
  it("reads a #sha256= fragment, lowercased, and refuses a malformed one", () => {
    expect(fragmentSha256(new URL(`s3://b/k.gguf#sha256=${hex.toUpperCase()}`))).toBe(hex);
    expect(fragmentSha256(new URL("s3://b/k.gguf"))).toBeUndefined();
    expect(fragmentSha256(new URL("s3://b/k.gguf#sha256=abc"))).toBeInstanceOf(Error);
    expect(fragmentSha256(new URL("s3://b/k.gguf#sha256=%00"))).toBeInstanceOf(Error);
  });

  it("converts S3's base64 ChecksumSHA256, ignoring composite ones", () => {
    expect(s3ChecksumToHex(Buffer.from(hex, "hex").toString("base64"))).toBe(hex);
    expect(s3ChecksumToHex(`${Buffer.from(hex, "hex").toString("base64")}-3`)).toBeUndefined();
    expect(s3ChecksumToHex("AAAA")).toBeUndefined();
    expect(s3ChecksumToHex(undefined)).toBeUndefined();
  });

  it("takes an ETag as an MD5 only when it is a single-part one", () => {
    expect(etagMd5('"0123456789abcdef0123456789ABCDEF"')).toBe("0123456789abcdef0123456789abcdef");
    expect(etagMd5('"0123456789abcdef0123456789abcdef-4"')).toBeUndefined();
    expect(etagMd5(undefined)).toBeUndefined();
  });

  it("names a directory by its files whatever order they came in", () => {
    const a = directoryDigest([{ path: "b", sha256: "2" }, { path: "a", sha256: "1" }], sha);
    const b = directoryDigest([{ path: "a", sha256: "1" }, { path: "b", sha256: "2" }], sha);
    expect(a).toBe(b);
    expect(a).toBe(sha("hearth-dir-v1\n1  a\n2  b\n"));
    expect(directoryDigest([{ path: "a", sha256: "1" }], sha)).not.toBe(a);
  });
});
