import { performance } from "node:perf_hooks";
import { PRESTARTED_VAR, workerAssignment } from "../core/contracts/prestart-messages.ts";

/**
 * A prestarted worker (core/contracts/prestart-messages.ts) waits here, its first modules loaded,
 * until its provider assigns it: then its environment becomes exactly the one sent (nothing of the
 * prestart's own is left), and it goes on as a worker spawned with it. Returns when that happened
 * (`performance.now()`), the origin of its phases, so that a session's process start counts from the
 * assignment and not from a boot that happened before anyone asked; 0 for a process spawned as a worker.
 * Before the assignment a SIGTERM, SIGINT or the provider going away ends the process quietly.
 */
export async function awaitAssignment(preload: () => Promise<unknown>): Promise<number> {
  if (process.env[PRESTARTED_VAR] !== "1") return 0;
  if (!process.send) throw new Error(`${PRESTARTED_VAR} is set but this process has no IPC channel to be assigned through`);
  // What a worker loads after its engine has spawned loads now, while nobody waits: its import()s then
  // find it in memory instead of competing with the engine's start. A failure shows where it is imported again.
  preload().catch(() => {});
  const env = await new Promise<Record<string, string>>((resolve) => {
    const quit = () => process.exit(0);
    const onMessage = (raw: unknown) => {
      const parsed = workerAssignment.safeParse(raw);
      if (!parsed.success) return;
      process.off("message", onMessage);
      process.off("disconnect", quit);
      process.off("SIGTERM", quit);
      process.off("SIGINT", quit);
      resolve(parsed.data.env);
    };
    process.on("message", onMessage);
    process.on("disconnect", quit);
    process.on("SIGTERM", quit);
    process.on("SIGINT", quit);
  });
  for (const name of Object.keys(process.env)) if (!Object.hasOwn(env, name)) delete process.env[name];
  Object.assign(process.env, env);
  return performance.now();
}
