import { z } from "zod";
import { parseAllowList, type AllowList, type UrlPolicy } from "../net/url-policy.ts";
import { onOff } from "./parse-env.ts";

export const EGRESS_ALLOWLIST_VAR = "HEARTH_EGRESS_ALLOWLIST";

/**
 * `HEARTH_EGRESS_ALLOWLIST`: comma-separated CIDRs, addresses and host names that tenant-named
 * outbound URLs (webhooks) may reach beyond the public internet. Empty by default: loopback,
 * private, link-local, CGNAT and metadata addresses are refused. `s3://` entries are refused here
 * (they mean "the operator's credentials may read this bucket", which has no sense for egress).
 */
export const egressAllowList = z.preprocess(
  (v) => (v === undefined ? "" : v),
  z.string().transform((s, ctx): AllowList => {
    const r = parseAllowList(s);
    if (!r.ok) {
      for (const error of r.errors) ctx.addIssue({ code: "custom", message: error });
      return z.NEVER;
    }
    if (r.allow.s3Buckets.size > 0) {
      ctx.addIssue({ code: "custom", message: "s3:// entries are not egress destinations (buckets belong in HEARTH_MODEL_ALLOWLIST)" });
      return z.NEVER;
    }
    return r.allow;
  }),
);

/** The egress variables, for the schema of every process that sends to or checks tenant-named URLs. */
export const egressEnv = {
  /** `HEARTH_EGRESS_ALLOW_HTTP`: plain http:// besides https:// (local receivers). Default off. */
  HEARTH_EGRESS_ALLOW_HTTP: onOff(false),
  HEARTH_EGRESS_ALLOWLIST: egressAllowList,
};

/**
 * The URL policy of webhooks (and other outbound URLs a tenant names): https:// to public addresses;
 * plain http:// too, to the same places, when `allowHttp` (HEARTH_EGRESS_ALLOW_HTTP); non-public
 * addresses only where `allow` (HEARTH_EGRESS_ALLOWLIST) permits them, whatever the scheme.
 * Fail-closed: the defaults (false, empty) refuse http:// and every non-public address.
 */
export function egressPolicy(allowHttp: boolean, allow: AllowList): UrlPolicy {
  return { allow, schemes: allowHttp ? ["https:", "http:"] : ["https:"], allowListName: EGRESS_ALLOWLIST_VAR };
}
