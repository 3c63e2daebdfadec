import type { FinishReporter } from "./finish-reporter.ts";
import type { JobProcessor } from "./job-processor.ts";
import type { Lifecycle } from "./lifecycle.ts";
import type { RuntimeMetrics } from "./runtime-metrics.ts";
import type { ColdStartTimings } from "./cold-start-timings.ts";
import type { RuntimePhase } from "./worker-runtime-options.ts";

export interface InFlightJobsOptions {
  lifecycle: Lifecycle;
  finisher: FinishReporter;
  timings: ColdStartTimings;
  /** The worker's metrics, read as each job starts: they may be attached after the runtime is made. */
  metrics: () => RuntimeMetrics | undefined;
  onPhase: (phase: RuntimePhase, detail?: Record<string, unknown>) => void;
  onError: (err: unknown, context: string) => void;
}

/**
 * The jobs this worker runs: how many are in flight (the heartbeat's `running` and the
 * idle ⇄ running flip) and the reports they leave behind, which a drain waits for.
 */
export class InFlightJobs {
  private count = 0;
  private sawFirstJob = false;
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly options: InFlightJobsOptions) {}

  /** Jobs in flight now. */
  get running(): number {
    return this.count;
  }

  /** Wraps the processor with in-flight counting; keeps BullMQ's three parameters so it still passes the signal. */
  counted(processor: JobProcessor): JobProcessor {
    const { lifecycle } = this.options;
    return async (job, token, signal) => {
      const metrics = this.options.metrics();
      this.count++;
      metrics?.jobsRunning(this.count);
      if (!this.sawFirstJob) {
        this.sawFirstJob = true;
        // A milestone of the worker's (its first job's id, not a line about that job: the job's own lines carry its jobId and traceId).
        this.options.onPhase("first-job", { firstJobId: job.id });
      }
      if (lifecycle.state === "idle") lifecycle.to("running");
      try {
        const result = await processor(job, token, signal);
        // Announced as the processor returns, not on BullMQ's `completed` event: the announcement and
        // BullMQ's moveToFinished leave back to back on this one connection, so Redis has stored the
        // result by the time a waiter can ask, and the waiter is not one more round trip away.
        // Without a token (never, with BullMQ's Worker) there is no lock to check: say nothing early.
        if (token !== undefined) this.track(this.options.finisher.report(job.id!, token, result), "finish report");
        metrics?.jobFinished(result);
        return result;
      } finally {
        this.count--;
        metrics?.jobsRunning(this.count);
        this.options.timings.jobFinished();
        if (this.count === 0 && lifecycle.state === "running") lifecycle.to("idle");
      }
    };
  }

  /** Keeps a report in flight until it settles; a failed one goes to `onError` with `context`. */
  track(p: Promise<void>, context: string): void {
    const tracked = p.catch((err) => this.options.onError(err, context)).finally(() => this.pending.delete(tracked));
    this.pending.add(tracked);
  }

  /** Settles once every report tracked so far has. */
  settled(): Promise<unknown> {
    return Promise.allSettled([...this.pending]);
  }
}
