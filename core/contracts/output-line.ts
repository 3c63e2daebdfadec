import { z } from "zod";

/**
 * One line a worker process printed, as the scheduler keeps it for `GET …/workers/:id/logs` and
 * `GET /api/v1/jobs/:id/logs`: when the scheduler read it (ms), from which stream, and the line
 * itself (a worker's JSON log line, or plain text from a crash or a handler's own writes).
 */
export const outputLine = z.object({
  at: z.number(),
  stream: z.enum(["stdout", "stderr"]),
  line: z.string(),
});
export type OutputLine = z.infer<typeof outputLine>;

/** Lines kept per worker session and per job; older ones are dropped. */
export const OUTPUT_LINES_KEPT = 1000;
/** A longer line is cut to this many characters (and ends with `…`). */
export const OUTPUT_LINE_MAX_CHARS = 8192;
/** How long lines stay readable after the last one was written, s. */
export const OUTPUT_TTL_SECONDS = 24 * 3600;
