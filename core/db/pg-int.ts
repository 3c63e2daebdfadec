import { z } from "zod";

/**
 * A `bigint` or `numeric` as postgres.js returns it (a string, so that nothing is rounded), as a
 * JS number: only when it is a safe integer, so money read back is exact or the parse fails.
 */
export const pgSafeInt = z.union([z.string().regex(/^-?\d+$/), z.number().int()]).transform((v, ctx) => {
  const n = Number(v);
  if (!Number.isSafeInteger(n)) {
    ctx.addIssue({ code: "custom", message: `${v} is not a safe integer` });
    return z.NEVER;
  }
  return n;
});
