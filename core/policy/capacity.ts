import { z } from "zod";

/**
 * How many of the workers an endpoint's scaling step wants may start now, under the host's cap
 * (HEARTH_HOST_WORKER_CAP: what this provider's machine can run), the tenant's `maxWorkers`
 * (across all its endpoints) and its billing (core/policy/billing-hold.ts). Pure: counts in, a
 * number and a reason out. The rest of the demand waits for a later step and is reported as
 * throttled (RunPod's `/health` counter), with why.
 */
export const WAIT_REASONS = ["no_capacity", "quota", "billing"] as const;
export const waitReason = z.enum(WAIT_REASONS);
export type WaitReason = z.infer<typeof waitReason>;

/**
 * What the scheduler holds back for an endpoint, as it writes it for `/health`. `throttled` may be 0
 * with a reason: a tenant held by billing shows why even while nothing waits.
 */
export const capacityReport = z.object({ throttled: z.number().int().min(0), waitReason });
export type CapacityReport = z.infer<typeof capacityReport>;

export interface CapacityState {
  /** Workers the step wants to start. */
  want: number;
  /** Workers this provider runs now, every endpoint, starting ones included. */
  hostLive: number;
  hostCap: number;
  /** Workers of this endpoint's tenant now, every endpoint of it. */
  tenantLive: number;
  tenantCap: number;
  /** The tenant's billing holds its starts (zero balance, or its spend per hour reached). */
  billingHold?: boolean;
}

export interface CapacityDecision {
  start: number;
  throttled: number;
  /**
   * Why some demand waits; absent when none does, except `billing`, which is always given. The host's
   * cap is named before the tenant's quota: raising the quota would not help.
   */
  waitReason?: WaitReason;
}

export function admitStarts(s: CapacityState): CapacityDecision {
  if (s.billingHold) return { start: 0, throttled: s.want, waitReason: "billing" };
  const hostRoom = Math.max(0, s.hostCap - s.hostLive);
  const tenantRoom = Math.max(0, s.tenantCap - s.tenantLive);
  const start = Math.max(0, Math.min(s.want, hostRoom, tenantRoom));
  const throttled = Math.max(0, s.want - start);
  if (throttled === 0) return { start, throttled };
  return { start, throttled, waitReason: hostRoom < s.want ? "no_capacity" : "quota" };
}

/**
 * The default host cap of the local provider: a few workers per core (they mostly wait on Redis or
 * an engine), never under 16 so the test suite and `npm start` fit on a 2-core machine.
 */
export function defaultHostWorkerCap(cores: number): number {
  return Math.max(16, 4 * cores);
}
