import { isInside, realAncestor } from "../fs/real-paths.ts";
import { realpath, stat } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { fileURLToPath } from "node:url";

export type HandlerPathResult = { ok: true; path: string } | { ok: false; reason: string };

const OUTSIDE = "module is outside the directories allowed by HEARTH_HANDLER_DIRS";

/**
 * Resolves an endpoint's handler `module` (absolute path or file:// URL) to a real file inside one
 * of `allowedDirs`. Both sides are resolved through symlinks first, so neither `..` nor a link can
 * lead outside. Fails closed: anything unresolvable is refused.
 *
 * A tenant chooses the path, so the answer must not tell them about the host's files: anything not
 * inside the allowed directories gets the same reason whether it exists, is a directory or is
 * missing. Only a path that would lie inside them may be told it does not exist or is not a file.
 */
export async function resolveHandlerModule(module: string, allowedDirs: readonly string[]): Promise<HandlerPathResult> {
  let path: string;
  try {
    path = module.startsWith("file:") ? fileURLToPath(module) : module;
  } catch {
    return { ok: false, reason: "module is not a valid file:// URL" };
  }
  if (!isAbsolute(path)) return { ok: false, reason: "module must be an absolute path or a file:// URL" };

  const realDirs = (await Promise.all(allowedDirs.map((dir) => realpath(dir).catch(() => undefined)))).filter((d) => d !== undefined);
  const real = await realpath(path).catch(() => undefined);
  if (real === undefined) {
    // Missing (or unreadable): judge by the part of the path that does resolve, the same way a file
    // there would have been judged, so a link inside an allowed dir cannot probe beyond it.
    const parent = await realAncestor(path);
    const wouldBeInside = parent !== undefined && realDirs.some((dir) => parent === dir || isInside(dir, parent));
    return { ok: false, reason: wouldBeInside ? "module does not exist" : OUTSIDE };
  }
  if (!realDirs.some((dir) => isInside(dir, real))) return { ok: false, reason: OUTSIDE };
  const isFile = await stat(real).then(
    (s) => s.isFile(),
    () => false,
  );
  return isFile ? { ok: true, path: real } : { ok: false, reason: "module is not a file" };
}
