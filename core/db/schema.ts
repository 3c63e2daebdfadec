import { bigint, boolean, index, integer, jsonb, pgTable, real, text, timestamp } from "drizzle-orm/pg-core";
import type { EngineSpec } from "../contracts/endpoint.ts";

export const tenants = pgTable("tenants", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/** Keys are stored as SHA-256 hashes; the plaintext is shown once, at creation. */
export const apiKeys = pgTable(
  "api_keys",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull().references(() => tenants.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    /** First characters of the key, so a user can tell keys apart in a listing. */
    displayPrefix: text("display_prefix").notNull(),
    hash: text("hash").notNull().unique(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
  },
  (t) => [index("api_keys_tenant_idx").on(t.tenantId)],
);

export const endpoints = pgTable(
  "endpoints",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull().references(() => tenants.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    engine: jsonb("engine").$type<EngineSpec>().notNull(),
    gpuTypeIds: jsonb("gpu_type_ids").$type<string[]>().notNull(),
    workersMin: integer("workers_min").notNull(),
    workersMax: integer("workers_max").notNull(),
    idleTimeout: integer("idle_timeout").notNull(),
    scalerType: text("scaler_type").$type<"QUEUE_DELAY" | "REQUEST_COUNT">().notNull(),
    scalerValue: integer("scaler_value").notNull(),
    executionTimeoutMs: integer("execution_timeout_ms").notNull(),
    flashboot: boolean("flashboot").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
    /** Soft delete: the scheduler drains a deleted endpoint's workers, job records keep their reference. */
    deletedAt: timestamp("deleted_at", { withTimezone: true }),
  },
  (t) => [index("endpoints_tenant_idx").on(t.tenantId)],
);

/** One row per worker the scheduler started, written by the scheduler. */
export const workers = pgTable(
  "workers",
  {
    id: text("id").primaryKey(),
    endpointId: text("endpoint_id").notNull(),
    provider: text("provider").notNull(),
    state: text("state").notNull(),
    startedAt: timestamp("started_at", { withTimezone: true }).notNull(),
    stoppedAt: timestamp("stopped_at", { withTimezone: true }),
    exitCode: integer("exit_code"),
  },
  (t) => [index("workers_endpoint_idx").on(t.endpointId)],
);

/**
 * The durable record of every job, written behind the hot path in batches by the API (on accept)
 * and by workers (on start and finish). `statusAt` orders writes from different processes: a
 * write only lands if it is not older than what the row holds.
 */
export const jobs = pgTable(
  "jobs",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    endpointId: text("endpoint_id").notNull(),
    status: text("status").notNull(),
    statusAt: bigint("status_at", { mode: "number" }).notNull(),
    sync: boolean("sync").notNull().default(false),
    lowPriority: boolean("low_priority").notNull().default(false),
    webhook: text("webhook"),
    submittedAt: timestamp("submitted_at", { withTimezone: true, precision: 3 }),
    startedAt: timestamp("started_at", { withTimezone: true, precision: 3 }),
    finishedAt: timestamp("finished_at", { withTimezone: true, precision: 3 }),
    delayTimeMs: integer("delay_time_ms"),
    executionTimeMs: integer("execution_time_ms"),
    workerId: text("worker_id"),
    retries: integer("retries").notNull().default(0),
    error: text("error"),
    /** Inline output when small; larger outputs leave a pointer in `outputRef` instead. */
    output: jsonb("output"),
    outputRef: text("output_ref"),
    /** LLM jobs: ms from the job's start to its first generated token (streamed jobs only). */
    ttftMs: integer("ttft_ms"),
    /** LLM jobs: mean ms between consecutive generated tokens after the first (streamed jobs only). */
    itlMs: real("itl_ms"),
    promptTokens: integer("prompt_tokens"),
    completionTokens: integer("completion_tokens"),
  },
  (t) => [index("jobs_endpoint_submitted_idx").on(t.endpointId, t.submittedAt), index("jobs_tenant_idx").on(t.tenantId)],
);
