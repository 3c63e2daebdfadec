const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "CONNECTION_CLOSED", "CONNECTION_ENDED", "CONNECTION_DESTROYED", "CONNECT_TIMEOUT"]);

/**
 * True for errors that mean Redis or PostgreSQL could not be reached (ioredis without its offline
 * queue, or out of retries; postgres.js connection errors). These are answered 503, not 500: the
 * request was fine and may be retried.
 */
export function isBackendUnavailable(err: unknown): boolean {
  if (typeof err !== "object" || err === null) return false;
  const e = err as { name?: string; code?: string; message?: string };
  if (e.code && NETWORK_CODES.has(e.code)) return true;
  if (e.name === "MaxRetriesPerRequestError") return true;
  const m = e.message ?? "";
  return m.includes("enableOfflineQueue") || m.includes("Connection is closed") || m.includes("write EPIPE");
}
