import { chmod, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { hasOpenssl, makeSelfSignedCert, type SelfSignedCert } from "../../test/support/self-signed-cert.ts";
import { ConfigError } from "./parse-env.ts";
import { loadApiConfig } from "./process-configs.ts";

describe.skipIf(!hasOpenssl())("HEARTH_TLS_CERT and HEARTH_TLS_KEY", () => {
  let a: SelfSignedCert;
  let b: SelfSignedCert;
  beforeAll(async () => {
    [a, b] = await Promise.all([makeSelfSignedCert(), makeSelfSignedCert()]);
  });
  afterAll(async () => {
    await Promise.all([a, b].map((c) => c && rm(c.dir, { recursive: true, force: true })));
  });

  it("are optional together: neither means plain HTTP", () => {
    expect(loadApiConfig({}).tls).toBeUndefined();
    expect(loadApiConfig({ HEARTH_TLS_CERT: "", HEARTH_TLS_KEY: "" }).tls).toBeUndefined();
  });

  it("read both files at start when both are set", () => {
    const tls = loadApiConfig({ HEARTH_TLS_CERT: a.certPath, HEARTH_TLS_KEY: a.keyPath }).tls;
    expect(tls).toMatchObject({ cert: a.cert, key: a.key, certPath: a.certPath, keyPath: a.keyPath });
    expect(new Date(tls!.validTo).getTime()).toBeGreaterThan(Date.now());
  });

  it("refuse one without the other, naming the missing one", () => {
    expect(() => loadApiConfig({ HEARTH_TLS_CERT: a.certPath })).toThrow(ConfigError);
    expect(() => loadApiConfig({ HEARTH_TLS_CERT: a.certPath })).toThrow(/HEARTH_TLS_KEY: must be set together with HEARTH_TLS_CERT/);
    expect(() => loadApiConfig({ HEARTH_TLS_KEY: a.keyPath })).toThrow(/HEARTH_TLS_CERT: must be set together with HEARTH_TLS_KEY/);
  });

  it("refuse an unreadable path, naming the variable and the path", async () => {
    const missing = join(a.dir, "nope.pem");
    expect(() => loadApiConfig({ HEARTH_TLS_CERT: missing, HEARTH_TLS_KEY: a.keyPath })).toThrow(/HEARTH_TLS_CERT: cannot read .*nope\.pem: ENOENT/);
    expect(() => loadApiConfig({ HEARTH_TLS_CERT: a.certPath, HEARTH_TLS_KEY: a.dir })).toThrow(/HEARTH_TLS_KEY: cannot read .*: EISDIR/);
    if (process.getuid?.() !== 0) {
      // Root reads whatever the mode says; only others see EACCES.
      const locked = join(a.dir, "locked.pem");
      await writeFile(locked, a.key, { mode: 0o000 });
      expect(() => loadApiConfig({ HEARTH_TLS_CERT: a.certPath, HEARTH_TLS_KEY: locked })).toThrow(/HEARTH_TLS_KEY: cannot read .*EACCES/);
      await chmod(locked, 0o600);
    }
  });

  it("refuse files that are not PEM, a key in place of the certificate, and a key of another certificate", async () => {
    const junk = join(a.dir, "junk.txt");
    await writeFile(junk, "hello, I am not a certificate\n");
    expect(() => loadApiConfig({ HEARTH_TLS_CERT: junk, HEARTH_TLS_KEY: a.keyPath })).toThrow(/HEARTH_TLS_CERT: .*junk\.txt is not a PEM certificate/);
    expect(() => loadApiConfig({ HEARTH_TLS_CERT: a.certPath, HEARTH_TLS_KEY: junk })).toThrow(/HEARTH_TLS_KEY: .*junk\.txt is not a PEM private key/);
    // Swapped variables: each file is PEM, but of the wrong kind.
    expect(() => loadApiConfig({ HEARTH_TLS_CERT: a.keyPath, HEARTH_TLS_KEY: a.certPath })).toThrow(/HEARTH_TLS_CERT: .* is not a PEM certificate[\s\S]*HEARTH_TLS_KEY: .* is not a PEM private key/);
    const broken = join(a.dir, "broken.pem");
    await writeFile(broken, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    expect(() => loadApiConfig({ HEARTH_TLS_CERT: broken, HEARTH_TLS_KEY: a.keyPath })).toThrow(/HEARTH_TLS_CERT: .*broken\.pem is not a valid PEM certificate/);
    expect(() => loadApiConfig({ HEARTH_TLS_CERT: a.certPath, HEARTH_TLS_KEY: b.keyPath })).toThrow(/HEARTH_TLS_KEY: .* is not the private key of the certificate in HEARTH_TLS_CERT/);
  });
});
