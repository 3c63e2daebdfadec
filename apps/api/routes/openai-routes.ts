import { createRoute, type OpenAPIHono, type RouteConfig } from "@hono/zod-openapi";
import type { Context } from "hono";
import { z } from "zod";
import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import { depthMessage, resourceId, withinDepth } from "../../../core/contracts/safe-text.ts";
import { servedModelName } from "../../../core/engine/served-model-name.ts";
import { jobAdmission } from "../middleware/job-admission.ts";
import { originOf, type TenantEnv } from "../middleware/tenant-auth.ts";
import type { OpenAIRelay } from "../services/openai-relay.ts";
import type { InputGuard } from "../services/input-guard.ts";
import type { TenantPolicy } from "../services/tenant-policy.ts";
import type { BillingGate } from "../services/billing-gate.ts";
import type { OpenAIAdmission } from "../services/openai-admission.ts";
import { apiRouter, hotRoute, jsonRequest, tenantSecurity } from "./route-kit.ts";
import { chatCompletion, chatCompletionEvents, embeddingList, modelList, openAIErrors, textCompletion, textCompletionEvents } from "./examples/openai-examples.ts";

type OpenAIEnv = { Variables: TenantEnv["Variables"] & { endpoint: Endpoint } };

const MB = 1024 * 1024;

/*
 * What the API checks itself, so a malformed request is a 400 at once instead of a queued job;
 * everything else (sampling parameters, model-specific fields) is the engine's to judge.
 */
const common = {
  model: z.string().optional(),
  stream: z.boolean().optional(),
};
const chatRequest = z
  .looseObject({ ...common, messages: z.array(z.looseObject({ role: z.string().min(1) })).min(1) })
  .refine(withinDepth, depthMessage)
  .meta({ id: "ChatCompletionRequest" });
const completionRequest = z
  .looseObject({
    ...common,
    prompt: z.union([z.string(), z.array(z.string()).min(1), z.array(z.number().int()).min(1), z.array(z.array(z.number().int())).min(1)]),
  })
  .refine(withinDepth, depthMessage)
  .meta({ id: "CompletionRequest" });

// Shapes only (OpenAI's four input forms, arrays non-empty); whether the text fits the model is the engine's to say.
const embeddingRequest = z
  .looseObject({
    model: z.string().optional(),
    input: z.union([z.string(), z.array(z.string()).min(1), z.array(z.number().int()).min(1), z.array(z.array(z.number().int())).min(1)]),
    encoding_format: z.enum(["float", "base64"]).optional(),
    dimensions: z.number().int().min(1).optional(),
  })
  .refine(withinDepth, depthMessage)
  .meta({ id: "EmbeddingRequest" });

const openAIError = z.object({ error: z.looseObject({ message: z.string(), type: z.string(), code: z.string().nullable().optional(), param: z.string().nullable().optional() }) }).meta({ id: "OpenAIError" });
const errorAnswer = (description: string, example: z.input<typeof openAIError>) => ({ description, content: { "application/json": { schema: openAIError, example } } });
const engineAnswer = z.looseObject({}).describe("The engine's own answer, relayed as it is.");

const epParam = z.object({ ep: resourceId.describe("The endpoint id.") });
const tags = ["OpenAI-compatible"];
const route = <R extends RouteConfig>(r: R) => createRoute({ tags, security: tenantSecurity, ...r });
type Admission = { policy: TenantPolicy; billing: BillingGate };
/** The example answer of a generation route: JSON, and the events of `stream: true`. */
type Examples = { json: z.input<typeof engineAnswer>; events: string };
const generation = (admission: Admission, path: string, summary: string, schema: z.ZodType, examples: Examples) =>
  route({
    method: "post",
    path,
    summary,
    middleware: [jobAdmission({ ...admission, operationMaxBytes: 20 * MB })] as const,
    request: { params: epParam, body: jsonRequest(schema) },
    responses: {
      200: {
        description: "The completion, or with `stream: true` server-sent events ending in `data: [DONE]`.",
        content: { "application/json": { schema: engineAnswer, example: examples.json }, "text/event-stream": { schema: z.string(), example: examples.events } },
      },
      400: errorAnswer(
        "Malformed request; `context_length_exceeded` when the estimated prompt + max_tokens pass the endpoint's context window (known from its engine spec), before anything is queued; or refused by the engine.",
        openAIErrors.contextLength,
      ),
      413: errorAnswer("The body is larger than 20 MB or the tenant's maxInputBytes.", openAIErrors.tooLarge),
      429: errorAnswer(
        "A request or token rate limit of the tenant or key (`rate_limit_exceeded`, type `requests` or `tokens`, with Retry-After and x-ratelimit-* headers), or the endpoint's queue is full (`queue_full`); retry after Retry-After seconds.",
        openAIErrors.tokenLimit,
      ),
      401: errorAnswer("No API key, or an unknown one.", openAIErrors.unauthorized),
      403: errorAnswer("The API key's scope is `read`: completions need a `run` or `full` key (`insufficient_scope`).", openAIErrors.scope(path.slice(path.indexOf("/v1/") + 4))),
      404: errorAnswer("No such endpoint for this tenant.", openAIErrors.notFound),
    },
  });

