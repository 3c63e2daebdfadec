import type { ChildProcess } from "node:child_process";

/**
 * Stops an engine process the way every engine is stopped: SIGTERM, then SIGKILL if it is still
 * there after `graceMs`; resolves once it has exited (at once if it already had).
 */
export async function stopChild(child: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}
