import { fileURLToPath } from "node:url";
import postgres from "postgres";
import { drizzle, type PostgresJsDatabase } from "drizzle-orm/postgres-js";
import { migrate } from "drizzle-orm/postgres-js/migrator";
import * as schema from "./schema.ts";

/** `$client` is the postgres.js pool beneath, for code that speaks SQL directly. */
export type Db = PostgresJsDatabase<typeof schema> & { $client: postgres.Sql };

export interface DbHandle {
  db: Db;
  sql: postgres.Sql;
  close(): Promise<void>;
}

/** Resolved when migrating, not at import: a Workers bundle imports this module and has no migrations folder. */
const migrationsFolder = () => fileURLToPath(new URL("../../migrations", import.meta.url));

/**
 * Opens a pooled connection. `max` bounds the pool; postgres.js connects lazily.
 *
 * While Postgres is down, postgres.js waits before each reconnect, up to 20 s by default, and holds
 * queries meanwhile; requests should rather fail fast (the API then serves what it cached, or 503),
 * so the wait is capped at about a second and a connect attempt at 10 s.
 */
export function openDb(url: string, options: { max?: number } = {}): DbHandle {
  const sql = postgres(url, {
    max: options.max ?? 10,
    onnotice: () => {},
    connect_timeout: 10,
    backoff: (retries: number) => (0.5 + Math.random() / 2) * Math.min(3 ** retries / 100, 1),
  });
  return { db: drizzle(sql, { schema }), sql, close: () => sql.end({ timeout: 5 }) };
}

/**
 * Creates the database named in `url` when it does not exist, connecting to the server's
 * `postgres` database to do so. Safe to race: a concurrent creator's "already exists" is ignored.
 */
export async function ensureDatabase(url: string): Promise<void> {
  const target = new URL(url);
  const name = decodeURIComponent(target.pathname.slice(1));
  if (!name) throw new Error("DATABASE_URL names no database");
  const admin = new URL(url);
  admin.pathname = "/postgres";
  const sql = postgres(admin.toString(), { max: 1, onnotice: () => {} });
  try {
    const rows = await sql`select 1 from pg_database where datname = ${name}`;
    if (rows.length === 0) {
      await sql.unsafe(`create database "${name.replaceAll('"', '""')}"`).catch((err: { code?: string }) => {
        if (err.code !== "42P04") throw err; // duplicate_database: someone else created it first
      });
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
}

/** Applies the committed drizzle-kit migrations; idempotent, serialised by drizzle's own table. */
export async function migrateDb(url: string): Promise<void> {
  await ensureDatabase(url);
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  try {
    // Two processes starting together must not both apply the same migration.
    await sql`select pg_advisory_lock(727274)`;
    await migrate(drizzle(sql), { migrationsFolder: migrationsFolder() });
  } finally {
    await sql.end({ timeout: 5 });
  }
}
