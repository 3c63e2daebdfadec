import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Tracer } from "@opentelemetry/api";
import { childSpan, type TraceParent } from "./trace-context.ts";

export { SpanKind };

export { NO_TRACING, otlpTracesUrl, type Tracing } from "./tracing-config.ts";

/** A span in progress: its ids (what the next hop and the logs get) and its end. */
export interface OpenSpan {
  readonly context: TraceParent;
  end(attributes?: Attributes, error?: string): void;
}

/**
 * Starts a span as a child of `parent` (a remote parent, from a header or a job) or as the root of a
 * new trace. Without a tracer, or when the sampler declines, the span is ids only: the trace still
 * reaches the worker, the engine and the logs.
 */
export function startSpan(tracer: Tracer | undefined, name: string, parent: TraceParent | undefined, kind: SpanKind, attributes?: Attributes): OpenSpan {
  if (!tracer) return { context: childSpan(parent), end: () => {} };
  const ctx = parent ? trace.setSpanContext(ROOT_CONTEXT, { traceId: parent.traceId, spanId: parent.spanId, traceFlags: parent.flags, isRemote: true }) : ROOT_CONTEXT;
  const span = tracer.startSpan(name, { kind, ...(attributes && { attributes }) }, ctx);
  if (!span.isRecording()) return { context: childSpan(parent), end: () => {} };
  const sc = span.spanContext();
  return {
    context: { traceId: sc.traceId, spanId: sc.spanId, flags: sc.traceFlags },
    end(attrs, error) {
      if (attrs) span.setAttributes(attrs);
      if (error !== undefined) span.setStatus({ code: SpanStatusCode.ERROR, message: error });
      span.end();
    },
  };
}
