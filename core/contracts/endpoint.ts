import { z } from "zod";
import { checkProfileArgs, ENGINE_PROFILES } from "../engine/engine-profiles.ts";

/** A handler module: its default export runs each job (RunPod handler semantics). */
export const handlerEngine = z.object({
  kind: z.literal("handler"),
  /** Absolute path or file:// URL; must resolve inside one of `HEARTH_HANDLER_DIRS`. */
  module: z.string().min(1),
});

/** Where an engine's weights come from: materialised to a local path before the engine starts. */
const modelUri = z
  .string()
  .min(1)
  .refine((s) => /^(file|s3|https?):\/\//.test(s) || s.startsWith("/"), "must be file://, s3://, https:// or an absolute path");

/**
 * An engine process that serves the OpenAI HTTP API (vLLM, SGLang, TensorRT-LLM, llama.cpp's
 * server, or the embedded node-llama-cpp server), launched from a profile and supervised by the worker.
 */
export const openaiEngine = z
  .object({
    kind: z.literal("openai"),
    profile: z.enum(ENGINE_PROFILES),
    model: modelUri,
    /** The engine's own flags, by their documented long names without dashes: `{"max-model-len": 8192}`. */
    args: z.record(z.string(), z.union([z.string(), z.number(), z.boolean()])).default({}),
    /** Name the engine serves the model under (OpenAI `model`). Default: the model's file or folder name. */
    servedModelName: z.string().min(1).max(200).optional(),
    /** Requests one worker runs at once; the engine batches them continuously. */
    concurrency: z.number().int().min(1).max(1024).default(8),
    /** How long the engine may take to load before the worker gives up (ms). */
    startupTimeoutMs: z.number().int().min(1000).max(3_600_000).default(600_000),
  })
  .superRefine((spec, ctx) => {
    for (const problem of checkProfileArgs(spec.profile, spec.args)) {
      ctx.addIssue({ code: "custom", path: ["args", problem.key], message: problem.message });
    }
  });
export type OpenAIEngineSpec = z.infer<typeof openaiEngine>;

export const engineSpec = z.discriminatedUnion("kind", [handlerEngine, openaiEngine]);
export type EngineSpec = z.infer<typeof engineSpec>;

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
};

export const endpointCreate = z
  .object({
    name: z.string().min(1).max(191),
    engine: engineSpec,
    gpuTypeIds: endpointSettings.gpuTypeIds.default([]),
    workersMin: endpointSettings.workersMin.default(0),
    workersMax: endpointSettings.workersMax.default(3),
    idleTimeout: endpointSettings.idleTimeout.default(5),
    scalerType: endpointSettings.scalerType.default("QUEUE_DELAY"),
    scalerValue: endpointSettings.scalerValue.default(4),
    executionTimeoutMs: endpointSettings.executionTimeoutMs.default(600_000),
    flashboot: endpointSettings.flashboot.default(true),
  })
  .refine((e) => e.workersMin <= e.workersMax, { path: ["workersMin"], message: "workersMin must not exceed workersMax" });
export type EndpointCreate = z.infer<typeof endpointCreate>;

export const endpointPatch = z
  .object({
    name: z.string().min(1).max(191),
    engine: engineSpec,
    ...endpointSettings,
  })
  .partial()
  .strict();
export type EndpointPatch = z.infer<typeof endpointPatch>;

/** What the API returns and what the scheduler reads: one shape. */
export interface Endpoint {
  id: string;
  tenantId: string;
  name: string;
  engine: EngineSpec;
  gpuTypeIds: string[];
  workersMin: number;
  workersMax: number;
  idleTimeout: number;
  scalerType: ScalerType;
  scalerValue: number;
  executionTimeoutMs: number;
  flashboot: boolean;
  createdAt: string;
  updatedAt: string;
}
