import type { Context } from "hono";
import { getConnInfo } from "@hono/node-server/conninfo";

/**
 * The client's socket address as the Node server saw it (behind a proxy, the proxy's: forwarded
 * headers are the client's to forge, so the audit log does not take them). Null where there is no
 * Node socket (an in-memory `app.request()`, another runtime).
 */
export function clientAddress(c: Context): string | null {
  try {
    return getConnInfo(c).remote.address ?? null;
  } catch {
    return null;
  }
}
