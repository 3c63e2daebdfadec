import { TokenBias, type LlamaModel, type Token } from "node-llama-cpp";
import { OpenAiError } from "./openai-error.ts";

/** The number of tokens in the model's vocabulary, from its GGUF metadata; undefined when it does not say. */
function vocabularySize(model: LlamaModel): number | undefined {
  const tokens: unknown = model.fileInfo.metadata?.tokenizer?.ggml?.tokens;
  return Array.isArray(tokens) ? tokens.length : undefined;
}

/**
 * OpenAI's `logit_bias` (token id → −100…100, added to the token's logit) as node-llama-cpp's
 * token bias, which adds it the same way. Ids are checked against the vocabulary before they reach
 * llama.cpp, which does not check them: a 400 naming `logit_bias`.
 */
export function logitBias(model: LlamaModel, bias: Readonly<Record<string, number>> | null | undefined): TokenBias | undefined {
  if (bias == null || Object.keys(bias).length === 0) return undefined;
  const size = vocabularySize(model);
  if (size === undefined) throw OpenAiError.invalidRequest("logit_bias is not supported: the model's vocabulary size is unknown", "logit_bias");
  const tokenBias = new TokenBias(model.tokenizer);
  for (const [key, value] of Object.entries(bias)) {
    const id = Number(key);
    if (!/^\d+$/.test(key) || id >= size) throw OpenAiError.invalidRequest(`logit_bias: ${JSON.stringify(key)} is not a token id of this model (0 to ${size - 1})`, "logit_bias");
    tokenBias.set(id as Token, { logit: value });
  }
  return tokenBias;
}
