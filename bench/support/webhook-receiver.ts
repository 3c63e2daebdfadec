import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** This process's clock in ms since the epoch, with sub-ms resolution (monotonic: `timeOrigin` + `performance.now()`). */
export const localEpochMs = (): number => performance.timeOrigin + performance.now();

/** What the receiver saw of one id (the body's `id`). */
export interface Arrival {
  /** `localEpochMs()` when the first request naming the id arrived (its headers parsed, before its body was read). */
  firstAt: number;
  /** Requests that named the id: more than 1 means Hearth retried an attempt. */
  requests: number;
  /** The first request carried Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`). */
  signed: boolean;
}

/**
 * A loopback HTTP receiver that answers every POST 200 at once and timestamps its arrival. Requests
 * are matched by the JSON body's `id` (a job's id, as Hearth's webhook body carries it). The
 * timestamp is taken on the `request` event, before the body is read, so the body's size and
 * parsing are not counted.
 */
export class WebhookReceiver {
  private readonly arrivals = new Map<string, Arrival>();
  private readonly waiters = new Map<string, (at: number) => void>();
  private unmatched = 0;

  private constructor(
    private readonly server: ReturnType<typeof createServer>,
    /** `http://127.0.0.1:<port>/hook`. */
    readonly url: string,
  ) {}

  static async start(): Promise<WebhookReceiver> {
    let receiver: WebhookReceiver | undefined;
    const server = createServer((req, res) => receiver!.onRequest(req, res));
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => resolve());
    });
    const { port } = server.address() as AddressInfo;
    receiver = new WebhookReceiver(server, `http://127.0.0.1:${port}/hook`);
    return receiver;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const at = localEpochMs();
    const signed = ["webhook-id", "webhook-timestamp", "webhook-signature"].every((h) => typeof req.headers[h] === "string");
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      res.writeHead(200, { "content-type": "text/plain" }).end("ok");
      let id: unknown;
      try {
        id = (JSON.parse(Buffer.concat(chunks).toString("utf8")) as { id?: unknown }).id;
      } catch {
        // counted below
      }
      if (typeof id !== "string") {
        this.unmatched++;
        return;
      }
      const seen = this.arrivals.get(id);
      if (seen) {
        seen.requests++;
        return;
      }
      this.arrivals.set(id, { firstAt: at, requests: 1, signed });
      this.waiters.get(id)?.(at);
      this.waiters.delete(id);
    });
  }

  /** `firstAt` of the id's first request, waiting up to `timeoutMs` for it; undefined if none came. */
  waitFor(id: string, timeoutMs: number): Promise<number | undefined> {
    const seen = this.arrivals.get(id);
    if (seen) return Promise.resolve(seen.firstAt);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        resolve(undefined);
      }, timeoutMs);
      this.waiters.set(id, (at) => {
        clearTimeout(timer);
        resolve(at);
      });
    });
  }

  arrival(id: string): Arrival | undefined {
    return this.arrivals.get(id);
  }

  /** Requests whose body named no id. */
  get unmatchedRequests(): number {
    return this.unmatched;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
