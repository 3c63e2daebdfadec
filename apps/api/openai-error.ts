import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { JobView } from "../../core/contracts/job-view.ts";
import { openAIErrorBody, openAIErrorType, parseEngineRefusal, type OpenAIErrorBody } from "../../core/contracts/openai-error.ts";
import type { ApiError } from "./api-error.ts";
import { RateLimitError } from "./services/rate-limiter.ts";

/**
 * The HTTP answer for a job that did not complete: an engine's own refusal keeps its status and
 * body (see `engineRefusal`); anything else the worker reports is a server error, and a job still
 * running when the wait ended is a gateway timeout.
 */
export function jobFailure(view: JobView): { status: ContentfulStatusCode; body: OpenAIErrorBody } {
  switch (view.status) {
    case "FAILED": {
      const refusal = parseEngineRefusal(view.error);
      if (refusal) return { status: refusal.status as ContentfulStatusCode, body: openAIErrorBody(refusal.message, refusal.type, refusal.code, refusal.param) };
      return { status: 500, body: openAIErrorBody(view.error ?? "the job failed", "server_error", "job_failed") };
    }
    case "TIMED_OUT":
      return { status: 504, body: openAIErrorBody(view.error ?? "the job timed out", "server_error", "timeout") };
    case "CANCELLED":
      return { status: 409, body: openAIErrorBody("the job was cancelled", "invalid_request_error", "cancelled") };
    default:
      return { status: 504, body: openAIErrorBody(`the job did not finish in time (it is ${view.status})`, "server_error", "timeout") };
  }
}

/**
 * The body `app.onError` answers an ApiError with on the OpenAI routes: OpenAI's shape, `param` the
 * first offending field; a rate limit names its kind (`requests`, `tokens`) in `type` and no param,
 * as OpenAI's own do. The document's examples of those routes are built with it too.
 */
export function openAIErrorOf(err: ApiError): OpenAIErrorBody {
  if (err instanceof RateLimitError) return openAIErrorBody(err.message, err.kind, err.code, null);
  return openAIErrorBody(err.message, openAIErrorType(err.status), err.code, err.issues?.[0]?.path ?? null);
}
