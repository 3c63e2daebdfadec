import { Hono } from "hono";
import { loadScalarBundle, type ScriptAsset } from "../docs/scalar-bundle.ts";

/**
 * Scalar's configuration for the page. Everything that would reach past this origin is off:
 * Scalar's hosted fonts (the bundle falls back to system fonts), its telemetry, its AI agent
 * (enabled by default on localhost, it talks to Scalar's servers) and its developer toolbar (which
 * offers to upload the document to Scalar's registry), and the "Open API Client" button (a link
 * handing this document's URL to client.scalar.com). Requests made from "Try it" go to the
 * API itself (the document names no servers, so Scalar uses the page's origin) without a proxy,
 * and a key typed there is not kept in the browser's storage.
 */
const SCALAR_CONFIGURATION = {
  url: "/openapi.json",
  withDefaultFonts: false,
  telemetry: false,
  agent: { disabled: true },
  showDeveloperTools: "never",
  hideClientButton: true,
  persistAuth: false,
  metaData: { title: "Hearth API reference" },
} as const;

/**
 * What the page may do: its own script (pinned by integrity too), the document and "Try it" on
 * this origin, nothing else; no fonts (system ones) and no eval (the bundle's zod probes for it and
 * does without). Styles need 'unsafe-inline': the bundle injects its CSS as <style> elements and
 * sets style attributes at run time (no nonce can reach those); with images and fonts held to this
 * origin, a style cannot reach anywhere either. `data:` images are the empty icon and inlined ones.
 */
export const DOCS_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'unsafe-inline'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const escapeAttribute = (s: string) => s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/**
 * The page: Scalar's HTML mounting point (a data block it reads its configuration from, which is
 * not a script, so no inline script is needed) and the bundle from this API. The empty icon keeps
 * browsers from asking for a /favicon.ico the API does not have. Nothing in it depends
 * on the request or the server's configuration: there is nothing to leak.
 */
function docsPage(bundle: ScriptAsset): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<link rel="icon" href="data:,">
<title>Hearth API reference</title>
</head>
<body>
<script id="api-reference" type="application/json" data-configuration="${escapeAttribute(JSON.stringify(SCALAR_CONFIGURATION))}"></script>
<script src="/docs/scalar.js?v=${bundle.version}" integrity="${bundle.integrity}"></script>
</body>
</html>
`;
}

/** Headers every docs answer carries: no sniffing, no framing, no referrer to anywhere a link leads. */
const COMMON_HEADERS = { "x-content-type-options": "nosniff", "referrer-policy": "no-referrer" };

/**
 * `GET /docs`, the interactive reference for `/openapi.json`, and `GET /docs/scalar.js`, the bundle
 * it loads. Open like the document itself: both are static and say nothing the document does not.
 * The bundle is read on the first request, not at start, so building the app touches no file.
 */
export function docsRoutes(options: { bundle?: () => Promise<ScriptAsset> } = {}): Hono {
  const load = options.bundle ?? loadScalarBundle;
  let bundle: Promise<ScriptAsset> | undefined;
  const get = () => {
    // A failed read is not cached: the next request tries again.
    bundle ??= load().catch((err: unknown) => {
      bundle = undefined;
      throw err;
    });
    return bundle;
  };

  const router = new Hono();
  router.get("/", async (c) => {
    const page = docsPage(await get());
    // Revalidated on every visit, so an upgraded bundle (a new `?v=`) is picked up at once.
    return c.html(page, 200, { ...COMMON_HEADERS, "content-security-policy": DOCS_CSP, "x-frame-options": "DENY", "cache-control": "no-cache" });
  });
  router.get("/scalar.js", async (c) => {
    const asset = await get();
    // Immutable only under the URL the page names: the same URL without it may change with an upgrade.
    const cache = c.req.query("v") === asset.version ? "public, max-age=31536000, immutable" : "no-cache";
    return c.body(asset.body, 200, { ...COMMON_HEADERS, "content-type": "text/javascript; charset=utf-8", "cache-control": cache, etag: `"${asset.version}"` });
  });
  return router;
}
