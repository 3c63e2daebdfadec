import { z } from "zod";
import { SHA256_HEX } from "../../core/weights/model-digest.ts";

/** The file in each entry (`sha256/<digest>/`) saying what it holds; written before the entry is renamed into place. */
export const MANIFEST = ".hearth-model.json";
export const entryManifest = z.object({ digest: z.string().regex(SHA256_HEX), path: z.string().min(1), bytes: z.number().int().min(0), completedAt: z.string() });
/** Which entry a model URI was last found to be (`refs/<key>.json`). */
export const refSchema = z.object({ uri: z.string(), digest: z.string().regex(SHA256_HEX), path: z.string().min(1) });

export function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}
