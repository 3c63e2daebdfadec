import { randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { Readable } from "node:stream";
import { CreateBucketCommand, GetObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { planRanges, rangeHeader } from "../core/weights/range-plan.ts";
import { ModelStore } from "../worker/models/model-store.ts";
import { S3ModelSource } from "../worker/models/s3-model-source.ts";
import { compare, type BenchContext, type BenchResult } from "./support/bench-result.ts";
import { S3RVER_CREDENTIALS, startS3rverProcess } from "./support/s3rver-process.ts";

const NAME = "weights-pull";
const MB = 1024 * 1024;
const SIZE = 256 * MB;
const PART = 8 * MB;
const LANES = 8;
const RUNS = 5;

/** The floor: the same object as parallel ranged GETs (same parts, same lanes) written at their offsets; no hash, no cache. */
async function plainParallel(client: S3Client, bucket: string, key: string, file: string): Promise<void> {
  const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
  const ranges = planRanges(head.ContentLength ?? 0, PART);
  const fd = await open(file, "w");
  let next = 0;
  const lane = async () => {
    while (next < ranges.length) {
      const r = ranges[next++]!;
      const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key, Range: rangeHeader(r) }));
      let pos = r.start;
      for await (const chunk of res.Body as Readable) {
        await fd.write(chunk as Buffer, 0, (chunk as Buffer).length, pos);
        pos += (chunk as Buffer).length;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: LANES }, lane));
  } finally {
    await fd.close();
  }
}

/**
 * An S3 pull through the weights cache (ModelStore: HEAD, parallel ranged GETs hashed as they
 * arrive, sha256 and ETag-MD5 checked, renamed into place) against a plain parallel download of
 * the same 256 MiB object from the same s3rver, after one unmeasured round, alternating (and
 * alternating the order), RUNS of each; the median of each
 * side's throughput is compared. A second row does the same with the opt-in ETag MD5 check.
 * No network: s3rver on loopback, in its own process.
 */
export async function weightsPull(ctx: BenchContext): Promise<BenchResult[]> {
  const dir = await mkdtemp(join(tmpdir(), "hearth-bench-weights-"));
  const server = await startS3rverProcess(join(dir, "s3rver"));
  const client = new S3Client({ endpoint: server.endpoint, region: "us-east-1", forcePathStyle: true, credentials: S3RVER_CREDENTIALS, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED" });
  const problems: string[] = [];
  const hearth: number[] = [];
  const withEtag: number[] = [];
  const floor: number[] = [];
  try {
    await client.send(new CreateBucketCommand({ Bucket: "bench" }));
    const source = join(dir, "model.bin");
    const fh = await open(source, "w");
    for (let off = 0; off < SIZE; off += 16 * MB) await fh.write(randomBytes(16 * MB));
    await fh.close();
    await client.send(new PutObjectCommand({ Bucket: "bench", Key: "model.bin", Body: createReadStream(source), ContentLength: SIZE }));
    await rm(source);
    ctx.log(`${SIZE / MB} MiB object in s3rver; ${RUNS} runs per side, ${LANES} lanes of ${PART / MB} MiB`);

    const plain = async (run: number, measured: boolean) => {
      const file = join(dir, `plain-${run}`);
      const t = performance.now();
      await plainParallel(client, "bench", "model.bin", file);
      if (measured) floor.push(SIZE / MB / ((performance.now() - t) / 1000));
      if ((await stat(file)).size !== SIZE) problems.push(`plain run ${run}: wrong size`);
      await rm(file);
    };
    const cached = async (run: number, verifyEtag: boolean, measured: boolean) => {
      const cacheDir = join(dir, `cache-${run}`);
      const s3 = new S3ModelSource({ client, buckets: "any", partBytes: PART, rangeConcurrency: LANES, verifyEtag });
      const store = new ModelStore({ cacheDir, sources: [s3] });
      const t = performance.now();
      const path = await store.materialise("s3://bench/model.bin");
      if (measured) (verifyEtag ? withEtag : hearth).push(SIZE / MB / ((performance.now() - t) / 1000));
      if ((await stat(path)).size !== SIZE) problems.push(`cache run ${run}: wrong size`);
      await store.close();
      await rm(cacheDir, { recursive: true, force: true });
    };
    // One unmeasured round warms s3rver (its JIT) and the page cache of its file for every side alike.
    await plain(-1, false);
    await cached(-1, false, false);
    for (let run = 0; run < RUNS; run++) {
      // Order alternates so that drift in the machine's load does not favour one side.
      const sides = [() => plain(run, true), () => cached(run, false, true), () => cached(run, true, true)];
      for (const side of run % 2 === 0 ? sides : sides.reverse()) await side();
      ctx.log(`run ${run}: plain ${floor.at(-1)!.toFixed(0)} MiB/s, through the cache ${hearth.at(-1)!.toFixed(0)} MiB/s, with the ETag MD5 check ${withEtag.at(-1)!.toFixed(0)} MiB/s`);
    }
  } finally {
    client.destroy();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
  const round = (x: number) => Math.round(x * 10) / 10;
  const row = (name: string, what: string, runs: number[], checks: string): BenchResult => ({
    name,
    comparison: compare(`median throughput, S3 pull through the weights cache${what} vs plain parallel download`, "MiB/s", round(median(runs)), round(median(floor)), { op: ">=", value: 0.8 }),
    problems,
    warnings: [],
    settings: { objectMiB: SIZE / MB, partMiB: PART / MB, lanes: LANES, runs: RUNS, server: "s3rver (child process, loopback)", checks },
    hearth: { runsMiBs: runs.map(round) },
    floor: { runsMiBs: floor.map(round) },
    cpu: {},
  });
  return [
    row(NAME, "", hearth, "sha256 (the cache key; checked against ChecksumSHA256 or #sha256= when given)"),
    row(`${NAME}-etag`, " with HEARTH_MODEL_VERIFY_ETAG", withEtag, "sha256 + ETag MD5"),
  ];
}
