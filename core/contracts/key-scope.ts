import { z } from "zod";

/**
 * What a tenant API key may do, each scope including the one before it: `read` (statuses, streams,
 * health, listings), `run` (also submitting and cancelling jobs), `full` (also management: endpoints,
 * keys, webhooks). Keys are `full` unless made otherwise. Which route needs which scope is
 * core/policy/key-scopes.ts.
 */
export const keyScope = z.enum(["read", "run", "full"]);
export type KeyScope = z.infer<typeof keyScope>;
