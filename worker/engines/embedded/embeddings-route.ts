import type { Hono } from "hono";
import { base64Vector, embeddingInputs, embeddingsRequest } from "./embeddings-request.ts";
import type { LlamaEmbedder } from "./llama-embedder.ts";
import { OpenAiError } from "./openai-error.ts";
import { parseRequestBody } from "./openai-schemas.ts";

/**
 * `POST /v1/embeddings` on the embedded engine's app, in OpenAI's shape:
 * `{object: "list", data: [{object: "embedding", index, embedding}], model, usage}`. Errors are
 * `OpenAiError`s, which the app's `onError` answers in OpenAI's error shape.
 */
export function addEmbeddingsRoute(app: Hono, embedder: LlamaEmbedder, servedModelName: string): void {
  app.post("/v1/embeddings", async (c) => {
    const body = parseRequestBody(embeddingsRequest, await c.req.text());
    // Refused rather than ignored: a caller asking for 256 dimensions must not silently get another length.
    if (body.dimensions != null && body.dimensions !== embedder.dimensions) {
      throw OpenAiError.invalidRequest(
        `This model's embeddings have ${embedder.dimensions} dimensions and the embedded engine does not shorten them: dimensions can only be ${embedder.dimensions} (or left out).`,
        "dimensions",
      );
    }
    const inputs = embeddingInputs(body.input);
    // The adapter aborts the request's signal when the client disconnects before the response.
    const { vectors, promptTokens } = await embedder.embed(inputs, c.req.raw.signal);
    const base64 = body.encoding_format === "base64";
    return c.json({
      object: "list",
      data: vectors.map((vector, index) => ({ object: "embedding", index, embedding: base64 ? base64Vector(vector) : vector })),
      model: servedModelName,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    });
  });
}
