import { execFileSync, execSync } from "node:child_process";
import { mkdirSync, readdirSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

// Under the repository root, not the working directory, so every `npm start` finds the same data.
const redisDir = join(fileURLToPath(new URL("../..", import.meta.url)), ".hearth", "redis");

/** True when something accepts TCP connections at host:port within `timeoutMs`. */
export function answers(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once("connect", () => done(true));
    socket.once("error", () => done(false));
  });
}

const isLocal = (host: string) => host === "127.0.0.1" || host === "localhost" || host === "::1";

/**
 * Starts the local Redis or PostgreSQL when the URL points at this machine, nothing answers, and
 * the server is installed. Anything else is left to the operator: the start fails with the reason.
 */
export async function ensureLocalServices(redisUrl: string, databaseUrl: string, log: (msg: string) => void): Promise<void> {
  const r = new URL(redisUrl);
  const rPort = Number(r.port || 6379);
  if (!(await answers(r.hostname, rPort)) && isLocal(r.hostname)) {
    log(`starting redis-server on port ${rPort} (AOF in ${redisDir})`);
    mkdirSync(redisDir, { recursive: true });
    // Queues and the event log live in Redis, so it keeps an AOF (a crash loses at most about a
    // second of writes); RDB snapshots on top would add forks and nothing the AOF lacks. An
    // argument list rather than a shell line, since the repository path may contain spaces.
    execFileSync(
      "redis-server",
      [
        "--daemonize", "yes", "--bind", "127.0.0.1", "--port", String(rPort),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        "--dir", redisDir, "--logfile", join(redisDir, "redis.log"),
      ],
      { stdio: "inherit" },
    );
  }
  const p = new URL(databaseUrl);
  const pPort = Number(p.port || 5432);
  if (!(await answers(p.hostname, pPort)) && isLocal(p.hostname)) {
    const versions = (() => {
      try {
        return readdirSync("/etc/postgresql");
      } catch {
        return [];
      }
    })();
    if (versions[0]) {
      log(`starting PostgreSQL ${versions[0]}`);
      execSync(`pg_ctlcluster --skip-systemctl-redirect ${versions[0]} main start`, { stdio: "inherit" });
    }
  }
  for (const [name, host, port] of [["Redis", r.hostname, rPort], ["PostgreSQL", p.hostname, pPort]] as const) {
    for (let i = 0; i < 50 && !(await answers(host, port)); i++) await new Promise((res) => setTimeout(res, 200));
    if (!(await answers(host, port))) throw new Error(`${name} does not answer at ${host}:${port}; start it or set its URL`);
  }
}
