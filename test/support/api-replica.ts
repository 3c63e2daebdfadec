import { randomBytes } from "node:crypto";
import { startApiServer, type RunningApi } from "../../apps/api/api-server.ts";
import { apiClient } from "./api-client.ts";
import { examplesDir, fixturesDir, type Stack } from "./hearth-stack.ts";
import { TEST_REDIS_URL } from "./services.ts";

/** The server createTestDatabase makes the stack's database on (same default as services.ts). */
const PG_BASE = process.env.TEST_PG_BASE_URL ?? "postgres://postgres@127.0.0.1:5432";

/**
 * A second API server on a stack's database and Redis prefix, as another replica would run, with
 * its own clock when `now` is given (a host whose clock is off). Its admin token is its own.
 */
export async function startApiReplica(stack: Stack, options: { now?: () => number } = {}): Promise<RunningApi & { call: ReturnType<typeof apiClient> }> {
  const [row] = await stack.sql<{ db: string }[]>`select current_database() as db`;
  const api = await startApiServer(
    {
      databaseUrl: `${PG_BASE}/${row!.db}`,
      redisUrl: TEST_REDIS_URL,
      redisPrefix: stack.redisPrefix,
      handlerDirs: [examplesDir, fixturesDir],
      port: 0,
      host: "127.0.0.1",
      adminToken: randomBytes(24).toString("hex"),
    },
    options.now === undefined ? {} : { now: options.now },
  );
  return { ...api, call: apiClient(api.url) };
}
