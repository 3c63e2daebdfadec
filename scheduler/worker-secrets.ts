import { workerSecretsEnv } from "../core/config/endpoint-secrets-env.ts";
import type { EngineSpec, StoredEngineSpec } from "../core/contracts/endpoint.ts";
import { usesOperatorS3Credentials } from "../core/engine/model-source-policy.ts";
import { EMPTY_ALLOW_LIST, type AllowList } from "../core/net/url-policy.ts";
import { openEngine } from "../core/secrets/endpoint-secrets.ts";
import type { SecretBox } from "../core/secrets/secret-box.ts";

export interface WorkerSecretsOptions {
  /** Opens endpoint secrets (HEARTH_SECRETS_KEY). Default none: an endpoint with secrets cannot start. */
  box?: SecretBox;
  /** HEARTH_MODEL_ALLOWLIST: its `s3://` buckets are the ones the operator's credentials may read. Default empty. */
  modelAllowList?: AllowList;
  /**
   * The operator's S3 credentials as variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
   * AWS_SESSION_TOKEN…), given only to workers whose model is in an allow-listed bucket. Default none.
   */
  operatorS3Env?: Record<string, string>;
}

/** Why a worker of an endpoint could not be given what it needs (names the field, never a value). */
export class WorkerSecretsError extends Error {
  readonly code = "WORKER_SECRETS_UNAVAILABLE";
}

/**
 * What one worker of an endpoint is told: its engine without secrets, and the variables only it
 * gets: the endpoint's own (secrets opened here, the only place they are), the tenant's model
 * credentials, and the operator's S3 credentials where the model is in an allow-listed bucket. A
 * worker may run a tenant's code, so it gets nothing beyond that.
 */
export class WorkerSecrets {
  constructor(private readonly options: WorkerSecretsOptions = {}) {}

  /** Throws WorkerSecretsError when the endpoint's secrets cannot be opened. */
  forWorker(endpointId: string, stored: StoredEngineSpec): { engine: EngineSpec; env: Record<string, string> } {
    const r = openEngine(stored, endpointId, this.options.box);
    if (!r.ok) throw new WorkerSecretsError(`endpoint secrets cannot be opened: ${r.reason}`);
    const { engine, env, modelCredentials } = r.opened;
    const operator =
      engine.kind === "openai" && usesOperatorS3Credentials(engine.model, modelCredentials !== undefined, this.options.modelAllowList ?? EMPTY_ALLOW_LIST)
        ? (this.options.operatorS3Env ?? {})
        : {};
    return { engine, env: { ...operator, ...workerSecretsEnv({ endpointEnv: env, ...(modelCredentials && { modelCredentials }) }) } };
  }
}
