import { z } from "zod";

/** A handler module: its default export runs each job (RunPod handler semantics). */
export const handlerEngine = z.object({
  kind: z.literal("handler"),
  /** Absolute path or file:// URL; must resolve inside one of `HEARTH_HANDLER_DIRS`. */
  module: z.string().min(1),
});

export const engineSpec = z.discriminatedUnion("kind", [handlerEngine]);
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
