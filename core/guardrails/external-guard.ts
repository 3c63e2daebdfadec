import http from "node:http";
import https from "node:https";
import { z } from "zod";
import type { ExternalGuard, GuardrailDirection } from "../contracts/guardrails.ts";
import { connectionLookup, systemResolveAll, type ResolveAll } from "../net/host-resolution.ts";
import type { UrlPolicy } from "../net/url-policy.ts";

/**
 * The external guard's contract (what a NeMo Guardrails sidecar, or any checker, implements):
 *
 *   POST <url>   content-type: application/json
 *   {"direction": "input" | "output", "endpointId": "…", "jobId": "…" (output only), "content": <JSON>}
 *
 * `content` is the job's input as submitted (for the OpenAI routes, the request body) or the job's
 * output. The guard answers 2xx with
 *
 *   {"allow": true}   or   {"allow": false, "rule": "toxicity"}
 *
 * `rule` (optional, `[a-z0-9_.:-]{1,64}`) names why, for the caller's error message and the event
 * log; anything else in the answer is ignored. Any other answer (non-2xx, not that JSON, over 64 KB,
 * no answer within `timeoutMs`, a URL the egress policy refuses now) is an error, which the
 * endpoint's `onError` turns into a block (default: fail closed) or a pass.
 */
export const externalGuardAnswer = z.object({
  allow: z.boolean(),
  rule: z.string().regex(/^[a-z0-9_.:-]{1,64}$/).optional(),
});

export type ExternalVerdict = { ok: true; allow: true } | { ok: true; allow: false; rule?: string } | { ok: false; error: string };

export interface ExternalCheck {
  direction: GuardrailDirection;
  endpointId: string;
  jobId?: string;
  content: unknown;
}

export interface ExternalGuardClientOptions {
  /** Where the guard may be (HEARTH_EGRESS_ALLOWLIST, HEARTH_EGRESS_ALLOW_HTTP): checked on each call, on the addresses really connected to. */
  policy: UrlPolicy;
  /** Default: the system resolver. */
  resolve?: ResolveAll;
  /** Largest answer read (bytes). Default 65536. */
  maxResponseBytes?: number;
}

/** Asks an endpoint's external guard; never throws, an unusable answer is `{ok: false}`. */
export class ExternalGuardClient {
  private readonly resolve: ResolveAll;
  private readonly maxResponseBytes: number;

  constructor(private readonly options: ExternalGuardClientOptions) {
    this.resolve = options.resolve ?? systemResolveAll;
    this.maxResponseBytes = options.maxResponseBytes ?? 64 * 1024;
  }

  check(guard: ExternalGuard, req: ExternalCheck): Promise<ExternalVerdict> {
    let url: URL;
    try {
      url = new URL(guard.url);
    } catch {
      return Promise.resolve({ ok: false, error: "the guard URL is not a valid URL" });
    }
    // Checked again at use: the allow-list may have changed, and the name may resolve elsewhere now (DNS rebinding).
    const verdict = connectionLookup(url, this.options.policy, this.resolve);
    if (!verdict.ok) return Promise.resolve({ ok: false, error: `refused: ${verdict.reason}` });
    let body: string;
    try {
      body = JSON.stringify({ direction: req.direction, endpointId: req.endpointId, ...(req.jobId !== undefined && { jobId: req.jobId }), content: req.content ?? null });
    } catch (err) {
      return Promise.resolve({ ok: false, error: `content is not JSON: ${(err as Error).message}` });
    }
    return new Promise((resolve) => {
      let settled = false;
      const finish = (v: ExternalVerdict) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        request.destroy();
        resolve(v);
      };
      // A fresh connection per check (agent: false): a socket connected before an allow-list change is never reused.
      const request = (url.protocol === "https:" ? https : http).request(url, {
        method: "POST",
        headers: { "content-type": "application/json", "content-length": String(Buffer.byteLength(body)), "user-agent": "Hearth-Guardrails/1" },
        lookup: verdict.lookup,
        agent: false,
      });
      const timer = setTimeout(() => finish({ ok: false, error: `no answer within ${guard.timeoutMs} ms` }), guard.timeoutMs);
      request.on("response", (res) => {
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) return finish({ ok: false, error: `answered HTTP ${status}` });
        const parts: Buffer[] = [];
        let read = 0;
        res.on("data", (b: Buffer) => {
          read += b.length;
          if (read > this.maxResponseBytes) return finish({ ok: false, error: `answer over ${this.maxResponseBytes} bytes` });
          parts.push(b);
        });
        res.on("end", () => {
          let json: unknown;
          try {
            json = JSON.parse(Buffer.concat(parts).toString("utf8"));
          } catch {
            return finish({ ok: false, error: "answer is not JSON" });
          }
          const r = externalGuardAnswer.safeParse(json);
          if (!r.success) return finish({ ok: false, error: 'answer is not {"allow": boolean, "rule"?: string}' });
          finish(r.data.allow ? { ok: true, allow: true } : { ok: true, allow: false, ...(r.data.rule !== undefined && { rule: r.data.rule }) });
        });
        res.on("error", (err) => finish({ ok: false, error: err.message }));
      });
      request.on("error", (err: NodeJS.ErrnoException) => finish({ ok: false, error: err.code === "ADDRESS_REFUSED" ? `refused: ${err.message}` : `${err.code ?? "error"}: ${err.message}` }));
      request.end(body);
    });
  }
}
