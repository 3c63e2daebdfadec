import { parseStreamId } from "../log/log-entry.ts";
import type { MeterTransition } from "./session-meter.ts";

/** States the meter reads wherever they fall: the start, pauses, and the end. */
const ALWAYS_KEPT = new Set(["requested", "paused", "exited", "lost"]);

/**
 * A session's transitions without the ones that cannot change what it is billed, in log order,
 * duplicates dropped: a busy worker flips idle ⇄ running with every job, and its billing record
 * must not grow with them. The meter reads the start (`requested`, or the first entry), the first
 * `idle`/`running` after it (the end of boot), a pause and the first entry after it, and the exits; so
 * `meterSession` of the compacted list equals that of the whole list for every `asOf`
 * (core/billing/compact-transitions.test.ts checks it).
 */
export function compactTransitions(transitions: readonly MeterTransition[]): MeterTransition[] {
  const sorted = transitions
    .map((t) => ({ t, id: parseStreamId(t.seq) }))
    .sort((a, b) => a.id.ms - b.id.ms || a.id.n - b.id.n);
  const kept: MeterTransition[] = [];
  let ready = false;
  // As the meter reads it: a pause lasts until an entry of another state (a repeated `requested` is ignored).
  let paused = false;
  for (const { t } of sorted) {
    const last = kept.at(-1);
    if (last?.seq === t.seq) continue;
    const readies = t.state === "idle" || t.state === "running";
    if (last === undefined || ALWAYS_KEPT.has(t.state) || paused || (readies && !ready)) {
      if (t.state === "paused") paused = true;
      else if (t.state !== "requested") paused = false;
      kept.push(t);
      // Readiness counts after a start: the first entry (a start when no `requested` is in view) or a `requested`.
      if (last === undefined || t.state === "requested") ready = false;
      else if (readies) ready = true;
    }
  }
  return kept;
}
