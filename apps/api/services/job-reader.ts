import type { Redis } from "ioredis";
import { isTerminal, type JobView, type StreamPage } from "../../../core/contracts/job-view.ts";
import { finishedView, isGone, toJobView } from "../../../core/policy/job-view.ts";
import type { JobData } from "../../../core/queue/job-catalog.ts";
import type { JobEvent } from "../../../core/queue/messages.ts";
import type { EndpointQueues } from "./endpoint-queues.ts";
import type { JobEvents, JobWatch } from "./job-events.ts";
import { explainJobWait } from "./wait-reasons.ts";

export type { StreamPage };

export interface JobReaderOptions {
  queues: EndpointQueues;
  events: JobEvents;
  redis: Redis;
  now?: () => number;
  /** Most chunks one `/stream` call returns. Default 1000. */
  maxChunksPerPage?: number;
}

const isFinished = (e: JobEvent) => e.type === "finished";
const isProgress = (e: JobEvent) => e.type === "finished" || e.type === "chunk";

/** Reads of a job's state: plain, long-polled until it finishes, and its stream drained. */
export class JobReader {
  private readonly now: () => number;
  private readonly maxChunks: number;

  constructor(private readonly options: JobReaderOptions) {
    this.now = options.now ?? Date.now;
    this.maxChunks = options.maxChunksPerPage ?? 1000;
  }

  /** Resolves once this process hears the endpoint's job events: await before submitting a job you will wait on. */
  ready(endpointId: string): Promise<void> {
    return this.options.events.ready(endpointId);
  }

  /** The job's RunPod view, or undefined (→ 404) if unknown, expired or another endpoint's. */
  async view(endpointId: string, jobId: string): Promise<JobView | undefined> {
    return (await this.lookup(endpointId, jobId))?.view;
  }

  /**
   * The view, and for a job still IN_QUEUE why it waits (`waitReason`, `waitDetail`):
   * `revision` is the endpoint's `updatedAt` in ms (core/policy/start-breaker.ts).
   */
  async viewExplained(endpointId: string, jobId: string, revision: number): Promise<JobView | undefined> {
    const found = await this.lookup(endpointId, jobId);
    if (!found || found.view.status !== "IN_QUEUE" || !found.data) return found?.view;
    const now = this.now();
    const wait = await explainJobWait(this.options.redis, this.options.queues.keys, endpointId, revision, Math.max(0, now - found.data.submittedAt), now);
    return wait ? { ...found.view, ...wait } : found.view;
  }

  /** The view and, for a job BullMQ still has, its data. */
  private async lookup(endpointId: string, jobId: string): Promise<{ view: JobView; data?: JobData } | undefined> {
    const { queues } = this.options;
    const read = await queues.readJob(endpointId, jobId);
    if (!read) {
      const tomb = await queues.readTombstone(endpointId, jobId);
      return tomb && { view: tomb };
    }
    if (read.stored.data.endpointId !== endpointId) return undefined;
    const now = this.now();
    if (isGone(read.stored, now)) {
      // A queued job past its TTL must not run later: take it out of the queue now (best effort; the
      // worker checks too). The log records it as expired.
      if (read.stored.state !== "active" && read.stored.state !== "completed" && read.stored.state !== "failed") {
        void queues.remove(endpointId, read.job, "expired").catch(() => {});
      }
      return undefined;
    }
    const view = toJobView(read.stored, now);
    return view && { view, data: read.stored.data };
  }

  /**
   * Starts hearing a job's finish; call (after `ready`) before submitting the job, then pass the
   * watch to `waitFinished`. A fast worker's finish message can overtake the reply to the submit
   * itself (they come on different connections), so listening only after the submit can miss it.
   */
  watchFinish(endpointId: string, jobId: string): JobWatch {
    return this.options.events.watch(endpointId, jobId, isFinished);
  }

  /**
   * Waits up to `waitMs` for the job to finish, then returns its view (terminal or not). A finished
   * job is answered from the envelope in the worker's message: the worker sends it just ahead of
   * BullMQ's own bookkeeping, so a read at that instant could still find the job active. `known`
   * (runsync, which has just built the job and listened from before it existed) saves the first
   * read; its watch is disposed by whoever made it.
   */
  async waitFinished(endpointId: string, jobId: string, waitMs: number, signal?: AbortSignal, known?: { data: JobData; watch: JobWatch }): Promise<JobView | undefined> {
    let watch = known?.watch;
    if (!watch) {
      await this.options.events.ready(endpointId);
      watch = this.options.events.watch(endpointId, jobId, isFinished);
    }
    try {
      let data = known?.data;
      if (!data) {
        const first = await this.lookup(endpointId, jobId);
        if (!first || isTerminal(first.view.status)) return first?.view;
        data = first.data;
      }
      const event = await watch.next(waitMs, signal);
      if (data && event?.type === "finished" && event.result) {
        const early = finishedView({ id: jobId, retries: data.retries }, data, event.result);
        // The message left a large (or streamed) output out: read it from BullMQ once stored.
        return event.outputOmitted ? ((await this.settledView(endpointId, jobId)) ?? early) : early;
      }
      return await this.view(endpointId, jobId);
    } finally {
      if (!known) watch.dispose();
    }
  }

  /**
   * The job's view once BullMQ has stored its result: the finish message goes out just ahead of
   * BullMQ's own write on the worker's connection, so this is a few ms at most (bounded at 2 s).
   */
  async settledView(endpointId: string, jobId: string): Promise<JobView | undefined> {
    for (let i = 0; i < 200; i++) {
      const view = await this.view(endpointId, jobId);
      if (!view || isTerminal(view.status)) return view;
      await new Promise((r) => setTimeout(r, 10));
    }
    return undefined;
  }

  /**
   * One `/stream` poll with drain semantics: returns the chunks buffered since the previous poll,
   * waiting up to `waitMs` for the first one while the job is not finished. The status is read
   * before the chunks: a worker buffers every chunk before it finishes the job, so a terminal
   * status here guarantees this page holds the last chunks (the client stops polling on it).
   */
  async drainStream(endpointId: string, jobId: string, waitMs: number, signal?: AbortSignal): Promise<StreamPage | undefined> {
    await this.options.events.ready(endpointId);
    const watch = this.options.events.watch(endpointId, jobId, isProgress);
    try {
      let view = await this.view(endpointId, jobId);
      if (!view) return undefined;
      let chunks = await this.popChunks(endpointId, jobId);
      if (chunks.length === 0 && !isTerminal(view.status) && waitMs > 0) {
        await watch.next(waitMs, signal);
        view = (await this.view(endpointId, jobId)) ?? view;
        chunks = await this.popChunks(endpointId, jobId);
      }
      return { status: view.status, stream: chunks };
    } finally {
      watch.dispose();
    }
  }

  private async popChunks(endpointId: string, jobId: string): Promise<{ output: unknown }[]> {
    const raw = await this.options.redis.lpop(this.options.queues.keys.stream(endpointId, jobId), this.maxChunks);
    if (!raw) return [];
    return raw.map((r) => {
      try {
        return JSON.parse(r) as { output: unknown };
      } catch {
        return { output: r };
      }
    });
  }
}
