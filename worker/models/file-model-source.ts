import { fileURLToPath } from "node:url";
import { resolveModelPath } from "../../core/engine/model-source-policy.ts";
import { ModelSourceError, type ModelSource } from "./model-source.ts";

export interface FileModelSourceOptions {
  /**
   * Directories local models must resolve inside, through symlinks and `..` (HEARTH_MODEL_DIRS).
   * Anything else is refused with MODEL_SOURCE_FORBIDDEN: a tenant names the path, and the worker
   * would otherwise hand any file on the host to its engine.
   */
  allowedDirs: readonly string[];
}

/**
 * `file://` URLs (and, through `ModelStore`, bare absolute paths): the model is already on this
 * machine, so its real path is returned and nothing is copied. Useful for volumes mounted into the
 * worker and for tests.
 */
export class FileModelSource implements ModelSource {
  readonly schemes = ["file:"] as const;
  readonly copies = false;

  constructor(private readonly options: FileModelSourceOptions) {}

  async materialise(uri: URL): Promise<string> {
    let path: string;
    try {
      path = fileURLToPath(uri);
    } catch (err) {
      throw new ModelSourceError("MODEL_URI_INVALID", `${uri.href} is not a local file URL`, { cause: err });
    }
    // The real path is what the engine gets: a link swapped after this check changes nothing.
    const r = await resolveModelPath(path, this.options.allowedDirs, { mustExist: true });
    if (r.ok) return r.path;
    if (r.code === "missing") throw new ModelSourceError("MODEL_NOT_FOUND", `model path ${path} does not exist`);
    throw new ModelSourceError("MODEL_SOURCE_FORBIDDEN", `model path ${path}: ${r.reason}`);
  }
}
