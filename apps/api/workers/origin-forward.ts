/**
 * Forwards a request to the origin API (HEARTH_ORIGIN) as it came, streaming both ways, so
 * long-polls and SSE pass through as they arrive. Web-standard only: it runs in workerd and in Node.
 */
export function forwardToOrigin(origin: string, request: Request, forward: typeof fetch = fetch): Promise<Response> {
  const url = new URL(request.url);
  const headers = new Headers(request.headers);
  headers.delete("host");
  const hasBody = request.method !== "GET" && request.method !== "HEAD";
  return forward(`${origin}${url.pathname}${url.search}`, {
    method: request.method,
    headers,
    body: hasBody ? request.body : undefined,
    signal: request.signal,
    ...(hasBody ? { duplex: "half" } : {}),
  } as RequestInit);
}
