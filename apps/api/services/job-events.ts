import type { Redis } from "ioredis";
import { jobEvent, parseMessage, type JobEvent } from "../../../core/queue/messages.ts";

type Listener = (event: JobEvent) => void;

/**
 * One pub/sub subscription per API process to the job-events channel, fanned out in memory to
 * the requests waiting on a job (runsync, status-sync, stream long-polls). Registering a waiter
 * costs no Redis round trip, so a waiter can be set up before the read it guards, closing the
 * window in which an event could be missed.
 */
export class JobEvents {
  private readonly listeners = new Map<string, Set<Listener>>();

  private constructor(
    private readonly subscriber: Redis,
    private readonly channel: string,
  ) {}

  /** Subscribes on a dedicated connection (a subscribed ioredis connection can do nothing else). */
  static async create(subscriber: Redis, channel: string): Promise<JobEvents> {
    const events = new JobEvents(subscriber, channel);
    subscriber.on("message", (ch: string, raw: string) => {
      if (ch !== channel) return;
      const event = parseMessage(jobEvent, raw);
      if (event) events.emit(event);
    });
    await subscriber.subscribe(channel);
    return events;
  }

  /**
   * Starts listening for events of `jobId` matching `accept`. Call `next(timeoutMs)` to wait for
   * the first such event (undefined on timeout or abort); always call `dispose()`.
   */
  watch(jobId: string, accept: (e: JobEvent) => boolean): JobWatch {
    let resolveNext: ((e: JobEvent | undefined) => void) | undefined;
    let buffered: JobEvent | undefined;
    const listener: Listener = (e) => {
      if (!accept(e)) return;
      if (resolveNext) {
        const r = resolveNext;
        resolveNext = undefined;
        r(e);
      } else buffered ??= e;
    };
    let set = this.listeners.get(jobId);
    if (!set) this.listeners.set(jobId, (set = new Set()));
    set.add(listener);

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
        set.delete(listener);
        if (set.size === 0) this.listeners.delete(jobId);
        resolveNext?.(undefined);
      },
    };
  }

  /**
   * Calls `listener` with every event of `jobId`, in the order published, until the returned
   * function is called (a live relay, where `watch` would keep only the first event).
   */
  listen(jobId: string, listener: (event: JobEvent) => void): () => void {
    let set = this.listeners.get(jobId);
    if (!set) this.listeners.set(jobId, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(jobId);
    };
  }

  private emit(event: JobEvent): void {
    const set = this.listeners.get(event.jobId);
    if (!set) return;
    for (const l of [...set]) l(event);
  }

  async close(): Promise<void> {
    await this.subscriber.unsubscribe(this.channel).catch(() => {});
    this.subscriber.disconnect();
  }
}

export interface JobWatch {
  next(timeoutMs: number, signal?: AbortSignal): Promise<JobEvent | undefined>;
  dispose(): void;
}
