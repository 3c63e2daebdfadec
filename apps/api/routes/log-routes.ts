import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import { OUTPUT_LINES_KEPT, outputLine } from "../../../core/contracts/output-line.ts";
import { resourceId } from "../../../core/contracts/safe-text.ts";
import { ApiError } from "../api-error.ts";
import type { ApiDeps } from "../api-deps.ts";
import type { TenantEnv } from "../middleware/tenant-auth.ts";
import { apiRouter, commonErrors, invalidField, notFound, okJson, optionalQuery, tenantSecurity, withExample } from "./route-kit.ts";
import { jobLogLines, workerLogLines } from "./examples/record-examples.ts";

const tailQuery = z.object({
  tail: optionalQuery(z.coerce.number().int().min(1).max(OUTPUT_LINES_KEPT))
    .transform((n) => n ?? 100)
    .describe(`How many of the last lines (default 100, at most ${OUTPUT_LINES_KEPT}).`),
});
const logLines = z.object({
  items: z.array(outputLine).describe("Oldest first. `line` is the worker's JSON log line (pino) or plain text (a crash's stack, a handler's own writes to stdout)."),
});
const errors = { 400: withExample(commonErrors[400], invalidField("tail", `Too big: expected number to be <=${OUTPUT_LINES_KEPT}`)), 401: commonErrors[401], 404: notFound("worker") };

const routes = {
  workerLogs: createRoute({
    method: "get",
    path: "/endpoints/{id}/workers/{workerId}/logs",
    summary: "The last lines a worker printed (stdout and stderr)",
    description: `Kept by the scheduler per worker session: the last ${OUTPUT_LINES_KEPT} lines, for 24 h after the last one.`,
    tags: ["logs"],
    security: tenantSecurity,
    request: { params: z.object({ id: resourceId, workerId: resourceId }), query: tailQuery },
    responses: { ...okJson(logLines, "The lines.", { items: workerLogLines }), ...errors },
  }),
  jobLogs: createRoute({
    method: "get",
    path: "/jobs/{id}/logs",
    summary: "The lines a job's worker logged about it",
    description: `The worker runtime's lines about the job and what its handler printed through \`console\` while it ran, each carrying the job's \`jobId\` and \`traceId\`: the last ${OUTPUT_LINES_KEPT}, for 24 h.`,
    tags: ["logs"],
    security: tenantSecurity,
    request: { params: z.object({ id: resourceId }), query: tailQuery },
    responses: { ...okJson(logLines, "The lines.", { items: jobLogLines }), ...errors, 404: notFound("job") },
  }),
};

/** Workers' and jobs' output lines. Mounted under `/api/v1`, behind its tenant auth. */
export function logRoutes(deps: ApiDeps): OpenAPIHono<TenantEnv> {
  const app = apiRouter<TenantEnv>();

  app.openapi(routes.workerLogs, async (c) => {
    const { id, workerId } = c.req.valid("param");
    const ep = await deps.endpoints.getOwned(c.get("principal").tenantId, id, { includeDeleted: true });
    if (!ep) throw ApiError.notFound("endpoint");
    const items = await deps.outputLogs.worker(ep.id, workerId, c.req.valid("query").tail);
    if (!items) throw ApiError.notFound("worker");
    return c.json({ items }, 200);
  });

  app.openapi(routes.jobLogs, async (c) => {
    const record = await deps.records.get(c.get("principal").tenantId, c.req.valid("param").id);
    if (!record) throw ApiError.notFound("job");
    return c.json({ items: await deps.outputLogs.job(record.endpointId, record.id, c.req.valid("query").tail) }, 200);
  });

  return app;
}
