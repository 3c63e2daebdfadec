/**
 * Estimated tokens of an OpenAI request before it is queued, without a tokenizer (the API has none,
 * and a model's vocabulary lives on its worker). The method, deliberately simple and documented so a
 * client can predict it:
 * - text: UTF-8 bytes / 4, rounded up (English BPE vocabularies average about 4 bytes a token;
 *   other scripts run denser, so this tends to *under*-count them, never to refuse too early by much);
 * - chat: each message's text (string content, or the `text` parts of an array content; images and
 *   audio count nothing here) plus 4 tokens of template per message (role and delimiters, as OpenAI's
 *   cookbook counts them) and 3 for the reply's priming; `name` and tool calls count as text;
 * - completions: a string prompt as text, a list of strings as the sum, token-id arrays exactly;
 * - embeddings: `input` the same way as a completion's prompt;
 * - the completion: `max_completion_tokens` or `max_tokens` (0 when neither: the real count
 *   settles it), times `n`, times the number of prompts of a batched completion.
 * Pure, for core/policy's unit tests.
 */
export interface TokenEstimate {
  /** Estimated prompt tokens, all prompts of a batch together. */
  promptTokens: number;
  /** The longest single prompt (for the context window check). */
  longestPromptTokens: number;
  /** Completion tokens asked for each prompt (`max_tokens`), 0 when not asked. */
  maxTokens: number;
  /** The parameter that gave `maxTokens` (for a 400's `param`). */
  maxTokensParam: "max_tokens" | "max_completion_tokens" | null;
  /** What a token limit holds before dispatch: all prompts + every completion asked for. */
  reserveTokens: number;
}

const encoder = new TextEncoder();
/** Tokens a text is estimated at: UTF-8 bytes / 4, rounded up. */
export const textTokens = (s: string): number => Math.ceil(encoder.encode(s).length / 4);

const PER_MESSAGE = 4;
const REPLY_PRIMING = 3;

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const count = (v: unknown): number | undefined => (typeof v === "number" && Number.isSafeInteger(v) && v >= 0 ? v : undefined);

function contentTokens(content: unknown): number {
  if (typeof content === "string") return textTokens(content);
  if (!Array.isArray(content)) return 0;
  let n = 0;
  for (const part of content) if (isObject(part) && typeof part.text === "string") n += textTokens(part.text);
  return n;
}

function messageTokens(m: unknown): number {
  if (!isObject(m)) return PER_MESSAGE;
  let n = PER_MESSAGE + contentTokens(m.content);
  if (typeof m.name === "string") n += textTokens(m.name);
  // Tool calls the assistant made are part of the transcript the model reads again.
  if (Array.isArray(m.tool_calls)) n += textTokens(JSON.stringify(m.tool_calls));
  return n;
}

/** Each prompt of a completion's (or embedding's) input, estimated. */
function promptList(prompt: unknown): number[] {
  if (typeof prompt === "string") return [textTokens(prompt)];
  if (!Array.isArray(prompt) || prompt.length === 0) return [];
  if (prompt.every((p) => typeof p === "number")) return [prompt.length];
  return prompt.map((p) => (typeof p === "string" ? textTokens(p) : Array.isArray(p) ? p.length : 0));
}

function asked(body: Record<string, unknown>): { maxTokens: number; param: TokenEstimate["maxTokensParam"] } {
  const mct = count(body.max_completion_tokens);
  if (mct !== undefined) return { maxTokens: mct, param: "max_completion_tokens" };
  const mt = count(body.max_tokens);
  if (mt !== undefined) return { maxTokens: mt, param: "max_tokens" };
  return { maxTokens: 0, param: null };
}

// Not Math.max(...list): a spread of a million prompts overflows the stack.
const longest = (list: readonly number[]): number => list.reduce((a, b) => (b > a ? b : a), 0);

export type EstimatedRoute = "/v1/chat/completions" | "/v1/completions" | "/v1/embeddings";

export function estimateTokens(route: EstimatedRoute, body: Record<string, unknown>): TokenEstimate {
  if (route === "/v1/embeddings") {
    const prompts = promptList(body.input);
    const total = prompts.reduce((a, b) => a + b, 0);
    return { promptTokens: total, longestPromptTokens: longest(prompts), maxTokens: 0, maxTokensParam: null, reserveTokens: total };
  }
  const { maxTokens, param } = asked(body);
  const n = count(body.n) !== undefined && (body.n as number) > 0 ? (body.n as number) : 1;
  if (route === "/v1/chat/completions") {
    const messages = Array.isArray(body.messages) ? body.messages : [];
    const prompt = messages.reduce((a: number, m) => a + messageTokens(m), REPLY_PRIMING);
    return { promptTokens: prompt, longestPromptTokens: prompt, maxTokens, maxTokensParam: param, reserveTokens: prompt + maxTokens * n };
  }
  const prompts = promptList(body.prompt);
  const total = prompts.reduce((a, b) => a + b, 0);
  return { promptTokens: total, longestPromptTokens: longest(prompts), maxTokens, maxTokensParam: param, reserveTokens: total + maxTokens * n * Math.max(1, prompts.length) };
}
