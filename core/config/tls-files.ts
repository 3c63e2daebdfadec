import { X509Certificate, createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { z } from "zod";
import { optionalString } from "./parse-env.ts";

/** The API's certificate chain and private key, read and checked at start (HEARTH_TLS_CERT, HEARTH_TLS_KEY). */
export interface TlsFiles {
  /** PEM: the server certificate first, then any intermediates. */
  cert: string;
  /** PEM private key (unencrypted) matching the first certificate. */
  key: string;
  certPath: string;
  keyPath: string;
  /** The first certificate's expiry, for the start log line. */
  validTo: string;
}

/** The two variables, as plain optional paths; `tlsFilesFromEnv` (a refinement of the whole schema) reads them. */
export const tlsEnv = {
  HEARTH_TLS_CERT: optionalString,
  HEARTH_TLS_KEY: optionalString,
};

type Issue = { path: string; message: string };

/**
 * Reads and checks HEARTH_TLS_CERT and HEARTH_TLS_KEY: both or neither (neither: plain HTTP), each
 * readable, each PEM that Node's TLS will accept, and the key the certificate's own. Done once at
 * start so a wrong file stops the API with the variable's name instead of failing every handshake.
 * Returns the issues by variable name (for the zod schema to report) or the files.
 */
export function readTlsFiles(certPath: string | undefined, keyPath: string | undefined): { ok: true; tls?: TlsFiles } | { ok: false; issues: Issue[] } {
  if (certPath === undefined && keyPath === undefined) return { ok: true };
  if (certPath === undefined) return { ok: false, issues: [{ path: "HEARTH_TLS_CERT", message: "must be set together with HEARTH_TLS_KEY (a certificate for the key)" }] };
  if (keyPath === undefined) return { ok: false, issues: [{ path: "HEARTH_TLS_KEY", message: "must be set together with HEARTH_TLS_CERT (the certificate's private key)" }] };
  const issues: Issue[] = [];
  const read = (path: string, name: string): string | undefined => {
    try {
      return readFileSync(path, "utf8");
    } catch (err) {
      issues.push({ path: name, message: `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` });
      return undefined;
    }
  };
  const certPem = read(certPath, "HEARTH_TLS_CERT");
  const keyPem = read(keyPath, "HEARTH_TLS_KEY");
  let certificate: X509Certificate | undefined;
  if (certPem !== undefined) {
    // X509Certificate also takes DER; the TLS stack wants PEM, so ask for the armour first.
    if (!certPem.includes("-----BEGIN CERTIFICATE-----")) issues.push({ path: "HEARTH_TLS_CERT", message: `${certPath} is not a PEM certificate (no BEGIN CERTIFICATE block)` });
    else {
      try {
        certificate = new X509Certificate(certPem);
      } catch (err) {
        issues.push({ path: "HEARTH_TLS_CERT", message: `${certPath} is not a valid PEM certificate: ${(err as Error).message}` });
      }
    }
  }
  let keyObject: ReturnType<typeof createPrivateKey> | undefined;
  if (keyPem !== undefined) {
    if (!/-----BEGIN (RSA |EC |ENCRYPTED )?PRIVATE KEY-----/.test(keyPem)) issues.push({ path: "HEARTH_TLS_KEY", message: `${keyPath} is not a PEM private key (no BEGIN PRIVATE KEY block)` });
    else {
      try {
        keyObject = createPrivateKey(keyPem);
      } catch (err) {
        // Encrypted keys land here too: the API has no passphrase to open them with.
        issues.push({ path: "HEARTH_TLS_KEY", message: `${keyPath} is not a usable private key (unencrypted PEM): ${(err as Error).message}` });
      }
    }
  }
  if (certificate && keyObject && !certificate.checkPrivateKey(keyObject)) {
    issues.push({ path: "HEARTH_TLS_KEY", message: `${keyPath} is not the private key of the certificate in HEARTH_TLS_CERT` });
  }
  if (issues.length > 0 || certPem === undefined || keyPem === undefined || certificate === undefined) return { ok: false, issues };
  return { ok: true, tls: { cert: certPem, key: keyPem, certPath, keyPath, validTo: certificate.validTo } };
}

/** A schema refinement: reads the files named by the environment, reporting any problem under the variable's name. */
export function tlsFilesFromEnv<T extends { HEARTH_TLS_CERT?: string | undefined; HEARTH_TLS_KEY?: string | undefined }>(env: T, ctx: z.RefinementCtx): T & { tls?: TlsFiles } {
  const r = readTlsFiles(env.HEARTH_TLS_CERT, env.HEARTH_TLS_KEY);
  if (!r.ok) {
    for (const issue of r.issues) ctx.addIssue({ code: "custom", path: [issue.path], message: issue.message });
    return z.NEVER;
  }
  return r.tls ? { ...env, tls: r.tls } : env;
}
