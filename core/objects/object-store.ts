/** Where an object landed: enough for a durable record to find it again and check what it finds. */
export interface StoredObject {
  store: "local" | "s3";
  /** Set for `s3`. */
  bucket?: string;
  /** The key as given to `put`: without any prefix the store adds. */
  key: string;
  bytes: number;
  /** Hex SHA-256 of the bytes written. */
  sha256: string;
}

/**
 * Blobs too large for a Postgres row (job outputs above the inline limit). One S3 implementation and
 * one local-directory implementation for the embedded default; both run object-store-conformance.ts.
 */
export interface ObjectStore {
  readonly kind: "local" | "s3";
  /** Writes `body` under `key` (overwriting: writes are idempotent per key); returns what it stored. */
  put(key: string, body: Buffer, contentType: string): Promise<StoredObject>;
  /** The object's bytes; undefined when there is none under `key`. */
  get(key: string): Promise<Buffer | undefined>;
}

/** A key that is not of the form `assertObjectKey` allows; thrown before any I/O. */
export class ObjectKeyError extends Error {
  readonly code = "OBJECT_KEY_INVALID";

  constructor(message: string) {
    super(message);
    this.name = "ObjectKeyError";
  }
}

export const MAX_OBJECT_KEY_LENGTH = 1024;

const SEGMENT = /^[A-Za-z0-9._-]+$/;

/**
 * Keys are `[A-Za-z0-9._-]` segments joined by `/`, none empty, `.` or `..`, at most 1024 characters.
 * The same rule for both stores, so a key that works locally works on S3 and cannot climb out of the
 * local directory; keys are built by the control plane, so a refusal is a bug, not user input.
 */
export function assertObjectKey(key: string): void {
  if (key.length === 0) throw new ObjectKeyError("object key is empty");
  if (key.length > MAX_OBJECT_KEY_LENGTH) throw new ObjectKeyError(`object key is ${key.length} characters long; at most ${MAX_OBJECT_KEY_LENGTH} are allowed`);
  for (const segment of key.split("/")) {
    if (!SEGMENT.test(segment) || segment === "." || segment === "..") {
      throw new ObjectKeyError(`object key ${JSON.stringify(key)} is not [A-Za-z0-9._-] segments joined by "/" (no empty, "." or ".." segment)`);
    }
  }
}
