import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Readable } from "node:stream";
import { tarReport, type TarJob, type TarReport } from "./snapshot-tar-protocol.ts";

export interface TarProcessOptions {
  /** The built snapshot-tar-main.js. */
  entry: string;
  /** Node to run it with. Default this process's. */
  node?: string;
  /** The engine's user (HEARTH_ENGINE_USER, resolved); default this process's user. */
  user?: { uid: number; gid: number };
  /** Kills the process (the worker is stopping). */
  signal?: AbortSignal;
}

/** The archive a `create` left in its file. */
export interface BuiltArchive {
  report: TarReport;
  /** sha256 and length of the .tar.gz (when the report is ok). */
  sha256: string;
  bytes: number;
}

const MAX_REPORT_BYTES = 64 * 1024;
const MAX_STDERR_BYTES = 4096;

/**
 * Archives `dirs` into `file` (created 0600, here: the worker's, unreadable to engines) through the
 * snapshot process running as the engine's user; hashes the archive as it arrives and kills the
 * process if it grows past `maxBytes`.
 */
export async function createArchive(job: Extract<TarJob, { mode: "create" }>, file: string, options: TarProcessOptions): Promise<BuiltArchive> {
  const hash = createHash("sha256");
  let bytes = 0;
  const counted = new Transform({
    transform(chunk: Buffer, _enc, done) {
      bytes += chunk.length;
      if (bytes > job.maxBytes) return done(new Error(`the archive passed ${job.maxBytes} bytes`));
      hash.update(chunk);
      done(null, chunk);
    },
  });
  const report = await runTar(job, options, undefined, (stdout) => pipeline(stdout, counted, createWriteStream(file, { flags: "wx", mode: 0o600 })));
  return { report, sha256: hash.digest("hex"), bytes };
}

/** Extracts the archive in `file` into those of `dirs` that are absent or empty, as the engine's user. */
export function extractArchive(job: Extract<TarJob, { mode: "extract" }>, file: string, options: TarProcessOptions): Promise<TarReport> {
  return runTar(job, options, file);
}

async function runTar(job: TarJob, options: TarProcessOptions, stdinFile: string | undefined, consumeStdout?: (stdout: Readable) => Promise<void>): Promise<TarReport> {
  options.signal?.throwIfAborted();
  const child = spawn(options.node ?? process.execPath, [options.entry, JSON.stringify(job)], {
    // Nothing of the worker's environment (its Redis credential among it): node needs none of it.
    env: {},
    cwd: "/",
    stdio: [stdinFile === undefined ? "ignore" : "pipe", "pipe", "pipe", "pipe"],
    ...(options.user && { uid: options.user.uid, gid: options.user.gid }),
    ...(options.signal && { signal: options.signal, killSignal: "SIGKILL" as const }),
  });
  const exited = new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) => resolve(code));
  });
  let reportText = "";
  (child.stdio[3] as Readable).on("data", (d: Buffer) => {
    if (reportText.length < MAX_REPORT_BYTES) reportText += d.toString("utf8");
  });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    if (stderr.length < MAX_STDERR_BYTES) stderr += d.toString("utf8");
  });
  const feeding = stdinFile === undefined ? Promise.resolve() : pipeline(createReadStream(stdinFile), child.stdin!).catch(() => {}); // a process that stops reading (refused) closes its stdin
  const reading = consumeStdout ? consumeStdout(child.stdout!) : (child.stdout!.resume(), Promise.resolve());
  let streamError: unknown;
  await reading.catch((err: unknown) => {
    streamError = err;
    child.kill("SIGKILL");
  });
  const [code] = await Promise.all([exited, feeding]);
  if (streamError !== undefined) throw streamError;
  const line = reportText.trim().split("\n").at(-1) ?? "";
  const parsed = line === "" ? undefined : tarReport.safeParse(parseJson(line));
  if (parsed?.success && (code === 0 || !parsed.data.ok)) return parsed.data;
  throw new Error(`the snapshot process ${code === null ? "was killed" : `exited ${code}`}: ${stderr.trim().slice(0, 500) || "no message"}`);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
