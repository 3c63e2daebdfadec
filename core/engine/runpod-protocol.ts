import { z } from "zod";

/*
 * RunPod's worker-side protocol as the `runpod` Python SDK speaks it (v1.12.0; the contract's
 * §3.1–3.6): the environment a platform injects, and the bodies a worker posts. Pure: the gateway
 * that serves it is worker/engines/runpod/worker-gateway.ts.
 */

/** RunPod's own default ping period (ms), which the SDK uses when `RUNPOD_PING_INTERVAL` is unset. */
export const RUNPOD_PING_INTERVAL_MS = 10_000;

/** The largest job-done or job-stream body accepted: RunPod answers 400 above 20 MB (worker-comfyui #129). */
export const RUNPOD_MAX_RESULT_BYTES = 20 * 1024 * 1024;

/** The largest `progress_update` body: a status line, not a result. */
export const RUNPOD_MAX_PROGRESS_BYTES = 256 * 1024;

export interface RunPodWorkerIdentity {
  /** The gateway's origin, e.g. `http://127.0.0.1:40123`. */
  gatewayOrigin: string;
  endpointId: string;
  workerId: string;
  /** The worker's own token (sent back raw as `Authorization`). */
  token: string;
  pingIntervalMs: number;
  /** RunPod's `gpu` query parameter: the GPU type, or `cpu`. */
  gpu: string;
  /** RUNPOD_POD_HOSTNAME: reported by the SDK in its error info. */
  hostname: string;
  /** No GPU is visible to the worker: the SDK's GPU check cannot pass (RUNPOD_SKIP_GPU_CHECK). */
  withoutGpu: boolean;
}

/**
 * The variables the SDK reads (§3.1), all of which Hearth sets and an endpoint may not
 * (core/contracts/endpoint-env.ts). The URL templates keep the SDK's placeholders: it replaces
 * `$ID` in the take URL with the worker id, and `$RUNPOD_POD_ID` and `$ID` in the others with the
 * worker and job ids. Each already holds a `?`, because the SDK appends `&job_in_progress=`,
 * `&batch_size=` and `&isStream=` by string concatenation.
 */
export function runpodWorkerEnv(w: RunPodWorkerIdentity): Record<string, string> {
  const base = `${w.gatewayOrigin}/v2/${encodeURIComponent(w.endpointId)}`;
  const gpu = `gpu=${encodeURIComponent(w.gpu)}`;
  return {
    RUNPOD_WEBHOOK_GET_JOB: `${base}/job-take/$ID?${gpu}`,
    RUNPOD_WEBHOOK_POST_OUTPUT: `${base}/job-done/$RUNPOD_POD_ID/$ID?${gpu}`,
    RUNPOD_WEBHOOK_POST_STREAM: `${base}/job-stream/$RUNPOD_POD_ID/$ID?${gpu}`,
    RUNPOD_WEBHOOK_PING: `${base}/ping/$RUNPOD_POD_ID?${gpu}`,
    RUNPOD_PING_INTERVAL: String(w.pingIntervalMs),
    RUNPOD_AI_API_KEY: w.token,
    RUNPOD_POD_ID: w.workerId,
    RUNPOD_POD_HOSTNAME: w.hostname,
    RUNPOD_ENDPOINT_ID: w.endpointId,
    ...(w.withoutGpu && { RUNPOD_SKIP_GPU_CHECK: "true" }),
  };
}

/**
 * A job-done body (§3.3): `{"output": X}`, `{"output": X, "error": "msg"}`, `{"error": "<JSON
 * string>"}`, `{"output": X, "stopPod": true}`, `{}`, or a progress report `{"status":
 * "IN_PROGRESS", "output": X}`. Keys the SDK may add later pass through unread.
 */
export const doneBody = z
  .object({
    output: z.unknown().optional(),
    error: z.unknown().optional(),
    status: z.string().max(64).optional(),
    stopPod: z.boolean().optional(),
  })
  .loose();
export type DoneBody = z.infer<typeof doneBody>;

/** A job-stream body: one generator yield. */
export const streamBody = z.object({ output: z.unknown() }).loose();

/** What a job-done body means for the job. */
export type DoneMeaning =
  | { kind: "progress"; output: unknown }
  | { kind: "completed"; output: unknown; stopPod: boolean }
  | { kind: "failed"; error: string; output: unknown; traceback?: string; stopPod: boolean };

export function meaningOf(body: DoneBody): DoneMeaning {
  if (body.status === "IN_PROGRESS") return { kind: "progress", output: body.output };
  const stopPod = body.stopPod === true;
  if (body.error === undefined || body.error === null || body.error === "") return { kind: "completed", output: body.output, stopPod };
  const failure = unpackError(body.error);
  return { kind: "failed", error: failure.message, output: body.output, ...(failure.traceback !== undefined && { traceback: failure.traceback }), stopPod };
}

const sdkError = z.object({ error_type: z.string().optional(), error_message: z.string(), error_traceback: z.string().optional() }).loose();

/**
 * The error of a failed job as `/status` shows it. A handler that raised reaches us as a JSON
 * string of `{error_type, error_message, error_traceback, hostname, worker_id, runpod_version}`:
 * unpacked to `ValueError: message` (the traceback goes to the job's log, not to the caller). A
 * handler that returned `{"error": ...}` reaches us with that value as it was.
 */
export function unpackError(error: unknown): { message: string; traceback?: string } {
  if (typeof error !== "string") return { message: JSON.stringify(error) ?? String(error) };
  let parsed: unknown;
  try {
    parsed = JSON.parse(error);
  } catch {
    return { message: error };
  }
  const e = sdkError.safeParse(parsed);
  if (!e.success) return { message: error };
  // Python's str(type(e)) is `<class 'ValueError'>`: the name is what a reader wants.
  const type = e.data.error_type === undefined ? undefined : (/^<class '([^']+)'>$/.exec(e.data.error_type)?.[1] ?? e.data.error_type);
  return { message: type ? `${type}: ${e.data.error_message}` : e.data.error_message, ...(e.data.error_traceback !== undefined && { traceback: e.data.error_traceback }) };
}

/** The ping's `job_id`: the comma-separated ids the worker says it is running. */
export function pingedJobIds(param: string | null): string[] {
  if (param === null || param === "") return [];
  return param.split(",").filter((id) => id !== "");
}
