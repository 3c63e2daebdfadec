import type { Tracer } from "@opentelemetry/api";

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
