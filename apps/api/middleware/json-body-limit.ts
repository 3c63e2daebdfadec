import type { MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { ApiError } from "../api-error.ts";

/** Hono's body limit, answering an oversize body with the API's JSON 413 (it counts streamed bodies too). */
export function jsonBodyLimit(maxBytes: number): MiddlewareHandler {
  const mb = Math.round(maxBytes / (1024 * 1024));
  return bodyLimit({
    maxSize: maxBytes,
    onError: () => {
      throw new ApiError(413, "payload_too_large", `request body exceeds the ${mb} MB limit of this operation`);
    },
  });
}
