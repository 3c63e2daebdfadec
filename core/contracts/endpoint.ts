import { z } from "zod";
import { safeText } from "./safe-text.ts";
import { checkProfileArgs, ENGINE_PROFILES } from "../engine/engine-profiles.ts";
import {
  endpointEnvInput,
  endpointEnvStored,
  endpointEnvView,
  modelCredentialsInput,
  modelCredentialsStored,
  modelCredentialsView,
  runpodEnvInput,
} from "./endpoint-env.ts";
import { guardrails, type Guardrails } from "./guardrails.ts";

/** Where an engine's weights come from: materialised to a local path before the engine starts. */
const modelUri = z
  .string()
  .min(1)
  .max(4096)
  .refine((s) => /^(file|s3|https?):\/\//.test(s) || s.startsWith("/"), "must be file://, s3://, https:// or an absolute path");

/**
 * The engine kinds, built once per form their secrets take (core/contracts/endpoint-env.ts): as a
 * tenant sends them, as Postgres holds them (sealed) and as the API shows them (without values).
 * Which sources and directories a model may come from is policy, checked beside the schema
 * (core/engine/model-source-policy.ts), not in it.
 */
function engineSchemas<Env extends z.ZodType, RunPodEnv extends z.ZodType, Credentials extends z.ZodType>(env: Env, runpodEnv: RunPodEnv, modelCredentials: Credentials) {
  /** A handler module: its default export runs each job (RunPod handler semantics). */
  const handler = z.object({
    kind: z.literal("handler"),
    /** Absolute path or file:// URL; must resolve inside one of `HEARTH_HANDLER_DIRS`. */
    module: z.string().min(1),
    /** Variables for the endpoint's workers; the handler reads them from process.env. */
    env: env.optional(),
  });

  /**
   * An engine process that serves the OpenAI HTTP API (vLLM, SGLang, TensorRT-LLM, llama.cpp's
   * server, or the embedded node-llama-cpp server), launched from a profile and supervised by the worker.
   */
  const openai = z
    .object({
      kind: z.literal("openai"),
      profile: z.enum(ENGINE_PROFILES),
      model: modelUri,
      /** Credentials for an `s3://` model in the tenant's own bucket. */
      modelCredentials: modelCredentials.optional(),
      /** The engine's own flags, by their documented long names without dashes: `{"max-model-len": 8192}`. */
      args: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
      /** Name the engine serves the model under (OpenAI `model`). Default: the model's file or folder name. */
      servedModelName: safeText(200).optional(),
      /** Requests one worker runs at once; the engine batches them continuously. */
      concurrency: z.number().int().min(1).max(1024).default(8),
      /** How long the engine may take to load before the worker gives up (ms). */
      startupTimeoutMs: z.number().int().min(1000).max(3_600_000).default(600_000),
      /** Variables for the engine process, added to the clean environment its profile gives it. */
      env: env.optional(),
    })
    .superRefine((spec, ctx) => {
      for (const problem of checkProfileArgs(spec.profile, spec.args)) {
        ctx.addIssue({ code: "custom", path: ["args", problem.key], message: problem.message });
      }
    });

  /**
   * A RunPod serverless worker as it is (`runpod.serverless.start(...)` from the `runpod` Python
   * package): `command` runs in `cwd` and speaks RunPod's worker protocol to a gateway of its own
   * Hearth worker (see worker/engines/runpod/).
   */
  const runpod = z.object({
    kind: z.literal("runpod"),
    /** The program and its arguments, run without a shell: `["python3", "-u", "handler.py"]`. */
    command: z.array(argument).min(1).max(64),
    /** The worker's folder: an absolute path inside one of `HEARTH_HANDLER_DIRS`. */
    cwd: z.string().min(1).max(4096),
    /** Variables added to the worker's clean environment; its own `RUNPOD_*` settings included, the injected ones not. */
    env: runpodEnv.optional(),
    /** The most jobs one worker holds at once, batch takes included. */
    concurrency: z.number().int().min(1).max(256).default(1),
    /** How long the worker may take to ask for its first job before it is given up (ms). */
    startupTimeoutMs: z.number().int().min(1000).max(3_600_000).default(600_000),
  });
  return { handler, openai, runpod, engine: z.discriminatedUnion("kind", [handler, openai, runpod]) };
}

/** One command-line argument: spawn refuses NUL, and a lone surrogate cannot be passed as UTF-8. */
const argument = safeText(4096);

const requested = engineSchemas(endpointEnvInput, runpodEnvInput, modelCredentialsInput);
export const handlerEngine = requested.handler;
export const openaiEngine = requested.openai;
export const runpodEngine = requested.runpod;
export type RunPodEngineSpec = z.infer<typeof runpodEngine>;
export type OpenAIEngineSpec = z.infer<typeof openaiEngine>;

/** An engine as a tenant sends it, and as a worker runs it (without `env` and `modelCredentials`, which reach it apart). */
export const engineSpec = requested.engine;
export type EngineSpec = z.infer<typeof engineSpec>;

/** An engine as stored in Postgres: secret values sealed. What the scheduler reads back. */
export const storedEngineSpec = engineSchemas(endpointEnvStored, endpointEnvStored, modelCredentialsStored).engine;
export type StoredEngineSpec = z.infer<typeof storedEngineSpec>;

/** An engine as the API shows it: `{"secret": true}` for secret values, credentials without their secret. */
export const engineView = engineSchemas(endpointEnvView, endpointEnvView, modelCredentialsView).engine;
export type EngineView = z.infer<typeof engineView>;

export const scalerType = z.enum(["QUEUE_DELAY", "REQUEST_COUNT"]);
export type ScalerType = z.infer<typeof scalerType>;

/** Scaling and execution settings, with RunPod REST v1 field names and defaults. */
const endpointSettings = {
  gpuTypeIds: z.array(z.string().min(1)).max(16),
  workersMin: z.number().int().min(0).max(100),
  workersMax: z.number().int().min(0).max(100),
  /** Seconds an idle worker stays up before it is stopped. */
  idleTimeout: z.number().int().min(1).max(3600),
  scalerType,
  scalerValue: z.number().int().min(1).max(3600),
  executionTimeoutMs: z.number().int().min(5000).max(7 * 24 * 3600 * 1000),
  flashboot: z.boolean(),
  /** Failed worker starts in a row after which queued jobs fail and no worker starts until a change or `/reset` (core/policy/start-breaker.ts). */
  maxFailedStarts: z.number().int().min(1).max(1000),
  /** Warm pool: idle booted (or, with flashboot, paused) workers kept ready besides workersMin and the demand. */
  workersStandby: z.number().int().min(0).max(100),
  /** Input and output checks (core/contracts/guardrails.ts); `null` in a PATCH removes them. */
  guardrails,
};

export const endpointCreate = z
  .object({
    name: safeText(191),
    engine: engineSpec,
    gpuTypeIds: endpointSettings.gpuTypeIds.default([]),
    workersMin: endpointSettings.workersMin.default(0),
    workersMax: endpointSettings.workersMax.default(3),
    idleTimeout: endpointSettings.idleTimeout.default(5),
    scalerType: endpointSettings.scalerType.default("QUEUE_DELAY"),
    scalerValue: endpointSettings.scalerValue.default(4),
    executionTimeoutMs: endpointSettings.executionTimeoutMs.default(600_000),
    flashboot: endpointSettings.flashboot.default(true),
    maxFailedStarts: endpointSettings.maxFailedStarts.default(3),
    workersStandby: endpointSettings.workersStandby.default(0),
    guardrails: endpointSettings.guardrails.optional(),
  })
  .refine((e) => e.workersMin <= e.workersMax, { path: ["workersMin"], message: "workersMin must not exceed workersMax" });
export type EndpointCreate = z.infer<typeof endpointCreate>;

export const endpointPatch = z
  .object({
    name: safeText(191),
    engine: engineSpec,
    ...endpointSettings,
    guardrails: guardrails.nullable(),
  })
  .partial()
  .strict();
export type EndpointPatch = z.infer<typeof endpointPatch>;

/** What the API returns and what the scheduler reads: one shape. */
export interface Endpoint {
  id: string;
  tenantId: string;
  name: string;
  /** Secret values are never in it (see `engineView`). */
  engine: EngineView;
  gpuTypeIds: string[];
  workersMin: number;
  workersMax: number;
  idleTimeout: number;
  scalerType: ScalerType;
  scalerValue: number;
  executionTimeoutMs: number;
  flashboot: boolean;
  maxFailedStarts: number;
  workersStandby: number;
  /** Absent: no checks. */
  guardrails?: Guardrails;
  createdAt: string;
  updatedAt: string;
}
