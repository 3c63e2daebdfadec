import { Agent, request } from "node:http";

/**
 * POSTs JSON over one kept-alive connection with node:http. The latency benchmark's client: fetch
 * (undici) spent ~2.7 ms of CPU per request here, on the same two cores as the servers it measures;
 * a client that costs less measures the server more and the client less.
 */
export function keepAlivePoster(baseUrl: string, headers: Record<string, string>, timeoutMs: number) {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const url = new URL(baseUrl);
  return {
    post(path: string, body: string): Promise<{ status: number; text: string }> {
      return new Promise((resolve, reject) => {
        const req = request(
          {
            agent,
            host: url.hostname,
            port: url.port,
            method: "POST",
            path,
            headers: { ...headers, "content-length": Buffer.byteLength(body) },
            timeout: timeoutMs,
          },
          (res) => {
            const chunks: Buffer[] = [];
            res.on("data", (c: Buffer) => chunks.push(c));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString("utf8") }));
            res.on("error", reject);
          },
        );
        req.on("timeout", () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
        req.on("error", reject);
        req.end(body);
      });
    },
    close: () => agent.destroy(),
  };
}
