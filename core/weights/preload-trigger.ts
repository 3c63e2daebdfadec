/**
 * Whether the scheduler should warm an endpoint's model now: the first time it sees the endpoint
 * (created, or a scheduler that just started), and whenever its desired worker count rises above
 * what it last was. `previousDesired` is undefined for an endpoint not seen before.
 */
export function shouldPreload(previousDesired: number | undefined, desired: number): boolean {
  return previousDesired === undefined || desired > previousDesired;
}
