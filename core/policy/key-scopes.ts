import type { KeyScope } from "../contracts/key-scope.ts";

/*
 * Which scope each tenant route needs, in one place. Anything not listed below needs `full`, so a
 * route added later is closed to narrower keys until it is listed here on purpose.
 */

const RANK: Record<KeyScope, number> = { read: 0, run: 1, full: 2 };

/** True when a key of scope `has` may do what needs `needs`. */
export function scopeAllows(has: KeyScope, needs: KeyScope): boolean {
  return RANK[has] >= RANK[needs];
}

/** `/api/v1/...`: reading (GET, HEAD) is `read`; every change is management (`full`). */
export function managementScope(method: string): KeyScope {
  return method === "GET" || method === "HEAD" ? "read" : "full";
}

/** The job routes past `/v2/{endpointId}/`, by method and the rest of the path. */
const JOB_ROUTES: { methods: readonly string[]; path: RegExp; scope: KeyScope }[] = [
  { methods: ["GET", "POST"], path: /^(status|status-sync|stream)\/[^/]+$/, scope: "read" },
  { methods: ["GET"], path: /^health$/, scope: "read" },
  { methods: ["GET"], path: /^openai\/v1\/models$/, scope: "read" },
  { methods: ["POST"], path: /^(run|runsync|purge-queue)$/, scope: "run" },
  { methods: ["POST"], path: /^(cancel|retry)\/[^/]+$/, scope: "run" },
  { methods: ["POST"], path: /^openai\/v1\/(chat\/completions|completions|embeddings)$/, scope: "run" },
];

/** The scope a `/v2/{endpointId}/...` request needs (`path` is the whole request path). */
export function jobRouteScope(method: string, path: string): KeyScope {
  const m = /^\/v2\/[^/]+\/(.+)$/.exec(path);
  const rest = m?.[1];
  if (rest === undefined) return "full";
  const verb = method === "HEAD" ? "GET" : method;
  return JOB_ROUTES.find((r) => r.methods.includes(verb) && r.path.test(rest))?.scope ?? "full";
}
