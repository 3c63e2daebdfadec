/**
 * Composition root of a preload process: the scheduler runs it (scheduler/weights-preloader.ts)
 * with a worker's environment when an endpoint appears or its demand rises, so that the model is
 * in the weights cache, and its file in the page cache, before a worker asks for it. It fetches
 * through the same ModelStore and sources as a worker (same policy, same credentials, the same
 * host-wide lock: a worker that starts meanwhile waits for this download instead of making its
 * own), reads the model's files once, and exits: 0 when the model is ready, 1 otherwise.
 */
import { open, readdir, stat } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { z } from "zod";
import { loadWorkerConfig } from "../core/config/process-configs.ts";
import { loadWorkerSecrets } from "../core/config/endpoint-secrets-env.ts";
import { parseEnv } from "../core/config/parse-env.ts";
import { engineSpec } from "../core/contracts/endpoint.ts";
import { processLog } from "../core/log/process-log.ts";
import { createModelSources } from "./models/model-sources.ts";
import { ModelStore } from "./models/model-store.ts";

async function main(): Promise<void> {
  const config = loadWorkerConfig(process.env);
  const log = processLog("preload", { level: config.logLevel, fields: { endpointId: config.endpointId } });
  const spec = parseEnv(z.object({ HEARTH_ENGINE: z.string().transform((s) => JSON.parse(s) as unknown).pipe(engineSpec) }), process.env, "preload").HEARTH_ENGINE;
  if (spec.kind !== "openai") return;
  const secrets = loadWorkerSecrets(process.env, { runpodWorker: false });
  const sources = createModelSources({
    modelDirs: config.modelDirs,
    allow: config.modelAllowList,
    s3: config.s3,
    verifyEtag: config.modelVerifyEtag,
    ...(secrets.modelCredentials && { tenantCredentials: secrets.modelCredentials }),
  });
  const store = new ModelStore({
    cacheDir: config.modelCacheDir,
    sources: sources.sources,
    ...(config.modelCacheBytes !== undefined && { budgetBytes: config.modelCacheBytes }),
    log,
  });
  try {
    const started = performance.now();
    const path = await store.materialise(spec.model);
    const fetchedMs = Math.round(performance.now() - started);
    const warmed = await warmPageCache(path);
    log({ msg: "model preloaded", fetchedMs, pageCacheBytes: warmed, pageCacheMs: Math.round(performance.now() - started - fetchedMs) });
  } finally {
    await store.close();
    sources.close();
  }
}

/**
 * Reads every file of the model once, so an engine that mmaps it (llama.cpp's GGUF) finds its pages
 * in memory. Bytes read; nothing is kept.
 */
async function warmPageCache(path: string): Promise<number> {
  const st = await stat(path);
  if (st.isDirectory()) {
    let total = 0;
    for (const name of await readdir(path)) total += await warmPageCache(join(path, name));
    return total;
  }
  if (!st.isFile()) return 0;
  const fh = await open(path, "r");
  const buf = Buffer.allocUnsafe(4 * 1024 * 1024);
  let total = 0;
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, total);
      if (bytesRead === 0) return total;
      total += bytesRead;
    }
  } finally {
    await fh.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    processLog("preload", { destination: process.stderr })({ level: "error", msg: "preload failed", error: err instanceof Error ? err.message : String(err), code: (err as { code?: string }).code });
    process.exit(1);
  },
);
