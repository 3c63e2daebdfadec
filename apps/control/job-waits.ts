import { parseStreamId, type LogEntry } from "../../core/log/log-entry.ts";
import { BoundedMap } from "./bounded-map.ts";

/** Queued jobs remembered at once, all endpoints together, by default (some 100 bytes each). */
export const DEFAULT_MAX_QUEUED_JOBS = 100_000;

const msOf = (id: string): number => parseStreamId(id).ms;

/**
 * How long each job waited in its queue before it started, from the ids of its log entries: both
 * ends are on Redis' clock, never a host's. A wait starts at the job's acceptance (`accepted`, or
 * `added` for a job queued outside the API), its re-queueing (`requeued`: handed back by a draining
 * worker, or stalled) or its retry (`retried`), and ends at its `active` entry. The two ends usually
 * come in different batches (a job waits while the log is read), so each waiting job's queued time
 * is remembered until it starts, is removed or finishes: at most `maxQueued` of them, the oldest
 * forgotten past that. A job whose queueing this process never read (queued before it started) or
 * forgot is not observed: an observation missing, never a wrong one.
 */
export class JobWaits {
  private readonly queuedAt: BoundedMap<string, number>;

  constructor(maxQueued = DEFAULT_MAX_QUEUED_JOBS) {
    this.queuedAt = new BoundedMap(maxQueued);
  }

  /** Waiting jobs remembered now. */
  get remembered(): number {
    return this.queuedAt.size;
  }

  /** Jobs forgotten while still waiting, to keep the bound, since this process started. */
  get forgotten(): number {
    return this.queuedAt.evicted;
  }

  /** The waits (ms) that ended in these entries of one endpoint's log, in log order. */
  take(endpointId: string, entries: readonly LogEntry[]): number[] {
    const waits: number[] = [];
    // Job ids are the endpoint's: two endpoints' logs may hold the same one.
    const key = (jobId: string) => `${endpointId}\n${jobId}`;
    for (const e of entries) {
      switch (e.kind) {
        case "accepted":
        case "retried":
          this.queuedAt.set(key(e.p.jobId), msOf(e.id));
          break;
        case "added":
        case "requeued":
          this.queuedAt.set(key(e.jobId), msOf(e.id));
          break;
        case "active": {
          const at = this.queuedAt.get(key(e.jobId));
          if (at === undefined) break;
          this.queuedAt.delete(key(e.jobId));
          waits.push(Math.max(0, msOf(e.id) - at));
          break;
        }
        case "completed":
        case "failed":
        case "removed":
          this.queuedAt.delete(key(e.jobId));
          break;
        default:
          break;
      }
    }
    return waits;
  }
}
