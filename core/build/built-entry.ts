import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Where the built JavaScript of a process entry lives (`npm run build`, scripts/build.mjs). This
 * file's `import.meta.url` is its source's, in a bundle too (the build keeps it), so the paths are
 * the checkout's wherever the caller runs from.
 */
const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

/** Raised when a process that must run from built JavaScript finds no build; the message says what to run. */
export class BuildMissingError extends Error {
  readonly code = "BUILD_MISSING";
  constructor(readonly path: string) {
    super(`${path} is missing: run \`npm run build\` (npm start and npm test build it for you)`);
    this.name = "BuildMissingError";
  }
}

/** `worker/main.ts` → `<repo>/dist/worker/main.js`; not checked. */
export function builtEntryPath(sourceEntry: string): string {
  return join(repoRoot, "dist", sourceEntry.replace(/\.ts$/, ".js"));
}

/** The same path, checked: throws BuildMissingError when the build is not there. */
export function requireBuiltEntry(sourceEntry: string): string {
  const path = builtEntryPath(sourceEntry);
  if (!existsSync(path)) throw new BuildMissingError(path);
  return path;
}
