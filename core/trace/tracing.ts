import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Tracer } from "@opentelemetry/api";
import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
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

/** Reads the standard OTEL_* variables (OTEL_SERVICE_NAME overrides `serviceName`). */
export function startTracing(serviceName: string, env: NodeJS.ProcessEnv = process.env): Tracing {
  const traces = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim();
  const base = env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  if (!traces && !base) return NO_TRACING;
  // The spec's rule: the generic endpoint gets the signal's path appended, the per-signal one is used as it is.
  const url = traces || `${base!.replace(/\/+$/, "")}/v1/traces`;
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME?.trim() || serviceName }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url }), { scheduledDelayMillis: 1000 })],
  });
  return { tracer: provider.getTracer("hearth"), shutdown: () => provider.shutdown() };
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
