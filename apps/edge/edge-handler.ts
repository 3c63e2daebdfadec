/**
 * The optional edge in front of the API (a Cloudflare Worker, see wrangler.toml): refuses what the
 * origin would refuse anyway before it crosses the network (a missing key, an oversize body, the
 * operator-only admin routes) and forwards everything else, streaming both ways. Web-standard only,
 * so it runs in workerd and in Node alike.
 */
export interface EdgeOptions {
  /** Base URL of the Hearth API the edge forwards to, e.g. `https://hearth.internal:8080`. */
  origin: string;
  /** The `fetch` used to reach the origin; default the global one. */
  fetch?: typeof fetch;
}

const MB = 1024 * 1024;
/** The same per-operation limits as the API (RunPod's): 10 MB on /run, 20 MB on /runsync. */
const BODY_LIMITS: [RegExp, number][] = [
  [/^\/v2\/[^/]+\/run$/, 10 * MB],
  [/^\/v2\/[^/]+\/runsync$/, 20 * MB],
];
const DEFAULT_LIMIT = 1 * MB;
const AUTHENTICATED = /^\/(v2|api\/v1)\//;
const FORWARDED = /^\/(v2|api\/v1)\/|^\/(healthz|readyz)$/;

const jsonError = (status: number, code: string, error: string) =>
  new Response(JSON.stringify({ error, code }), { status, headers: { "content-type": "application/json" } });

export function createEdgeHandler(options: EdgeOptions): (request: Request) => Promise<Response> {
  const origin = options.origin.replace(/\/+$/, "");
  const forward = options.fetch ?? fetch;
  return async function edgeFetch(request: Request): Promise<Response> {
    const url = new URL(request.url);
    if (!FORWARDED.test(url.pathname)) return jsonError(404, "not_found", "no such route");
    if (AUTHENTICATED.test(url.pathname) && !request.headers.get("authorization")) {
      return jsonError(401, "unauthorized", "missing API key: send Authorization: Bearer <key>");
    }
    const limit = BODY_LIMITS.find(([re]) => re.test(url.pathname))?.[1] ?? DEFAULT_LIMIT;
    const declared = Number(request.headers.get("content-length") ?? 0);
    if (declared > limit) {
      return jsonError(413, "payload_too_large", `request body exceeds the ${Math.round(limit / MB)} MB limit of this operation`);
    }
    const headers = new Headers(request.headers);
    headers.delete("host");
    const hasBody = request.method !== "GET" && request.method !== "HEAD";
    // The body and the answer are streams: long-polls and SSE pass through as they arrive.
    return forward(`${origin}${url.pathname}${url.search}`, {
      method: request.method,
      headers,
      body: hasBody ? request.body : undefined,
      signal: request.signal,
      ...(hasBody ? { duplex: "half" } : {}),
    } as RequestInit);
  };
}
