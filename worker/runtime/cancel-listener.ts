import type { Worker } from "bullmq";
import type { Redis } from "ioredis";
import type { RedisKeys } from "../../core/queue/keys.ts";
import { whenReady } from "../../core/redis/connect.ts";
import { controlMessage, parseMessage } from "../../core/queue/messages.ts";
import type { CancelRequests } from "./cancel-requests.ts";

export interface CancelListenerOptions {
  /** A connection of its own for the control channel; unsubscribed by `close()`, not closed here. */
  subscriber: Redis;
  keys: RedisKeys;
  endpointId: string;
}

/** Hears the API's cancels for this endpoint's jobs on the control channel and cancels them here. */
export class CancelListener {
  private readonly channel: string;

  constructor(private readonly options: CancelListenerOptions) {
    // Only this endpoint's cancels: a worker hears nothing of other tenants' traffic.
    this.channel = options.keys.controlChannel(options.endpointId);
  }

  /**
   * Subscribes: a cancel for a job the current BullMQ worker runs aborts it; one for a job it does
   * not run goes to `cancels`. `worker` is read at each message: a resume replaces the BullMQ worker,
   * and a cancel sent to the closed one would find nothing to abort.
   */
  async listen(worker: () => Worker | undefined, cancels: CancelRequests): Promise<void> {
    const { subscriber, endpointId } = this.options;
    const channel = this.channel;
    subscriber.on("message", (ch: string, raw: string) => {
      if (ch !== channel) return;
      const msg = parseMessage(controlMessage, raw);
      if (msg?.type !== "cancel" || msg.endpointId !== endpointId) return;
      // Not running here (yet): remember it, in case the job is on its way to this processor.
      if (!worker()?.cancelJob(msg.jobId, "hearth:cancel")) cancels.add(msg.jobId);
    });
    // Subscribing before the connection is ready races ioredis' ready check (refused on a subscribed connection).
    await whenReady(subscriber, "the worker's Redis");
    await subscriber.subscribe(channel);
  }

  /** Unsubscribes from the control channel. */
  close(): Promise<unknown> {
    return this.options.subscriber.unsubscribe(this.channel);
  }
}
