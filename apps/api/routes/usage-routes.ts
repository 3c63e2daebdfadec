import { createRoute, type OpenAPIHono } from "@hono/zod-openapi";
import { z } from "zod";
import { resourceId } from "../../../core/contracts/safe-text.ts";
import { billingSessionView, invoice, MAX_REPORT_RANGE_MS, parseMonth, reconcileReport, reportInstant, usageGroupBy, usageReport } from "../../../core/contracts/usage.ts";
import { ApiError } from "../api-error.ts";
import type { TenantEnv } from "../middleware/tenant-auth.ts";
import { invoiceCsv, type ReportRange } from "../services/usage-report.ts";
import type { ApiDeps } from "../api-deps.ts";
import { adminSecurity, adminUnauthorized, apiRouter, commonErrors, errorResponse, fieldError, notFound, okJson, optionalQuery, tenantSecurity } from "./route-kit.ts";
import { billingErrors, invoiceExample, reconcileExample, sessionBillExample, usageExample } from "./examples/billing-examples.ts";

const rangeQuery = {
  from: optionalQuery(reportInstant).describe("Inclusive; ISO-8601 date-time with offset, or a UTC date. Default: the start of the current UTC month."),
  to: optionalQuery(reportInstant).describe("Exclusive; same forms. Default: now. At most 366 days after `from`."),
};
const usageQuery = z.object({
  ...rangeQuery,
  groupBy: optionalQuery(usageGroupBy)
    .transform((g) => g ?? "endpoint")
    .describe("`endpoint` (default), `day` (UTC) or `gpuType`."),
});
const invoiceParams = z.object({ month: z.string().max(64).describe("`YYYY-MM` (UTC), not after the current month.") });
const invoiceQuery = z.object({ format: optionalQuery(z.enum(["json", "csv"])).describe("`json` (default) or `csv`.") });
const sessionParams = z.object({ workerId: resourceId.describe("The worker's id (its session's).") });

const rangeError = errorResponse("Naming the field: a date that does not parse, `from` after `to`, a range over 366 days, an unknown `groupBy`.", billingErrors.range);

const routes = {
  usage: createRoute({
    method: "get",
    path: "/usage",
    summary: "The tenant's charges in a range, by endpoint, UTC day or GPU type",
    tags: ["billing"],
    security: tenantSecurity,
    request: { query: usageQuery },
    responses: { ...okJson(usageReport, "Seconds and µ$ charged per group; the totals are the sums of the groups and of the ledger's charges in the range.", usageExample), 400: rangeError, 401: commonErrors[401] },
  }),
  invoice: createRoute({
    method: "get",
    path: "/invoices/{month}",
    summary: "The tenant's invoice for a UTC month: a line per endpoint and GPU type, and the month's credits",
    tags: ["billing"],
    security: tenantSecurity,
    request: { params: invoiceParams, query: invoiceQuery },
    responses: {
      200: {
        description: "JSON, or with `format=csv` a CSV (header; `charge` rows; a `total` row, their sum; `credit` rows). `totalMicros` is minus the sum of the ledger's charges in the month.",
        content: { "application/json": { schema: invoice, example: invoiceExample }, "text/csv": { schema: z.string(), example: invoiceCsv(invoiceExample) } },
      },
      400: errorResponse("Naming `month`: malformed, before 1970 or in the future; or `format`.", billingErrors.month),
      401: commonErrors[401],
    },
  }),
  session: createRoute({
    method: "get",
    path: "/billing/sessions/{workerId}",
    summary: "One worker session's bill: its meter, its charges, each job's share and the idle time",
    tags: ["billing"],
    security: tenantSecurity,
    request: { params: sessionParams },
    responses: {
      ...okJson(billingSessionView, "Billed seconds and cost from the ledger; the meter's view, the jobs' shares and the idle line from core/billing.", sessionBillExample),
      401: commonErrors[401],
      404: notFound("session"),
      409: errorResponse("`unmeterable`: the meter refuses the session (its GPU type has no price).", billingErrors.unmeterable),
    },
  }),
  reconcile: createRoute({
    method: "get",
    path: "/billing/reconcile",
    summary: "Billed seconds per session next to its observed lifetime, every difference over a second explained",
    tags: ["billing"],
    security: adminSecurity,
    request: { query: z.object(rangeQuery) },
    responses: { ...okJson(reconcileReport, "Sessions requested in [from, to) and the differences.", reconcileExample), 400: rangeError, 401: adminUnauthorized },
  }),
};

/**
 * [from, to) of a report: ISO instants or their defaults (the start of `now`'s UTC month, `now`).
 * 400 naming the field the caller gave (the other one when it was defaulted): `from` after `to`,
 * more than 366 days apart.
 */
function reportRange(q: { from?: number | undefined; to?: number | undefined }, now: number): ReportRange {
  const d = new Date(now);
  const from = q.from ?? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  const to = q.to ?? now;
  if (from > to) throw q.from !== undefined ? fieldError("from", `is after to (${new Date(to).toISOString()})`) : fieldError("to", `is before from (${new Date(from).toISOString()})`);
  if (to - from > MAX_REPORT_RANGE_MS) throw q.to !== undefined ? fieldError("to", "is more than 366 days after from") : fieldError("from", "is more than 366 days before to (now)");
  return { from, to };
}

/** The tenant's usage, invoices and session bills (`/api/v1/...`); mounted under `/api/v1`, behind its tenant auth. */
export function usageRoutes(deps: ApiDeps): OpenAPIHono<TenantEnv> {
  const app = apiRouter<TenantEnv>();
  // "Now" is the log's clock, the one charges are dated by.
  app.openapi(routes.usage, async (c) => {
    const q = c.req.valid("query");
    const range = reportRange(q, await deps.logNow());
    return c.json(await deps.usage.usage(c.get("principal").tenantId, range, q.groupBy), 200);
  });
  app.openapi(routes.invoice, async (c) => {
    const { month } = c.req.valid("param");
    const range = parseMonth(month);
    if (!range) throw fieldError("month", "must be YYYY-MM, from 1970-01");
    const now = await deps.logNow();
    if (range.start > now) throw fieldError("month", "is in the future");
    const inv = await deps.usage.invoice(c.get("principal").tenantId, month, { from: range.start, to: range.end }, now);
    if (c.req.valid("query").format === "csv") {
      return c.body(invoiceCsv(inv), 200, { "content-type": "text/csv; charset=utf-8", "content-disposition": `attachment; filename="invoice-${month}.csv"` });
    }
    return c.json(inv, 200);
  });
  app.openapi(routes.session, async (c) => {
    const view = await deps.sessionCosts.session(c.get("principal").tenantId, c.req.valid("param").workerId, await deps.logNow());
    if (!view) throw ApiError.notFound("session");
    return c.json(view, 200);
  });
  return app;
}

/** The operator's reconciliation (`/admin/billing/reconcile`, behind app.ts' admin authentication). */
export function reconcileRoutes(deps: ApiDeps): OpenAPIHono {
  const app = apiRouter();
  app.openapi(routes.reconcile, async (c) => {
    const now = await deps.logNow();
    return c.json(await deps.reconcile.report(reportRange(c.req.valid("query"), now), now), 200);
  });
  return app;
}
