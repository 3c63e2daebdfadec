import type { Redis } from "ioredis";
import type { Endpoint } from "../../../core/contracts/endpoint.ts";
import { newJobId } from "../../../core/ids/random-id.ts";
import { checkContext, contextWindow } from "../../../core/policy/context-window.ts";
import { estimateTokens, type EstimatedRoute } from "../../../core/policy/token-estimate.ts";
import type { RedisKeys } from "../../../core/queue/keys.ts";
import { settleHold } from "../../../core/redis/rate-limit-scripts.ts";
import type { Principal } from "./tenant-store.ts";
import type { RateLimiter } from "./rate-limiter.ts";
import type { TenantPolicy } from "./tenant-policy.ts";
import { ApiError } from "../api-error.ts";

export interface OpenAIAdmissionOptions {
  limiter: RateLimiter;
  policy: TenantPolicy;
  redis: Redis;
  keys: RedisKeys;
  /** Counts a context-window refusal (metrics). */
  onContextRefused?: (endpointId: string) => void;
}

export interface Admitted {
  /** The job's id, made here: a token hold is recorded under it before the job is queued. */
  jobId: string;
  /** X-RateLimit-* and OpenAI's x-ratelimit-* for the answer (empty when no limit applies). */
  headers: Record<string, string>;
  /** Gives the whole hold back: for a request that failed before its job was queued. */
  release(): Promise<void>;
}

const PROMPT_PARAM: Record<EstimatedRoute, string> = { "/v1/chat/completions": "messages", "/v1/completions": "prompt", "/v1/embeddings": "input" };

/**
 * Admission of an OpenAI request once its body is read: the context-window check (400
 * `context_length_exceeded` before anything is queued; embeddings are left to the engine, whose
 * inputs are each their own sequence) and the request and token limits in one script, the tokens
 * (estimated prompt + `max_tokens`) held under the job's id until the control plane settles them
 * with the engine's real counts.
 */
export class OpenAIAdmission {
  constructor(private readonly options: OpenAIAdmissionOptions) {}

  async admit(ep: Endpoint, principal: Principal, route: EstimatedRoute, body: Record<string, unknown>): Promise<Admitted> {
    const est = estimateTokens(route, body);
    if (route !== "/v1/embeddings") {
      const refusal = checkContext(contextWindow(ep.engine), est, PROMPT_PARAM[route]);
      if (refusal) {
        this.options.onContextRefused?.(ep.id);
        throw new ApiError(400, "context_length_exceeded", refusal.message, [{ path: refusal.param, message: `about ${refusal.promptTokens + refusal.maxTokens} tokens; the window is ${refusal.window}` }]);
      }
    }
    const jobId = newJobId(true);
    const cached = this.options.policy.admission(ep.tenantId);
    const { rates } = cached instanceof Promise ? await cached : cached;
    const admitted = this.options.limiter.admit({
      endpointId: ep.id,
      tenantId: ep.tenantId,
      keyId: principal.keyId,
      routeClass: "openai",
      tenantRates: rates,
      keyRates: principal.rates,
      tokens: est.reserveTokens,
      holdJobId: jobId,
    });
    const headers = admitted === undefined ? {} : await admitted;
    const { redis, keys } = this.options;
    return { jobId, headers, release: () => settleHold(redis, keys.tokenHold(jobId), 0).then(() => undefined, () => undefined) };
  }
}
