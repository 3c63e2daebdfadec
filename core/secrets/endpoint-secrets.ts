import type { EngineSpec, EngineView, StoredEngineSpec } from "../contracts/endpoint.ts";
import type { EndpointEnvStored, EndpointEnvView, ModelCredentials, ModelCredentialsStored } from "../contracts/endpoint-env.ts";
import type { SecretBox } from "./secret-box.ts";

/**
 * An engine's secrets between their three forms: sealed for Postgres when a tenant sends them
 * (the API), blanked for every response (the API), opened for one worker's start (the scheduler).
 * Each sealed value is bound to its endpoint and field, so it opens nowhere else.
 */

export interface SealIssue {
  /** Path below the engine, e.g. `env.HF_TOKEN`. */
  path: string;
  message: string;
  /** `secrets_unavailable` when no key is configured; `invalid` for a request that cannot be honoured. */
  code: "secrets_unavailable" | "invalid";
}

const NO_KEY = "this deployment keeps no secrets: HEARTH_SECRETS_KEY is not set";

function sealContext(endpointId: string, field: string): string {
  return `hearth/endpoint/${endpointId}/${field}`;
}

/**
 * The stored form of `engine` for endpoint `endpointId`: secret values sealed with `box`; a kept
 * secret (`{"secret": true}`, or credentials without `accessSecret`) taken from `current`, the
 * engine stored so far. Refuses secrets when there is no box rather than storing them in the clear.
 */
export function sealEngine(
  engine: EngineSpec,
  options: { endpointId: string; box?: SecretBox; current?: StoredEngineSpec },
): { ok: true; engine: StoredEngineSpec } | { ok: false; issues: SealIssue[] } {
  const { endpointId, box, current } = options;
  const issues: SealIssue[] = [];
  let env: EndpointEnvStored | undefined;
  if (engine.env !== undefined) {
    env = {};
    for (const [name, v] of Object.entries(engine.env)) {
      const path = `env.${name}`;
      if (typeof v === "string") env[name] = v;
      else if ("value" in v && !v.secret) env[name] = v.value;
      else if ("value" in v) {
        if (box === undefined) issues.push({ path, code: "secrets_unavailable", message: NO_KEY });
        else env[name] = { secret: true, sealed: box.seal(v.value, sealContext(endpointId, `env/${name}`)) };
      } else {
        const kept = current?.env?.[name];
        if (kept !== undefined && typeof kept !== "string") env[name] = kept;
        else issues.push({ path, code: "invalid", message: `no secret is stored under ${name} to keep; give its value` });
      }
    }
  }

  let credentials: ModelCredentialsStored | undefined;
  if (engine.kind === "openai" && engine.modelCredentials !== undefined) {
    const c = engine.modelCredentials;
    const rest = { accessId: c.accessId, ...(c.endpointUrl !== undefined && { endpointUrl: c.endpointUrl }) };
    if (c.accessSecret !== undefined) {
      if (box === undefined) issues.push({ path: "modelCredentials.accessSecret", code: "secrets_unavailable", message: NO_KEY });
      else credentials = { ...rest, sealedSecret: box.seal(c.accessSecret, sealContext(endpointId, "modelCredentials")) };
    } else {
      const kept = current?.kind === "openai" ? current.modelCredentials : undefined;
      if (kept !== undefined && kept.accessId === c.accessId) credentials = { ...rest, sealedSecret: kept.sealedSecret };
      else issues.push({ path: "modelCredentials.accessSecret", code: "invalid", message: "required: no secret is stored for this accessId" });
    }
  }
  if (issues.length > 0) return { ok: false, issues };

  // Handler modules and RunPod workers have variables and no model to fetch.
  if (engine.kind !== "openai") {
    const { env: _given, ...handler } = engine;
    return { ok: true, engine: { ...handler, ...(env !== undefined && { env }) } };
  }
  const { env: _given, modelCredentials: _credentials, ...openai } = engine;
  return { ok: true, engine: { ...openai, ...(env !== undefined && { env }), ...(credentials !== undefined && { modelCredentials: credentials }) } };
}

/** The engine as responses show it: no secret value, no credential secret. */
export function viewEngine(stored: StoredEngineSpec): EngineView {
  const env: EndpointEnvView | undefined =
    stored.env === undefined ? undefined : Object.fromEntries(Object.entries(stored.env).map(([name, v]) => [name, typeof v === "string" ? v : { secret: true as const }]));
  if (stored.kind !== "openai") {
    const { env: _sealed, ...handler } = stored;
    return { ...handler, ...(env !== undefined && { env }) };
  }
  const { env: _sealed, modelCredentials, ...openai } = stored;
  const credentials = modelCredentials && { accessId: modelCredentials.accessId, ...(modelCredentials.endpointUrl !== undefined && { endpointUrl: modelCredentials.endpointUrl }) };
  return { ...openai, ...(env !== undefined && { env }), ...(credentials !== undefined && { modelCredentials: credentials }) };
}

export interface OpenedEngine {
  /** The engine without `env` and `modelCredentials`: what a worker is told to run. */
  engine: EngineSpec;
  /** The endpoint's variables, secrets opened. */
  env: Record<string, string>;
  modelCredentials?: ModelCredentials;
}

/**
 * Opens an endpoint's secrets to start one of its workers. Fails (naming the field, never a value)
 * when the endpoint has secrets and there is no key, or a value does not open under it.
 */
export function openEngine(stored: StoredEngineSpec, endpointId: string, box: SecretBox | undefined): { ok: true; opened: OpenedEngine } | { ok: false; reason: string } {
  const open = (sealed: string, field: string): string => {
    if (box === undefined) throw new Error(`${field} is a secret and HEARTH_SECRETS_KEY is not set`);
    try {
      return box.open(sealed, sealContext(endpointId, field));
    } catch (err) {
      throw new Error(`${field}: ${(err as Error).message}`);
    }
  };
  try {
    const env: Record<string, string> = {};
    for (const [name, v] of Object.entries(stored.env ?? {})) env[name] = typeof v === "string" ? v : open(v.sealed, `env/${name}`);
    if (stored.kind !== "openai") {
      const { env: _sealed, ...engine } = stored;
      return { ok: true, opened: { engine, env } };
    }
    const { env: _sealed, modelCredentials: c, ...engine } = stored;
    const modelCredentials = c && {
      accessId: c.accessId,
      accessSecret: open(c.sealedSecret, "modelCredentials"),
      ...(c.endpointUrl !== undefined && { endpointUrl: c.endpointUrl }),
    };
    return { ok: true, opened: { engine, env, ...(modelCredentials !== undefined && { modelCredentials }) } };
  } catch (err) {
    return { ok: false, reason: (err as Error).message };
  }
}

/** Paths below the engine of the values a request asks to keep secret (which need a key to store). */
export function secretPaths(engine: EngineSpec): string[] {
  const paths = Object.entries(engine.env ?? {})
    .filter(([, v]) => typeof v !== "string" && v.secret)
    .map(([name]) => `env.${name}`);
  if (engine.kind === "openai" && engine.modelCredentials !== undefined) paths.push("modelCredentials.accessSecret");
  return paths;
}
