/**
 * Where a request is answered when the API runs as a Cloudflare Worker:
 * - `app`: by the one Hono app (`createApp`) on this request's own Redis and Postgres connections:
 *   the job path and the OpenAI routes (`/v2/...`), `/healthz`, `/readyz`, `/openapi.json`;
 * - `origin`: forwarded to the Node API at HEARTH_ORIGIN (501 without one): management (`/api/v1`),
 *   whose endpoint checks read handler modules and model directories on the origin's disk and whose
 *   invalidation retries outlive a request, and `/docs`, whose page is read from node_modules;
 * - `unavailable`: `/metrics` (501): prom-client's process metrics and a registry that lives as long
 *   as an isolate (one of many, recycled at will) describe no process an operator can scrape;
 * - `refused`: `/admin` (404, as the edge proxy did): operator routes stay on the private network.
 */
export type FrontDoor = "app" | "origin" | "unavailable" | "refused";

export function frontDoor(pathname: string): FrontDoor {
  if (pathname.startsWith("/v2/") || pathname === "/healthz" || pathname === "/readyz" || pathname === "/openapi.json") return "app";
  if (pathname.startsWith("/api/v1/") || pathname === "/docs" || pathname.startsWith("/docs/")) return "origin";
  if (pathname === "/metrics") return "unavailable";
  if (pathname === "/admin" || pathname.startsWith("/admin/")) return "refused";
  return "app"; // the app's own 404, in its shape
}
