import { signalGroup } from "./process-group.ts";

/**
 * How a local provider freezes a worker session's process group once the worker has readied itself
 * for a pause (queue worker closed, engine asleep, `paused` logged), and thaws it. One interface,
 * two strategies: SIGSTOP/SIGCONT (the default, and the only one exercised here) and CRIU with
 * cuda-checkpoint (criu-freeze.ts: written, not exercised: `criu check` fails on these machines).
 */
export interface FreezeStrategy {
  readonly name: string;
  /** Freezes every process of group `pgid`. */
  freeze(pgid: number): Promise<void>;
  /** Undoes `freeze`; the processes run again (a restored group keeps its pids: CRIU restores them). */
  thaw(pgid: number): Promise<void>;
}

/** SIGSTOP / SIGCONT to the whole group: memory stays resident (the model too), thawing takes microseconds. */
export const SIGSTOP_FREEZE: FreezeStrategy = {
  name: "sigstop",
  async freeze(pgid) {
    signalGroup(pgid, "SIGSTOP");
  },
  async thaw(pgid) {
    signalGroup(pgid, "SIGCONT");
  },
};
