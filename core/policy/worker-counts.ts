import type { HealthView } from "../contracts/job-view.ts";
import type { WorkerHeartbeat } from "../contracts/worker-state.ts";

/**
 * RunPod's six worker counters, and `paused` (the snapshot pool: frozen, taking no work, not billed,
 * resumed before a new worker starts), from heartbeats at `now`. A heartbeat older than `staleMs` is a
 * worker that stopped reporting: unhealthy until the scheduler reaps it. `ready` counts workers
 * that could take a job now (idle, or running below their concurrency).
 */
export function countWorkers(heartbeats: WorkerHeartbeat[], now: number, staleMs: number): HealthView["workers"] {
  const c = { idle: 0, initializing: 0, ready: 0, running: 0, throttled: 0, unhealthy: 0, paused: 0 };
  for (const hb of heartbeats) {
    // Frozen by design: a paused worker's heartbeat is as old as its pause, and it is not unhealthy.
    if (hb.state === "paused") {
      c.paused++;
      continue;
    }
    if (now - hb.at > staleMs || hb.state === "unhealthy") {
      c.unhealthy++;
      continue;
    }
    switch (hb.state) {
      case "requested":
      case "initializing":
        c.initializing++;
        break;
      case "idle":
        c.idle++;
        c.ready++;
        break;
      case "running":
        c.running++;
        if (hb.running < hb.concurrency) c.ready++;
        break;
      default:
        break; // draining and stopped workers take no work and are on their way out
    }
  }
  return c;
}
