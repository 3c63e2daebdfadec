import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { ApiError } from "../api-error.ts";

/**
 * Refuses bodies over `maxBytes` with the API's JSON 413. A declared Content-Length is checked
 * from the header alone (Node's HTTP parser never delivers more than it declares), which leaves the
 * body to @hono/node-server's direct read; only a chunked body without a length goes through Hono's
 * `bodyLimit`, which counts as it streams. Touching `req.body` in the common case would make the
 * adapter build a full web `Request` with its streams: a fifth of the API's CPU under load.
 */
export function jsonBodyLimit(maxBytes: number): MiddlewareHandler {
  const mb = Math.round(maxBytes / (1024 * 1024));
  const tooLarge = () => new ApiError(413, "payload_too_large", `request body exceeds the ${mb} MB limit of this operation`);
  const streamed = bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw tooLarge();
    },
  });
  return async function jsonBodyLimitMiddleware(c, next) {
    const declared = c.req.header("content-length");
    if (declared === undefined) return streamed(c, next);
    if (Number(declared) > maxBytes) throw tooLarge();
    await next();
  };
}
