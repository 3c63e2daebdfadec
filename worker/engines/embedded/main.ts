import { existsSync } from "node:fs";
import type { Server } from "node:http";
import { availableParallelism } from "node:os";
import { parseArgs } from "node:util";
import { z } from "zod";
import type { Log } from "../../../core/log/process-log.ts";

/*
 * Composition root of the embedded engine process: a model served over the OpenAI HTTP API, run
 * and supervised by the worker like llama-server or vLLM would be.
 *
 *   node dist/worker/engines/embedded/main.js --model <path.gguf> --host 127.0.0.1 --port <n>   (npm run build)
 *     --parallel <n> --ctx-size <n> [--threads <n>] [--served-model-name <name>]
 *
 * Serves vLLM's sleep mode routes too (`POST /sleep`, `POST /wake_up`, `GET /is_sleeping`: sleep-mode.ts).
 * Other code builds this command line: keep the flag names. Bad flags exit 2; a model that cannot
 * be loaded or a port that cannot be bound exits 1; SIGTERM/SIGINT stop cleanly and exit 0.
 */

const USAGE =
  "usage: main.ts --model <path.gguf> --port <n> [--host 127.0.0.1] --ctx-size <tokens per request> [--parallel 1] [--threads <n>] [--served-model-name <name>]";

const count = (max: number) =>
  z
    .string()
    .regex(/^\d+$/, "must be a whole number")
    .transform(Number)
    .pipe(z.number().int().min(1).max(max));

const flagsSchema = z.object({
  model: z.string({ error: "is required" }).refine(existsSync, "no such file"),
  host: z.string().min(1).default("127.0.0.1"),
  port: count(65_535),
  parallel: count(256).default(1),
  // Required: a model's trained context (often 128k tokens) times --parallel is more KV cache than
  // most machines have; the operator chooses.
  "ctx-size": count(1 << 20),
  /** Default: node-llama-cpp's choice for this machine. */
  threads: count(1024).optional(),
  "served-model-name": z.string().min(1).optional(),
});

function parseFlags(argv: string[]): z.output<typeof flagsSchema> {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: {
      model: { type: "string" },
      host: { type: "string" },
      port: { type: "string" },
      parallel: { type: "string" },
      "ctx-size": { type: "string" },
      threads: { type: "string" },
      "served-model-name": { type: "string" },
    },
  });
  const result = flagsSchema.safeParse(values);
  if (result.success) return result.data;
  throw new TypeError(result.error.issues.map((i) => `--${i.path.join(".")}: ${i.message}`).join("\n"));
}

/** The process's log once its module is loaded (right after the binding starts loading); until then, stderr. */
let log: { line: Log; errorFields: (err: unknown) => Record<string, unknown> } | undefined;

async function main(): Promise<void> {
  let flags: z.output<typeof flagsSchema>;
  try {
    flags = parseFlags(process.argv.slice(2));
  } catch (err) {
    console.error(`${err instanceof Error ? err.message : String(err)}\n${USAGE}`);
    process.exit(2);
  }

  // node-llama-cpp's own default, max(cores, 4), oversubscribes a small machine where this
  // server's JS thread, the worker and the API share the cores: on 2 cores the tiny model ran at
  // ~4 tokens/s with 4 threads, ~100 with 2 and ~800 with 1. Half the cores leaves room for them.
  const threads = flags.threads ?? Math.max(1, Math.floor(availableParallelism() / 2));
  // Imported only now: node-llama-cpp takes a while to load, and a bad flag should fail at once.
  // Its binding starts loading before anything else of this server: that load test-loads the
  // binary in a child process (about 0.4 s here), and this process's own modules (the HTTP server,
  // the routes, the log) load meanwhile instead of before it.
  const { getLlama } = await import("node-llama-cpp");
  const { llamaOptions } = await import("./llama-generator.ts");
  const binding = getLlama(llamaOptions(threads));
  binding.catch(() => {}); // awaited by the first load, which reports its failure
  const [{ createEmbeddedEngine }, { sleepable }, { serve }, { processLog, logLevel, errorFields: fields }] = await Promise.all([
    import("./embedded-server.ts"),
    import("./sleep-mode.ts"),
    import("@hono/node-server"),
    import("../../../core/log/process-log.ts"),
  ]);
  // HEARTH_LOG_LEVEL: passed on by the worker (core/engine/engine-environment.ts); a bad value means info, not a failed engine.
  const engineLog = processLog("embedded-engine", { level: logLevel.catch("info").parse(process.env.HEARTH_LOG_LEVEL?.toLowerCase() || "info") });
  log = { line: engineLog, errorFields: fields };
  let first = true;
  const load = () => {
    // The binding loaded above serves the first load; a load after sleep gets its own.
    const llama = first ? binding : undefined;
    first = false;
    return createEmbeddedEngine({
      modelPath: flags.model,
      parallel: flags.parallel,
      contextSize: flags["ctx-size"],
      threads,
      servedModelName: flags["served-model-name"],
      log: engineLog,
      ...(llama && { llama }),
    });
  };
  const engine = await load();
  // vLLM's sleep mode: the worker puts the engine to sleep (model unloaded) before it is paused.
  const served = sleepable(engine, load, engineLog);

  // Listening only after the model is loaded: `/health` answering means ready to serve.
  const server = serve({ fetch: served.app.fetch, hostname: flags.host, port: flags.port }, (info) => {
    engineLog({
      msg: "listening",
      url: `http://${flags.host}:${info.port}`,
      model: engine.servedModelName,
      parallel: flags.parallel,
      ctx_size: engine.contextSize,
      threads,
      chat_format: engine.chatFormat,
    });
  }) as Server;
  server.on("error", (err) => {
    engineLog({ level: "error", msg: "cannot serve", error: err.message });
    process.exit(1);
  });

  let closing = false;
  const shutdown = async (signal: string) => {
    if (closing) return;
    closing = true;
    engineLog({ msg: "shutting down", signal });
    const closed = new Promise<void>((resolve) => server.close(() => resolve())); // stop accepting
    // Running generations end now (503, or an error event on a stream); then the model is freed.
    await served.close();
    // Their last bytes go out within moments; close each connection as soon as it falls idle (a
    // keep-alive client would otherwise hold the server open), and any left after 2 s regardless.
    const sweep = setInterval(() => server.closeIdleConnections(), 20);
    await Promise.race([closed, new Promise((r) => setTimeout(r, 2000).unref())]);
    clearInterval(sweep);
    server.closeAllConnections();
    engineLog({ msg: "stopped" });
    process.exit(0);
  };
  for (const signal of ["SIGTERM", "SIGINT"] as const) {
    process.on(signal, () => {
      shutdown(signal).catch((err: unknown) => {
        engineLog({ level: "error", msg: "shutdown failed", ...fields(err) });
        process.exit(1);
      });
    });
  }
}

main().catch((err: unknown) => {
  // Before the log's module is loaded (node-llama-cpp failed to import), a plain line on stderr.
  if (log) log.line({ level: "fatal", msg: "cannot start", ...log.errorFields(err) });
  else console.error(`cannot start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
