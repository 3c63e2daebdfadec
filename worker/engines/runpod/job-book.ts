import type { DoneMeaning } from "../../../core/engine/runpod-protocol.ts";

/** A job as a RunPod worker takes it: the handler's `job` dict (§3.2). */
export interface GivenJob {
  id: string;
  input: unknown;
}

/** Where the gateway delivers what the worker posts for one job (see RunPodEngine.run). */
export interface JobSink {
  progress(output: unknown): void;
  /** Resolves when the chunk may be acknowledged: the worker's next post waits for it (back-pressure). */
  chunk(output: unknown): Promise<void>;
  done(meaning: Exclude<DoneMeaning, { kind: "progress" }>): void;
}

interface Entry {
  job: GivenJob;
  sink: JobSink;
  held: boolean;
}

interface Waiter<T> {
  resolve(value: T): void;
  timer: NodeJS.Timeout;
}

/**
 * The jobs one RunPod worker has been given: queued for its next take, held by it, or to be
 * stopped through its stop channel. Empty takes and stop polls wait here (long-poll) rather than
 * being answered at once, because the SDK asks again at once after an empty answer (§3.6: an
 * instant 204 made it ask ~1,400 times a second).
 */
export class JobBook {
  private readonly entries = new Map<string, Entry>();
  private readonly queued: Entry[] = [];
  private stops: string[] = [];
  private takers: Array<Waiter<GivenJob[]> & { max: number }> = [];
  private stopWaiters: Array<Waiter<string[]>> = [];
  private closed = false;

  /** Puts a job in line for the worker's next take. */
  add(job: GivenJob, sink: JobSink): void {
    const entry: Entry = { job, sink, held: false };
    this.entries.set(job.id, entry);
    this.queued.push(entry);
    this.serveTakers();
  }

  /**
   * Takes a job back (cancel, timeout, drain): a queued one is dropped; a held one is named on the
   * stop channel, and the worker's later posts for it are refused. True if the worker held it.
   */
  withdraw(id: string): boolean {
    const entry = this.entries.get(id);
    if (!entry) return false;
    this.entries.delete(id);
    if (!entry.held) {
      this.queued.splice(this.queued.indexOf(entry), 1);
      return false;
    }
    this.stops.push(id);
    this.serveStopWaiters();
    return true;
  }

  /** Up to `max` jobs at once, or the first to arrive within `holdMs`; [] when none did (or `signal` fired). */
  take(max: number, holdMs: number, signal?: AbortSignal): Promise<GivenJob[]> {
    if (this.queued.length > 0 || this.closed) return Promise.resolve(this.hand(max));
    return this.wait(this.takers, holdMs, signal, { max }, []);
  }

  /** A take's answer that never reached the worker (its connection closed first): back in line, first. */
  giveBack(jobs: readonly GivenJob[]): void {
    for (const job of [...jobs].reverse()) {
      const entry = this.entries.get(job.id);
      if (!entry?.held) continue;
      entry.held = false;
      this.queued.unshift(entry);
    }
    this.serveTakers();
  }

  /** The job's sink while the worker holds it. */
  held(id: string): JobSink | undefined {
    const entry = this.entries.get(id);
    return entry?.held ? entry.sink : undefined;
  }

  /** The worker finished the job (its final job-done): later posts for it are refused. */
  finish(id: string): void {
    if (this.entries.get(id)?.held) this.entries.delete(id);
  }

  /** The ids the worker must stop, as soon as there are some or within `holdMs`; [] when none. */
  stopsWanted(holdMs: number, signal?: AbortSignal): Promise<string[]> {
    if (this.stops.length > 0 || this.closed) return Promise.resolve(this.takeStops());
    return this.wait(this.stopWaiters, holdMs, signal, {}, []);
  }

  /** Ids the worker holds now. */
  get heldIds(): string[] {
    return [...this.entries.values()].filter((e) => e.held).map((e) => e.job.id);
  }

  /** Answers every waiting poll (empty) and every later one at once: the worker is stopping. */
  close(): void {
    this.closed = true;
    for (const w of this.takers.splice(0)) this.settle(w, []);
    for (const w of this.stopWaiters.splice(0)) this.settle(w, []);
  }

  private hand(max: number): GivenJob[] {
    const given = this.queued.splice(0, max);
    for (const entry of given) entry.held = true;
    return given.map((e) => e.job);
  }

  private takeStops(): string[] {
    const ids = this.stops;
    this.stops = [];
    return ids;
  }

  private serveTakers(): void {
    while (this.queued.length > 0 && this.takers.length > 0) {
      const taker = this.takers.shift()!;
      this.settle(taker, this.hand(taker.max));
    }
  }

  private serveStopWaiters(): void {
    const waiter = this.stopWaiters.shift();
    if (waiter) this.settle(waiter, this.takeStops());
  }

  private settle<T>(waiter: Waiter<T>, value: T): void {
    clearTimeout(waiter.timer);
    waiter.resolve(value);
  }

  private wait<T, W extends Waiter<T>>(list: W[], holdMs: number, signal: AbortSignal | undefined, extra: Omit<W, keyof Waiter<T>>, empty: T): Promise<T> {
    return new Promise<T>((resolve) => {
      const leave = () => {
        const i = list.indexOf(waiter);
        if (i >= 0) list.splice(i, 1);
        signal?.removeEventListener("abort", leave);
        clearTimeout(waiter.timer);
        resolve(empty);
      };
      const waiter = {
        ...extra,
        resolve: (v: T) => {
          signal?.removeEventListener("abort", leave);
          resolve(v);
        },
        timer: setTimeout(leave, holdMs),
      } as W;
      list.push(waiter);
      signal?.addEventListener("abort", leave, { once: true });
    });
  }
}
