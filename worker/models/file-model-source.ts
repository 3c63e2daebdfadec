import { stat } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { ModelSourceError, type ModelSource } from "./model-source.ts";

/**
 * `file://` URLs (and, through `ModelStore`, bare absolute paths): the model is already on this
 * machine, so its own path is returned and nothing is copied. Useful for volumes mounted into the
 * worker and for tests.
 */
export class FileModelSource implements ModelSource {
  readonly schemes = ["file:"] as const;

  async materialise(uri: URL): Promise<string> {
    let path: string;
    try {
      path = fileURLToPath(uri);
    } catch (err) {
      throw new ModelSourceError("MODEL_URI_INVALID", `${uri.href} is not a local file URL`, { cause: err });
    }
    try {
      await stat(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") throw new ModelSourceError("MODEL_NOT_FOUND", `model path ${path} does not exist`, { cause: err });
      throw new ModelSourceError("MODEL_FETCH_FAILED", `model path ${path} cannot be read: ${code ?? (err as Error).message}`, { cause: err });
    }
    return path;
  }
}
