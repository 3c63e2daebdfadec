import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { JobView } from "../../core/contracts/job-view.ts";

/** OpenAI's error body: what every OpenAI client parses (`error.message`, `error.type`, `error.code`). */
export interface OpenAIErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null };
}

export function openAIError(message: string, type: string, code: string | null = null, param: string | null = null): OpenAIErrorBody {
  return { error: { message, type, code, param } };
}

/** OpenAI's `type` for an HTTP status, as its API uses them. */
export function openAIErrorType(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/**
 * The HTTP answer for a job that did not complete. A worker relays an engine's own error as a
 * FAILED job whose `error` is the JSON of `{message, type, code, param, status}` (the engine's
 * status, e.g. 400 for a prompt longer than the context); anything else the worker reports is a
 * server error, and a job still running when the wait ended is a gateway timeout.
 */
export function jobFailure(view: JobView): { status: ContentfulStatusCode; body: OpenAIErrorBody } {
  switch (view.status) {
    case "FAILED": {
      const engine = parseEngineError(view.error);
      if (engine) return { status: engine.status, body: openAIError(engine.message, engine.type, engine.code, engine.param) };
      return { status: 500, body: openAIError(view.error ?? "the job failed", "server_error", "job_failed") };
    }
    case "TIMED_OUT":
      return { status: 504, body: openAIError(view.error ?? "the job timed out", "server_error", "timeout") };
    case "CANCELLED":
      return { status: 409, body: openAIError("the job was cancelled", "invalid_request_error", "cancelled") };
    default:
      return { status: 504, body: openAIError(`the job did not finish in time (it is ${view.status})`, "server_error", "timeout") };
  }
}

function parseEngineError(error: string | undefined): { status: ContentfulStatusCode; message: string; type: string; code: string | null; param: string | null } | undefined {
  if (!error || !error.startsWith("{")) return undefined;
  try {
    const e = JSON.parse(error) as Record<string, unknown>;
    if (typeof e.message !== "string" || typeof e.status !== "number" || e.status < 400 || e.status > 599) return undefined;
    return {
      status: e.status as ContentfulStatusCode,
      message: e.message,
      type: typeof e.type === "string" ? e.type : openAIErrorType(e.status),
      code: typeof e.code === "string" ? e.code : e.code === undefined || e.code === null ? null : String(e.code),
      param: typeof e.param === "string" ? e.param : null,
    };
  } catch {
    return undefined;
  }
}
