import { sql } from "drizzle-orm";
import { bigint, bigserial, boolean, check, index, integer, jsonb, pgTable, primaryKey, real, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";
import type { BillingMode, LedgerKind } from "../contracts/billing.ts";
import type { KeyScope } from "../contracts/key-scope.ts";
import type { AuditActorKind } from "../contracts/audit.ts";
import type { StoredEngineSpec } from "../contracts/endpoint.ts";

export const tenants = pgTable("tenants", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  /** The admin's overrides of the default quotas (core/contracts/tenant-limits.ts); absent keys take the defaults. */
  limits: jsonb("limits").$type<Record<string, number>>().notNull().default({}),
  /** Rights beyond the defaults the admin granted, e.g. `{"remoteCode": true}`. */
  grants: jsonb("grants").$type<Record<string, boolean>>().notNull().default({}),
  /**
   * How the tenant pays (core/contracts/billing.ts). `meter`: usage is recorded in the ledger and
   * nothing is refused; migration 0004 put every tenant that existed before billing on it.
   */
  billingMode: text("billing_mode").$type<BillingMode>().notNull().default("meter"),
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
    /** What the key may do (core/policy/key-scopes.ts): `read` ⊂ `run` ⊂ `full`; keys made before scopes are `full`. */
    scope: text("scope").$type<KeyScope>().notNull().default("full"),
    /** The key's own rate limits under its tenant's (core/contracts/rate-limits.ts); `{}`: none of its own. */
    rateLimits: jsonb("rate_limits").$type<Record<string, number>>().notNull().default({}),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
  },
  (t) => [index("api_keys_tenant_idx").on(t.tenantId), check("api_keys_scope_check", sql`${t.scope} in ('read', 'run', 'full')`)],
);

/**
 * The operator's named admin keys (`POST /admin/keys`, made with the bootstrap HEARTH_ADMIN_TOKEN):
 * stored as SHA-256 hashes, the plaintext shown once. Every /admin action then has an actor.
 */
export const adminKeys = pgTable("admin_keys", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  displayPrefix: text("display_prefix").notNull(),
  hash: text("hash").notNull().unique(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  revokedAt: timestamp("revoked_at", { withTimezone: true }),
});

/**
 * Who did what to what, append-only (migration 0007's trigger refuses UPDATE and DELETE, and
 * TRUNCATE). Management actions are written in the transaction of the change they record; job
 * submissions are projected from the log's acceptance records by the control plane, `log_entry_id`
 * (unique per endpoint's log) making a replayed batch write nothing twice.
 */
export const auditLog = pgTable(
  "audit_log",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    /** The database's clock when the entry was written (a job submission's log time is in `detail.acceptedAt`). */
    at: timestamp("at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    actorKind: text("actor_kind").$type<AuditActorKind>().notNull(),
    /** `bootstrap`, an admin key's id or a tenant API key's id. */
    actorId: text("actor_id").notNull(),
    tenantId: text("tenant_id"),
    endpointId: text("endpoint_id"),
    modelName: text("model_name"),
    modelVersion: text("model_version"),
    /** The tenant API key the action came with (null for admin actors). */
    keyId: text("key_id"),
    /** The client's socket address, null where the runtime does not expose it. */
    sourceAddress: text("source_address"),
    /** `tenant.create`, `key.revoke`, `endpoint.update`, `job.submit`… (core/contracts/audit.ts). */
    action: text("action").notNull(),
    targetId: text("target_id"),
    /** Small and never secret: ids, counts, settings' names and values, no keys, secrets or job input. */
    detail: jsonb("detail").$type<Record<string, unknown>>().notNull().default({}),
    /** The log entry a projected entry came from (`<ms>-<n>`, unique within its endpoint's log). */
    logEntryId: text("log_entry_id"),
  },
  (t) => [
    index("audit_log_tenant_idx").on(t.tenantId, t.id),
    index("audit_log_endpoint_idx").on(t.endpointId, t.id),
    index("audit_log_at_idx").on(t.at),
    uniqueIndex("audit_log_entry_idx").on(t.endpointId, t.logEntryId).where(sql`${t.logEntryId} is not null`),
    check("audit_log_actor_kind_check", sql`${t.actorKind} in ('bootstrap', 'admin_key', 'api_key')`),
  ],
);

