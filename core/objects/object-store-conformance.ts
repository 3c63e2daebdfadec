import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ObjectKeyError, type ObjectStore } from "./object-store.ts";

const hex = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** Keys every store must refuse, on put and on get, before any I/O. */
const BAD_KEYS: readonly string[] = ["../x", "a/../b", "/abs", "a//b", "a/", ".", "a\u0000b", "", "a b", "a\\b", "é", "x".repeat(1025)];

/**
 * Every `ObjectStore` runs this suite (STYLE: one conformance suite per seam). `create` is called in
 * each test and must return a store no other test writes to (a fresh directory, a unique prefix).
 */
export interface ConformanceOptions {
  /**
   * The server behind the store replaces an object atomically under concurrent writes (S3 and the
   * local store do). `s3rver`, the S3 stand-in of the tests, writes concurrent PUTs of one key into
   * one file and can leave a mix: that case is skipped for it, with the reason in the test name.
   */
  atomicConcurrentPuts?: boolean;
}

export function describeObjectStoreConformance(name: string, create: () => Promise<ObjectStore>, options: ConformanceOptions = {}): void {
  describe(`object store conformance: ${name}`, () => {
    it("returns exactly the bytes put, and reports their size and SHA-256", async () => {
      const store = await create();
      // Not UTF-8: a lone continuation byte, a truncated sequence, 0xff, NUL; a store that passes bodies through strings mangles them.
      const cases = [Buffer.from("{\"ok\":true}"), Buffer.from([0x80, 0xc3, 0x28, 0xff, 0xfe, 0x00, 0xed, 0xa0, 0x80]), Buffer.alloc(0)];
      for (const [i, body] of cases.entries()) {
        const key = `round-trip-${i}.bin`;
        const stored = await store.put(key, body, "application/octet-stream");
        expect(stored).toMatchObject({ store: store.kind, key, bytes: body.length, sha256: hex(body) });
        expect(stored.bucket !== undefined).toBe(store.kind === "s3");
        const got = await store.get(key);
        expect(got).toBeInstanceOf(Buffer);
        expect(got?.equals(body)).toBe(true);
      }
    });

    it("round-trips a 3 MB body", async () => {
      const store = await create();
      const body = randomBytes(3 * 1024 * 1024);
      const stored = await store.put("outputs/large.bin", body, "application/octet-stream");
      expect(stored.bytes).toBe(body.length);
      expect(stored.sha256).toBe(hex(body));
      const got = await store.get("outputs/large.bin");
      expect(got?.length).toBe(body.length);
      expect(got && hex(got)).toBe(hex(body));
    });

    it("overwrites: the last put under a key wins, and repeating a put changes nothing", async () => {
      const store = await create();
      const first = Buffer.from("first");
      const second = Buffer.from("second, longer than the first");
      await store.put("job/output.json", first, "application/json");
      const a = await store.put("job/output.json", second, "application/json");
      const b = await store.put("job/output.json", second, "application/json");
      expect(b).toEqual(a);
      expect((await store.get("job/output.json"))?.equals(second)).toBe(true);
    });

    it.skipIf(options.atomicConcurrentPuts === false)("concurrent puts under one key leave one whole body, never a mix or a partial one (skipped where the server under test is not atomic)", async () => {
      const store = await create();
      const bodies = [0x61, 0x62, 0x63, 0x64].map((byte) => Buffer.alloc(256 * 1024, byte));
      await Promise.all(bodies.map((body) => store.put("race/output.bin", body, "application/octet-stream")));
      const got = await store.get("race/output.bin");
      expect(bodies.some((body) => got?.equals(body))).toBe(true);
    });

    it("returns undefined for a key nothing was put under", async () => {
      const store = await create();
      expect(await store.get("never-written.json")).toBeUndefined();
      await store.put("present/a.json", Buffer.from("{}"), "application/json");
      expect(await store.get("present/b.json")).toBeUndefined();
      expect(await store.get("absent/deeper/c.json")).toBeUndefined();
      // A prefix of an object's key is not an object.
      expect(await store.get("present")).toBeUndefined();
    });

    it("keeps nested keys apart", async () => {
      const store = await create();
      const objects: Record<string, Buffer> = {
        "jobs/ep1/job-1/output.json": Buffer.from("1"),
        "jobs/ep1/job-1/stream/000001.json": Buffer.from("2"),
        "jobs/ep1/job-2/output.json": Buffer.from("3"),
        "jobs/ep2/job-1/output.json": Buffer.from("4"),
        "top.level_file-name.v2": Buffer.from("5"),
      };
      for (const [key, body] of Object.entries(objects)) expect((await store.put(key, body, "application/json")).key).toBe(key);
      for (const [key, body] of Object.entries(objects)) expect((await store.get(key))?.equals(body)).toBe(true);
    });

    it("accepts a long key within the limit", async () => {
      const store = await create();
      // About 900 characters: within 1024 even behind a test's prefix; segments under the usual 255-byte name limit.
      const key = Array.from({ length: 9 }, (_, i) => `${i}`.repeat(99)).join("/") + "/x".repeat(4);
      expect(key.length).toBeLessThanOrEqual(1024);
      await store.put(key, Buffer.from("long"), "text/plain");
      expect((await store.get(key))?.toString()).toBe("long");
    });

    it.each(BAD_KEYS.map((key) => [JSON.stringify(key).slice(0, 40), key]))("refuses the key %s with ObjectKeyError", async (_label, key) => {
      const store = await create();
      await expect(store.put(key, Buffer.from("x"), "text/plain")).rejects.toBeInstanceOf(ObjectKeyError);
      await expect(store.get(key)).rejects.toBeInstanceOf(ObjectKeyError);
    });
  });
}
