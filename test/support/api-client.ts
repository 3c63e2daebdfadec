/** A tiny fetch wrapper for tests: JSON in, `{status, body, headers}` out, with the key as a Bearer token. */
export function apiClient(baseUrl: string) {
  return async function call(method: string, path: string, opts: { key?: string; body?: unknown; raw?: string; rawAuth?: string; headers?: Record<string, string> } = {}) {
    const headers: Record<string, string> = { "content-type": "application/json", ...opts.headers };
    if (opts.rawAuth !== undefined) headers.authorization = opts.rawAuth;
    else if (opts.key) headers.authorization = `Bearer ${opts.key}`;
    const body = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
    const res = await fetch(`${baseUrl}${path}`, { method, headers, body });
    const text = await res.text();
    let parsed: any;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text;
    }
    return { status: res.status, body: parsed, headers: res.headers };
  };
}
