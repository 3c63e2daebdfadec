import { describe, expect, it } from "vitest";
import { archiveKey, manifestKey, snapshotFolder, type SnapshotParts } from "./engine-cache-key.ts";

const parts: SnapshotParts = { image: "ghcr.io/acme/vllm:0.11@sha256:abc", gpuType: "NVIDIA L4", profile: "vllm", model: `sha256:${"a".repeat(64)}` };

describe("snapshotFolder", () => {
  it("starts with the tenant and the profile, and names the rest by a hash", () => {
    const folder = snapshotFolder("tn_abc123", parts);
    expect(folder).toMatch(/^engine-cache\/v1\/tn_abc123\/vllm\/[0-9a-f]{64}\/$/);
    expect(snapshotFolder("tn_abc123", { ...parts })).toBe(folder);
  });

  it("gives another tenant another folder for the very same image, GPU, profile and model", () => {
    const a = snapshotFolder("tn_a", parts);
    const b = snapshotFolder("tn_b", parts);
    expect(a).not.toBe(b);
    expect(a.replace("tn_a", "tn_b")).toBe(b);
  });

  it("changes with each part of the key", () => {
    const base = snapshotFolder("tn_a", parts);
    expect(snapshotFolder("tn_a", { ...parts, image: "ghcr.io/acme/vllm:0.12" })).not.toBe(base);
    expect(snapshotFolder("tn_a", { ...parts, gpuType: "NVIDIA H100" })).not.toBe(base);
    expect(snapshotFolder("tn_a", { ...parts, profile: "sglang" })).not.toBe(base);
    expect(snapshotFolder("tn_a", { ...parts, model: `sha256:${"b".repeat(64)}` })).not.toBe(base);
    expect(snapshotFolder("tn_a", { ...parts, model: `file:${"a".repeat(64)}` })).not.toBe(base);
  });

  it("does not let parts run into each other", () => {
    const x = snapshotFolder("tn_a", { ...parts, image: "a", gpuType: "bc" });
    const y = snapshotFolder("tn_a", { ...parts, image: "ab", gpuType: "c" });
    expect(x).not.toBe(y);
  });

  it("refuses a tenant id that is not one key segment, and parts the schema refuses", () => {
    expect(() => snapshotFolder("../tn_b", parts)).toThrow(/key segment/);
    expect(() => snapshotFolder("tn_a/x", parts)).toThrow(/key segment/);
    expect(() => snapshotFolder("", parts)).toThrow(/key segment/);
    expect(() => snapshotFolder("tn_a", { ...parts, model: "sha256:xyz" })).toThrow();
    expect(() => snapshotFolder("tn_a", { ...parts, image: "has space" })).toThrow();
    expect(() => snapshotFolder("tn_a", { ...parts, profile: "other" as "vllm" })).toThrow();
  });
});

describe("manifestKey and archiveKey", () => {
  it("put the manifest and the archive (named by its sha256) in the folder", () => {
    const folder = snapshotFolder("tn_a", parts);
    expect(manifestKey(folder)).toBe(`${folder}manifest.json`);
    expect(archiveKey(folder, "c".repeat(64))).toBe(`${folder}${"c".repeat(64)}.tar.gz`);
    expect(() => archiveKey(folder, "../x")).toThrow();
  });
});
