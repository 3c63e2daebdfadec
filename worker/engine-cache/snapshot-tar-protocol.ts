import { z } from "zod";

/** What the worker asks of its snapshot process (snapshot-tar-main.ts), as argv[2]. */
const dirs = z.array(z.object({ id: z.string().regex(/^[a-z0-9-]{1,64}$/), path: z.string().startsWith("/") })).max(16);

export const tarJob = z.discriminatedUnion("mode", [
  z.object({ mode: z.literal("create"), dirs, maxBytes: z.number().int().min(1) }),
  z.object({ mode: z.literal("extract"), dirs, maxBytes: z.number().int().min(1) }),
]);
export type TarJob = z.infer<typeof tarJob>;

/** Its answer, one JSON line on fd 3, read back with zod like anything that crosses a process boundary. */
export const tarReport = z.union([
  z.object({ ok: z.literal(true), mode: z.literal("create"), dirs: z.array(z.string()), files: z.number().int().min(0), bytes: z.number().int().min(0), skipped: z.number().int().min(0) }),
  z.object({ ok: z.literal(true), mode: z.literal("extract"), restored: z.array(z.string()), kept: z.array(z.string()), files: z.number().int().min(0), bytes: z.number().int().min(0) }),
  z.object({ ok: z.literal(false), reason: z.enum(["too-large", "refused"]), message: z.string() }),
]);
export type TarReport = z.infer<typeof tarReport>;
