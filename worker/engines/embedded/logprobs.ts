import type { LlamaContextSequence, LlamaModel, Token } from "node-llama-cpp";

/*
 * Token log probabilities for OpenAI's `logprobs`. node-llama-cpp's completion does not report
 * them, but the sequence it decodes on can: `evaluateWithMetadata(..., {probabilities: true})`
 * gives, per sampled token, the distribution it was sampled from. A request that asks for logprobs
 * hands its completion a view of the sequence whose `evaluate` is that call, recording each
 * distribution on the way; everything else (batching with other sequences, grammar, stop triggers)
 * is node-llama-cpp's completion as for any request.
 *
 * The distribution is the one the token was sampled from: after temperature, top_k, top_p, min_p,
 * penalties and grammar (llama-server's `post_sampling_probs`); at temperature 0, the model's own.
 */

/** OpenAI's floor for a token the sampler ruled out (its probability is 0). */
const MIN_LOGPROB = -9999;

export interface TopLogprob {
  token: string;
  logprob: number;
  bytes: number[];
}

export interface TokenLogprob extends TopLogprob {
  /** The likeliest tokens at this position, likeliest first. */
  top: TopLogprob[];
}

function logprob(p: number | undefined): number {
  return p === undefined || p <= 0 ? MIN_LOGPROB : Math.max(Math.log(p), MIN_LOGPROB);
}

/** Records each sampled token's log probability and its `top` likeliest alternatives. */
export class LogprobRecorder {
  private readonly tokens: Token[] = [];
  readonly entries: TokenLogprob[] = [];
  /** Entries handed out by `take`. */
  private taken = 0;

  constructor(
    private readonly model: LlamaModel,
    /** How many alternatives to keep per token (0–20). */
    private readonly top: number,
  ) {}

  record(token: Token, probabilities: ReadonlyMap<Token, number>): void {
    // Decoded after the tokens before it: SentencePiece's leading space depends on them.
    const context = this.tokens.slice(-4);
    const piece = (t: Token): TopLogprob => {
      const text = this.model.detokenize([t], false, context);
      return { token: text, logprob: logprob(probabilities.get(t)), bytes: [...Buffer.from(text, "utf8")] };
    };
    const top: TopLogprob[] = [];
    for (const t of probabilities.keys()) {
      if (top.length >= this.top) break;
      top.push(piece(t));
    }
    this.entries.push({ ...piece(token), top });
    this.tokens.push(token);
  }

  /**
   * The entries not handed out yet whose text starts within the first `chars` characters of the
   * output: the tokens of the text sent so far. Tokens past the output's end (a stop string's, the
   * end-of-generation token) are never handed out.
   */
  take(chars: number): TokenLogprob[] {
    const end = this.upTo(chars);
    const out = this.entries.slice(this.taken, end);
    this.taken = Math.max(this.taken, end);
    return out;
  }

  /** The entries of the output's first `chars` characters. */
  covering(chars: number): TokenLogprob[] {
    return this.entries.slice(0, this.upTo(chars));
  }

  private upTo(chars: number): number {
    let i = 0;
    for (let covered = 0; i < this.entries.length && covered < chars; i++) covered += this.entries[i]!.token.length;
    return i;
  }

  /**
   * A view of `sequence` whose `evaluate` also reports each generated token's distribution to
   * `record`. A Proxy: every other member is the sequence's own, bound to it.
   */
  recording(sequence: LlamaContextSequence): LlamaContextSequence {
    const record = (token: Token, probabilities: ReadonlyMap<Token, number> | undefined) => {
      if (probabilities) this.record(token, probabilities);
    };
    async function* evaluate(tokens: Token[], options: Parameters<LlamaContextSequence["evaluate"]>[1]): AsyncGenerator<Token, void, unknown> {
      const iterator = sequence.evaluateWithMetadata(tokens, { probabilities: true }, options);
      let input: unknown;
      try {
        for (;;) {
          const { value, done } = await iterator.next(input as never);
          if (done) return;
          record(value.token, value.probabilities);
          input = yield value.token;
        }
      } finally {
        await iterator.return(undefined as never);
      }
    }
    return new Proxy(sequence, {
      get(target, prop) {
        if (prop === "evaluate") return evaluate;
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === "function" ? (value as (...args: unknown[]) => unknown).bind(target) : value;
      },
    });
  }
}

/** `choices[].logprobs` of a chat completion (or of one chunk). */
export function chatLogprobs(entries: readonly TokenLogprob[]) {
  return { content: entries.map(({ top, ...e }) => ({ ...e, top_logprobs: top })), refusal: null };
}

/** `choices[].logprobs` of a legacy completion: offsets count from the completion's start. */
export function completionLogprobs(entries: readonly TokenLogprob[], startOffset = 0) {
  let offset = startOffset;
  const textOffset = entries.map((e) => {
    const at = offset;
    offset += e.token.length;
    return at;
  });
  return {
    tokens: entries.map((e) => e.token),
    token_logprobs: entries.map((e) => e.logprob),
    top_logprobs: entries.map((e) => Object.fromEntries(e.top.map((t) => [t.token, t.logprob]))),
    text_offset: textOffset,
  };
}
