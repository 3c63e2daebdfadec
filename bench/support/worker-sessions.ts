/** The cold-start phases each worker records in its session (GET /api/v1/endpoints/:id/workers), each on one process's monotonic clock. */
export const SESSION_PHASES = ["provisionMs", "processStartMs", "weightsFetchMs", "engineLoadMs", "firstJobMs"] as const;

/** A session's `coldStart` as the API lists it (core/log/log-entry.ts `coldStartReport`). */
export type SessionColdStart = Record<string, unknown> & { kind?: string; cacheHit?: boolean };

/** The worker's session `coldStart` as the API lists it, once the records hold its first job's (undefined past `timeoutMs`). */
export async function sessionColdStart(url: string, apiKey: string, endpointId: string, workerId: string, timeoutMs = 10_000): Promise<SessionColdStart | undefined> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const res = await fetch(`${url}/api/v1/endpoints/${endpointId}/workers`, { headers: { authorization: `Bearer ${apiKey}` } });
    const body = (await res.json()) as { items?: { id: string; coldStart: SessionColdStart | null }[] };
    const cs = body.items?.find((w) => w.id === workerId)?.coldStart;
    if (cs && typeof cs.firstJobMs === "number") return cs;
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}

/** Its phases as table keys: `session processStart (cold)` → ms. */
export function sessionTimings(cs: SessionColdStart | undefined): Record<string, number> {
  if (!cs) return {};
  return Object.fromEntries(SESSION_PHASES.flatMap((k) => (typeof cs[k] === "number" ? [[`session ${k.replace(/Ms$/, "")} (${String(cs.kind)})`, cs[k] as number]] : [])));
}