export const endpoints = pgTable(
  "endpoints",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull().references(() => tenants.id, { onDelete: "cascade" }),
    name: text("name").notNull(),
    engine: jsonb("engine").$type<StoredEngineSpec>().notNull(),
    gpuTypeIds: jsonb("gpu_type_ids").$type<string[]>().notNull(),
    workersMin: integer("workers_min").notNull(),
    workersMax: integer("workers_max").notNull(),
    idleTimeout: integer("idle_timeout").notNull(),
    scalerType: text("scaler_type").$type<"QUEUE_DELAY" | "REQUEST_COUNT">().notNull(),
    scalerValue: integer("scaler_value").notNull(),
    executionTimeoutMs: integer("execution_timeout_ms").notNull(),
    flashboot: boolean("flashboot").notNull(),
    /** Failed worker starts in a row that open the endpoint's start breaker (core/policy/start-breaker.ts). */
    maxFailedStarts: integer("max_failed_starts").notNull().default(3),
    /** Warm pool: idle booted or paused workers kept ready besides workersMin. */
    workersStandby: integer("workers_standby").notNull().default(0),
    /** The endpoint's guardrails (core/contracts/guardrails.ts), checked by zod when read back; null: none. */
    guardrails: jsonb("guardrails"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
    /** Soft delete: the scheduler drains a deleted endpoint's workers, job records keep their reference. */
    deletedAt: timestamp("deleted_at", { withTimezone: true }),
  },
  (t) => [index("endpoints_tenant_idx").on(t.tenantId)],
);

/**
 * One row per worker session, projected from the endpoint's log (see apps/control). Times are on
 * Redis' clock (the log's entry ids), the clock billing trusts.
 */
export const workerSessions = pgTable(
  "worker_sessions",
  {
    id: text("id").primaryKey(),
    endpointId: text("endpoint_id").notNull(),
    tenantId: text("tenant_id").notNull(),
    provider: text("provider"),
    gpuType: text("gpu_type"),
    /** The latest state (core/contracts/worker-state.ts). */
    state: text("state").notNull(),
    requestedAt: timestamp("requested_at", { withTimezone: true, precision: 3 }),
    readyAt: timestamp("ready_at", { withTimezone: true, precision: 3 }),
    /** When the session ended: the process's exit, or a lost worker's last heartbeat. Null while open. */
    endedAt: timestamp("ended_at", { withTimezone: true, precision: 3 }),
    exitCode: integer("exit_code"),
    endReason: text("end_reason"),
    /** The engine spec hash the worker ran (core/policy/rolling.ts), from its `requested` entry. */
    specHash: text("spec_hash"),
    /** Its cold start: kind and phases in ms (core/log/log-entry.ts `coldStart`), merged as the entries come. */
    coldStart: jsonb("cold_start").$type<Record<string, unknown>>(),
    /** Log position of the last entry applied (ms, sequence): older entries change nothing. */
    seqMs: bigint("seq_ms", { mode: "number" }).notNull(),
    seqN: integer("seq_n").notNull(),
  },
  (t) => [index("worker_sessions_endpoint_idx").on(t.endpointId, t.requestedAt), index("worker_sessions_open_idx").on(t.endedAt)],
);

/** Every transition of every worker session, in log order. */
export const workerTransitions = pgTable(
  "worker_transitions",
  {
    workerId: text("worker_id").notNull(),
    /** The log entry's id, `<ms>-<n>`: unique within the endpoint's log, so a replay inserts nothing. */
    entryId: text("entry_id").notNull(),
    seqMs: bigint("seq_ms", { mode: "number" }).notNull(),
    seqN: integer("seq_n").notNull(),
    state: text("state").notNull(),
    at: timestamp("at", { withTimezone: true, precision: 3 }).notNull(),
    reason: text("reason"),
    exitCode: integer("exit_code"),
  },
  (t) => [primaryKey({ columns: [t.workerId, t.entryId] })],
);

