import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

/** A script the docs page loads, with what the page needs to pin it. */
export interface ScriptAsset {
  body: Uint8Array<ArrayBuffer>;
  /** Subresource Integrity value (`sha384-…`) for the page's `<script integrity>`. */
  integrity: string;
  /** A short content hash: the page asks for `?v=<version>`, so a new bundle is a new URL to every cache. */
  version: string;
}

/** Scalar's self-contained browser build (its CSS and fonts inlined), as @scalar/api-reference exports it. */
export const SCALAR_STANDALONE = "@scalar/api-reference/browser/standalone.js";

/** Reads a script once and hashes it; the caller keeps the promise (3.5 MB: not read again per request). */
export async function loadScriptAsset(path: string): Promise<ScriptAsset> {
  const body = await readFile(path);
  return {
    body,
    integrity: `sha384-${createHash("sha384").update(body).digest("base64")}`,
    version: createHash("sha256").update(body).digest("hex").slice(0, 16),
  };
}

/** The installed Scalar bundle; resolved through the package's own exports, so an upgrade that moves it fails loudly here. */
export function loadScalarBundle(): Promise<ScriptAsset> {
  return loadScriptAsset(createRequire(import.meta.url).resolve(SCALAR_STANDALONE));
}
