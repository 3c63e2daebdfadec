import { execFileSync } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Whether the `openssl` command is on this machine (tests that make certificates skip without it, saying so). */
export function hasOpenssl(): boolean {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export interface SelfSignedCert {
  dir: string;
  certPath: string;
  keyPath: string;
  /** The certificate, PEM: also what a client trusts (it is its own CA). */
  cert: string;
  key: string;
}

/**
 * A throw-away P-256 certificate for `localhost` and 127.0.0.1, valid one day, made by openssl at
 * run time into a fresh temporary directory (the caller removes `dir`).
 */
export async function makeSelfSignedCert(): Promise<SelfSignedCert> {
  const dir = await mkdtemp(join(tmpdir(), "hearth-tls-"));
  const certPath = join(dir, "cert.pem");
  const keyPath = join(dir, "key.pem");
  execFileSync(
    "openssl",
    ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=localhost",
      "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-days", "1", "-keyout", keyPath, "-out", certPath],
    { stdio: "ignore" },
  );
  return { dir, certPath, keyPath, cert: await readFile(certPath, "utf8"), key: await readFile(keyPath, "utf8") };
}