/**
 * The durable record of every job, projected from its endpoint's log by the control plane. `seqMs`
 * and `seqN` (the log position of the last entry applied) order writes: an older entry never
 * overwrites a newer one, so a replay or a retried dead letter changes nothing it should not.
 */
export const jobs = pgTable(
  "jobs",
  {
    id: text("id").primaryKey(),
    tenantId: text("tenant_id").notNull(),
    endpointId: text("endpoint_id").notNull(),
    status: text("status").notNull(),
    seqMs: bigint("seq_ms", { mode: "number" }).notNull().default(0),
    seqN: integer("seq_n").notNull().default(0),
    sync: boolean("sync").notNull().default(false),
    lowPriority: boolean("low_priority").notNull().default(false),
    /** As given, unless Postgres text cannot hold it (see `webhookExact`). */
    webhook: text("webhook"),
    /** Times on Redis' clock (log entry ids). */
    submittedAt: timestamp("submitted_at", { withTimezone: true, precision: 3 }),
    startedAt: timestamp("started_at", { withTimezone: true, precision: 3 }),
    finishedAt: timestamp("finished_at", { withTimezone: true, precision: 3 }),
    delayTimeMs: integer("delay_time_ms"),
    executionTimeMs: integer("execution_time_ms"),
    workerId: text("worker_id"),
    retries: integer("retries").notNull().default(0),
    error: text("error"),
    /** Inline output as JSON text (lossless: JSON escapes NUL and lone surrogates); larger outputs leave `outputRef` instead. */
    outputJson: text("output_json"),
    outputRef: text("output_ref"),
    /** W3C trace id of the request that submitted the job (the acceptance record's `traceId`). */
    traceId: text("trace_id"),
    /**
     * The exact `webhook` and `error`, as JSON string literals, when they hold what Postgres text
     * cannot (NUL, a lone surrogate): the plain columns then hold a copy with U+FFFD in those
     * places (core/db/pg-text.ts). Null when the plain column is exact.
     */
    webhookExact: text("webhook_exact"),
    errorExact: text("error_exact"),
    /** Why the job was removed from its queue (cancelled, purged, expired), once logged. */
    removalReason: text("removal_reason"),
    /** LLM jobs: ms from the job's start to its first generated token (streamed jobs only). */
    ttftMs: integer("ttft_ms"),
    /** LLM jobs: mean ms between consecutive generated tokens after the first (streamed jobs only). */
    itlMs: real("itl_ms"),
    promptTokens: integer("prompt_tokens"),
    completionTokens: integer("completion_tokens"),
  },
  (t) => [
    index("jobs_endpoint_submitted_idx").on(t.endpointId, t.submittedAt),
    index("jobs_tenant_submitted_idx").on(t.tenantId, t.submittedAt, t.id),
  ],
);

/** Per endpoint and final status: how many jobs ended so (projected once per terminal entry). */
export const endpointJobCounts = pgTable(
  "endpoint_job_counts",
  {
    endpointId: text("endpoint_id").notNull(),
    status: text("status").notNull(),
    count: bigint("count", { mode: "number" }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.endpointId, t.status] })],
);

/** How far each consumer of the log has read each endpoint's stream; written in the same transaction as its effects. */
export const logCursors = pgTable(
  "log_cursors",
  {
    consumer: text("consumer").notNull(),
    endpointId: text("endpoint_id").notNull(),
    /** Id of the last entry consumed (`<ms>-<n>`). */
    lastId: text("last_id").notNull(),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.consumer, t.endpointId] })],
);

