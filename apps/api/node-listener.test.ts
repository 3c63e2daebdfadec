import { get as httpGet } from "node:http";
import { get as httpsGet } from "node:https";
import { connect } from "node:http2";
import { rm } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readTlsFiles, type TlsFiles } from "../../core/config/tls-files.ts";
import { hasOpenssl, makeSelfSignedCert, type SelfSignedCert } from "../../test/support/self-signed-cert.ts";
import { listen } from "./node-listener.ts";

const ok = () => new Response("ok");

/** An HTTP/1.1 GET: status and the Connection and Keep-Alive headers the server announced. */
function get1(url: string, ca?: string): Promise<{ status: number; connection?: string; keepAlive?: string }> {
  return new Promise((resolve, reject) => {
    const done = (res: import("node:http").IncomingMessage) => {
      res.resume();
      res.on("end", () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection, keepAlive: res.headers["keep-alive"] as string | undefined }));
    };
    const req = ca === undefined ? httpGet(url, done) : httpsGet(url, { ca }, done);
    req.on("error", reject);
  });
}

describe("the Node listener's defaults", () => {
  it("plain HTTP/1.1 announces the 75 s keep-alive (not Node's 5 s)", async () => {
    const server = await listen({ fetch: ok, port: 0, host: "127.0.0.1" });
    try {
      expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      expect(await get1(`${server.url}/`)).toEqual({ status: 200, connection: "keep-alive", keepAlive: "timeout=75" });
    } finally {
      await server.close();
    }
  });

  describe.skipIf(!hasOpenssl())("with TLS", () => {
    let cert: SelfSignedCert;
    let tls: TlsFiles;
    beforeAll(async () => {
      cert = await makeSelfSignedCert();
      const r = readTlsFiles(cert.certPath, cert.keyPath);
      if (!r.ok || !r.tls) throw new Error("certificate refused");
      tls = r.tls;
    });
    afterAll(async () => {
      await rm(cert.dir, { recursive: true, force: true });
    });

    it("gives HTTP/1.1 clients the same keep-alive (Http2SecureServer has none of its own) and h2 clients HTTP/2", async () => {
      const server = await listen({ fetch: ok, port: 0, host: "127.0.0.1", tls });
      try {
        expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
        expect(await get1(`${server.url}/`, cert.cert)).toEqual({ status: 200, connection: "keep-alive", keepAlive: "timeout=75" });
        const session = connect(server.url, { ca: cert.cert });
        const status = await new Promise<number>((resolve, reject) => {
          const req = session.request({ ":path": "/" });
          req.on("response", (h) => resolve(Number(h[":status"])));
          req.on("error", reject);
          req.end();
        });
        expect(session.alpnProtocol).toBe("h2");
        expect(status).toBe(200);
        session.close();
      } finally {
        await server.close();
      }
    });

    it("close() ends open HTTP/2 sessions at once instead of waiting for them", async () => {
      const server = await listen({ fetch: ok, port: 0, host: "127.0.0.1", tls });
      const session = connect(server.url, { ca: cert.cert });
      session.on("error", () => {});
      await new Promise<void>((resolve) => session.once("connect", () => resolve()));
      const closed = new Promise<void>((resolve) => session.once("close", () => resolve()));
      const started = Date.now();
      await server.close();
      await closed;
      expect(Date.now() - started).toBeLessThan(2000);
    });
  });
});
