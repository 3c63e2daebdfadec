import { Hono, type Context } from "hono";
import { z } from "zod";
import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import { servedModelName } from "../../../core/engine/served-model-name.ts";
import { jsonBodyLimit } from "../middleware/json-body-limit.ts";
import type { TenantEnv } from "../middleware/tenant-auth.ts";
import type { OpenAIRelay } from "../services/openai-relay.ts";
import { jsonBody } from "../validation.ts";

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
const chatRequest = z.looseObject({ ...common, messages: z.array(z.looseObject({ role: z.string().min(1) })).min(1) });
const completionRequest = z.looseObject({
  ...common,
  prompt: z.union([z.string(), z.array(z.string()).min(1), z.array(z.number().int()).min(1), z.array(z.array(z.number().int())).min(1)]),
});

/**
 * RunPod's OpenAI-compatible routes, `/v2/:ep/openai/v1/*`, mounted under the job routes (whose
 * middleware has authenticated the key and resolved the endpoint). Errors take OpenAI's shape in
 * `app.onError`.
 */
export function openaiRoutes(relay: OpenAIRelay): Hono<OpenAIEnv> {
  const app = new Hono<OpenAIEnv>();

  const forward = (route: "/v1/chat/completions" | "/v1/completions", schema: typeof chatRequest | typeof completionRequest) => async (c: Context<OpenAIEnv>) => {
    const body = (await jsonBody(c, schema)) as Record<string, unknown>;
    const ep = c.get("endpoint");
    if (body.stream === true) {
      const stream = await relay.stream(ep, route, body, c.req.raw.signal);
      return new Response(stream, {
        status: 200,
        headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache", connection: "keep-alive", "x-accel-buffering": "no" },
      });
    }
    const r = await relay.complete(ep, route, body, c.req.raw.signal);
    return c.json(r.body, r.status);
  };

  app.post("/chat/completions", jsonBodyLimit(20 * MB), forward("/v1/chat/completions", chatRequest));
  app.post("/completions", jsonBodyLimit(20 * MB), forward("/v1/completions", completionRequest));

  app.get("/models", async (c) => {
    const ep = c.get("endpoint");
    // An engine endpoint's model is known from its spec: answered without waking a worker.
    if (ep.engine.kind === "openai") {
      const created = Math.floor(Date.parse(ep.createdAt) / 1000);
      return c.json({ object: "list", data: [{ id: servedModelName(ep.engine), object: "model", created, owned_by: "hearth" }] }, 200);
    }
    // A handler endpoint answers for itself, as any RunPod worker receiving the passthrough would.
    const r = await relay.complete(ep, "/v1/models", undefined, c.req.raw.signal);
    return c.json(r.body, r.status);
  });

  return app;
}