/** Log entries a consumer could not apply: set aside with the reason, never blocking the entries behind them. */
export const logDeadLetters = pgTable(
  "log_dead_letters",
  {
    id: text("id").primaryKey(),
    consumer: text("consumer").notNull(),
    endpointId: text("endpoint_id").notNull(),
    entryId: text("entry_id").notNull(),
    /** The entry's fields as JSON text (lossless). */
    entryJson: text("entry_json").notNull(),
    reason: text("reason").notNull(),
    /** open | retried | discarded */
    state: text("state").notNull().default("open"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    resolvedAt: timestamp("resolved_at", { withTimezone: true }),
  },
  (t) => [index("log_dead_letters_state_idx").on(t.state, t.createdAt)],
);

/**
 * The admin's price versions (PUT /admin/prices). The table in force is core/billing's
 * DEFAULT_PRICES (the seed of every install) followed by these, in `effective_from` order; a
 * version never starts before the moment it was added, so stored prices never change the past.
 */
export const priceVersions = pgTable("price_versions", {
  /** Inclusive, on the log's clock (Redis TIME). */
  effectiveFrom: timestamp("effective_from", { withTimezone: true, precision: 3 }).primaryKey(),
  /** µ$ per second by GPU type, for the types this version prices. */
  prices: jsonb("prices").$type<Record<string, number>>().notNull(),
  /** The GPU types this version introduces. */
  adds: jsonb("adds").$type<string[]>(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * Every movement of a tenant's money, append-only (a trigger refuses UPDATE and DELETE: a mistake
 * is corrected by an `adjustment`, never by an edit). A balance is the sum of a tenant's entries.
 * `key` makes each write idempotent: writers insert with ON CONFLICT (key) DO NOTHING.
 */
export const ledgerEntries = pgTable(
  "ledger_entries",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    // No cascade: a tenant with money history cannot be deleted by accident.
    tenantId: text("tenant_id").notNull().references(() => tenants.id),
    /** `credit:<tenant>:…` for credits, `session:<worker>:minute:<n>` / `:settle` for charges (core/billing/charges.ts). */
    key: text("key").notNull().unique(),
    kind: text("kind").$type<LedgerKind>().notNull(),
    /** µ$: credits positive, charges negative (a settlement that takes back time may be positive). */
    amountMicros: bigint("amount_micros", { mode: "number" }).notNull(),
    /** Billed seconds of a charge. */
    seconds: integer("seconds"),
    endpointId: text("endpoint_id"),
    workerId: text("worker_id"),
    gpuType: text("gpu_type"),
    /** When the money was earned or spent; a charge's on the log's clock. */
    at: timestamp("at", { withTimezone: true, precision: 3 }).notNull(),
    reason: text("reason"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    // `id` breaks ties between entries at the same ms, for the newest-first listing's cursor.
    index("ledger_entries_tenant_at_idx").on(t.tenantId, t.at, t.id),
    // A session's charges (its bill, reconciliation).
    index("ledger_entries_worker_idx").on(t.workerId).where(sql`${t.workerId} is not null`),
    check("ledger_entries_kind_check", sql`${t.kind} in ('credit', 'charge', 'adjustment')`),
    check("ledger_entries_credit_positive", sql`${t.kind} <> 'credit' or ${t.amountMicros} > 0`),
  ],
);

/**
 * The billing consumer's view of each worker session (apps/control/billing-consumer.ts): the
 * transitions that matter to the meter, as the log handed them in, and how far its charges have
 * been written. Kept apart from `worker_sessions` (the records projector's, on its own cursor), so
 * the two consumers never wait on each other. Deleted with the records once settled and old.
 */
export const billingSessions = pgTable(
  "billing_sessions",
  {
    workerId: text("worker_id").primaryKey(),
    endpointId: text("endpoint_id").notNull(),
    /** The endpoint's tenant; the meter takes the session's own from its `requested` transition. */
    tenantId: text("tenant_id").notNull(),
    /** core/billing MeterTransition[]: idle ⇄ running flips after the first are left out (they change nothing billed). */
    transitions: jsonb("transitions").$type<unknown[]>().notNull().default([]),
    /** core/billing WeightsFetchReport[]. */
    weightsFetches: jsonb("weights_fetches").$type<unknown[]>().notNull().default([]),
    /** The last UTC minute (ms epoch / 60000) whose charge has been written; the next pass starts after it. */
    chargedMinute: bigint("charged_minute", { mode: "number" }),
    /** When the session's settlement was written (its end on the log's clock): nothing more is due. */
    settledAt: timestamp("settled_at", { withTimezone: true, precision: 3 }),
    /** Why the last pass could not meter the session (e.g. a GPU type without a price); null once it could. */
    error: text("error"),
    updatedAt: timestamp("updated_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("billing_sessions_open_idx").on(t.endpointId).where(sql`${t.settledAt} is null`)],
);

/**
 * Each endpoint's webhook signing secrets (Standard Webhooks `whsec_…`), sealed with
 * HEARTH_SECRETS_KEY when one is set. Deliveries are signed with every secret not yet expired: a
 * rotation sets `expires_at` on the old one (its grace), so receivers may switch at leisure.
 */
export const webhookSecrets = pgTable(
  "webhook_secrets",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    endpointId: text("endpoint_id").notNull().references(() => endpoints.id, { onDelete: "cascade" }),
    /** `sealed:<SecretBox value>` or, without HEARTH_SECRETS_KEY, `plain:whsec_…`. */
    secret: text("secret").notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    expiresAt: timestamp("expires_at", { withTimezone: true }),
  },
  (t) => [index("webhook_secrets_endpoint_idx").on(t.endpointId)],
);

/**
 * What the webhook consumer must remember of an accepted job with a webhook until it ends: where to
 * deliver and what the log's terminal entry does not carry (its input: a cancelled job's hash is
 * gone by then). Only jobs with webhooks are here, and only until their deliveries are made.
 */
export const webhookJobs = pgTable("webhook_jobs", {
  jobId: text("job_id").primaryKey(),
  endpointId: text("endpoint_id").notNull(),
  tenantId: text("tenant_id").notNull(),
  webhook: text("webhook"),
  webhookV2: text("webhook_v2"),
  submittedAt: bigint("submitted_at", { mode: "number" }).notNull(),
  retries: integer("retries").notNull().default(0),
  /** The job's input as JSON text, read from its BullMQ hash when the consumer saw it accepted; null once Redis no longer had it. */
  inputJson: text("input_json"),
  removalReason: text("removal_reason"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * One webhook to deliver: a job's terminal state to one URL. `id` is the Standard Webhooks
 * `webhook-id`, the same on every attempt; `payload` the exact bytes every attempt sends.
 */
export const webhookDeliveries = pgTable(
  "webhook_deliveries",
  {
    id: text("id").primaryKey(),
    jobId: text("job_id").notNull(),
    endpointId: text("endpoint_id").notNull(),
    tenantId: text("tenant_id").notNull(),
    /** `webhook` or `webhookV2`: the request field the URL came from. */
    field: text("field").notNull(),
    url: text("url").notNull(),
    payload: text("payload").notNull(),
    /** pending → delivered | failed (a 4xx or a refused address: not retried) | exhausted (the schedule ran out). */
    state: text("state").$type<"pending" | "delivered" | "failed" | "exhausted">().notNull(),
    attempts: integer("attempts").notNull().default(0),
    /** Attempts made before the last manual retry: the schedule restarts after them. */
    scheduleOffset: integer("schedule_offset").notNull().default(0),
    nextAttemptAt: timestamp("next_attempt_at", { withTimezone: true, precision: 3 }),
    lastStatus: integer("last_status"),
    lastError: text("last_error"),
    deliveredAt: timestamp("delivered_at", { withTimezone: true, precision: 3 }),
    createdAt: timestamp("created_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
  },
  (t) => [
    index("webhook_deliveries_due_idx").on(t.nextAttemptAt).where(sql`${t.state} = 'pending'`),
    index("webhook_deliveries_job_idx").on(t.jobId),
    index("webhook_deliveries_endpoint_idx").on(t.endpointId, t.createdAt),
  ],
);

/** Every attempt of a delivery: when, the receiver's status, how long, what went wrong. */
export const webhookAttempts = pgTable(
  "webhook_attempts",
  {
    deliveryId: text("delivery_id").notNull().references(() => webhookDeliveries.id, { onDelete: "cascade" }),
    attempt: integer("attempt").notNull(),
    startedAt: timestamp("started_at", { withTimezone: true, precision: 3 }).notNull().defaultNow(),
    /** in_flight (a deliverer that died mid-attempt leaves it so), delivered, retry, stop. */
    outcome: text("outcome").notNull(),
    status: integer("status"),
    latencyMs: integer("latency_ms"),
    error: text("error"),
  },
  (t) => [primaryKey({ columns: [t.deliveryId, t.attempt] })],
);
