const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "CONNECT_TIMEOUT"]);

/**
 * True for errors that mean Redis or PostgreSQL could not be reached (ioredis without its offline
 * queue, or out of retries; postgres.js connection errors). These are answered 503, not 500: the
 * request was fine and may be retried.
 */
export function isBackendUnavailable(err: unknown): boolean {
  // drizzle wraps the driver's error ("Failed query: …") with the connection error as its cause.
  for (let e: unknown = err, depth = 0; typeof e === "object" && e !== null && depth < 5; depth++) {
    const x = e as { name?: string; code?: string; message?: string; cause?: unknown };
    if (x.code && NETWORK_CODES.has(x.code)) return true;
    // Postgres refusing for its own state: 08 connection exception, 53 insufficient resources,
    // 57 operator intervention (57P01 shutting down, 57P03 still starting up after a restart).
    if (x.code && /^(08|53|57)[0-9A-Z]{3}$/.test(x.code)) return true;
    if (x.name === "MaxRetriesPerRequestError") return true;
    const m = x.message ?? "";
    if (m.includes("enableOfflineQueue") || m.includes("Connection is closed") || m.includes("write EPIPE")) return true;
    e = x.cause;
  }
  return false;
}
