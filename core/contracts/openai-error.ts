import { z } from "zod";

/** OpenAI's error body: what every OpenAI client parses (`error.message`, `error.type`, `error.code`, `error.param`). */
export interface OpenAIErrorBody {
  error: { message: string; type: string; code: string | null; param: string | null };
}

export function openAIErrorBody(message: string, type: string, code: string | null = null, param: string | null = null): OpenAIErrorBody {
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
 * An engine's own refusal of a request (its non-2xx answer), as a worker reports it: a FAILED job
 * whose `error` is this object's JSON. The API answers the OpenAI route with the same status and
 * body, so a prompt too long for the context is the engine's 400, not a 500.
 */
export const engineRefusal = z.object({
  message: z.string(),
  type: z.string(),
  code: z.string().nullable(),
  param: z.string().nullable(),
  status: z.number().int().min(400).max(599),
});
export type EngineRefusal = z.infer<typeof engineRefusal>;

/** The refusal in a job's `error`, or undefined when the error is anything else (a crash, a timeout). */
export function parseEngineRefusal(error: string | undefined): EngineRefusal | undefined {
  if (!error || !error.startsWith("{")) return undefined;
  try {
    const r = engineRefusal.safeParse(JSON.parse(error));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
