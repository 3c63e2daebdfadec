import { z } from "zod";
import { jobResult } from "../queue/job-catalog.ts";
import { workerState } from "../contracts/worker-state.ts";
import { GUARDRAIL_RULES } from "../contracts/guardrails.ts";

/**
 * The event log of an endpoint is one Redis stream: BullMQ's own events stream of the endpoint's
 * queue. BullMQ's scripts append to it atomically with every job transition they make (`added`,
 * `waiting`, `active`, `completed`, `failed`, `removed`, `stalled`…); Hearth appends its own
 * entries (`event` = `hearth:…`, payload JSON in field `d`) in the same MULTI or Lua script as the
 * change they record. Entries are ordered by their stream id, which Redis assigns from its own
 * clock: the sequence readers order by, and the time billing trusts.
 *
 * A job's acceptance needs no entry of its own: its BullMQ name is its acceptance record (JSON,
 * `acceptedJobName`), which BullMQ's add script writes into its `added` entry atomically with
 * the job. Workers take every job whatever its name.
 */
export const HEARTH_EVENTS = {
  /** Why the BullMQ `removed` entry that follows this one for the job happened. */
  removing: "hearth:removing",
  /** A finished job was re-queued under the same id (`/retry`). */
  retried: "hearth:retried",
  /** A worker changed state. */
  worker: "hearth:worker",
  /** A guardrail check found something (core/guardrails): its rule and action, never the matched text. Not projected (yet): read from the stream. */
  guardrail: "hearth:guardrail",
} as const;

export const acceptedPayload = z.object({
  jobId: z.string(),
  tenantId: z.string(),
  sync: z.boolean(),
  lowPriority: z.boolean(),
  webhook: z.string().optional(),
  webhookV2: z.string().optional(),
  retries: z.number().int().min(0),
  /** The submitting host's clock, for humans only; the entry's id dates the acceptance. */
  submittedAt: z.number(),
  executionTimeoutMs: z.number().int().positive(),
  /** The job's Idempotency-Key hash, if it was given one. */
  idempotencyKey: z.string().optional(),
  /** The trace the job belongs to (W3C trace id of the submitting request). */
  traceId: z.string().regex(/^[0-9a-f]{32}$/).optional(),
  /** For the audit log (few bytes: this rides every job): the API key that submitted it, */
  keyId: z.string().optional(),
  /** the client's socket address, */
  source: z.string().optional(),
  /** and the endpoint's revision (its `updated_at`, ms), by which the control plane names the model it ran on. */
  epRev: z.number().int().optional(),
});
export type AcceptedPayload = z.infer<typeof acceptedPayload>;

/** The BullMQ name of an accepted job: its acceptance record (JSON escapes NUL and lone surrogates). */
export function acceptedJobName(p: AcceptedPayload): string {
  return JSON.stringify(p);
}

export const removalReason = z.enum(["cancelled", "purged", "expired"]);
export type RemovalReason = z.infer<typeof removalReason>;
export const removingPayload = z.object({
  jobId: z.string(),
  reason: removalReason,
  /** A job with a webhook takes its input along: its hash is gone once removed, and the webhook carries it. */
  input: z.unknown().optional(),
});

export const guardrailPayload = z.object({
  direction: z.enum(["input", "output"]),
  rule: z.enum(GUARDRAIL_RULES),
  action: z.enum(["block", "redact", "flag", "allow"]),
  /** Matches of the rule in the one check. */
  count: z.number().int().min(1),
  /** The job checked (output checks; input checks run before a job exists). */
  jobId: z.string().optional(),
  /** An external guard's own rule name (`[a-z0-9_.:-]{1,64}`), when it gave one. */
  guardRule: z.string().max(64).optional(),
  /** Which process checked. */
  by: z.enum(["api", "worker"]),
});
export type GuardrailPayload = z.infer<typeof guardrailPayload>;

export const retriedPayload = z.object({ jobId: z.string(), retries: z.number().int().min(0) });

const spanMs = z.number().int().min(0).max(7 * 86_400_000);

/** How a worker came to be ready: from nothing, with its weights already cached, from the paused pool, or already up. */
export const START_KINDS = ["cold", "cache-warm", "resumed", "warm"] as const;

