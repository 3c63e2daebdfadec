import { randomBytes } from "node:crypto";
import { rename, unlink, writeFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { errorFields, type Log } from "../core/log/process-log.ts";
import { WORKER_METRICS_HOST } from "../core/contracts/worker-state.ts";

/** One worker's `/metrics` listener. */
export interface WorkerTarget {
  endpointId: string;
  workerId: string;
  port: number;
}

/**
 * Prometheus' file-based service discovery format (`file_sd_configs`): one target group per worker,
 * labelled with its endpoint and worker ids, in worker-id order so the same set is the same text.
 * Pure.
 */
export function fileSdJson(targets: Iterable<WorkerTarget>, host = WORKER_METRICS_HOST): string {
  const groups = [...targets]
    .sort((a, b) => (a.workerId < b.workerId ? -1 : a.workerId > b.workerId ? 1 : 0))
    .map((t) => ({ targets: [`${host}:${t.port}`], labels: { endpoint: t.endpointId, worker: t.workerId } }));
  return `${JSON.stringify(groups, null, 2)}\n`;
}

export interface WorkerSdFileOptions {
  /** HEARTH_WORKER_SD_FILE: the file Prometheus' `file_sd_configs` reads. Its directory must exist. */
  path: string;
  /** Failed writes are logged here (warn), once per kind of error (its code) until a write succeeds. */
  log: Log;
}

/**
 * The file Prometheus finds workers' `/metrics` by: the live workers of this scheduler's provider
 * that report a metrics port in their heartbeat. Rewritten whenever that set changes, atomically (a
 * temporary file in the same directory, then a rename), so Prometheus never reads half a file; one
 * write at a time, the latest set last. A write that fails (a missing directory, a read-only disk)
 * is logged and tried again at the next update: never thrown, scheduling goes on without it.
 */
export class WorkerSdFile {
  private readonly targets = new Map<string, WorkerTarget>();
  /** What the file holds now; undefined until the first write succeeds (so the first flush always writes). */
  private written: string | undefined;
  private writing: Promise<void> | undefined;
  private again = false;
  private lastError: string | undefined;

  constructor(private readonly opts: WorkerSdFileOptions) {}

  /** Replaces the targets of one endpoint with `targets` (the workers of it that run and report a port). */
  setEndpoint(endpointId: string, targets: readonly Omit<WorkerTarget, "endpointId">[]): void {
    for (const [id, t] of this.targets) if (t.endpointId === endpointId) this.targets.delete(id);
    for (const t of targets) this.targets.set(t.workerId, { endpointId, ...t });
    void this.flush();
  }

  /** A worker that exited: gone from the file at once, not at its endpoint's next converge. */
  remove(workerId: string): void {
    if (this.targets.delete(workerId)) void this.flush();
  }

  /** The targets as the file should list them. */
  list(): WorkerTarget[] {
    return [...this.targets.values()];
  }

  /** Writes the current set unless the file already holds it; resolves once written (or failed). Never rejects. */
  flush(): Promise<void> {
    if (this.writing) {
      this.again = true;
      return this.writing;
    }
    this.writing = this.writeLoop().finally(() => (this.writing = undefined));
    return this.writing;
  }

  private async writeLoop(): Promise<void> {
    do {
      this.again = false;
      const text = fileSdJson(this.targets.values());
      if (text === this.written) continue;
      try {
        await writeAtomically(this.opts.path, text);
        this.written = text;
        this.lastError = undefined;
      } catch (err) {
        const fields = errorFields(err);
        // By code: the message names the temporary file, a new one each time.
        const kind = String(fields.code ?? fields.error);
        if (kind !== this.lastError) {
          this.lastError = kind;
          this.opts.log({ level: "warn", msg: "worker service discovery file not written", path: this.opts.path, ...fields });
        }
      }
    } while (this.again);
  }
}

/** Writes `text` to a temporary file beside `path` and renames it over `path` (same filesystem: atomic). */
async function writeAtomically(path: string, text: string): Promise<void> {
  // Not `*.json`: a Prometheus glob over the directory never picks up a half-written file.
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
  try {
    await writeFile(tmp, text, { mode: 0o644 });
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => {});
    throw err;
  }
}
