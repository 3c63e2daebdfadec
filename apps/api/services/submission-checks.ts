import type { RunRequest } from "../../../core/contracts/job-request.ts";
import { inputReference } from "../../../core/contracts/offload.ts";
import { checkUrlAtSubmission } from "../../../core/net/host-resolution.ts";
import type { UrlPolicy } from "../../../core/net/url-policy.ts";
import type { SecretBox } from "../../../core/secrets/secret-box.ts";
import { ApiError, type IssueDetail } from "../api-error.ts";

export interface SubmissionCheckContext {
  /** Where tenant-named URLs may point (webhooks, `s3Config.endpointUrl`). */
  egress: UrlPolicy;
  /** Seals `s3Config`; without it a request carrying one is refused (never kept in the clear). */
  secrets?: SecretBox;
  /** The platform bucket (HEARTH_OUTPUT_BUCKET's), which `inputRef` may name too. */
  platformBucket?: string;
}

/**
 * What `/run` and `/runsync` check beyond the body's schema, before anything is queued: every URL
 * the tenant names (scheme, literal addresses, names that resolve here: core/net), that an
 * `s3Config` can be kept sealed, and that an `inputRef` names a bucket the job can read. Throws a
 * 400 naming each field. A check of a name that cannot be resolved from here is left to the
 * connection (which checks the address it connects to).
 */
export async function checkSubmission(req: RunRequest, ctx: SubmissionCheckContext): Promise<void> {
  const urls: { path: string; url: string }[] = [];
  if (req.webhook !== undefined) urls.push({ path: "webhook", url: req.webhook });
  if (req.webhookV2 !== undefined) urls.push({ path: "webhookV2", url: req.webhookV2 });
  if (req.s3Config !== undefined) urls.push({ path: "s3Config.endpointUrl", url: req.s3Config.endpointUrl });
  if (urls.length === 0 && !hasInputRef(req.input)) return;

  if (req.s3Config !== undefined && ctx.secrets === undefined) {
    const message = "this deployment keeps no secrets (HEARTH_SECRETS_KEY is not set), so it cannot hold s3Config";
    throw new ApiError(400, "secrets_unavailable", `s3Config.accessSecret: ${message}`, [{ path: "s3Config.accessSecret", message }]);
  }

  const verdicts = await Promise.all(
    urls.map(async ({ url }) => {
      let parsed: URL;
      try {
        parsed = new URL(url);
      } catch {
        return { ok: false, reason: "must be an http(s) URL" } as const;
      }
      return checkUrlAtSubmission(parsed, ctx.egress).catch(() => ({ ok: true }) as const);
    }),
  );
  const issues: IssueDetail[] = urls.flatMap(({ path }, i) => {
    const v = verdicts[i]!;
    return v.ok ? [] : [{ path, message: v.reason }];
  });
  const ref = inputRefIssue(req, ctx);
  if (ref) issues.push(ref);
  if (issues.length > 0) throw ApiError.badRequest(`invalid request: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`, issues);
}

/** True for an input that means to be a reference (`{"inputRef": …}`), well-formed or not. */
export function hasInputRef(input: unknown): boolean {
  return input !== null && typeof input === "object" && !Array.isArray(input) && "inputRef" in input;
}

/** The `s3://` URI of a well-formed reference, else undefined. */
export function inputRefUri(input: unknown): string | undefined {
  const r = inputReference.safeParse(input);
  return r.success ? r.data.inputRef : undefined;
}

function inputRefIssue(req: RunRequest, ctx: SubmissionCheckContext): IssueDetail | undefined {
  if (!hasInputRef(req.input)) return undefined;
  const uri = inputRefUri(req.input);
  if (uri === undefined) return { path: "input.inputRef", message: 'must be the only field of input, a string "s3://bucket/key"' };
  const bucket = new URL(uri).hostname;
  // The job reads with its s3Config's credentials when it has one, else the platform's (its own keys only).
  const readable = req.s3Config?.bucketName ?? ctx.platformBucket;
  if (readable === undefined) return { path: "input.inputRef", message: "needs s3Config (credentials for its bucket)" };
  if (bucket !== readable) return { path: "input.inputRef", message: `bucket ${JSON.stringify(bucket)} is not ${req.s3Config ? "s3Config.bucketName" : "the platform bucket"}` };
  return undefined;
}
