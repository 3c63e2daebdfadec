/**
 * Whether the scheduler should warm an endpoint's model now: the first time it sees the endpoint
 * (created, or a scheduler that just started), and whenever its desired worker count rises above
 * what it last was, unless it starts a worker this very moment (`startsNow`): that worker fetches
 * the model at once through the same cache and host lock, and a preload beside it would only take
 * CPU and disk from its cold start. What it warms ahead is demand that must wait (the host's cap, a
 * start delay). `previousDesired` is undefined for an endpoint not seen before.
 */
export function shouldPreload(previousDesired: number | undefined, desired: number, startsNow = 0): boolean {
  if (startsNow > 0) return false;
  return previousDesired === undefined || desired > previousDesired;
}