/**
 * A worker's cold start, phase by phase, each a span of one process's monotonic clock (never two
 * hosts' timestamps subtracted): `provisionMs` the scheduler's (its request to the provider's spawn,
 * handed to the worker as HEARTH_PROVISION_MS), the rest the worker's own. Reported on its first
 * ready transition; `firstJobMs` (ready → its first job finished) on the transition after that job.
 */
export const coldStartReport = z.object({
  kind: z.enum(START_KINDS).optional(),
  provisionMs: spanMs.optional(),
  /** Node's start to the runtime's first line (module loading included); for a prestarted process, its assignment to that line. */
  processStartMs: spanMs.optional(),
  /** The process was booted ahead of demand and assigned to this worker (scheduler/providers/prestarted-workers.ts). */
  prestarted: z.boolean().optional(),
  weightsFetchMs: spanMs.optional(),
  /** The weights were in the local cache: no bytes fetched. */
  cacheHit: z.boolean().optional(),
  /** Restoring the engine's compile caches from a snapshot (asking, downloading, checking, extracting), when its profile declares cache directories. */
  engineCacheRestoreMs: spanMs.optional(),
  /** A snapshot filled the engine's cache directories. */
  engineCacheHit: z.boolean().optional(),
  /** The engine's start, weights fetch and engine cache restore excluded. */
  engineLoadMs: spanMs.optional(),
  firstJobMs: spanMs.optional(),
});
export type ColdStartReport = z.infer<typeof coldStartReport>;

export const workerPayload = z.object({
  workerId: z.string(),
  state: workerState,
  /** Fixed when the session starts (`requested`). */
  tenantId: z.string().optional(),
  provider: z.string().optional(),
  gpuType: z.string().optional(),
  /** The engine spec hash it was started with (core/policy/rolling.ts), on `requested`. */
  specHash: z.string().max(64).optional(),
  /** Its cold start's phases (see `coldStartReport`). */
  coldStart: coldStartReport.optional(),
  /** Why it is draining, exited or lost. */
  reason: z.string().optional(),
  exitCode: z.number().int().optional(),
  /** Who logged an `exited`: the worker just before its process ends, or the scheduler once its provider saw the process gone. */
  by: z.enum(["worker", "scheduler"]).optional(),
  /**
   * On the worker's first transition out of `initializing`: ms its engine spent fetching weights
   * (model download or cache fill), a span of the worker's own monotonic clock. Not billed.
   */
  weightsFetchMs: z.number().int().min(0).max(7 * 86_400_000).optional(),
  /**
   * ms on Redis' clock the transition really happened, when not at the entry's own time: a `lost`
   * worker ends at its last heartbeat as received.
   */
  at: z.number().optional(),
});
export type WorkerPayload = z.infer<typeof workerPayload>;

/** One parsed log entry; `other` is a BullMQ event the projections do not use. */
export type LogEntry =
  | { kind: "accepted"; id: string; p: AcceptedPayload }
  | { kind: "removing"; id: string; p: z.infer<typeof removingPayload> }
  | { kind: "retried"; id: string; p: z.infer<typeof retriedPayload> }
  | { kind: "worker"; id: string; p: WorkerPayload }
  /** BullMQ stored a job not queued by the API (no acceptance record in its name). */
  | { kind: "added"; id: string; jobId: string }
  | { kind: "active"; id: string; jobId: string }
  /** Back in the queue after being active: handed back by a draining worker, or stalled. */
  | { kind: "requeued"; id: string; jobId: string }
  | { kind: "completed"; id: string; jobId: string; result: z.infer<typeof jobResult> }
  | { kind: "failed"; id: string; jobId: string; reason: string }
  | { kind: "removed"; id: string; jobId: string }
  | { kind: "other"; id: string; event: string };

/** An entry that cannot be understood: set aside as a dead letter with the reason, never retried blindly. */
export class InvalidLogEntry extends Error {
  readonly code = "INVALID_LOG_ENTRY";
}

const fieldsOf = (raw: string[]): Map<string, string> => {
  const m = new Map<string, string>();
  for (let i = 0; i + 1 < raw.length; i += 2) m.set(raw[i]!, raw[i + 1]!);
  return m;
};

