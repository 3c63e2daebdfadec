import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import { performance } from "node:perf_hooks";
import { Webhook } from "standardwebhooks";
import { connectionLookup, systemResolveAll, type ResolveAll } from "../../core/net/host-resolution.ts";
import type { UrlPolicy } from "../../core/net/url-policy.ts";
import { parseRetryAfterMs } from "../../core/webhooks/retry-schedule.ts";

export interface WebhookAttemptRequest {
  url: string;
  /** `webhook-id`: the same on every attempt of one delivery, so receivers can deduplicate. */
  webhookId: string;
  /** The JSON text sent, exactly as signed. */
  body: string;
  /** `whsec_…` secrets to sign with: one, or two while a rotation's old secret still signs. Never logged or returned. */
  secrets: string[];
  /** When the attempt is made, ms epoch; `webhook-timestamp` carries it in seconds. */
  timestampMs: number;
}

/**
 * `delivered`: a 2xx. `retry`: worth another attempt later (connection error, timeout, 429, 5xx),
 * with the receiver's Retry-After when it gave one. `stop`: another attempt would fare no better
 * (other 4xx, a redirect, a refused address, a URL that cannot be sent to).
 */
export type AttemptOutcome =
  | { kind: "delivered"; status: number; latencyMs: number }
  | { kind: "retry"; status?: number; latencyMs: number; error: string; retryAfterMs?: number }
  | { kind: "stop"; status?: number; latencyMs: number; error: string };

export interface WebhookSenderOptions {
  /** Where webhooks may go (core/config/egress.ts `egressPolicy`); checked on the address actually connected to. */
  policy: UrlPolicy;
  /** The whole attempt, connect to the end of the response body, ms. Default 15000; past it: `retry`. */
  timeoutMs?: number;
  /** Default `Hearth-Webhooks/1`. */
  userAgent?: string;
  /** Response body bytes read (and discarded) before the connection is dropped. Default 64 KiB. */
  maxResponseBytes?: number;
  /** Resolves receivers' host names. Default: the system resolver (tests give fixed answers). */
  resolve?: ResolveAll;
  /** Now, ms epoch, for Retry-After dates. Default Date.now. */
  now?: () => number;
}

/** A connection that did not get a response in time. */
class AttemptTimeoutError extends Error {
  readonly code = "ETIMEDOUT";
}

const MAX_ERROR_CHARS = 300;

/**
 * Makes one delivery attempt of a webhook: a signed POST (Standard Webhooks) over a fresh connection,
 * its address checked against the policy at connect (so a name re-pointed since submission, DNS
 * rebinding, gains nothing), redirects never followed. Never throws; says what to do next.
 */
export class WebhookSender {
  private readonly policy: UrlPolicy;
  private readonly timeoutMs: number;
  private readonly userAgent: string;
  private readonly maxResponseBytes: number;
  private readonly resolve: ResolveAll;
  private readonly now: () => number;

  constructor(opts: WebhookSenderOptions) {
    this.policy = opts.policy;
    this.timeoutMs = opts.timeoutMs ?? 15_000;
    this.userAgent = opts.userAgent ?? "Hearth-Webhooks/1";
    this.maxResponseBytes = opts.maxResponseBytes ?? 64 * 1024;
    this.resolve = opts.resolve ?? systemResolveAll;
    this.now = opts.now ?? Date.now;
  }

  async send(req: WebhookAttemptRequest): Promise<AttemptOutcome> {
    const started = performance.now();
    const stop = (error: string): AttemptOutcome => ({ kind: "stop", latencyMs: Math.round(performance.now() - started), error: clip(error) });

    let url: URL;
    try {
      url = new URL(req.url);
    } catch {
      return stop("the webhook is not a valid URL");
    }
    const verdict = connectionLookup(url, this.policy, this.resolve);
    if (!verdict.ok) return stop(`refused: ${verdict.reason}`);
    const lookup = verdict.lookup;

    let headers: Record<string, string>;
    try {
      headers = this.headers(req);
    } catch (err) {
      return stop((err as Error).message);
    }
    return this.post(url, headers, req.body, lookup, started);
  }

