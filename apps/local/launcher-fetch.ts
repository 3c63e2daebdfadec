import { X509Certificate } from "node:crypto";
import { request } from "node:https";
import { rootCertificates, type PeerCertificate } from "node:tls";
import type { TlsFiles } from "../../core/config/tls-files.ts";

/** The part of a fetch response the launcher reads. */
export interface LauncherResponse {
  ok: boolean;
  status: number;
  text(): Promise<string>;
  json(): Promise<unknown>;
}

export type LauncherFetch = (url: string, init?: { method?: string; headers?: Record<string, string>; body?: string }) => Promise<LauncherResponse>;

/**
 * How `npm start` calls the API it started. Plain HTTP: the global fetch. HTTPS: node:https, which
 * takes a CA per request (the global fetch cannot be told to trust a certificate after start, and
 * the operator's may be self-signed); the server must present exactly the certificate of
 * HEARTH_TLS_CERT, so the host name the launcher dials (127.0.0.1 for HOST=0.0.0.0) need not be in it.
 */
export function launcherFetch(tls: TlsFiles | undefined): LauncherFetch {
  if (!tls) return (url, init) => fetch(url, init);
  const pinned = new X509Certificate(tls.cert).fingerprint256;
  const ca = [...rootCertificates, tls.cert];
  return (url, init = {}) =>
    new Promise((resolve, reject) => {
      const req = request(
        url,
        {
          method: init.method ?? "GET",
          ...(init.headers && { headers: init.headers }),
          ca,
          checkServerIdentity: (_host: string, peer: PeerCertificate) =>
            peer.fingerprint256 === pinned ? undefined : new Error(`the API presented a certificate other than HEARTH_TLS_CERT (${tls.certPath})`),
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on("data", (c: Buffer) => chunks.push(c));
          res.on("error", reject);
          res.on("end", () => {
            const text = Buffer.concat(chunks).toString("utf8");
            const status = res.statusCode ?? 0;
            resolve({ ok: status >= 200 && status < 300, status, text: async () => text, json: async () => JSON.parse(text) as unknown });
          });
        },
      );
      req.on("error", reject);
      req.end(init.body);
    });
}
