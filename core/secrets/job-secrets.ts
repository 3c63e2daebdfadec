import { s3ConfigValue, type S3ConfigValue } from "../contracts/job-request.ts";
import { SecretOpenError, type SecretBox } from "./secret-box.ts";

/*
 * A job's per-request S3 credentials (`s3Config`) between the API, which seals them into the job's
 * data at submission, and the control plane's offload broker, which opens them to presign URLs.
 * Bound to the job id, so a sealed config copied into another job does not open there. Workers,
 * Redis, the log and Postgres only ever see the sealed form.
 */

function context(jobId: string): string {
  return `hearth/job/${jobId}/s3Config`;
}

export function sealS3Config(box: SecretBox, jobId: string, config: S3ConfigValue): string {
  return box.seal(JSON.stringify(config), context(jobId));
}

/** The job's config; throws SecretOpenError when it does not open or is not an s3Config. */
export function openS3Config(box: SecretBox, jobId: string, sealed: string): S3ConfigValue {
  let parsed: unknown;
  try {
    parsed = JSON.parse(box.open(sealed, context(jobId)));
  } catch (err) {
    if (err instanceof SecretOpenError) throw err;
    throw new SecretOpenError("sealed s3Config is not JSON");
  }
  const r = s3ConfigValue.safeParse(parsed);
  if (!r.success) throw new SecretOpenError("sealed s3Config is not an s3Config");
  return r.data;
}
