import { z } from "zod";
import { envNameProblem, modelCredentials, type ModelCredentials } from "../contracts/endpoint-env.ts";
import { parseEnv } from "./parse-env.ts";

/**
 * How an endpoint's opened secrets travel from the scheduler to that endpoint's worker: two
 * variables of the worker's own environment (WorkerSpec.env), set per worker and never inherited
 * from the scheduler's (they are not among the worker's config names the provider passes on). The
 * worker reads them once at start and removes them from its environment.
 */
export const ENDPOINT_ENV_VAR = "HEARTH_ENDPOINT_ENV";
export const MODEL_CREDENTIALS_VAR = "HEARTH_MODEL_CREDENTIALS";

export interface WorkerSecrets {
  /** The endpoint's variables (`engine.env`), secrets opened: for its handler's process.env or its engine's environment. */
  endpointEnv: Record<string, string>;
  /** The tenant's credentials for an `s3://` model in its own bucket. */
  modelCredentials?: ModelCredentials;
}

/** The worker's variables for `secrets`. */
export function workerSecretsEnv(secrets: WorkerSecrets): Record<string, string> {
  return {
    ...(Object.keys(secrets.endpointEnv).length > 0 && { [ENDPOINT_ENV_VAR]: JSON.stringify(secrets.endpointEnv) }),
    ...(secrets.modelCredentials !== undefined && { [MODEL_CREDENTIALS_VAR]: JSON.stringify(secrets.modelCredentials) }),
  };
}

const json = <S extends z.ZodType>(schema: S) =>
  z
    .string()
    .transform((s, ctx) => {
      try {
        return JSON.parse(s) as unknown;
      } catch {
        ctx.addIssue({ code: "custom", message: "must be JSON" });
        return z.NEVER;
      }
    })
    .pipe(schema);

// Names are checked again: what reaches process.env must never be one the platform owns. A RunPod
// worker's endpoint may set the SDK's own settings (RUNPOD_*), all but the ones Hearth injects.
const endpointEnv = (runpodWorker: boolean) =>
  z.record(
    z.string().refine((n) => envNameProblem(n, runpodWorker) === undefined, "not a name an endpoint may set"),
    z.string().refine((v) => !v.includes("\0")),
  );

const schema = (runpodWorker: boolean) =>
  z.object({
    [ENDPOINT_ENV_VAR]: json(endpointEnv(runpodWorker)).optional(),
    [MODEL_CREDENTIALS_VAR]: json(modelCredentials).optional(),
  });

/** Reads the worker's secrets from `env` (errors name the variable, never a value). */
export function loadWorkerSecrets(env: NodeJS.ProcessEnv, options: { runpodWorker?: boolean } = {}): WorkerSecrets {
  const c = parseEnv(schema(options.runpodWorker ?? false), env, "worker");
  return {
    endpointEnv: c[ENDPOINT_ENV_VAR] ?? {},
    ...(c[MODEL_CREDENTIALS_VAR] !== undefined && { modelCredentials: c[MODEL_CREDENTIALS_VAR] }),
  };
}
