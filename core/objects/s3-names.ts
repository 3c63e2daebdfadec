/** S3's bucket naming rules (3–63 characters; lower case, digits, dots, hyphens; alphanumeric at both ends). */
export const S3_BUCKET_NAME = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/** One segment of a key Hearth builds (prefixes, object paths, object keys): no `/`, nothing S3 or a file system treats specially. */
export const KEY_SEGMENT = /^[A-Za-z0-9._-]+$/;

/** True when `path` is `KEY_SEGMENT`s joined by `/`, none `.` or `..`. */
export function isKeyPath(path: string): boolean {
  return path !== "" && path.split("/").every((seg) => KEY_SEGMENT.test(seg) && seg !== "." && seg !== "..");
}
