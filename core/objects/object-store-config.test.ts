import { describe, expect, it } from "vitest";
import { platformBucket } from "./object-store-config.ts";
import { presignPut, presignPutOfLength } from "./s3-presign.ts";

describe("platformBucket's presigned uploads", () => {
  it("carry no checksum of a body they have not seen (the SDK's default signs an empty body's CRC32, which S3 refuses for the real one)", async () => {
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = "test-id";
    process.env.AWS_SECRET_ACCESS_KEY = "test-secret";
    try {
      const place = platformBucket({ outputBucket: "s3://outputs/hearth", s3Region: "us-east-1", s3Endpoint: "http://127.0.0.1:9", objectDir: "/unused" })!;
      for (const url of [await presignPut(place, "jobs/a.json", 60), await presignPutOfLength(place, "jobs/b.bin", 5, 60)]) {
        const query = new URL(url).searchParams;
        expect(query.get("X-Amz-Signature")).toMatch(/^[0-9a-f]{64}$/);
        expect([...query.keys()].filter((k) => k.toLowerCase().startsWith("x-amz-checksum") || k.toLowerCase() === "x-amz-sdk-checksum-algorithm")).toEqual([]);
      }
    } finally {
      process.env.AWS_ACCESS_KEY_ID = saved.id;
      process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
    }
  });
});
