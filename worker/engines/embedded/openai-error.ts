import type { ContentfulStatusCode } from "hono/utils/http-status";
import { openAIErrorBody, type OpenAIErrorBody } from "../../../core/contracts/openai-error.ts";

/** OpenAI's error `type`s that this server produces. */
export type OpenAiErrorType = "invalid_request_error" | "server_error";

/**
 * The one error the embedded engine's routes throw for anything the caller did (or may not do);
 * `app.onError` turns it into OpenAI's `{error: {message, type, param, code}}` with its status.
 * Anything else that escapes a route is an engine failure: a 500 `server_error`.
 */
export class OpenAiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly type: OpenAiErrorType,
    message: string,
    readonly param: string | null = null,
    readonly code: string | null = null,
  ) {
    super(message);
  }

  static invalidRequest(message: string, param: string | null = null, code: string | null = null): OpenAiError {
    return new OpenAiError(400, "invalid_request_error", message, param, code);
  }

  toBody(): OpenAIErrorBody {
    return openAIErrorBody(this.message, this.type, this.code, this.param);
  }
}

/** Raised by the engine once it is closing: new and queued requests get a 503 instead of a decode. */
export class EngineClosingError extends OpenAiError {
  constructor() {
    super(503, "server_error", "the engine is shutting down", null, "engine_closing");
  }
}
