import { isProcessAlive } from "../../../core/fs/real-paths.ts";
import { chown, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** A directory of one engine's own: its HOME and TMPDIR while it runs. */
export interface EngineHome {
  path: string;
  /** Deletes it and everything the engine left there. */
  remove(): Promise<void>;
}

const PREFIX = "hearth-engine-";

/**
 * Creates an empty private directory (mode 0700) owned by `owner` (the engine user; default this
 * process's user). Engines write caches under HOME (~/.cache for Hugging Face, torch, triton; tsx
 * compiles the embedded engine into TMPDIR): a fresh one per engine keeps them out of the
 * operator's home and keeps one tenant's engine from leaving files another tenant's engine reads.
 * Named after this worker's pid, so that homes left by killed workers are removed by the next one.
 */
export async function createEngineHome(owner?: { uid: number; gid: number }, parent = tmpdir()): Promise<EngineHome> {
  await removeDeadHomes(parent);
  const path = await mkdtemp(join(parent, `${PREFIX}${process.pid}-`));
  if (owner !== undefined) await chown(path, owner.uid, owner.gid);
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

/** Homes whose worker is gone (SIGKILLed before it could remove them). */
async function removeDeadHomes(parent: string): Promise<void> {
  for (const name of await readdir(parent).catch(() => [] as string[])) {
    const pid = Number(/^hearth-engine-(\d+)-/.exec(name)?.[1]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !isProcessAlive(pid)) await rm(join(parent, name), { recursive: true, force: true });
  }
}
