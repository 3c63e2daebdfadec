import { createRoute, type OpenAPIHono, type RouteConfig } from "@hono/zod-openapi";
import type { Context } from "hono";
import { z } from "zod";
import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import { runRequest, type RunRequest } from "../../../core/contracts/job-request.ts";
import { resourceId } from "../../../core/contracts/safe-text.ts";
import { healthView, jobStatus, jobView, streamPage } from "../../../core/contracts/job-view.ts";
import { ApiError } from "../api-error.ts";
import { jobAdmission } from "../middleware/job-admission.ts";
import { rateLimit } from "../middleware/rate-limit.ts";
import { originOf, tenantAuth, type TenantEnv } from "../middleware/tenant-auth.ts";
import { syncRetentionMs } from "../../../core/policy/retention.ts";
import { jobRouteScope } from "../../../core/policy/key-scopes.ts";
import { endpointHealth } from "../services/endpoint-health.ts";
import { checkSubmission } from "../services/submission-checks.ts";
import type { ApiDeps } from "../api-deps.ts";
import { openaiRoutes } from "./openai-routes.ts";
import { apiRouter, commonErrors, errorResponse, hotRoute, idempotencyKey, jsonRequest, okJson, tenantSecurity, withExample } from "./route-kit.ts";
import { cancelledJob, completedJob, completedSyncJob, healthExample, jobErrors, queuedJob, retriedJob, streamExample, waitingJob } from "./examples/job-examples.ts";

type JobEnv = { Variables: TenantEnv["Variables"] & { endpoint: Endpoint } };

const MB = 1024 * 1024;
const waitQuery = (dflt: number, min: number, max: number, what: string) =>
  z.object({ wait: z.coerce.number().int().min(min).max(max).default(dflt).describe(what) });
const syncWait = waitQuery(90_000, 1000, 300_000, "How long to wait for the job to finish, ms (default 90000).");
/** `/runsync`'s: whether the caller gave `wait` decides how long the result stays (core/policy/retention.ts). */
const runsyncWait = z.object({
  wait: z.coerce.number().int().min(1000).max(300_000).optional().describe("How long to wait for the job to finish, ms (default 90000); the result then stays readable that long (at least HEARTH_RETENTION_SYNC_S, at most 5 min)."),
});
/** `/stream` holds a poll briefly when nothing is buffered, so a client polling without pause (runpod-sdk) does not spin. */
const streamWait = waitQuery(1000, 0, 10_000, "How long to hold the poll when nothing is buffered, ms (default 1000).");

const epParam = z.object({ ep: resourceId.describe("The endpoint id.") });
const jobParams = epParam.extend({ id: resourceId.describe("The job id.") });

const idempotencyHeaders = z.object({
  "idempotency-key": idempotencyKey.optional().describe("A repeat with the same key from the same tenant within 24 h returns the first job instead of queueing another."),
});

const tags = ["jobs (RunPod)"];
/** Errors of the routes on one job; `epErrors` of those on the endpoint (its 404 names the endpoint). */
const errors = { 400: withExample(commonErrors[400], jobErrors.invalidWait), 401: commonErrors[401], 404: withExample(commonErrors[404], jobErrors.notFound) };
const epErrors = { ...errors, 404: commonErrors[404] };
const runScope = { 403: withExample(commonErrors[403], jobErrors.runScope) };
const runErrors = { ...epErrors, 400: withExample(commonErrors[400], jobErrors.invalidBody), ...runScope };
const tooLarge = (mb: number) => ({
  413: errorResponse(`The body is larger than ${mb} MB or the tenant's maxInputBytes.`, jobErrors.tooLarge(mb)),
  429: errorResponse(
    "A request rate limit of the tenant or key (`rate_limit_exceeded`, with Retry-After and X-RateLimit-Limit/Remaining/Reset), or the endpoint's queue is at the tenant's maxQueuedJobsPerEndpoint or HEARTH_QUEUE_CAPACITY_MULTIPLE × its capacity (`queue_full`); retry after Retry-After seconds.",
    jobErrors.rateLimited,
  ),
});

const route = <R extends RouteConfig>(r: R) => createRoute({ tags, security: tenantSecurity, ...r });
const both = <R extends Omit<RouteConfig, "method">>(r: R) => [route({ ...r, method: "get" as const }), route({ ...r, method: "post" as const })] as const;

