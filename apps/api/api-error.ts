import type { ContentfulStatusCode } from "hono/utils/http-status";

export interface IssueDetail {
  /** Dotted path of the offending field, e.g. `policy.ttl`. */
  path: string;
  message: string;
}

/**
 * The one error the API throws for anything the caller did (or may not do); `app.onError` turns it
 * into `{error, code, issues?, ...extra}` with its status. Anything else that escapes a route is a 500.
 */
export class ApiError extends Error {
  constructor(
    readonly status: ContentfulStatusCode,
    readonly code: string,
    message: string,
    readonly issues?: IssueDetail[],
    readonly headers?: Record<string, string>,
    /** Further fields of the error body (e.g. the balance of a 402). */
    readonly extra?: Record<string, unknown>,
  ) {
    super(message);
  }

  static notFound(what: string): ApiError {
    return new ApiError(404, "not_found", `${what} not found`);
  }
  static badRequest(message: string, issues?: IssueDetail[]): ApiError {
    return new ApiError(400, "invalid_request", message, issues);
  }
}

/** The body `app.onError` answers an ApiError with outside the OpenAI routes (the document's examples are built with it too). */
export function apiErrorBody(err: ApiError): Record<string, unknown> & { error: string; code: string; issues?: IssueDetail[] } {
  return { ...err.extra, error: err.message, code: err.code, ...(err.issues && { issues: err.issues }) };
}