const buildRoutes = (admission: Admission) => ({
  chat: generation(admission, "/{ep}/openai/v1/chat/completions", "Chat completion (OpenAI API)", chatRequest, { json: chatCompletion, events: chatCompletionEvents }),
  completion: generation(admission, "/{ep}/openai/v1/completions", "Text completion (OpenAI API)", completionRequest, { json: textCompletion, events: textCompletionEvents }),
  embeddings: route({
    method: "post",
    path: "/{ep}/openai/v1/embeddings",
    summary: "Embeddings (OpenAI API)",
    middleware: [jobAdmission({ ...admission, operationMaxBytes: 20 * MB })] as const,
    request: { params: epParam, body: jsonRequest(embeddingRequest) },
    responses: {
      200: { description: "`{object: \"list\", data: [{object: \"embedding\", index, embedding}], model, usage}`, from the engine.", content: { "application/json": { schema: engineAnswer, example: embeddingList } } },
      400: errorAnswer("Malformed request, or refused by the engine (an input over its context, `dimensions` it cannot give, an engine started without embeddings).", openAIErrors.invalidEmbedding),
      413: errorAnswer("The body is larger than 20 MB or the tenant's maxInputBytes.", openAIErrors.tooLarge),
      429: errorAnswer("The endpoint's queue is at the tenant's maxQueuedJobsPerEndpoint; retry after Retry-After seconds.", openAIErrors.queueFull),
      401: errorAnswer("No API key, or an unknown one.", openAIErrors.unauthorized),
      403: errorAnswer("The API key's scope is `read`: embeddings need a `run` or `full` key (`insufficient_scope`).", openAIErrors.scope("embeddings")),
      404: errorAnswer("No such endpoint for this tenant.", openAIErrors.notFound),
    },
  }),
  models: route({
    method: "get",
    path: "/{ep}/openai/v1/models",
    summary: "The model the endpoint serves (OpenAI API)",
    request: { params: epParam },
    responses: {
      200: { description: "A list with the served model.", content: { "application/json": { schema: engineAnswer, example: modelList } } },
      401: errorAnswer("No API key.", openAIErrors.missingKey),
      404: errorAnswer("No such endpoint.", openAIErrors.notFound),
    },
  }),
});

/**
 * RunPod's OpenAI-compatible routes, `/v2/:ep/openai/v1/*`, on the job router (whose middleware
 * has authenticated the key and resolved the endpoint). Errors take OpenAI's shape in `app.onError`.
 */
export function openaiRoutes(relay: OpenAIRelay, admission: Admission, gate: OpenAIAdmission, app: OpenAPIHono<OpenAIEnv> = apiRouter<OpenAIEnv>(), guard?: InputGuard): OpenAPIHono<OpenAIEnv> {
  const routes = buildRoutes(admission);
  /** The body as the endpoint's input guardrails leave it; a refusal is thrown (OpenAI's error shape, app.onError). */
  const guarded = async (ep: Endpoint, body: Record<string, unknown>) => (guard && ep.guardrails !== undefined ? ((await guard.check(ep, body)) as Record<string, unknown>) : body);
  const forward = (target: "/v1/chat/completions" | "/v1/completions") => async (c: Context<OpenAIEnv>, input: { json: unknown }) => {
    const ep = c.get("endpoint");
    // Both request schemas are objects (chatCompletionRequest, completionRequest).
    const given = input.json as Record<string, unknown>;
    // Context window, request and token limits first (cheap, and they bound what reaches the guards);
    // the tokens are held under the job's id until it ends.
    const admitted = await gate.admit(ep, c.get("principal"), target, given);
    try {
      const body = await guarded(ep, given);
      if (body.stream === true) {
        const stream = await relay.stream(ep, target, body, c.req.raw.signal, originOf(c), admitted.jobId);
        // No `Connection: keep-alive`: HTTP/1.1 keeps the connection by default (Node says so itself),
        // and HTTP/2 forbids connection headers (Node drops it with a warning per process).
        return new Response(stream, {
          status: 200,
          headers: { ...admitted.headers, "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", "x-accel-buffering": "no" },
        });
      }
      const r = await relay.complete(ep, target, body, c.req.raw.signal, originOf(c), admitted.jobId);
      return c.json(r.body as Record<string, unknown>, r.status as 200, admitted.headers);
    } catch (err) {
      // Nothing (or nothing that will report usage) was queued: the hold goes back whole.
      await admitted.release();
      throw err;
    }
  };

  // Validated in one synchronous step (route-kit's hotRoute): they are on every completion's time to first token.
  hotRoute(app, routes.chat, forward("/v1/chat/completions"));
  hotRoute(app, routes.completion, forward("/v1/completions"));
  // Never streamed: one job, one JSON answer (a job on the endpoint's queue like any completion).
  app.openapi(routes.embeddings, async (c) => {
    const ep = c.get("endpoint");
    const given = c.req.valid("json");
    const admitted = await gate.admit(ep, c.get("principal"), "/v1/embeddings", given);
    try {
      const r = await relay.complete(ep, "/v1/embeddings", await guarded(ep, given), c.req.raw.signal, originOf(c), admitted.jobId);
      return c.json(r.body as Record<string, unknown>, r.status as 200, admitted.headers);
    } catch (err) {
      await admitted.release();
      throw err;
    }
  });

  app.openapi(routes.models, async (c) => {
    const ep = c.get("endpoint");
    // An engine endpoint's model is known from its spec: answered without waking a worker.
    if (ep.engine.kind === "openai") {
      const created = Math.floor(Date.parse(ep.createdAt) / 1000);
      return c.json({ object: "list", data: [{ id: servedModelName(ep.engine), object: "model", created, owned_by: "hearth" }] }, 200);
    }
    // A handler endpoint answers for itself, as any RunPod worker receiving the passthrough would.
    const r = await relay.complete(ep, "/v1/models", undefined, c.req.raw.signal);
    return c.json(r.body as Record<string, unknown>, r.status as 200);
  });

  return app;
}
