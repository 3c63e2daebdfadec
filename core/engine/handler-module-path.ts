import { isInside, realAncestor } from "../fs/real-paths.ts";
import { realpath, stat } from "node:fs/promises";
import { isAbsolute } from "node:path";
import { fileURLToPath } from "node:url";

export type HandlerPathResult = { ok: true; path: string } | { ok: false; reason: string };

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
  return resolveInsideDirs(module, allowedDirs, "module", "file");
}

/**
 * The same check for a RunPod worker's folder (`engine.cwd` of a `runpod` engine): a directory
 * inside one of `allowedDirs`, resolved through symlinks, with the same care not to describe the
 * host's files outside them.
 */
export async function resolveHandlerDir(cwd: string, allowedDirs: readonly string[]): Promise<HandlerPathResult> {
  return resolveInsideDirs(cwd, allowedDirs, "cwd", "directory");
}

async function resolveInsideDirs(given: string, allowedDirs: readonly string[], field: "module" | "cwd", want: "file" | "directory"): Promise<HandlerPathResult> {
  const outside = `${field} is outside the directories allowed by HEARTH_HANDLER_DIRS`;
  let path: string;
  try {
    path = given.startsWith("file:") ? fileURLToPath(given) : given;
  } catch {
    return { ok: false, reason: `${field} is not a valid file:// URL` };
  }
  if (!isAbsolute(path)) return { ok: false, reason: `${field} must be an absolute path or a file:// URL` };

  const realDirs = (await Promise.all(allowedDirs.map((dir) => realpath(dir).catch(() => undefined)))).filter((d) => d !== undefined);
  const real = await realpath(path).catch(() => undefined);
  if (real === undefined) {
    // Missing (or unreadable): judge by the part of the path that does resolve, the same way a file
    // there would have been judged, so a link inside an allowed dir cannot probe beyond it.
    const parent = await realAncestor(path);
    const wouldBeInside = parent !== undefined && realDirs.some((dir) => parent === dir || isInside(dir, parent));
    return { ok: false, reason: wouldBeInside ? `${field} does not exist` : outside };
  }
  if (!realDirs.some((dir) => isInside(dir, real))) return { ok: false, reason: outside };
  const isWanted = await stat(real).then(
    (s) => (want === "file" ? s.isFile() : s.isDirectory()),
    () => false,
  );
  return isWanted ? { ok: true, path: real } : { ok: false, reason: `${field} is not a ${want}` };
}
