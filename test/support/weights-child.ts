/**
 * A process that materialises one `s3://` model through a ModelStore, as a worker does at boot:
 * `node --import tsx test/support/weights-child.ts <cacheDir> <s3 endpoint> <uri>`. Prints the
 * store's log lines and then `{"msg":"materialised","path":…}` (or `{"msg":"failed",…}`) as JSON lines.
 */
import { ModelStore } from "../../worker/models/model-store.ts";
import { S3ModelSource } from "../../worker/models/s3-model-source.ts";

const [cacheDir, endpoint, uri] = process.argv.slice(2) as [string, string, string];
const source = new S3ModelSource({
  endpoint,
  region: "us-east-1",
  forcePathStyle: true,
  credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" },
  buckets: "any",
  partBytes: 256 * 1024,
  rangeConcurrency: 4,
});
const store = new ModelStore({ cacheDir, sources: [source], progressIntervalMs: 100, log: (e) => console.log(JSON.stringify(e)) });
try {
  console.log(JSON.stringify({ msg: "materialised", path: await store.materialise(uri) }));
} catch (err) {
  console.log(JSON.stringify({ msg: "failed", code: (err as { code?: string }).code, error: (err as Error).message }));
}
source.close();
