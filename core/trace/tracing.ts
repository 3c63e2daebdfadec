import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Tracer } from "@opentelemetry/api";
import { childSpan, type TraceParent } from "./trace-context.ts";

export { SpanKind };

/**
 * A process's tracing: OpenTelemetry spans exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT
 * (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set; otherwise no tracer at all, and spans are only
 * ids that travel with the job and show in logs (no SDK work on the job path).
 */
export interface Tracing {
  /** Undefined when nothing is exported. */
  tracer?: Tracer;
  /** Exports what is buffered and stops. */
  shutdown(): Promise<void>;
}

export const NO_TRACING: Tracing = { shutdown: async () => {} };

/**
 * Where spans go, from the standard variables: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is, or
 * OTEL_EXPORTER_OTLP_ENDPOINT with the signal's path appended (the spec's rule); undefined: nowhere.
 * The SDK that exports them is in `otlp-tracing.ts`, imported only when this says there is a place.
 */
export function otlpTracesUrl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (!traces && !base) return undefined;
  return traces || `${base!.replace(/\/+$/, "")}/v1/traces`;
}

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
