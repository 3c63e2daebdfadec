import { BillingError } from "./billing-error.ts";

/**
 * Integer money. Amounts are micro-dollars (1 USD = 1_000_000) held in JS numbers, which are exact
 * only up to 2^53 − 1 (about 9 billion dollars). A product of two safe integers can leave that
 * range and be silently rounded, so products go through BigInt and are checked before they come
 * back; sums of safe integers are at most 2^54 in magnitude, so `Number.isSafeInteger` on the
 * result is enough to catch an overflow there.
 */

const MAX = BigInt(Number.MAX_SAFE_INTEGER);
const MIN = -MAX;

/** a × b exactly, or `BillingError("AMOUNT_OVERFLOW")`. */
export function mulMicros(a: number, b: number): number {
  const r = BigInt(a) * BigInt(b);
  if (r > MAX || r < MIN) throw new BillingError("AMOUNT_OVERFLOW", `${a} × ${b} µ$ is not a safe integer`);
  return Number(r);
}

/** a + b exactly, or `BillingError("AMOUNT_OVERFLOW")`. */
export function addMicros(a: number, b: number): number {
  const r = a + b;
  if (!Number.isSafeInteger(r)) throw new BillingError("AMOUNT_OVERFLOW", `${a} + ${b} µ$ is not a safe integer`);
  return r;
}

/** ceil(n / d) for a non-negative safe integer n and positive integer d, without a float quotient. */
export function ceilDiv(n: number, d: number): number {
  const r = n % d;
  return (n - r) / d + (r > 0 ? 1 : 0);
}

/** floor(n / d) for a safe integer n (negative too) and positive integer d. */
export function floorDiv(n: number, d: number): number {
  const r = ((n % d) + d) % d;
  return (n - r) / d;
}
