import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { timingSafeEqual } from "node:crypto";
import { jsonDepth, MAX_JSON_DEPTH } from "../../../core/contracts/safe-text.ts";
import {
  doneBody,
  meaningOf,
  pingedJobIds,
  RUNPOD_MAX_PROGRESS_BYTES,
  RUNPOD_MAX_RESULT_BYTES,
  streamBody,
  type DoneMeaning,
} from "../../../core/engine/runpod-protocol.ts";
import type { JobBook } from "./job-book.ts";

export interface WorkerGatewayOptions {
  endpointId: string;
  workerId: string;
  /** The worker's token: `Authorization` must be exactly it (the SDK sends it raw), or `Bearer` it. */
  token: string;
  book: JobBook;
  /** The most jobs the worker may hold (`engine.concurrency`): a larger `batch_size` is refused. */
  concurrency: number;
  /** How long an empty take or stop poll is held before 204 (ms). Default 30000; the SDK waits 90 s. */
  holdMs?: number;
  /** Called on every take: the first one means the worker is up. */
  onTake?: () => void;
  /** Every ping: the ids the worker says it runs, and `status=unhealthy` details when it sends them. */
  onPing?: (ping: { jobIds: string[]; unhealthy?: { check: string; reason: string } }) => void;
  /** A job-done said `stopPod: true`: stop the worker once this job is finished. */
  onStopPod?: () => void;
  /** A failed job's Python traceback, for the job's log. */
  onTraceback?: (jobId: string, traceback: string) => void;
}

export interface WorkerGateway {
  origin: string;
  close(): Promise<void>;
}

type Op = "job-take" | "job-take-batch" | "job-done" | "job-stream" | "ping" | "job-stop";
const METHODS: Readonly<Record<Op, "GET" | "POST">> = {
  "job-take": "GET",
  "job-take-batch": "GET",
  "job-done": "POST",
  "job-stream": "POST",
  ping: "GET",
  "job-stop": "GET",
};

class GatewayError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/**
 * RunPod's worker-side API (§3.2–3.4) for one worker, on a loopback port of its own Hearth worker:
 * `GET /v2/:ep/job-take/:worker`, `GET /v2/:ep/job-take-batch/:worker?batch_size=N`,
 * `POST /v2/:ep/job-done/:worker/:job?isStream=`, `POST /v2/:ep/job-stream/:worker/:job`,
 * `GET /v2/:ep/ping/:worker?job_id=`, `GET /v2/:ep/job-stop/:worker`. The token is this worker's
 * alone and dies with the gateway, so it opens nothing else; errors are JSON `{"error": "..."}`.
 */
