import type { ArrivalSample } from "../core/policy/warm-pool.ts";

/** How long samples are kept (ms): the warm pool's default window. */
const KEEP_MS = 600_000;

/**
 * Jobs that arrived on each endpoint, per observation: the difference between two readings of a
 * running total (jobs finished, cancelled, queued and in progress). The first reading of an
 * endpoint is the baseline; a total that went down (stats reset, purged queue) starts a new one.
 */
export class ArrivalHistory {
  private readonly totals = new Map<string, number>();
  private readonly samples = new Map<string, ArrivalSample[]>();

  record(endpointId: string, total: number, now: number): void {
    const before = this.totals.get(endpointId);
    this.totals.set(endpointId, total);
    const list = this.samples.get(endpointId) ?? [];
    while (list.length > 0 && now - list[0]!.at >= KEEP_MS) list.shift();
    if (before !== undefined && total > before) list.push({ at: now, count: total - before });
    this.samples.set(endpointId, list);
  }

  history(endpointId: string): readonly ArrivalSample[] {
    return this.samples.get(endpointId) ?? [];
  }

  /** Endpoints not in `live` are forgotten. */
  keep(live: ReadonlySet<string>): void {
    for (const id of this.totals.keys()) if (!live.has(id)) this.totals.delete(id);
    for (const id of this.samples.keys()) if (!live.has(id)) this.samples.delete(id);
  }
}