function payload<S extends z.ZodType>(schema: S, f: Map<string, string>): z.output<S> {
  let json: unknown;
  try {
    json = JSON.parse(f.get("d") ?? "");
  } catch {
    throw new InvalidLogEntry("payload is not JSON");
  }
  const r = schema.safeParse(json);
  if (!r.success) throw new InvalidLogEntry(`payload: ${z.prettifyError(r.error)}`);
  return r.data;
}

function jobIdOf(f: Map<string, string>): string {
  const jobId = f.get("jobId");
  if (!jobId) throw new InvalidLogEntry("entry names no jobId");
  return jobId;
}

/** Parses one stream entry; throws `InvalidLogEntry` for one that claims a kind and does not fit it. */
export function parseLogEntry(id: string, raw: string[]): LogEntry {
  const f = fieldsOf(raw);
  const event = f.get("event") ?? "";
  switch (event) {
    case HEARTH_EVENTS.removing:
      return { kind: "removing", id, p: payload(removingPayload, f) };
    case HEARTH_EVENTS.retried:
      return { kind: "retried", id, p: payload(retriedPayload, f) };
    case HEARTH_EVENTS.worker:
      return { kind: "worker", id, p: payload(workerPayload, f) };
    case "added": {
      const jobId = jobIdOf(f);
      const name = f.get("name") ?? "";
      // A job queued without the API (a test, a script) has a plain name: it is only `added`.
      if (!name.startsWith("{")) return { kind: "added", id, jobId };
      let json: unknown;
      try {
        json = JSON.parse(name);
      } catch {
        throw new InvalidLogEntry("job name (its acceptance record) is not JSON");
      }
      const r = acceptedPayload.safeParse(json);
      if (!r.success) throw new InvalidLogEntry(`job name (its acceptance record): ${z.prettifyError(r.error)}`);
      if (r.data.jobId !== jobId) throw new InvalidLogEntry(`acceptance record names job ${r.data.jobId}, the entry ${jobId}`);
      return { kind: "accepted", id, p: r.data };
    }
    case "active":
      return { kind: "active", id, jobId: jobIdOf(f) };
    case "waiting":
      // `waiting` after `added` is the job's first queueing (the accepted entry covers it); after
      // `active` it went back to the queue; after `completed`/`failed` it is a retry (see `retried`).
      return f.get("prev") === "active" ? { kind: "requeued", id, jobId: jobIdOf(f) } : { kind: "other", id, event };
    case "completed": {
      const jobId = jobIdOf(f);
      let value: unknown;
      try {
        value = JSON.parse(f.get("returnvalue") ?? "null");
      } catch {
        throw new InvalidLogEntry("returnvalue is not JSON");
      }
      const r = jobResult.safeParse(value);
      if (!r.success) throw new InvalidLogEntry(`returnvalue: ${z.prettifyError(r.error)}`);
      return { kind: "completed", id, jobId, result: r.data };
    }
    case "failed":
      return { kind: "failed", id, jobId: jobIdOf(f), reason: f.get("failedReason") ?? "failed" };
    case "removed":
      return { kind: "removed", id, jobId: jobIdOf(f) };
    default:
      return { kind: "other", id, event };
  }
}

/** The fields of a Hearth entry, for `XADD <log> * ...fields`. */
export function hearthEntry(event: (typeof HEARTH_EVENTS)[keyof typeof HEARTH_EVENTS], p: unknown): [string, string, string, string] {
  // JSON.stringify escapes NUL and lone surrogates, so the payload survives Redis (which ioredis
  // would otherwise hand UTF-8 with the surrogate replaced) and Postgres unchanged.
  return ["event", event, "d", JSON.stringify(p)];
}

/** A stream id `<ms>-<n>` as its two numbers; ids compare by ms, then n. */
export function parseStreamId(id: string): { ms: number; n: number } {
  const dash = id.indexOf("-");
  const ms = Number(id.slice(0, dash));
  const n = Number(id.slice(dash + 1));
  if (dash < 0 || !Number.isSafeInteger(ms) || !Number.isSafeInteger(n)) throw new InvalidLogEntry(`not a stream id: ${id}`);
  return { ms, n };
}

export function compareStreamIds(a: string, b: string): number {
  const x = parseStreamId(a);
  const y = parseStreamId(b);
  return x.ms - y.ms || x.n - y.n;
}
