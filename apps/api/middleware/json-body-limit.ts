import type { Context, Next } from "hono";
import { bodyLimit } from "hono/body-limit";
import { ApiError } from "../api-error.ts";

const MB = 1024 * 1024;
const sizeText = (bytes: number) => (bytes % MB === 0 ? `${bytes / MB} MB` : `${bytes} bytes`);

/**
 * Refuses a body over `maxBytes` with the API's JSON 413 (`why` says whose limit it is). A declared
 * Content-Length is checked from the header alone (Node's HTTP parser never delivers more than it
 * declares), which leaves the body to @hono/node-server's direct read; only a chunked body without a
 * length goes through Hono's `bodyLimit`, which counts as it streams. Touching `req.body` in the
 * common case would make the adapter build a full web `Request` with its streams: a fifth of the
 * API's CPU under load.
 */
const tooLarge = (maxBytes: number, why: string) => new ApiError(413, "payload_too_large", `request body exceeds ${why} (${sizeText(maxBytes)})`);

export async function limitBody(c: Context, next: Next, maxBytes: number, why: string): Promise<void | Response> {
  const declared = c.req.header("content-length");
  if (declared === undefined) {
    const streamed = bodyLimit({
      maxSize: maxBytes,
      onError: () => {
        throw tooLarge(maxBytes, why);
      },
    });
    return streamed(c, next);
  }
  if (Number(declared) > maxBytes) throw tooLarge(maxBytes, why);
  await next();
}
