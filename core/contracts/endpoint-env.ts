import { z } from "zod";

/**
 * An endpoint's own environment variables (`engine.env`) and the credentials of its model's bucket
 * (`engine.modelCredentials`), each in the three forms they take: as a tenant sends them (values),
 * as Postgres holds them (secret values sealed, see core/secrets) and as the API shows them (no
 * secret value at all).
 */

/** Variables per endpoint, and their total size (names + values, characters). */
export const ENV_MAX_VARIABLES = 64;
export const ENV_MAX_TOTAL_CHARS = 32_768;
export const ENV_MAX_VALUE_CHARS = 8192;

/**
 * Names the platform sets for its own processes, or that would change how the worker or its engine
 * load code: an endpoint may not set them. Prefixes end in `_`.
 */
export const RESERVED_ENV_PREFIXES = ["HEARTH_", "AWS_", "RUNPOD_", "KUBERNETES_", "LD_", "DYLD_"] as const;
export const RESERVED_ENV_NAMES: ReadonlySet<string> = new Set([
  "PATH",
  "HOME",
  "USER",
  "LOGNAME",
  "SHELL",
  "PWD",
  "TMPDIR",
  "HOSTNAME",
  "PORT",
  "REDIS_URL",
  "DATABASE_URL",
  "NODE_OPTIONS",
  "NODE_PATH",
  "NODE_EXTRA_CA_CERTS",
  "NODE_TLS_REJECT_UNAUTHORIZED",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "ALL_PROXY",
  "CUDA_VISIBLE_DEVICES",
  "NVIDIA_VISIBLE_DEVICES",
]);

const ENV_NAME = /^[A-Z_][A-Z0-9_]*$/;

/**
 * What Hearth injects into a RunPod protocol worker (`runpod` engines, see
 * worker/engines/runpod/runpod-environment.ts): the SDK's URLs, its token, its ids and ping period.
 * Every other `RUNPOD_*` setting is the tenant's (e.g. `RUNPOD_SKIP_AUTO_SYSTEM_CHECKS`).
 */
export const RUNPOD_INJECTED_PREFIXES = ["RUNPOD_WEBHOOK_"] as const;
export const RUNPOD_INJECTED_NAMES: ReadonlySet<string> = new Set([
  "RUNPOD_AI_API_KEY",
  "RUNPOD_POD_ID",
  "RUNPOD_POD_HOSTNAME",
  "RUNPOD_ENDPOINT_ID",
  "RUNPOD_PING_INTERVAL",
  "RUNPOD_SKIP_GPU_CHECK",
]);

/**
 * Why `name` cannot be an endpoint variable, or undefined when it can. `runpodWorker`: the endpoint
 * runs a RunPod protocol worker, whose own `RUNPOD_*` settings it may set, all but the injected ones.
 */
export function envNameProblem(name: string, runpodWorker = false): string | undefined {
  if (!ENV_NAME.test(name) || name.length > 128) return "variable names are 1-128 characters of A-Z, 0-9 and _, not starting with a digit";
  if (RESERVED_ENV_NAMES.has(name)) return `${name} is set by the platform`;
  if (runpodWorker && name.startsWith("RUNPOD_")) {
    const injected = RUNPOD_INJECTED_NAMES.has(name) || RUNPOD_INJECTED_PREFIXES.some((p) => name.startsWith(p));
    return injected ? `${name} is set by the platform for the RunPod worker` : undefined;
  }
  const prefix = RESERVED_ENV_PREFIXES.find((p) => name.startsWith(p));
  if (prefix !== undefined) return `names starting with ${prefix} are reserved for the platform`;
  return undefined;
}

// A NUL cannot be passed in a process environment (spawn refuses it), so it is refused here, not at start.
const envValue = z.string().max(ENV_MAX_VALUE_CHARS).refine((v) => !v.includes("\0"), "values cannot contain NUL");

/**
 * As sent: `"NAME": "value"` (not secret), `"NAME": {"value": "…", "secret": true}`, or, on a change
 * to an existing endpoint, `"NAME": {"secret": true}` to keep the secret already stored under NAME.
 */
const envInput = (runpodWorker: boolean) =>
  z
    .record(
      z.string(),
      z.union([
        envValue,
        z.object({ value: envValue, secret: z.boolean().default(false) }).strict(),
        z.object({ secret: z.literal(true) }).strict(),
      ]),
    )
    .superRefine((env, ctx) => {
      const names = Object.keys(env);
      if (names.length > ENV_MAX_VARIABLES) ctx.addIssue({ code: "custom", message: `at most ${ENV_MAX_VARIABLES} variables` });
      let total = 0;
      for (const [name, v] of Object.entries(env)) {
        const problem = envNameProblem(name, runpodWorker);
        if (problem !== undefined) ctx.addIssue({ code: "custom", path: [name], message: problem });
        total += name.length + (typeof v === "string" ? v.length : "value" in v ? v.value.length : 0);
      }
      if (total > ENV_MAX_TOTAL_CHARS) ctx.addIssue({ code: "custom", message: `names and values together exceed ${ENV_MAX_TOTAL_CHARS} characters` });
    });
export const endpointEnvInput = envInput(false);
/** The variables of a `runpod` engine: the same, but the worker's own `RUNPOD_*` settings are allowed. */
export const runpodEnvInput = envInput(true);
export type EndpointEnvInput = z.infer<typeof endpointEnvInput>;

/** As stored: plain values as they are, secret ones sealed. */
export const sealedEnvValue = z.object({ secret: z.literal(true), sealed: z.string().min(1) }).strict();
export const endpointEnvStored = z.record(z.string(), z.union([z.string(), sealedEnvValue]));
export type EndpointEnvStored = z.infer<typeof endpointEnvStored>;

/** As shown: a secret is `{"secret": true}`, never its value. */
export const endpointEnvView = z.record(z.string(), z.union([z.string(), z.object({ secret: z.literal(true) }).strict()]));
export type EndpointEnvView = z.infer<typeof endpointEnvView>;

const accessId = z.string().min(1).max(128).regex(/^[\x21-\x7e]+$/, "printable ASCII without spaces");
/** The tenant's own S3-compatible service (R2, MinIO…); default: the operator's (HEARTH_S3_ENDPOINT, or AWS). */
const endpointUrl = z.url({ protocol: /^https?$/, error: "must be an http(s):// URL" }).max(2048);

/**
 * Credentials for an `s3://` model in the tenant's own bucket, used for that download only. On a
 * change to an existing endpoint `accessSecret` may be left out to keep the stored one (same `accessId`).
 */
export const modelCredentialsInput = z
  .object({ accessId, accessSecret: z.string().min(1).max(1024).optional(), endpointUrl: endpointUrl.optional() })
  .strict();
export type ModelCredentialsInput = z.infer<typeof modelCredentialsInput>;

export const modelCredentialsStored = z.object({ accessId, endpointUrl: endpointUrl.optional(), sealedSecret: z.string().min(1) }).strict();
export type ModelCredentialsStored = z.infer<typeof modelCredentialsStored>;

export const modelCredentialsView = z.object({ accessId, endpointUrl: endpointUrl.optional() }).strict();
export type ModelCredentialsView = z.infer<typeof modelCredentialsView>;

/** What a worker is given to download its model with (decrypted by the scheduler for that worker only). */
export const modelCredentials = z.object({ accessId, accessSecret: z.string().min(1), endpointUrl: endpointUrl.optional() }).strict();
export type ModelCredentials = z.infer<typeof modelCredentials>;