export async function startWorkerGateway(options: WorkerGatewayOptions): Promise<WorkerGateway> {
  const holdMs = options.holdMs ?? 30_000;
  const token = Buffer.from(options.token);
  const closing = new AbortController();

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      const status = err instanceof GatewayError ? err.status : 500;
      const message = err instanceof Error ? err.message : String(err);
      if (res.headersSent) return void res.destroy();
      // A body we refused is not read on: the connection closes after the answer instead.
      if (status === 400) res.setHeader("connection", "close");
      send(res, status, { error: message });
    });
  });
  // Long-polls are held up to holdMs; the SDK's own client timeout is 90 s.
  server.requestTimeout = Math.max(120_000, holdMs * 2);
  server.headersTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://gateway");
    const [, v2, endpointId, op, workerId, jobId, ...rest] = url.pathname.split("/").map(safeDecode);
    if (v2 !== "v2" || !isOp(op) || workerId === undefined || rest.length > 0 || (jobId !== undefined) !== (op === "job-done" || op === "job-stream")) {
      throw new GatewayError(404, "no such route on the worker gateway");
    }
    if (req.method !== METHODS[op]) throw new GatewayError(405, `${op} takes ${METHODS[op]}`);
    if (!authorized(req.headers.authorization)) throw new GatewayError(401, "this worker's token is required in Authorization");
    if (endpointId !== options.endpointId || workerId !== options.workerId) throw new GatewayError(403, "this token is for another endpoint or worker");

    // The connection closing (the SDK gave up, the worker died) ends a held poll; made for the polls alone.
    const heldUntilGone = () => AbortSignal.any([closing.signal, closedSignal(res)]);
    switch (op) {
      case "job-take":
      case "job-take-batch": {
        const max = op === "job-take" ? 1 : batchSize(url.searchParams.get("batch_size"));
        options.onTake?.();
        const gone = heldUntilGone();
        const jobs = await options.book.take(max, holdMs, gone);
        if (jobs.length === 0) return void send(res, 204);
        // Handed over only once written: jobs of an answer the worker never got go back in line.
        if (gone.aborted) return void options.book.giveBack(jobs);
        res.once("close", () => {
          if (!res.writableFinished) options.book.giveBack(jobs);
        });
        return void send(res, 200, op === "job-take" ? jobs[0] : jobs);
      }
      case "job-stop": {
        const ids = await options.book.stopsWanted(holdMs, heldUntilGone());
        return void (ids.length === 0 ? send(res, 204) : send(res, 200, { jobsToStop: ids }));
      }
      case "ping": {
        const status = url.searchParams.get("status");
        options.onPing?.({
          jobIds: pingedJobIds(url.searchParams.get("job_id")),
          ...(status === "unhealthy" && { unhealthy: { check: url.searchParams.get("check") ?? "", reason: url.searchParams.get("reason") ?? "" } }),
        });
        return void send(res, 200, {});
      }
      case "job-stream": {
        const { body } = await readJson(req);
        const chunk = streamBody.safeParse(body);
        if (!chunk.success) throw new GatewayError(400, 'a stream post is {"output": <chunk>}');
        const sink = heldSink(jobId!);
        await sink.chunk(chunk.data.output);
        return void send(res, 200, {});
      }
      case "job-done": {
        const { body, bytes } = await readJson(req);
        const parsed = doneBody.safeParse(body);
        if (!parsed.success) throw new GatewayError(400, 'a job-done body is a JSON object: {"output": ...} or {"error": "..."}');
        const meaning = meaningOf(parsed.data);
        const sink = heldSink(jobId!);
        if (meaning.kind === "progress") {
          if (bytes > RUNPOD_MAX_PROGRESS_BYTES) throw new GatewayError(400, `a progress update is at most ${RUNPOD_MAX_PROGRESS_BYTES} bytes`);
          sink.progress(meaning.output);
          return void send(res, 200, {});
        }
        options.book.finish(jobId!);
        if (meaning.kind === "failed" && meaning.traceback !== undefined) options.onTraceback?.(jobId!, meaning.traceback);
        sink.done(meaning as Exclude<DoneMeaning, { kind: "progress" }>);
        if (meaning.stopPod) options.onStopPod?.();
        return void send(res, 200, {});
      }
    }
  }

  function heldSink(jobId: string) {
    const sink = options.book.held(jobId);
    if (!sink) throw new GatewayError(409, `job ${jobId} is not held by this worker (never taken, already done, or stopped)`);
    return sink;
  }

  function batchSize(raw: string | null): number {
    const n = raw === null ? NaN : Number(raw);
    if (!Number.isInteger(n) || n < 1) throw new GatewayError(400, "batch_size must be a positive integer");
    if (n > options.concurrency) throw new GatewayError(400, `batch_size ${n} is over this worker's concurrency (${options.concurrency})`);
    return n;
  }

  function authorized(header: string | undefined): boolean {
    if (header === undefined) return false;
    const given = Buffer.from(header.startsWith("Bearer ") ? header.slice(7) : header);
    return given.length === token.length && timingSafeEqual(given, token);
  }

  return {
    origin: `http://127.0.0.1:${port}`,
    async close() {
      closing.abort();
      options.book.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * The body as JSON whatever its Content-Type: the SDK says form-urlencoded and sends JSON (§3.3).
 * Over 20 MB, not JSON, or nested deeper than the API accepts: 400, as RunPod answers.
 */
async function readJson(req: IncomingMessage): Promise<{ body: unknown; bytes: number }> {
  const declared = Number(req.headers["content-length"]);
  if (Number.isFinite(declared) && declared > RUNPOD_MAX_RESULT_BYTES) throw new GatewayError(400, `a result is at most ${RUNPOD_MAX_RESULT_BYTES} bytes`);
  const parts: Buffer[] = [];
  let bytes = 0;
  for await (const part of req as AsyncIterable<Buffer>) {
    bytes += part.length;
    if (bytes > RUNPOD_MAX_RESULT_BYTES) throw new GatewayError(400, `a result is at most ${RUNPOD_MAX_RESULT_BYTES} bytes`);
    parts.push(part);
  }
  let body: unknown;
  try {
    body = JSON.parse(Buffer.concat(parts).toString("utf8"));
  } catch {
    throw new GatewayError(400, "the body is not JSON");
  }
  if (jsonDepth(body) > MAX_JSON_DEPTH) throw new GatewayError(400, `the body nests deeper than ${MAX_JSON_DEPTH} levels`);
  return { body, bytes };
}

function send(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) {
    res.writeHead(status).end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
}

/** Aborts when the response's connection closes before the answer was written. */
function closedSignal(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once("close", () => controller.abort());
  return controller.signal;
}

function isOp(op: string | undefined): op is Op {
  return op !== undefined && Object.hasOwn(METHODS, op);
}

function safeDecode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}
