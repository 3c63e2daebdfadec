import http from "node:http";
import https from "node:https";

export interface PresignedResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * One request to a presigned S3 URL with node's own client: the body is written from the caller's
 * buffer as it is (fetch copies every BufferSource body, which for 5 MB parts left the worker holding
 * copies until the next full GC), and the answer is read up to `maxBodyBytes` (more fails the
 * request). No redirects: a presigned URL is answered where it points.
 */
export function presignedRequest(
  method: "GET" | "PUT" | "POST" | "DELETE",
  url: string,
  options: { body?: Buffer; headers?: Record<string, string>; maxBodyBytes?: number; timeoutMs?: number } = {},
): Promise<PresignedResponse> {
  const target = new URL(url);
  const maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
  return new Promise((resolve, reject) => {
    const req = (target.protocol === "https:" ? https : http).request(target, {
      method,
      headers: { ...options.headers, ...(options.body !== undefined && { "content-length": String(options.body.length) }) },
      timeout: options.timeoutMs ?? 120_000,
    });
    req.on("timeout", () => req.destroy(new Error(`no answer within ${options.timeoutMs ?? 120_000} ms`)));
    req.on("error", reject);
    req.on("response", (res) => {
      const declared = Number(res.headers["content-length"] ?? "0");
      if (declared > maxBodyBytes) {
        res.destroy();
        reject(new Error(`the answer is ${declared} bytes; at most ${maxBodyBytes} are read`));
        return;
      }
      const parts: Buffer[] = [];
      let size = 0;
      res.on("data", (d: Buffer) => {
        size += d.length;
        if (size > maxBodyBytes) {
          res.destroy();
          reject(new Error(`the answer is over ${maxBodyBytes} bytes`));
          return;
        }
        parts.push(d);
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on("error", reject);
    });
    req.end(options.body);
  });
}
