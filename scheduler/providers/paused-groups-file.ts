import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { processStartTicks, signalGroup } from "./process-group.ts";

/** One frozen worker session: its group and who it was. */
const pausedGroup = z.object({
  pgid: z.number().int().min(2),
  /** Start ticks of the group's leader (core of the identity: a pid may be reused). */
  start: z.string().min(1),
  workerId: z.string().min(1),
  endpointId: z.string().min(1),
});
export type PausedGroup = z.infer<typeof pausedGroup>;

const stateFile = z.object({
  owner: z.object({ pid: z.number().int(), start: z.string() }),
  redisPrefix: z.string(),
  groups: z.array(pausedGroup),
});

/** What `reapOrphans` killed, with the Redis prefix of the installation its session belongs to. */
export interface ReapedGroup extends PausedGroup {
  redisPrefix: string;
}

/**
 * The paused process groups of one provider, on disk: `<dir>/paused-<pid>-<start>.json`, rewritten
 * (atomically) whenever a worker is paused or leaves the pool. A paused worker is frozen and cannot
 * notice its scheduler die, so the next scheduler on this host reads the files of owners that are
 * gone and kills what they list. Files of a live owner (another scheduler on the host) are left alone.
 */
export class PausedGroupsFile {
  private readonly path: string;
  private readonly owner: { pid: number; start: string };

  constructor(
    private readonly dir: string,
    private readonly redisPrefix: string,
  ) {
    this.owner = { pid: process.pid, start: processStartTicks(process.pid) ?? "0" };
    this.path = join(dir, `paused-${this.owner.pid}-${this.owner.start}.json`);
  }

  /** Records the groups paused now; none removes the file. */
  write(groups: PausedGroup[]): void {
    if (groups.length === 0) {
      rmSync(this.path, { force: true });
      return;
    }
    mkdirSync(this.dir, { recursive: true });
    const tmp = `${this.path}.tmp`;
    writeFileSync(tmp, JSON.stringify({ owner: this.owner, redisPrefix: this.redisPrefix, groups }));
    renameSync(tmp, this.path); // a crash mid-write leaves the previous list, never half of one
  }

  /** Kills the paused groups of owners that are gone (still the same processes only) and removes their files. */
  reapOrphans(): ReapedGroup[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return []; // no directory: nothing was ever paused here
    }
    const reaped: ReapedGroup[] = [];
    for (const name of names) {
      const m = /^paused-(\d+)-(\d+)\.json$/.exec(name);
      if (!m) continue;
      const path = join(this.dir, name);
      if (path === this.path) continue;
      // The owner still runs: its groups are its own business.
      if (processStartTicks(Number(m[1])) === m[2]) continue;
      let parsed: z.infer<typeof stateFile> | undefined;
      try {
        const r = stateFile.safeParse(JSON.parse(readFileSync(path, "utf8")));
        parsed = r.success ? r.data : undefined;
      } catch {
        parsed = undefined;
      }
      for (const g of parsed?.groups ?? []) {
        // Only the very process that was paused: its pid may belong to someone else by now.
        if (processStartTicks(g.pgid) !== g.start) continue;
        signalGroup(g.pgid, "SIGKILL");
        reaped.push({ ...g, redisPrefix: parsed!.redisPrefix });
      }
      rmSync(path, { force: true });
    }
    return reaped;
  }
}
