import { z } from "zod";

/*
 * Prestarted workers (scheduler/providers/prestarted-workers.ts): a local provider keeps worker
 * processes booted ahead of demand, Node and the worker's first modules loaded but bound to no
 * endpoint, tenant or credential. The first start that needs a worker hands one its whole
 * environment over the IPC channel, and from then on it is that worker and no other, as if it had
 * been spawned with that environment. Parsed on both sides: a message that does not parse is ignored.
 */

/** Set (to "1") in a prestarted process's environment: wait for the assignment before reading any configuration. */
export const PRESTARTED_VAR = "HEARTH_WORKER_PRESTARTED";

/** Provider → prestarted process: the environment it would have been spawned with. */
export const workerAssignment = z.object({ type: z.literal("hearth:assign"), env: z.record(z.string(), z.string()) });
export type WorkerAssignment = z.infer<typeof workerAssignment>;

/** Worker → provider: it takes jobs now (its cold start is over, so booting the next spare no longer competes with it). */
export const workerReady = z.object({ type: z.literal("hearth:ready") });
