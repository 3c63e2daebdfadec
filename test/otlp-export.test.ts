import { createServer, type Server } from "node:http";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fixturesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";
import { startTracing } from "../core/trace/otlp-tracing.ts";
import type { Tracing } from "../core/trace/tracing.ts";

/**
 * With OTEL_EXPORTER_OTLP_ENDPOINT set, the API and the worker export their spans over OTLP/HTTP
 * (JSON), to a collector this test runs: one trace from the client's traceparent through the API's
 * server span to the worker's job span.
 */
interface Span {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes?: { key: string; value: Record<string, unknown> }[];
  service: string;
}

describe("OTLP export of traces", () => {
  const spans: Span[] = [];
  let collector: Server;
  let url: string;
  let tracing: Tracing;
  let stack: Stack;
  const requests: string[] = [];

  beforeAll(async () => {
    collector = createServer((req, res) => {
      let body = "";
      req.on("data", (d: Buffer) => (body += d.toString()));
      req.on("end", () => {
        requests.push(`${req.method} ${req.url} ${req.headers["content-type"]}`);
        const doc = JSON.parse(body) as { resourceSpans: { resource: { attributes: { key: string; value: { stringValue?: string } }[] }; scopeSpans: { spans: Omit<Span, "service">[] }[] }[] };
        for (const rs of doc.resourceSpans) {
          const service = rs.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue ?? "";
          for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, service });
        }
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
      });
    });
    await new Promise<void>((r) => collector.listen(0, "127.0.0.1", r));
    const address = collector.address();
    if (address === null || typeof address === "string") throw new Error("no port");
    url = `http://127.0.0.1:${address.port}`;
    tracing = startTracing("hearth-api", { OTEL_EXPORTER_OTLP_ENDPOINT: url });
    stack = await startStack({ apiTracer: tracing.tracer!, workerInheritEnv: { ...process.env, OTEL_EXPORTER_OTLP_ENDPOINT: url } });
  });
  afterAll(async () => {
    await stack?.close();
    await tracing?.shutdown();
    collector?.close();
  });

  it("exports the API's server span as a child of the client's and the worker's job span as a child of the API's", async () => {
    const key = await stack.tenant("otlp");
    const ep = await stack.endpoint(key, { engine: { kind: "handler", module: join(fixturesDir, "console-logs.mjs") } });
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    const clientSpan = "b7ad6b7169203331";
    const run = await stack.call("POST", `/v2/${ep}/runsync`, { key, body: { input: { traced: true } }, headers: { traceparent: `00-${traceId}-${clientSpan}-01` } });
    expect(run.body.status).toBe("COMPLETED");

    const job = await waitFor(() => spans.find((s) => s.traceId === traceId && s.service === "hearth-worker" && s.name === "job"), 30_000);
    const server = spans.find((s) => s.traceId === traceId && s.service === "hearth-api");
    expect(server).toMatchObject({ parentSpanId: clientSpan, kind: 2 }); // SERVER
    expect(server!.attributes).toEqual(expect.arrayContaining([{ key: "http.route", value: { stringValue: "/v2/:ep/runsync" } }, { key: "http.response.status_code", value: { intValue: 200 } }]));
    expect(job).toMatchObject({ parentSpanId: server!.spanId, kind: 5 }); // CONSUMER
    expect(job.attributes).toEqual(expect.arrayContaining([{ key: "hearth.job_id", value: { stringValue: run.body.id } }, { key: "hearth.status", value: { stringValue: "COMPLETED" } }]));
    expect(requests.every((r) => r.startsWith("POST /v1/traces application/json"))).toBe(true);
  });
});
