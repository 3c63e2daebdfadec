import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Context, MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import type { HealthView } from "../../../core/contracts/job-view.ts";
import type { GuardrailTrigger } from "../../../core/contracts/guardrails.ts";

/** One endpoint as a scrape sees it: its `/health` counters and the age of its oldest queued job. */
export interface EndpointSample {
  endpointId: string;
  health: HealthView;
  /** Seconds since the oldest waiting job was queued; 0 with none waiting. */
  oldestQueuedAgeS: number;
}

export interface ApiMetricsOptions {
  /** Every live endpoint's sample, read at scrape time (Redis); at most a bounded number of endpoints. */
  sampleEndpoints: () => Promise<EndpointSample[]>;
}

/** Seconds; from a bare handler (~0.1 ms) to a long /runsync wait (90 s). */
const HTTP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 90];

/**
 * The API's Prometheus registry (one per process): HTTP requests by route pattern and status with
 * their latency (recorded by `middleware()`, on every request: one histogram observation), Node's process metrics, and at scrape time each endpoint's jobs, queue and workers from
 * Redis (`render()`). Labels are route patterns, methods, statuses, endpoint ids and states: never a
 * path, job id or anything else a caller chooses.
 */
export class ApiMetrics {
  readonly registry = new Registry();
  private readonly duration: Histogram<"method" | "route" | "status">;
  /** The histogram's child per label set: prom-client hashes a label object on every call otherwise. */
  private readonly children = new Map<string, { observe(v: number): void }>();
  private readonly jobs: Counter<"endpoint" | "status">;
  private readonly queue: Gauge<"endpoint" | "state">;
  private readonly oldest: Gauge<"endpoint">;
  private readonly workers: Gauge<"endpoint" | "state">;
  private readonly throttled: Gauge<"endpoint">;
  private readonly refusals: Counter<"endpoint" | "limit">;
  private readonly guardrails: Counter<"endpoint" | "direction" | "rule" | "action">;

  constructor(private readonly options: ApiMetricsOptions) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    // Its `_count` is the requests by route and status: no separate counter to update on every request.
    this.duration = new Histogram({ name: "hearth_http_request_duration_seconds", help: "HTTP requests answered and the time to answer each (to the response's headers for streams), by route pattern and status.", labelNames: ["method", "route", "status"], buckets: HTTP_BUCKETS, registers });
    this.jobs = new Counter({ name: "hearth_jobs_total", help: "Jobs finished or retried per endpoint, by status (Redis' counters of the endpoint; they restart with a Redis that lost its data).", labelNames: ["endpoint", "status"], registers });
    this.queue = new Gauge({ name: "hearth_queue_jobs", help: "Jobs per endpoint now: queued (waiting, prioritized, delayed) or running.", labelNames: ["endpoint", "state"], registers });
    this.oldest = new Gauge({ name: "hearth_queue_oldest_job_age_seconds", help: "Age of the oldest job waiting in the endpoint's queue (0 when none waits).", labelNames: ["endpoint"], registers });
    this.workers = new Gauge({ name: "hearth_workers", help: "Workers per endpoint by state (idle, initializing, running, unhealthy: each worker in one), from their heartbeats.", labelNames: ["endpoint", "state"], registers });
    // Endpoint ids are those of resolved (owned) endpoints and `limit` one of four words: bounded labels.
    this.refusals = new Counter({ name: "hearth_admission_refusals_total", help: "Requests refused at admission, by endpoint and limit: requests, tokens (rate limits, 429), context_length (400), queue (back-pressure, 429).", labelNames: ["endpoint", "limit"], registers });
    this.guardrails = new Counter({ name: "hearth_guardrail_triggers_total", help: "Guardrail checks that found something, by endpoint, direction (input: checked by the API; output: by the worker, in its own series), rule (email, phone, card, secret, injection, external, external_error) and action taken (block, redact, flag, allow).", labelNames: ["endpoint", "direction", "rule", "action"], registers });
    this.throttled = new Gauge({ name: "hearth_workers_throttled", help: "Workers the endpoint's demand asks for that the scheduler holds back (host capacity, tenant quota, billing).", labelNames: ["endpoint"], registers });
  }

  /** One guardrail trigger (apps/api/services/input-guard.ts). */
  guardrailTriggered(endpointId: string, t: GuardrailTrigger): void {
    this.guardrails.inc({ endpoint: endpointId, direction: t.direction, rule: t.rule, action: t.action });
  }

  /** Counts and times every request, labelled with the route pattern that answered it. */
  middleware(): MiddlewareHandler {
    return async (c, next) => {
      const started = performance.now();
      try {
        await next();
      } finally {
        this.child(c.req.method, routeOf(c), c.res.status).observe((performance.now() - started) / 1000);
      }
    };
  }

  /** One request refused at admission. */
  refused(endpoint: string, limit: "requests" | "tokens" | "context_length" | "queue"): void {
    this.refusals.inc({ endpoint, limit });
  }

  private child(method: string, route: string, status: number): { observe(v: number): void } {
    const key = `${method} ${status} ${route}`;
    let child = this.children.get(key);
    if (child === undefined) {
      child = this.duration.labels({ method, route, status: String(status) });
      this.children.set(key, child);
    }
    return child;
  }

  /** The text exposition, with the per-endpoint series read now. */
  async render(): Promise<{ contentType: string; body: string }> {
    const samples = await this.options.sampleEndpoints();
    // A deleted endpoint's series go with it: set from scratch on every scrape.
    for (const m of [this.jobs, this.queue, this.oldest, this.workers, this.throttled]) m.reset();
    for (const s of samples) {
      const endpoint = s.endpointId;
      const { jobs, workers } = s.health;
      for (const [status, n] of Object.entries({ completed: jobs.completed, failed: jobs.failed, retried: jobs.retried })) this.jobs.inc({ endpoint, status }, n);
      this.queue.set({ endpoint, state: "queued" }, jobs.inQueue);
      this.queue.set({ endpoint, state: "running" }, jobs.inProgress);
      this.oldest.set({ endpoint }, s.oldestQueuedAgeS);
      // `/health`'s `ready` overlaps idle and running (a worker with room): a partition has no place for it.
      for (const state of ["idle", "initializing", "running", "unhealthy"] as const) this.workers.set({ endpoint, state }, workers[state]);
      this.throttled.set({ endpoint }, workers.throttled);
    }
    return { contentType: this.registry.contentType, body: await this.registry.metrics() };
  }
}

/** The pattern of the route that answered (`/v2/:ep/run`); `unmatched` when none did (a 404 of the router). */
function routeOf(c: Context): string {
  const path = routePath(c, -1);
  return path === "" || path.endsWith("*") ? "unmatched" : path;
}
