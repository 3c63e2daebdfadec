import { BasicTracerProvider, BatchSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { NO_TRACING, otlpTracesUrl, type Tracing } from "./tracing.ts";

/**
 * A process's tracing from the standard OTEL_* variables (OTEL_SERVICE_NAME overrides
 * `serviceName`): spans exported over OTLP/HTTP when an endpoint is set, else NO_TRACING. Kept apart
 * from `tracing.ts` so that a process without an endpoint (a worker's cold start) need not load
 * the SDK: it checks `otlpTracesUrl` and imports this file only then.
 */
export function startTracing(serviceName: string, env: NodeJS.ProcessEnv = process.env): Tracing {
  const url = otlpTracesUrl(env);
  if (url === undefined) return NO_TRACING;
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ "service.name": env.OTEL_SERVICE_NAME?.trim() || serviceName }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url }), { scheduledDelayMillis: 1000 })],
  });
  return { tracer: provider.getTracer("hearth"), shutdown: () => provider.shutdown() };
}
