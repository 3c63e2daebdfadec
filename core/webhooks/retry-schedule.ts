import { z } from "zod";

/**
 * When webhook attempts happen. Pure: the delivery loop passes the attempts made so far, the
 * receiver's Retry-After and a random source, and gets the delay before the next attempt.
 */

/** Delays in seconds before each attempt: 8 attempts over about 27 h (at least Svix's schedule). */
export const DEFAULT_RETRY_SCHEDULE_S: readonly number[] = [0, 5, 300, 1800, 7200, 18000, 36000, 36000];

/** Jitter applied to every delay: ±10 %, so receivers that failed together are not retried together. */
export const RETRY_JITTER = 0.1;

/** The longest Retry-After honoured (1 h): a receiver cannot park its deliveries for days. */
export const MAX_RETRY_AFTER_MS = 3_600_000;

const MAX_ATTEMPTS = 100;
const MAX_DELAY_S = 7 * 24 * 3600;

/**
 * `HEARTH_WEBHOOK_RETRY_SCHEDULE`: comma-separated delays in seconds before each attempt (decimals
 * allowed, for compressed schedules in tests), one to 100 of them, each at most 7 days. Unset or
 * empty: DEFAULT_RETRY_SCHEDULE_S. A bad value stops the process at start (see parseEnv).
 */
export const webhookRetrySchedule = z.preprocess(
  (v) => (v === "" || v === undefined ? DEFAULT_RETRY_SCHEDULE_S.join(",") : v),
  z.string().transform((s, ctx): number[] => {
    const parts = s.split(",").map((p) => p.trim());
    const delays: number[] = [];
    for (const part of parts) {
      const n = /^\d+(\.\d+)?$/.test(part) ? Number(part) : NaN;
      if (!Number.isFinite(n) || n > MAX_DELAY_S) {
        ctx.addIssue({ code: "custom", message: `${JSON.stringify(part)}: every delay must be a number of seconds from 0 to ${MAX_DELAY_S}` });
        return z.NEVER;
      }
      delays.push(n);
    }
    if (delays.length > MAX_ATTEMPTS) {
      ctx.addIssue({ code: "custom", message: `at most ${MAX_ATTEMPTS} attempts` });
      return z.NEVER;
    }
    return delays;
  }),
);

/**
 * ms to wait before the next attempt, `attemptsMade` having been made (0: the first attempt);
 * undefined when the schedule is exhausted. The scheduled delay gets ±RETRY_JITTER (`random()` in
 * [0, 1); a zero delay stays zero) and is never shorter than the receiver's `retryAfterMs`.
 */
export function nextAttemptDelayMs(schedule: readonly number[], attemptsMade: number, retryAfterMs: number | undefined, random: () => number): number | undefined {
  if (!Number.isInteger(attemptsMade) || attemptsMade < 0) throw new RangeError(`attemptsMade must be a non-negative integer, got ${attemptsMade}`);
  const delayS = schedule[attemptsMade];
  if (delayS === undefined) return undefined;
  const jittered = Math.max(0, Math.round(delayS * 1000 * (1 - RETRY_JITTER + 2 * RETRY_JITTER * random())));
  return Math.max(jittered, retryAfterMs ?? 0);
}

/**
 * A `Retry-After` header in ms from `nowMs`: delay-seconds or an HTTP date, at most
 * MAX_RETRY_AFTER_MS, a date in the past as 0; undefined when absent or unreadable.
 */
export function parseRetryAfterMs(header: string | undefined, nowMs: number): number | undefined {
  const value = header?.trim();
  if (value === undefined || value === "") return undefined;
  let ms: number;
  if (/^\d+$/.test(value)) ms = Number(value) * 1000;
  else {
    // HTTP dates (IMF-fixdate and the two obsolete forms) start with a day name; Date.parse alone takes "7.5" for a date.
    const at = /^[A-Za-z]{3}/.test(value) ? Date.parse(value) : NaN;
    if (Number.isNaN(at)) return undefined;
    ms = at - nowMs;
  }
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(0, ms));
}
