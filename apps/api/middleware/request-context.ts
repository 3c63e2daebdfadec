import type { MiddlewareHandler } from "hono";
import { routePath } from "hono/route";
import type { Tracer } from "@opentelemetry/api";
import { parseTraceparent, type TraceParent } from "../../../core/trace/trace-context.ts";
import { SpanKind, startSpan } from "../../../core/trace/tracing.ts";

export type RequestVariables = {
  /** The client's `X-Request-Id` when it is a sane one, else this request's span id. */
  requestId: string;
  /** This request's span: a child of the client's `traceparent`, or the root of a new trace. The jobs it submits carry it. */
  trace: TraceParent;
};
export type RequestEnv = { Variables: RequestVariables };

const CLIENT_REQUEST_ID = /^[\w\-=.:]{1,200}$/;

/**
 * Gives every request its ids: W3C trace context (`traceparent` in, a server span around the
 * request, exported when tracing is on) and a request id, echoed in `X-Request-Id`. Both go into the
 * lines logged about the request and, through the job, into the worker's.
 */
export function requestContext(options: { tracer?: Tracer } = {}): MiddlewareHandler<RequestEnv> {
  const { tracer } = options;
  return async function requestContextMiddleware(c, next) {
    const span = startSpan(tracer, c.req.method, parseTraceparent(c.req.header("traceparent")), SpanKind.SERVER, { "http.request.method": c.req.method });
    const given = c.req.header("x-request-id");
    const requestId = given !== undefined && CLIENT_REQUEST_ID.test(given) ? given : span.context.spanId;
    c.set("requestId", requestId);
    c.set("trace", span.context);
    c.header("x-request-id", requestId);
    if (!tracer) return next(); // ids only: nothing to record after the response
    try {
      await next();
    } finally {
      span.end({ "http.route": routePath(c, -1), "http.response.status_code": c.res.status }, c.res.status >= 500 ? `HTTP ${c.res.status}` : undefined);
    }
  };
}
