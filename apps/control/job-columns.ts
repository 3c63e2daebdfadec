import { toPgText } from "../../core/db/pg-text.ts";
import type { JobResult } from "../../core/queue/job-catalog.ts";

/** Outputs larger than this (as JSON) are not copied into Postgres: the object store keeps them (`output_ref`). */
export const MAX_INLINE_OUTPUT_BYTES = 256 * 1024;

/** The columns a job's finish sets (snake_case: they go to SQL as they are). */
export interface FinishColumns {
  status: string;
  worker_id?: string | null;
  error?: string | null;
  error_exact?: string | null;
  execution_time_ms?: number | null;
  output_json?: string | null;
  output_ref?: string | null;
  ttft_ms?: number | null;
  itl_ms?: number | null;
  prompt_tokens?: number | null;
  completion_tokens?: number | null;
}

export const EMPTY_FINISH: Required<Omit<FinishColumns, "status">> = {
  worker_id: null,
  error: null,
  error_exact: null,
  execution_time_ms: null,
  output_json: null,
  output_ref: null,
  ttft_ms: null,
  itl_ms: null,
  prompt_tokens: null,
  completion_tokens: null,
};

/** Postgres `integer` columns hold 32 bits; a value outside is kept out rather than failing the record. */
const int32 = (v: number | undefined): number | null => (v === undefined || !Number.isFinite(v) ? null : Math.max(-(2 ** 31), Math.min(2 ** 31 - 1, Math.round(v))));

/** An output's JSON text when it is too large to keep inline; undefined otherwise. */
export function largeOutputJson(r: JobResult): string | undefined {
  if (r.output === undefined) return undefined;
  const json = JSON.stringify(r.output);
  return json !== undefined && Buffer.byteLength(json) > MAX_INLINE_OUTPUT_BYTES ? json : undefined;
}

/**
 * The record's columns from the worker's envelope (the durations are on the worker's one clock).
 * `storedRef`: where the object store keeps a large output (JSON of core/objects' StoredObject);
 * without one a large output is only in Redis for its retention (`"redis"`).
 */
export function resultColumns(r: JobResult, storedRef?: string): FinishColumns {
  const error = r.error === undefined ? undefined : toPgText(r.error);
  let outputJson: string | null = null;
  let outputRef: string | null = null;
  if (r.output !== undefined) {
    // JSON text, not jsonb: jsonb refuses \u0000 and lone surrogates, which a job may legally return.
    const json = JSON.stringify(r.output);
    if (json !== undefined && Buffer.byteLength(json) <= MAX_INLINE_OUTPUT_BYTES) outputJson = json;
    else if (json !== undefined) outputRef = storedRef ?? "redis";
  }
  return {
    status: r.status,
    worker_id: toPgText(r.workerId).text,
    error: error?.text ?? null,
    error_exact: error?.exact ?? null,
    execution_time_ms: int32(r.finishedAt - r.startedAt),
    output_json: outputJson,
    output_ref: outputRef,
    ttft_ms: int32(r.generation?.ttftMs),
    itl_ms: r.generation?.itlMs ?? null,
    prompt_tokens: int32(r.generation?.promptTokens),
    completion_tokens: int32(r.generation?.completionTokens),
  };
}