const buildRoutes = (deps: ApiDeps) => ({
  run: route({
    method: "post",
    path: "/{ep}/run",
    summary: "Queue a job (asynchronous)",
    middleware: [jobAdmission({ policy: deps.policy, billing: deps.billing, operationMaxBytes: 10 * MB })] as const,
    request: { params: epParam, headers: idempotencyHeaders, body: jsonRequest(runRequest) },
    responses: { ...okJson(z.object({ id: z.string(), status: jobStatus }), "Queued (or, for a repeated Idempotency-Key, the first job as it is now).", queuedJob), ...runErrors, ...tooLarge(10) },
  }),
  runsync: route({
    method: "post",
    path: "/{ep}/runsync",
    summary: "Run a job and wait for its result",
    middleware: [jobAdmission({ policy: deps.policy, billing: deps.billing, operationMaxBytes: 20 * MB })] as const,
    request: { params: epParam, query: runsyncWait, headers: idempotencyHeaders, body: jsonRequest(runRequest) },
    responses: {
      ...okJson(z.union([jobView, z.object({ id: z.string(), status: jobStatus })]), "The finished job, or the job IN_QUEUE/IN_PROGRESS when `wait` passed first.", completedSyncJob),
      ...runErrors,
      ...tooLarge(20),
    },
  }),
  status: both({
    path: "/{ep}/status/{id}",
    summary: "A job's status and output",
    request: { params: jobParams },
    responses: { ...okJson(jobView, "The job.", completedJob), ...errors },
  }),
  statusSync: both({
    path: "/{ep}/status-sync/{id}",
    summary: "Wait for a job to finish, then its status and output",
    request: { params: jobParams, query: syncWait },
    responses: { ...okJson(jobView, "The job, finished or as it was when `wait` passed.", waitingJob), ...errors },
  }),
  stream: both({
    path: "/{ep}/stream/{id}",
    summary: "The chunks a streaming job produced since the last read",
    request: { params: jobParams, query: streamWait },
    responses: { ...okJson(streamPage, "The job's status and its new chunks.", streamExample), ...errors },
  }),
  cancel: route({
    method: "post",
    path: "/{ep}/cancel/{id}",
    summary: "Cancel a job",
    request: { params: jobParams },
    responses: { ...okJson(jobView, "The job after the cancel.", cancelledJob), ...errors, ...runScope },
  }),
  retry: route({
    method: "post",
    path: "/{ep}/retry/{id}",
    summary: "Queue a failed or timed-out job again",
    request: { params: jobParams },
    responses: { ...okJson(jobView, "The job, queued again.", retriedJob), ...errors, ...runScope, 400: errorResponse("The job is not FAILED or TIMED_OUT (`not_retryable`).", jobErrors.notRetryable) },
  }),
  purge: route({
    method: "post",
    path: "/{ep}/purge-queue",
    summary: "Remove every queued job (running ones finish)",
    request: { params: epParam },
    responses: { ...okJson(z.object({ removed: z.number(), status: z.literal("completed") }), "How many queued jobs were removed.", { removed: 2, status: "completed" }), ...epErrors, ...runScope },
  }),
  health: route({
    method: "get",
    path: "/{ep}/health",
    summary: "Job and worker counts of the endpoint",
    request: { params: epParam },
    responses: { ...okJson(healthView, "The counts.", healthExample), ...epErrors },
  }),
});

