import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../..", import.meta.url));

/**
 * Vitest global setup: `npm run build` once before any test, so the workers and embedded engines
 * the tests start are the same plain JavaScript `npm start` runs (dist/), built from this checkout's
 * sources as they are now. The build script itself, not a copy of its settings.
 */
export function setup(): void {
  execFileSync(process.execPath, ["scripts/build.mjs"], { cwd: root, stdio: ["ignore", "inherit", "inherit"] });
}
