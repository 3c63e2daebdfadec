import { z } from "zod";
import { billingMode, type BillingMode } from "../contracts/billing.ts";
import type { TenantLimits } from "../contracts/tenant-limits.ts";
import type { LogLevel } from "../log/process-log.ts";
import { logLevel } from "../log/process-log.ts";
import type { AllowList } from "../net/url-policy.ts";
import type { ResultRetention } from "../policy/retention.ts";
import { egressEnv } from "./egress.ts";
import { databaseUrl, intFrom, optionalString, parseEnv, redisPrefix, redisUrl } from "./parse-env.ts";
import { secretsKey } from "./secrets-key.ts";
import { loadLimitDefaults } from "./tenant-limit-defaults.ts";
import { loadAdmissionDefaults, type AdmissionDefaults } from "./admission-defaults.ts";

/**
 * The Workers entry's bindings (wrangler.toml `[vars]` and `wrangler secret put`): the same names as
 * the Node API's variables where they mean the same thing, plus HEARTH_ORIGIN. Variables of what
 * does not run on Workers (PORT, TLS, HEARTH_HANDLER_DIRS, HEARTH_MODEL_*, HEARTH_OBJECT_DIR,
 * HEARTH_METRICS*) are not read: the origin API that serves those routes reads its own.
 */
const workersSchema = z.object({
  DATABASE_URL: databaseUrl,
  REDIS_URL: redisUrl,
  HEARTH_REDIS_PREFIX: redisPrefix,
  HEARTH_LOG_LEVEL: z.preprocess((v) => (v === "" || v === undefined ? "info" : String(v).toLowerCase()), logLevel),
  HEARTH_SECRETS_KEY: secretsKey,
  HEARTH_BILLING_MODE: z.preprocess((v) => (v === "" || v === undefined ? "enforce" : v), billingMode),
  ...egressEnv,
  HEARTH_RETENTION_ASYNC_S: intFrom(1800, 1, 7 * 86_400),
  HEARTH_RETENTION_SYNC_S: intFrom(60, 1, 7 * 86_400),
  /** Outputs above this many bytes are offloaded by the workers (must match the origin's HEARTH_OFFLOAD_BYTES). */
  HEARTH_OFFLOAD_BYTES: intFrom(1_048_576, 1024, 1 << 30),
  /** The operator's bucket (`s3://bucket/prefix`), when the origin has one: submissions may name it. */
  HEARTH_OUTPUT_BUCKET: optionalString,
  /** The Node API that serves what a Worker does not (management, /docs); unset: those routes answer 501. */
  HEARTH_ORIGIN: optionalString.pipe(z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }).optional()),
});

export interface WorkersConfig {
  databaseUrl: string;
  redisUrl: string;
  redisPrefix: string;
  logLevel: LogLevel;
  secretsKey?: Buffer;
  billingMode: BillingMode;
  egressAllowHttp: boolean;
  egressAllowList: AllowList;
  retention: ResultRetention;
  offloadBytes: number;
  /** The bucket part of HEARTH_OUTPUT_BUCKET. */
  platformBucket?: string;
  limitDefaults: TenantLimits;
  /** HEARTH_DEFAULT_RATE_LIMITS and HEARTH_QUEUE_CAPACITY_*, as on Node. */
  admission: AdmissionDefaults;
  /** Base URL of the origin API, without a trailing slash. */
  origin?: string;
}

/** Parses a Worker's `env` (strings; other bindings are ignored); throws ConfigError naming each bad variable. */
export function loadWorkersConfig(env: Record<string, unknown>): WorkersConfig {
  const strings: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (typeof v === "string") strings[k] = v;
  const c = parseEnv(workersSchema, strings, "api (Workers)");
  const bucket = c.HEARTH_OUTPUT_BUCKET === undefined ? undefined : /^s3:\/\/([^/]+)/.exec(c.HEARTH_OUTPUT_BUCKET)?.[1];
  return {
    databaseUrl: c.DATABASE_URL,
    redisUrl: c.REDIS_URL,
    redisPrefix: c.HEARTH_REDIS_PREFIX,
    logLevel: c.HEARTH_LOG_LEVEL,
    ...(c.HEARTH_SECRETS_KEY !== undefined && { secretsKey: c.HEARTH_SECRETS_KEY }),
    billingMode: c.HEARTH_BILLING_MODE,
    egressAllowHttp: c.HEARTH_EGRESS_ALLOW_HTTP,
    egressAllowList: c.HEARTH_EGRESS_ALLOWLIST,
    retention: { asyncMs: c.HEARTH_RETENTION_ASYNC_S * 1000, syncMs: c.HEARTH_RETENTION_SYNC_S * 1000 },
    offloadBytes: c.HEARTH_OFFLOAD_BYTES,
    ...(bucket !== undefined && { platformBucket: bucket }),
    limitDefaults: loadLimitDefaults(strings),
    admission: loadAdmissionDefaults(strings),
    ...(c.HEARTH_ORIGIN !== undefined && { origin: c.HEARTH_ORIGIN.replace(/\/+$/, "") }),
  };
}
