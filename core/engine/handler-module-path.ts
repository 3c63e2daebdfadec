import { realpath, stat } from "node:fs/promises";
import { isAbsolute, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

export type HandlerPathResult = { ok: true; path: string } | { ok: false; reason: string };

/**
 * Resolves an endpoint's handler `module` (absolute path or file:// URL) to a real file inside one
 * of `allowedDirs`. Both sides are resolved through symlinks first, so neither `..` nor a link can
 * lead outside. Fails closed: anything unresolvable is refused.
 */
export async function resolveHandlerModule(module: string, allowedDirs: readonly string[]): Promise<HandlerPathResult> {
  let path: string;
  try {
    path = module.startsWith("file:") ? fileURLToPath(module) : module;
  } catch {
    return { ok: false, reason: "module is not a valid file:// URL" };
  }
  if (!isAbsolute(path)) return { ok: false, reason: "module must be an absolute path or a file:// URL" };

  let real: string;
  try {
    real = await realpath(path);
    if (!(await stat(real)).isFile()) return { ok: false, reason: "module is not a file" };
  } catch {
    return { ok: false, reason: "module does not exist" };
  }
  for (const dir of allowedDirs) {
    const realDir = await realpath(dir).catch(() => undefined);
    if (realDir === undefined) continue;
    const rel = relative(realDir, real);
    if (rel !== "" && !rel.startsWith(`..${sep}`) && rel !== ".." && !isAbsolute(rel)) return { ok: true, path: real };
  }
  return { ok: false, reason: "module is outside the directories allowed by HEARTH_HANDLER_DIRS" };
}
