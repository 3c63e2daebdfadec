import type { Tracer } from "@opentelemetry/api";
import type { OutputLogs } from "./services/output-logs.ts";
import type { Log } from "../../core/log/process-log.ts";
import type { Redis } from "ioredis";
import type { RedisKeys } from "../../core/queue/keys.ts";
import type { ModelSourcePolicy } from "../../core/engine/model-source-policy.ts";
import type { UrlPolicy } from "../../core/net/url-policy.ts";
import type { SecretBox } from "../../core/secrets/secret-box.ts";
import type { EndpointStore } from "./services/endpoint-store.ts";
import type { EndpointQueues } from "./services/endpoint-queues.ts";
import type { JobControl } from "./services/job-control.ts";
import type { OpenAIRelay } from "./services/openai-relay.ts";
import type { JobReader } from "./services/job-reader.ts";
import type { JobSubmitter } from "./services/job-submitter.ts";
import type { TenantStore } from "./services/tenant-store.ts";
import type { TenantPolicy } from "./services/tenant-policy.ts";
import type { Invalidations } from "./services/invalidations.ts";
import type { JobRecords } from "./services/job-records.ts";
import type { LogAdmin } from "./services/log-admin.ts";
import type { SyncRuns } from "./services/sync-runs.ts";
import type { PriceStore } from "./services/price-store.ts";
import type { Ledger } from "./services/ledger.ts";
import type { BillingGate } from "./services/billing-gate.ts";
import type { WebhookDeliveries } from "./services/webhook-deliveries.ts";
import type { WebhookSecretStore } from "../../core/db/webhook-secrets.ts";
import type { BalanceCache } from "../../core/redis/balance-cache.ts";
import type { BillingMode } from "../../core/contracts/billing.ts";
import type { ResultRetention } from "../../core/policy/retention.ts";
import type { ObjectStore } from "../../core/objects/object-store.ts";
import type { UsageReports } from "./services/usage-report.ts";
import type { SessionCosts } from "./services/session-costs.ts";
import type { ReconcileReports } from "./services/reconcile-report.ts";
import type { SubmissionCheckContext } from "./services/submission-checks.ts";
import type { ApiMetrics } from "./metrics/api-metrics.ts";
import type { AdminKeyStore } from "./services/admin-key-store.ts";
import type { AuditTrail } from "./services/audit-trail.ts";
import type { RateLimiter } from "./services/rate-limiter.ts";
import type { OpenAIAdmission } from "./services/openai-admission.ts";
import type { InputGuard } from "./services/input-guard.ts";

/** Everything `createApp` needs; built by a composition root (apps/api/main.ts, or a test). */
export interface ApiDeps {
  /** The process log (pino); request lines carry `requestId` and, for jobs, `traceId`. */
  log: Log;
  /** OpenTelemetry tracer when spans are exported (OTEL_EXPORTER_OTLP_ENDPOINT); without it, trace ids still travel with jobs. */
  tracer?: Tracer;
  /** The bootstrap token (HEARTH_ADMIN_TOKEN): every /admin route, and the only one that makes and revokes admin keys. */
  adminToken: string;
  /** The operator's named admin keys, accepted beside the bootstrap token. */
  adminKeys: AdminKeyStore;
  /** The audit log, for reading (writes happen in the stores' own transactions). */
  audit: AuditTrail;
  /** Directories an endpoint's handler module must live in. */
  handlerDirs: string[];
  /** Where endpoint models may come from (HEARTH_MODEL_DIRS, HEARTH_MODEL_ALLOWLIST). */
  modelPolicy: ModelSourcePolicy;
  /** Where jobs' webhooks may point (HEARTH_EGRESS_ALLOW_HTTP, HEARTH_EGRESS_ALLOWLIST), checked at submission. */
  egress: UrlPolicy;
  /** The process's Prometheus registry and request metrics; absent, `/metrics` is 404 and nothing is counted. */
  metrics?: ApiMetrics;
  /** HEARTH_METRICS_PUBLIC: `/metrics` without the admin token. */
  metricsPublic?: boolean;
  /** Endpoints' input guardrails, run before a job is queued (`/run`, `/runsync`, the OpenAI routes). */
  guard: InputGuard;
  /** What `/run` and `/runsync` check beyond the schema (URLs, s3Config, inputRef). */
  submissionChecks: SubmissionCheckContext;
  /** Seals endpoint secrets (HEARTH_SECRETS_KEY); absent, secrets are refused with 400 `secrets_unavailable`. */
  secrets?: SecretBox;
  redis: Redis;
  keys: RedisKeys;
  tenants: TenantStore;
  /** Tenants' quotas and grants, and the admission checks that read them. */
  policy: TenantPolicy;
  /** Request-rate and token-rate limits per tenant and per API key (Redis buckets). */
  rateLimiter: RateLimiter;
  /** The OpenAI routes' context-window check and request + token limits. */
  openaiAdmission: OpenAIAdmission;
  /** Tells the other API replicas to drop a cached key or endpoint; retries while Redis is away. */
  invalidations: Invalidations;
  endpoints: EndpointStore;
  queues: EndpointQueues;
  submitter: JobSubmitter;
  reader: JobReader;
  control: JobControl;
  /** Submit-and-wait (`/runsync`). */
  syncRuns: SyncRuns;
  /** Workers' and jobs' output lines the scheduler keeps (Redis). */
  outputLogs: OutputLogs;
  /** Durable job records and worker sessions (Postgres). */
  records: JobRecords;
  /** The event log's consumers and dead letters, for the operator. */
  logAdmin: LogAdmin;
  /** The price table in force (defaults and the admin's versions). */
  prices: PriceStore;
  /** Tenants' credits, charges and balances. */
  ledger: Ledger;
  /** HEARTH_BILLING_MODE: the mode new tenants get; `meter` refuses nothing for anyone. */
  billingMode: BillingMode;
  /** Tenants' balances as the job path and the scheduler read them (Redis, rebuilt from the ledger). */
  balances: BalanceCache;
  /** 402 for new jobs of `enforce` tenants at zero balance. */
  billing: BillingGate;
  /** Jobs' webhook deliveries and endpoints' receiver health (written by the control plane). */
  webhooks: WebhookDeliveries;
  /** Endpoints' webhook signing secrets. */
  webhookSecrets: WebhookSecretStore;
  /** How long a rotated-out webhook secret keeps signing (ms). */
  webhookSecretGraceMs: number;
  /** How long finished results stay readable through `/status` (HEARTH_RETENTION_ASYNC_S, HEARTH_RETENTION_SYNC_S). */
  retention: ResultRetention;
  /** Where the control plane keeps outputs over 256 KB; `GET /api/v1/jobs/:id/output` serves them. */
  objects: ObjectStore;
  /** Tenants' usage and invoices, from the ledger's charges. */
  usage: UsageReports;
  /** Jobs' shares of their sessions' cost, and a session's bill line by line. */
  sessionCosts: SessionCosts;
  /** Billed seconds per session against observed lifetimes, for the operator. */
  reconcile: ReconcileReports;
  /** Now on the log's clock (Redis TIME), ms epoch: what billing dates by; rejects while Redis is away. */
  logNow: () => Promise<number>;
  /** Runs the OpenAI-compatible routes' requests as jobs. */
  openai: OpenAIRelay;
  /** Reachability of Redis and Postgres, for `/readyz`. */
  checkReady: () => Promise<{ redis: boolean; postgres: boolean }>;
}
