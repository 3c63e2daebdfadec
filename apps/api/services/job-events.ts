import type { Redis } from "ioredis";
import type { RedisKeys } from "../../../core/queue/keys.ts";
import { jobEvent, parseMessage, type JobEvent } from "../../../core/queue/messages.ts";

type Listener = (event: JobEvent) => void;

export interface JobEventsOptions {
  /** A dedicated connection (a subscribed ioredis connection can do nothing else); closed by `close()`. */
  subscriber: Redis;
  keys: RedisKeys;
  /** How long an endpoint's channel stays subscribed after its last waiter left (ms). Default 60000. */
  lingerMs?: number;
}

/**
 * Job progress for the requests waiting on it (runsync, status-sync, stream long-polls, SSE relays),
 * from per-endpoint pub/sub channels: this process subscribes to an endpoint's channel only while
 * it has waiters on that endpoint (and a while after), so it never hears other endpoints' traffic.
 * Registering a waiter costs no Redis round trip once the channel is subscribed (`ready`), so a
 * waiter can be set up before the read it guards, closing the window in which an event could be missed.
 */
export class JobEvents {
  private readonly listeners = new Map<string, Set<Listener>>();
  /** endpointId → its subscription, and how many waiters use it. */
  private readonly channels = new Map<string, { ready: Promise<void>; users: number; idleTimer?: NodeJS.Timeout }>();
  private readonly lingerMs: number;
  private closed = false;

  constructor(private readonly options: JobEventsOptions) {
    this.lingerMs = options.lingerMs ?? 60_000;
    options.subscriber.on("message", (_ch: string, raw: string) => {
      const event = parseMessage(jobEvent, raw);
      if (event) this.emit(event);
    });
  }

  /**
   * Resolves once this process hears `endpointId`'s job events. Call (and await) before submitting
   * or reading a job whose events a waiter must not miss; free once subscribed.
   */
  ready(endpointId: string): Promise<void> {
    let ch = this.channels.get(endpointId);
    if (!ch) {
      const channel = this.options.keys.jobEventsChannel(endpointId);
      ch = { ready: this.options.subscriber.subscribe(channel).then(() => undefined), users: 0 };
      ch.ready.catch(() => this.channels.delete(endpointId)); // the next waiter tries again
      this.channels.set(endpointId, ch);
      this.release(endpointId); // unused until a waiter comes: start the linger now
    }
    return ch.ready;
  }

  /**
   * Starts listening for events of `jobId` matching `accept`. Call `next(timeoutMs)` to wait for
   * the first such event (undefined on timeout or abort); always call `dispose()`.
   */
  watch(endpointId: string, jobId: string, accept: (e: JobEvent) => boolean): JobWatch {
    let resolveNext: ((e: JobEvent | undefined) => void) | undefined;
    let buffered: JobEvent | undefined;
    const stop = this.listen(endpointId, jobId, (e) => {
      if (!accept(e)) return;
      if (resolveNext) {
        const r = resolveNext;
        resolveNext = undefined;
        r(e);
      } else buffered ??= e;
    });

    return {
      next: (timeoutMs, signal) => {
        if (buffered) {
          const e = buffered;
          buffered = undefined;
          return Promise.resolve(e);
        }
        if (timeoutMs <= 0 || signal?.aborted) return Promise.resolve(undefined);
        return new Promise((resolve) => {
          const done = (e: JobEvent | undefined) => {
            clearTimeout(timer);
            signal?.removeEventListener("abort", onAbort);
            resolveNext = undefined;
            resolve(e);
          };
          const onAbort = () => done(undefined);
          const timer = setTimeout(() => done(undefined), timeoutMs);
          signal?.addEventListener("abort", onAbort, { once: true });
          resolveNext = done;
        });
      },
      dispose: () => {
        stop();
        resolveNext?.(undefined);
      },
    };
  }

  /**
   * Calls `listener` with every event of `jobId`, in the order published, until the returned
   * function is called (a live relay, where `watch` would keep only the first event).
   */
  listen(endpointId: string, jobId: string, listener: Listener): () => void {
    void this.ready(endpointId).catch(() => {});
    const ch = this.channels.get(endpointId);
    if (ch) {
      ch.users++;
      clearTimeout(ch.idleTimer);
      ch.idleTimer = undefined;
    }
    let set = this.listeners.get(jobId);
    if (!set) this.listeners.set(jobId, (set = new Set()));
    set.add(listener);
    let stopped = false;
    return () => {
      if (stopped) return;
      stopped = true;
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(jobId);
      if (ch && this.channels.get(endpointId) === ch) {
        ch.users--;
        this.release(endpointId);
      }
    };
  }

  /** Unsubscribes an endpoint's channel once it has had no waiter for `lingerMs`. */
  private release(endpointId: string): void {
    const ch = this.channels.get(endpointId);
    if (!ch || ch.users > 0 || ch.idleTimer || this.closed) return;
    ch.idleTimer = setTimeout(() => {
      if (this.channels.get(endpointId) !== ch || ch.users > 0) return;
      this.channels.delete(endpointId);
      void this.options.subscriber.unsubscribe(this.options.keys.jobEventsChannel(endpointId)).catch(() => {});
    }, this.lingerMs);
    ch.idleTimer.unref();
  }

  private emit(event: JobEvent): void {
    const set = this.listeners.get(event.jobId);
    if (!set) return;
    for (const l of [...set]) l(event);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const ch of this.channels.values()) clearTimeout(ch.idleTimer);
    this.channels.clear();
    this.options.subscriber.disconnect();
  }
}

export interface JobWatch {
  next(timeoutMs: number, signal?: AbortSignal): Promise<JobEvent | undefined>;
  dispose(): void;
}
