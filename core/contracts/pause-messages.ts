import { z } from "zod";

/*
 * What a local provider and its worker say to each other over the worker's IPC channel when the
 * worker is paused (snapshot pool) and resumed. The provider asks; the worker answers once it has
 * done its part (before a pause: its BullMQ worker closed, its engine asleep, `paused` logged), and
 * only then does the provider stop the process group (SIGSTOP). Parsed on both sides: a message that
 * does not parse is ignored.
 */
export const pauseRequest = z.discriminatedUnion("type", [z.object({ type: z.literal("hearth:pause") }), z.object({ type: z.literal("hearth:resume") })]);
export type PauseRequest = z.infer<typeof pauseRequest>;

export const pauseReply = z.discriminatedUnion("type", [
  /** Ready to be stopped: no job in flight, no job lock held, `paused` logged. */
  z.object({ type: z.literal("hearth:paused") }),
  /** Not paused (a job in flight, draining, still booting): the worker goes on as it was. */
  z.object({ type: z.literal("hearth:pause-refused"), reason: z.string().max(500) }),
  /** Taking jobs again. */
  z.object({ type: z.literal("hearth:resumed") }),
]);
export type PauseReply = z.infer<typeof pauseReply>;
