import { execFile, execFileSync } from "node:child_process";
import { chownSync, existsSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./services.ts";

const run = promisify(execFile);

export interface OwnPostgresOptions {
  /** Directory holding `initdb` and `pg_ctl`. Default: the newest `/usr/lib/postgresql/<version>/bin`. */
  binDir?: string;
  /** How long `start()` waits for the server to accept connections, in seconds. Default 30. */
  startTimeoutSeconds?: number;
}

/** A Postgres server this test owns: stopping it disturbs no other test and never the machine's shared server. */
export interface OwnPostgres {
  /** `postgres://postgres@127.0.0.1:<port>/postgres`; trust auth, so no password. */
  url: string;
  port: number;
  /** Fast shutdown (`-m fast`: open sessions are cut, no crash recovery on the next start). A no-op when already stopped. */
  stop(): Promise<void>;
  /** Starts again on the same port and data dir; resolves once it accepts connections. A no-op when already running. */
  start(): Promise<void>;
  /** Stops the server if it is running and removes its data dir; safe to call more than once. */
  destroy(): Promise<void>;
}

/** Creates a fresh cluster in a temp dir (initdb) and starts it on a free loopback port. */
export async function startOwnPostgres(options: OwnPostgresOptions = {}): Promise<OwnPostgres> {
  const binDir = options.binDir ?? newestPostgresBinDir();
  const startTimeoutSeconds = options.startTimeoutSeconds ?? 30;
  // initdb refuses to run as root; as root we become the postgres user, otherwise we already are someone it accepts.
  const asRoot = process.getuid?.() === 0;
  const root = await mkdtemp(join(tmpdir(), "hearth-pg-"));
  if (asRoot) {
    const { uid, gid } = postgresIds();
    chownSync(root, uid, gid);
  }
  // The unix socket goes in our own dir too: the default /var/run/postgresql belongs to the shared server.
  const dataDir = join(root, "data");
  const logFile = join(root, "server.log");
  const port = await freePort();

  /** argv for a Postgres binary, as the postgres user when we are root. */
  const argv = (bin: string, args: string[]): [string, string[]] =>
    asRoot ? ["runuser", ["-u", "postgres", "--", join(binDir, bin), ...args]] : [join(binDir, bin), args];
  // cwd is our temp dir: the postgres user may not be allowed into the caller's cwd, and initdb complains when it cannot return there.
  const exec = async (bin: string, args: string[]): Promise<void> => {
    const [file, fileArgs] = argv(bin, args);
    try {
      await run(file, fileArgs, { cwd: root });
    } catch (err) {
      const e = err as { stderr?: string; stdout?: string; message: string };
      throw new Error(`${bin} failed: ${e.stderr || e.stdout || e.message}\n${tailOf(logFile)}`);
    }
  };
  const ctlStartArgs = [
    "-D", dataDir, "-l", logFile, "-t", String(startTimeoutSeconds), "-w",
    // fsync off: a test cluster is thrown away, and durability across a clean stop does not depend on it.
    "-o", `-p ${port} -k ${root} -c listen_addresses=127.0.0.1 -c fsync=off`,
    "start",
  ];
  const ctlStopArgs = (mode: "fast" | "immediate") => ["-D", dataDir, "-m", mode, "-w", "stop"];

  let running = false;
  let destroyed = false;
  // If the test process exits without destroy() (a crash, a killed run), the postmaster would outlive it: pg_ctl
  // daemonizes it, so it is not our child and dies with nobody. Stop it synchronously on the way out.
  const onExit = (): void => {
    try {
      if (running) {
        const [file, fileArgs] = argv("pg_ctl", ctlStopArgs("immediate"));
        execFileSync(file, fileArgs, { cwd: root, stdio: "ignore" });
      }
      rmSync(root, { recursive: true, force: true });
    } catch {
      // Nothing more can be done while exiting.
    }
  };

  const handle: OwnPostgres = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      if (!running) return;
      await exec("pg_ctl", ctlStopArgs("fast"));
      running = false;
    },
    async start() {
      if (destroyed) throw new Error("own postgres: start() after destroy()");
      if (running) return;
      await exec("pg_ctl", ctlStartArgs);
      running = true;
    },
    async destroy() {
      if (destroyed) return;
      destroyed = true;
      try {
        await handle.stop();
      } finally {
        process.off("exit", onExit);
        await rm(root, { recursive: true, force: true });
      }
    },
  };

  process.on("exit", onExit);
  try {
    // --no-sync: nothing in a throwaway cluster needs to survive a power cut, and it saves most of initdb's time.
    await exec("initdb", ["-D", dataDir, "-A", "trust", "-U", "postgres", "--no-sync", "--no-instructions", "-E", "UTF8"]);
    await handle.start();
  } catch (err) {
    await handle.destroy().catch(() => {});
    throw err;
  }
  return handle;
}

/** The bin dir of the highest Postgres version installed the Debian way. */
function newestPostgresBinDir(): string {
  const base = "/usr/lib/postgresql";
  const versions = existsSync(base)
    ? readdirSync(base)
        .filter((v) => existsSync(join(base, v, "bin", "initdb")))
        .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    : [];
  const newest = versions[0];
  if (newest === undefined) throw new Error(`own postgres: no ${base}/<version>/bin/initdb; pass binDir`);
  return join(base, newest, "bin");
}

function postgresIds(): { uid: number; gid: number } {
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error("own postgres: no postgres OS user to run as");
  return { uid, gid };
}

/** The end of the server log, so a failed start says why. */
function tailOf(file: string): string {
  try {
    return readFileSync(file, "utf8").slice(-2000);
  } catch {
    return "";
  }
}
