import { randomBytes, randomUUID } from "node:crypto";

const ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789";

/** Lower-case alphanumeric id of `length` characters (RunPod endpoint and worker ids look like this). */
export function randomAlnum(length: number): string {
  // 256 % 36 != 0; the bias of taking a byte mod 36 is under 1% per character: irrelevant for ids.
  const bytes = randomBytes(length);
  let out = "";
  for (const b of bytes) out += ALPHABET[b % ALPHABET.length];
  return out;
}

export const newTenantId = () => `tn_${randomAlnum(12)}`;
export const newKeyId = () => `key_${randomAlnum(12)}`;
export const newEndpointId = () => randomAlnum(14);
export const newWorkerId = () => `w-${randomAlnum(12)}`;
/** Async job ids in RunPod's shape (`<uuid>-u1`); sync jobs start with `sync-`. */
export const newJobId = (sync: boolean) => (sync ? `sync-${randomUUID()}-u1` : `${randomUUID()}-u1`);
/** An API key: shown once, stored hashed. */
export const newApiKey = () => `hk_${randomBytes(24).toString("base64url")}`;
/** The operator's admin token, when none is configured. */
export const newAdminToken = () => `hadm_${randomBytes(24).toString("base64url")}`;
export const newAdminKeyId = () => `adk_${randomAlnum(12)}`;
/** An admin key: shown once, stored hashed; `hak_` tells it from tenant keys (`hk_`) and the bootstrap token (`hadm_`). */
export const newAdminKey = () => `hak_${randomBytes(24).toString("base64url")}`;