  private headers(req: WebhookAttemptRequest): Record<string, string> {
    if (req.secrets.length === 0) throw new Error("no signing secret for this webhook");
    const at = new Date(req.timestampMs);
    const signatures = req.secrets.map((secret) => {
      try {
        return new Webhook(secret).sign(req.webhookId, at, req.body);
      } catch {
        // The library's message may quote the secret; this one does not.
        throw new Error("a signing secret is malformed");
      }
    });
    return {
      "content-type": "application/json",
      "content-length": String(Buffer.byteLength(req.body)),
      "user-agent": this.userAgent,
      "webhook-id": req.webhookId,
      "webhook-timestamp": String(Math.floor(req.timestampMs / 1000)),
      // Standard Webhooks: space-separated signatures; a receiver holding either secret verifies.
      "webhook-signature": signatures.join(" "),
    };
  }

  private post(url: URL, headers: Record<string, string>, body: string, lookup: LookupFunction, started: number): Promise<AttemptOutcome> {
    return new Promise((resolve) => {
      let settled = false;
      let outcome: AttemptOutcome | undefined;
      const finish = (o: AttemptOutcome) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(o);
      };
      let request: http.ClientRequest;
      try {
        // A fresh connection per attempt (agent: false): no socket connected to an earlier answer is reused.
        request = (url.protocol === "https:" ? https : http).request(url, { method: "POST", headers, lookup, agent: false });
      } catch (err) {
        // Thrown at once for what cannot be sent at all (a header value with a newline, say).
        return resolve({ kind: "stop", latencyMs: Math.round(performance.now() - started), error: clip(`cannot send: ${(err as Error).message}`) });
      }
      const timer = setTimeout(() => {
        // Once the status is in, only the body was slow: the status decides, the socket goes.
        if (outcome !== undefined) {
          request.destroy();
          return finish(outcome);
        }
        request.destroy(new AttemptTimeoutError(`no response within ${this.timeoutMs} ms`));
      }, this.timeoutMs);

      request.on("response", (res) => {
        outcome = this.judge(res.statusCode ?? 0, res.headers, Math.round(performance.now() - started));
        // Read (and drop) a little of the body so a well-behaved receiver sees its answer taken;
        // past the cap, or if it never ends, the socket is dropped.
        let read = 0;
        res.on("data", (chunk: Buffer) => {
          read += chunk.length;
          if (read > this.maxResponseBytes) {
            res.destroy();
            finish(outcome!);
          }
        });
        res.on("end", () => finish(outcome!));
        res.on("close", () => finish(outcome!));
        res.on("error", () => finish(outcome!));
      });
      request.on("error", (err: NodeJS.ErrnoException) => {
        if (outcome !== undefined) return finish(outcome);
        const latency = Math.round(performance.now() - started);
        if (err.code === "ADDRESS_REFUSED") return finish({ kind: "stop", latencyMs: latency, error: clip(`refused: ${err.message}`) });
        finish({ kind: "retry", latencyMs: latency, error: clip(err.code ? `${err.code}: ${err.message}` : err.message) });
      });
      request.end(body);
    });
  }

  private judge(status: number, headers: http.IncomingHttpHeaders, latencyMs: number): AttemptOutcome {
    if (status >= 200 && status < 300) return { kind: "delivered", status, latencyMs };
    if (status >= 300 && status < 400) {
      const location = headers.location;
      return { kind: "stop", status, latencyMs, error: clip(location ? `HTTP ${status}: redirect to ${location} not followed` : `HTTP ${status}: redirects are not followed`) };
    }
    if (status === 429 || status >= 500) {
      const retryAfterMs = parseRetryAfterMs(headers["retry-after"], this.now());
      return { kind: "retry", status, latencyMs, error: `HTTP ${status}`, ...(retryAfterMs !== undefined && { retryAfterMs }) };
    }
    return { kind: "stop", status, latencyMs, error: `HTTP ${status}` };
  }
}

/** Errors are stored and shown to the tenant: bounded, whatever a receiver puts in a Location. */
function clip(text: string): string {
  return text.length <= MAX_ERROR_CHARS ? text : `${text.slice(0, MAX_ERROR_CHARS - 1)}…`;
}
