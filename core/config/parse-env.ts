import { z } from "zod";

/** Thrown when the environment does not satisfy a process's config schema; names every bad variable. */
export class ConfigError extends Error {
  readonly code = "CONFIG_INVALID";
}

/**
 * Parses `env` with `schema` once, at start. Each issue is reported by the variable it concerns, so
 * an operator reads "REDIS_URL: Invalid URL" rather than a stack trace.
 */
export function parseEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv, processName: string): z.output<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => `  ${issue.path.join(".") || "(env)"}: ${issue.message}`);
  throw new ConfigError(`invalid configuration for ${processName}:\n${lines.join("\n")}`);
}

/** Empty strings count as unset, as shells make it easy to export `VAR=`. */
export const optionalString = z.preprocess((v) => (v === "" ? undefined : v), z.string().optional());

export const redisUrl = z.preprocess(
  (v) => (v === "" || v === undefined ? "redis://127.0.0.1:6379" : v),
  z.url({ protocol: /^rediss?$/, error: "must be a redis:// or rediss:// URL" }),
);

export const databaseUrl = z.preprocess(
  (v) => (v === "" || v === undefined ? "postgres://postgres@127.0.0.1:5432/hearth" : v),
  z.url({ protocol: /^postgres(ql)?$/, error: "must be a postgres:// URL" }),
);

/** Redis key prefix; the braces make it a Redis Cluster hash tag so every key of Hearth lands in one slot. */
export const redisPrefix = z.preprocess(
  (v) => (v === "" || v === undefined ? "{hearth}" : v),
  z.string().regex(/^[^:\s]+$/, "must not contain ':' or spaces"),
);

export function intFrom(defaultValue: number, min: number, max: number) {
  return z.preprocess(
    (v) => (v === "" || v === undefined ? defaultValue : Number(v)),
    z.number().int().min(min).max(max),
  );
}

/** A switch: on/off, true/false, yes/no or 1/0 (any case); unset or empty means `defaultValue`. */
export function onOff(defaultValue: boolean) {
  return z.preprocess(
    (v) => (v === "" || v === undefined ? String(defaultValue) : String(v).toLowerCase()),
    z.enum(["on", "off", "true", "false", "yes", "no", "1", "0"], { error: "must be on or off" }).transform((v) => v === "on" || v === "true" || v === "yes" || v === "1"),
  );
}
