import { z } from "zod";
import { jobResult } from "./job-catalog.ts";

/** On the job-events channel: something happened to a job that a waiter may want. */
export const jobEvent = z.discriminatedUnion("type", [
  /** The job left the queue for good (finished, cancelled, expired): waiters re-read or use `result`. */
  /** `outputOmitted`: the result's output was left out (streamed, or large); read it from the job. */
  z.object({ type: z.literal("finished"), jobId: z.string(), endpointId: z.string(), result: jobResult.optional(), outputOmitted: z.boolean().optional() }),
  /** New stream chunks were buffered; `chunks` are those same chunks, in order, for live relays. */
  z.object({ type: z.literal("chunk"), jobId: z.string(), endpointId: z.string(), chunks: z.array(z.object({ output: z.unknown() })).optional() }),
]);
export type JobEvent = z.infer<typeof jobEvent>;

/** On an endpoint's control channel: to its workers (cancel); on the API channel: to API replicas (drop cached keys/endpoints). */
export const controlMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("cancel"), jobId: z.string(), endpointId: z.string() }),
  z.object({ type: z.literal("invalidate-key"), keyHash: z.string() }),
  z.object({ type: z.literal("invalidate-endpoint"), endpointId: z.string() }),
]);
export type ControlMessage = z.infer<typeof controlMessage>;

/** On the wake channel: an endpoint has new demand; the scheduler converges it now. */
export const wakeMessage = z.object({ endpointId: z.string() });

/** Parses a pub/sub payload; a malformed message is dropped (returns undefined), never thrown into a listener. */
export function parseMessage<S extends z.ZodType>(schema: S, raw: string): z.output<S> | undefined {
  try {
    const r = schema.safeParse(JSON.parse(raw));
    return r.success ? r.data : undefined;
  } catch {
    return undefined;
  }
}
