import { z } from "zod";
import { parseSecretsKey } from "../secrets/secret-box.ts";

/**
 * `HEARTH_SECRETS_KEY`: the key endpoint secrets are sealed with (32 bytes, hex or base64). Unset
 * means no secrets: the API refuses them (400 `secrets_unavailable`) and the scheduler cannot start
 * an endpoint that has some. A malformed value stops the process at start, naming the variable.
 */
export const secretsKey = z.preprocess(
  (v) => (v === "" ? undefined : v),
  z
    .string()
    .optional()
    .transform((s, ctx): Buffer | undefined => {
      if (s === undefined) return undefined;
      const r = parseSecretsKey(s);
      if (r.ok) return r.key;
      ctx.addIssue({ code: "custom", message: r.reason });
      return z.NEVER;
    }),
);
