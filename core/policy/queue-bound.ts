/**
 * Back-pressure by capacity: the most jobs an endpoint's queue may hold before new ones get 429,
 * `multiple × workersMax × per-worker concurrency` (its capacity: jobs it can run at once at full
 * scale), never below `floor` (so a small endpoint may still queue a burst). Undefined when the
 * multiple is 0 (off). RunPod's own rule is alike: 429 past 50 queued jobs and `workersMax × 500`.
 */
export function queueBound(multiple: number, floor: number, workersMax: number, concurrency: number): number | undefined {
  if (multiple <= 0) return undefined;
  return Math.max(floor, Math.ceil(multiple * Math.max(1, workersMax) * Math.max(1, concurrency)));
}
