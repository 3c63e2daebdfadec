import { isAbsolute } from "node:path";
import { fileURLToPath } from "node:url";
import { z } from "zod";
import { parseAllowList, type AllowList } from "../net/url-policy.ts";

/** The project's own model directory (`npm start` writes its demo model there): the default, and the only local models an endpoint may name unless the operator says otherwise. */
export const defaultModelDir = fileURLToPath(new URL("../../.hearth/models", import.meta.url));

/** `HEARTH_MODEL_DIRS`: colon-separated absolute directories whose files `file://` models (and absolute paths) may name. */
export const modelDirs = z.preprocess(
  (v) => (v === "" || v === undefined ? defaultModelDir : v),
  z
    .string()
    .transform((s) => s.split(":").filter(Boolean))
    .pipe(z.array(z.string().refine(isAbsolute, "every directory must be an absolute path")).min(1)),
);

/**
 * `HEARTH_MODEL_ALLOWLIST`: comma-separated `s3://bucket`, host names, CIDRs and addresses that model
 * sources may reach beyond the public internet (see core/net/url-policy.ts). Empty by default.
 */
export const modelAllowList = z.preprocess(
  (v) => (v === undefined ? "" : v),
  z.string().transform((s, ctx): AllowList => {
    const r = parseAllowList(s);
    if (r.ok) return r.allow;
    for (const error of r.errors) ctx.addIssue({ code: "custom", message: error });
    return z.NEVER;
  }),
);
