import { Counter, Gauge, Histogram, collectDefaultMetrics, type Registry } from "prom-client";
import { WAIT_REASONS, type WaitReason } from "../core/policy/capacity.ts";

/**
 * Why a worker of this scheduler's provider ended, as a label: the stop reasons the scheduler asks
 * for (scheduler/fleet.ts), and `exited` / `crashed` for a worker that ended without being asked
 * (exit code 0 / anything else).
 */
export const WORKER_END_REASONS = ["idle", "heartbeat_lost", "endpoint_deleted", "leadership_lost", "shutdown", "spec_changed", "crash_loop", "exited", "crashed", "paused_evicted"] as const;
export type WorkerEndReason = (typeof WORKER_END_REASONS)[number];

/** Seconds from asking the provider for a worker to its process running: a local spawn in tens of ms, a pod in many seconds. */
const PROVIDER_START_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Seconds of one converge pass over every endpoint: a few Redis and Postgres round trips each. */
const TICK_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** What one converge of one endpoint found and decided. */
export interface EndpointScale {
  /** Workers the scaling policy wants. */
  desired: number;
  /** Workers that count as capacity now: booting or serving, not draining, not hung. */
  live: number;
  /** Starts the capacity gate held back (0 when none), and why. */
  heldBack: number;
  heldBackReason?: WaitReason;
}

export interface SchedulerMetricsOptions {
  /** The registry the series are registered in (one per process); the caller serves it. */
  registry: Registry;
  /** Also register Node's default process metrics (CPU, memory, event-loop lag). Default true. */
  defaultMetrics?: boolean;
}

/**
 * The scheduler's Prometheus series: what it starts and stops through its provider and why, how
 * long the provider takes to start a worker, how long a converge pass takes, what each endpoint
 * wants against what it has, what capacity holds back, and whether this replica leads. Labels:
 * endpoint ids, the provider's name and reasons from fixed sets, never free text. Gauges per
 * endpoint are set as each endpoint converges and dropped for endpoints no longer served, so a
 * deleted endpoint (or a replica that lost leadership) stops reporting.
 */
export class SchedulerMetrics {
  readonly registry: Registry;
  private readonly started: Counter<"endpoint" | "provider">;
  private readonly startFailures: Counter<"endpoint" | "provider">;
  private readonly ended: Counter<"endpoint" | "reason">;
  private readonly providerStart: Histogram<"provider">;
  private readonly tickSeconds: Histogram;
  private readonly desired: Gauge<"endpoint">;
  private readonly live: Gauge<"endpoint">;
  private readonly heldBack: Gauge<"endpoint" | "reason">;
  private readonly leader: Gauge;
  /** Endpoints with gauge series now: the ones to drop when they are no longer served. */
  private readonly endpoints = new Set<string>();
  /** Endpoints whose end-reason series exist at 0 (a counter that first appears at 1 loses that increase to `increase()`). */
  private readonly endSeries = new Set<string>();

  constructor(options: SchedulerMetricsOptions) {
    const registry = options.registry;
    this.registry = registry;
    const registers = [registry];
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry });
    this.started = new Counter({ name: "hearth_scheduler_workers_started_total", help: "Workers the provider started for this scheduler (the process is running; readiness comes later).", labelNames: ["endpoint", "provider"], registers });
    this.startFailures = new Counter({ name: "hearth_scheduler_worker_start_failures_total", help: "Worker starts that failed (secrets unopenable, provider refused, spawn failed).", labelNames: ["endpoint", "provider"], registers });
    this.ended = new Counter({ name: "hearth_scheduler_workers_stopped_total", help: "Workers of this scheduler's provider that exited, by why: idle, heartbeat_lost, endpoint_deleted, leadership_lost, shutdown (asked to stop), exited or crashed (ended on their own, code 0 or not).", labelNames: ["endpoint", "reason"], registers });
    this.providerStart = new Histogram({ name: "hearth_scheduler_provider_start_seconds", help: "Time from asking the provider for a worker until it reports the worker started (local: the process spawned).", labelNames: ["provider"], buckets: PROVIDER_START_BUCKETS, registers });
    this.tickSeconds = new Histogram({ name: "hearth_scheduler_tick_seconds", help: "Time of one converge pass over every live endpoint (leader only).", buckets: TICK_BUCKETS, registers });
    this.desired = new Gauge({ name: "hearth_scheduler_workers_desired", help: "Workers the scaling policy wants for the endpoint, as of its last converge.", labelNames: ["endpoint"], registers });
    this.live = new Gauge({ name: "hearth_scheduler_workers_live", help: "Workers that count as the endpoint's capacity at its last converge: booting or serving, not draining, not hung.", labelNames: ["endpoint"], registers });
    this.heldBack = new Gauge({ name: "hearth_scheduler_workers_held_back", help: "Starts the endpoint's demand asked for that capacity held back at its last converge, by reason: no_capacity (host cap), quota, billing.", labelNames: ["endpoint", "reason"], registers });
    this.leader = new Gauge({ name: "hearth_scheduler_leader", help: "1 while this scheduler replica holds the leader lock (only the leader starts and stops workers), else 0.", registers });
    this.leader.set(0);
  }

  workerStarted(endpoint: string, provider: string, providerSeconds: number): void {
    this.started.inc({ endpoint, provider });
    this.providerStart.observe({ provider }, providerSeconds);
  }

  workerStartFailed(endpoint: string, provider: string): void {
    this.startFailures.inc({ endpoint, provider });
  }

  workerEnded(endpoint: string, reason: WorkerEndReason): void {
    if (!this.endSeries.has(endpoint)) {
      this.endSeries.add(endpoint);
      for (const r of WORKER_END_REASONS) this.ended.inc({ endpoint, reason: r }, 0);
    }
    this.ended.inc({ endpoint, reason });
  }

  tick(seconds: number): void {
    this.tickSeconds.observe(seconds);
  }

  leadership(leader: boolean): void {
    this.leader.set(leader ? 1 : 0);
    if (!leader) this.keepEndpoints(new Set());
  }

  endpointScaled(endpoint: string, scale: EndpointScale): void {
    this.endpoints.add(endpoint);
    this.desired.set({ endpoint }, scale.desired);
    this.live.set({ endpoint }, scale.live);
    for (const reason of WAIT_REASONS) {
      if (reason === scale.heldBackReason) this.heldBack.set({ endpoint, reason }, scale.heldBack);
      else this.heldBack.remove({ endpoint, reason });
    }
  }

  /** Drops the gauges of endpoints not in `served` (deleted, or no longer this replica's to serve). */
  keepEndpoints(served: ReadonlySet<string>): void {
    for (const endpoint of this.endpoints) {
      if (served.has(endpoint)) continue;
      this.endpoints.delete(endpoint);
      this.desired.remove({ endpoint });
      this.live.remove({ endpoint });
      for (const reason of WAIT_REASONS) this.heldBack.remove({ endpoint, reason });
    }
  }
}
