import postgres from "postgres";
import { Redis } from "ioredis";
import { randomBytes } from "node:crypto";

/**
 * Test runs share one Redis and one Postgres server, and more than one run may be going at once (a
 * developer's and a helper's). Each run names its prefixes and databases with its own run id, which
 * starts with its start time in minutes (base 36): at the end a run removes only what is its own, and
 * at the start it removes what runs older than `STALE_MINUTES` left behind when they were killed.
 */
const STALE_MINUTES = 180;
const nowMinutes = () => Math.floor(Date.now() / 60_000);

function runStartedAt(runId: string): number | undefined {
  const m = /^([0-9a-z]+)x[0-9a-f]+$/.exec(runId);
  return m ? parseInt(m[1]!, 36) : undefined;
}

async function removeRuns(belongs: (runId: string) => boolean): Promise<void> {
  const redis = new Redis(process.env.REDIS_URL ?? "redis://127.0.0.1:6379", { lazyConnect: true });
  try {
    await redis.connect();
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", "{hearth-test-*", "COUNT", 1000);
      cursor = next;
      const mine = keys.filter((k) => belongs(/^\{hearth-test-([^-}]+)/.exec(k)?.[1] ?? ""));
      if (mine.length > 0) await redis.unlink(...mine);
    } while (cursor !== "0");
    // Workers' ACL users (scheduler/worker-redis-users.ts) of runs killed before their schedulers removed them.
    for (const user of (await redis.call("ACL", "USERS")) as string[]) {
      if (!user.startsWith("hearth-w:")) continue;
      const fields = (await redis.call("ACL", "GETUSER", user)) as unknown[] | null;
      const keys = fields ? String(fields[fields.indexOf("keys") + 1] ?? "") : "";
      if (belongs(/\{hearth-test-([^-}]+)/.exec(keys)?.[1] ?? "")) await redis.call("ACL", "DELUSER", user);
    }
  } finally {
    redis.disconnect();
  }
  const sql = postgres(`${process.env.TEST_PG_BASE_URL ?? "postgres://postgres@127.0.0.1:5432"}/postgres`, { max: 1, onnotice: () => {} });
  try {
    const dbs = await sql<{ datname: string }[]>`select datname from pg_database where datname like 'hearth\\_test\\_%'`;
    for (const { datname } of dbs) {
      if (belongs(/^hearth_test_([^_]+)_/.exec(datname)?.[1] ?? "")) await sql.unsafe(`drop database if exists "${datname}" with (force)`);
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Vitest global setup: picks this run's id (inherited by the test workers) and sweeps stale runs. */
export async function setup(): Promise<void> {
  const runId = `${nowMinutes().toString(36)}x${randomBytes(3).toString("hex")}`;
  process.env.HEARTH_TEST_RUN = runId;
  await removeRuns((id) => {
    const at = runStartedAt(id);
    // Names from before run ids (no parsable start) are stale by definition.
    return at === undefined || nowMinutes() - at > STALE_MINUTES;
  });
}

/** After the whole run: remove what this run's files left (they clean up where they can; this catches the rest). */
export async function teardown(): Promise<void> {
  const runId = process.env.HEARTH_TEST_RUN;
  if (runId) await removeRuns((id) => id === runId);
}
