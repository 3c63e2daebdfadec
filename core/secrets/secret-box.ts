import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";

/** Why a sealed value could not be opened; carries no part of the value. */
export class SecretOpenError extends Error {
  readonly code = "SECRET_UNREADABLE";
}

const VERSION = "hs1";
const IV_BYTES = 12;
const TAG_BYTES = 16;

/**
 * Parses HEARTH_SECRETS_KEY: 32 bytes written as 64 hex characters or as base64 (standard or
 * URL-safe, padding optional). Returns a reason instead for anything else, so start-up can name the
 * variable; the reason never repeats the value.
 */
export function parseSecretsKey(text: string): { ok: true; key: Buffer } | { ok: false; reason: string } {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return { ok: true, key: Buffer.from(t, "hex") };
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) {
    const key = Buffer.from(t.replace(/-/g, "+").replace(/_/g, "/"), "base64");
    if (key.length === 32) return { ok: true, key };
  }
  return { ok: false, reason: "must be 32 random bytes as 64 hex characters or as base64 (e.g. `openssl rand -base64 32`)" };
}

/**
 * Seals short secrets (tenants' variables and credentials) for storage with AES-256-GCM. Each value
 * gets a random 96-bit IV and is bound to a context string (which endpoint, which field) as
 * additional authenticated data, so a sealed value copied into another endpoint's row does not open
 * there. The sealed form names the key by a fingerprint, so a value sealed under another key is
 * reported as such rather than as tampering.
 *
 * Sealed form: `hs1.<key id>.<base64url(iv | ciphertext | tag)>`.
 */
export class SecretBox {
  /** First 8 hex characters of SHA-256 over the key: tells keys apart, reveals nothing usable. */
  readonly keyId: string;

  constructor(private readonly key: Buffer) {
    if (key.length !== 32) throw new Error("a SecretBox key is 32 bytes");
    this.keyId = createHash("sha256").update(key).digest("hex").slice(0, 8);
  }

  seal(plaintext: string, context: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(context, "utf8"));
    const body = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return `${VERSION}.${this.keyId}.${Buffer.concat([iv, body, cipher.getAuthTag()]).toString("base64url")}`;
  }

  /** The plaintext; throws SecretOpenError when the value is malformed, sealed under another key or context, or altered. */
  open(sealed: string, context: string): string {
    const [version, keyId, payload, ...rest] = sealed.split(".");
    if (version !== VERSION || payload === undefined || rest.length > 0) throw new SecretOpenError("not a sealed value");
    if (keyId !== this.keyId) throw new SecretOpenError(`sealed under another key (${keyId}); HEARTH_SECRETS_KEY is ${this.keyId}`);
    const raw = Buffer.from(payload, "base64url");
    if (raw.length < IV_BYTES + TAG_BYTES) throw new SecretOpenError("sealed value is truncated");
    const decipher = createDecipheriv("aes-256-gcm", this.key, raw.subarray(0, IV_BYTES));
    decipher.setAAD(Buffer.from(context, "utf8"));
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES)), decipher.final()]).toString("utf8");
    } catch {
      throw new SecretOpenError("sealed value fails authentication (altered, or sealed for another endpoint or field)");
    }
  }
}