/** The RunPod job API: `/v2/:endpointId/...`, exactly as runpod-contract.md §1. Every success is HTTP 200. */
export function jobRoutes(deps: ApiDeps): OpenAPIHono<JobEnv> {
  const app = apiRouter<JobEnv>();
  const routes = buildRoutes(deps);

  app.use("/:ep/*", tenantAuth({ tenants: deps.tenants, scope: (c) => jobRouteScope(c.req.method, c.req.path) }), async function endpointOwnership(c, next) {
    // Another tenant's endpoint is indistinguishable from a missing one, and so is an id that cannot exist.
    const id = c.req.param("ep")!;
    const ep = resourceId.safeParse(id).success ? await deps.endpoints.getOwned(c.get("principal").tenantId, id) : undefined;
    if (!ep) throw ApiError.notFound("endpoint");
    c.set("endpoint", ep);
    await next();
  });

  // Request rates of every job route (the OpenAI generation routes take theirs with their tokens, in their handler).
  app.use("/:ep/*", rateLimit({ limiter: deps.rateLimiter, policy: deps.policy }));

  openaiRoutes(deps.openai, { policy: deps.policy, billing: deps.billing }, deps.openaiAdmission, app, deps.guard);

  /** The request with its input as the endpoint's input guardrails leave it (or a refusal). */
  const guarded = async (ep: Endpoint, req: RunRequest): Promise<RunRequest> => {
    if (ep.guardrails === undefined) return req;
    const checked = await deps.guard.check(ep, req.input);
    return checked === req.input ? req : { ...req, input: checked as RunRequest["input"] };
  };

  hotRoute(app, routes.run, async (c, input) => {
    const idempotencyKey = input.header["idempotency-key"];
    const ep = c.get("endpoint");
    const req = await guarded(ep, input.json);
    await checkSubmission(req, deps.submissionChecks);
    const submitted = await deps.submitter.submit(ep, ep.tenantId, req, { sync: false, retentionMs: deps.retention.asyncMs, origin: originOf(c), ...(idempotencyKey !== undefined && { idempotencyKey }) });
    if (submitted.repeated) {
      // The first submission's job, as it is now (RunPod answers /run with id and status only).
      const view = await deps.reader.view(ep.id, submitted.id);
      return c.json({ id: submitted.id, status: view?.status ?? "IN_QUEUE" }, 200);
    }
    return c.json({ id: submitted.id, status: "IN_QUEUE" as const }, 200);
  });

  hotRoute(app, routes.runsync, async (c, input) => {
    const asked = input.query.wait;
    const wait = asked ?? 90_000;
    const idempotencyKey = input.header["idempotency-key"];
    const ep = c.get("endpoint");
    const req = await guarded(ep, input.json);
    await checkSubmission(req, deps.submissionChecks);
    const retentionMs = asked === undefined ? deps.retention.syncMs : syncRetentionMs(deps.retention, asked);
    const { id, view } = await deps.syncRuns.run(ep, req, { retentionMs, origin: originOf(c), ...(idempotencyKey !== undefined && { idempotencyKey }) }, wait, c.req.raw.signal);
    return c.json(view ?? { id, status: "IN_QUEUE" as const }, 200);
  });

  const jobOf = (c: Context<JobEnv>) => ({ endpointId: c.get("endpoint").id, jobId: c.req.param("id")! });

  for (const r of routes.status) {
    app.openapi(r, async (c) => {
      const { endpointId, jobId } = jobOf(c);
      const view = await deps.reader.viewExplained(endpointId, jobId, Date.parse(c.get("endpoint").updatedAt));
      if (!view) throw ApiError.notFound("job");
      return c.json(view, 200);
    });
  }
  for (const r of routes.statusSync) {
    app.openapi(r, async (c) => {
      const { endpointId, jobId } = jobOf(c);
      let view = await deps.reader.waitFinished(endpointId, jobId, c.req.valid("query").wait, c.req.raw.signal);
      // Still queued when the wait ran out: say why, as /status does.
      if (view?.status === "IN_QUEUE") view = await deps.reader.viewExplained(endpointId, jobId, Date.parse(c.get("endpoint").updatedAt));
      if (!view) throw ApiError.notFound("job");
      return c.json(view, 200);
    });
  }
  for (const r of routes.stream) {
    app.openapi(r, async (c) => {
      const { endpointId, jobId } = jobOf(c);
      const page = await deps.reader.drainStream(endpointId, jobId, c.req.valid("query").wait, c.req.raw.signal);
      if (!page) throw ApiError.notFound("job");
      return c.json(page, 200);
    });
  }

  app.openapi(routes.cancel, async (c) => c.json(await deps.control.cancel(c.get("endpoint").id, c.req.valid("param").id), 200));
  app.openapi(routes.retry, async (c) => c.json(await deps.control.retry(c.get("endpoint").id, c.req.valid("param").id), 200));
  app.openapi(routes.purge, async (c) => c.json({ removed: await deps.control.purge(c.get("endpoint").id), status: "completed" as const }, 200));
  app.openapi(routes.health, async (c) => c.json(await endpointHealth(deps.queues, deps.redis, c.get("endpoint").id, Date.now(), Date.parse(c.get("endpoint").updatedAt)), 200));

  return app;
}
