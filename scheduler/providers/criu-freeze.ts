import { execFile } from "node:child_process";
import { mkdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import type { FreezeStrategy } from "./freeze-strategy.ts";
import { groupMembers } from "./process-group.ts";

const run = promisify(execFile);

export interface CriuFreezeOptions {
  /** Where checkpoint images go, one directory per group (on a disk with room for the group's memory). */
  imagesDir: string;
  /** `criu` binary. Default "criu" on PATH. */
  criu?: string;
  /** `cuda-checkpoint` binary (NVIDIA); absent: no GPU state is checkpointed (CPU-only groups). */
  cudaCheckpoint?: string;
}

/**
 * Checkpoint/restore instead of SIGSTOP, for GPU workers whose memory should be released while
 * paused (not exercised: CRIU fails `criu check` on these machines (vdso), and there is no GPU):
 *
 *  freeze: `cuda-checkpoint --toggle --pid <pid>` for each process of the group (moves its GPU memory
 *  and CUDA state into host memory and releases the GPU), then `criu dump --tree <pgid>` writes the
 *  whole process tree to disk and ends it, so neither GPU nor host memory stays held.
 *  thaw: `criu restore --restore-detached` brings the tree back with the same pids, then the
 *  cuda-checkpoint toggle puts the GPU state back.
 *
 * What would remain to wire it as a LocalProvider strategy: a restored worker is no longer this
 * process's child (no exit event, no IPC channel; the pause protocol would move to a socket or Redis),
 * and open TCP connections need `--tcp-established` (Redis) or a reconnect on restore, which the
 * worker already does on resume (it pings Redis and reconnects when silent).
 */
export class CriuFreeze implements FreezeStrategy {
  readonly name = "criu";

  constructor(private readonly opts: CriuFreezeOptions) {}

  private dir(pgid: number): string {
    return join(this.opts.imagesDir, String(pgid));
  }

  async freeze(pgid: number): Promise<void> {
    const { cudaCheckpoint } = this.opts;
    if (cudaCheckpoint) for (const pid of groupMembers(pgid)) await run(cudaCheckpoint, ["--toggle", "--pid", String(pid)]);
    const dir = this.dir(pgid);
    await mkdir(dir, { recursive: true });
    await run(this.opts.criu ?? "criu", ["dump", "--tree", String(pgid), "--images-dir", dir, "--shell-job", "--tcp-established", "--file-locks"]);
  }

  async thaw(pgid: number): Promise<void> {
    const dir = this.dir(pgid);
    await run(this.opts.criu ?? "criu", ["restore", "--images-dir", dir, "--restore-detached", "--shell-job", "--tcp-established", "--file-locks"]);
    const { cudaCheckpoint } = this.opts;
    if (cudaCheckpoint) for (const pid of groupMembers(pgid)) await run(cudaCheckpoint, ["--toggle", "--pid", String(pid)]);
    await rm(dir, { recursive: true, force: true });
  }
}
