import { createServer, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { EngineConnectionError, engineRequest } from "./engine-http.ts";
import { sseData } from "./sse-events.ts";

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

/** A server whose handler gets each request with the remote port of its connection (one port, one connection). */
async function serve(handler: (res: ServerResponse, remotePort: number, body: string) => void): Promise<string> {
  server = createServer((req, res) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (c: string) => (body += c));
    req.on("end", () => handler(res, req.socket.remotePort!, body));
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe("engineRequest", () => {
  it("sends the body, reads status and JSON, and reuses the connection for the next request", async () => {
    const ports: number[] = [];
    const base = await serve((res, port, body) => {
      ports.push(port);
      res.writeHead(201, { "content-type": "application/json" }).end(JSON.stringify({ got: JSON.parse(body) }));
    });
    for (let i = 0; i < 3; i++) {
      const res = await engineRequest(`${base}/v1/x`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ i, s: "é\u0000" }) });
      expect(res.status).toBe(201);
      expect(res.ok).toBe(true);
      expect(await res.json()).toEqual({ got: { i, s: "é\u0000" } });
    }
    expect(new Set(ports).size).toBe(1);
  });

  it("after release() at [DONE] the connection serves the next stream; after destroy() the server sees its client gone", async () => {
    const ports: number[] = [];
    let closedEarly = 0;
    const base = await serve((res, port) => {
      ports.push(port);
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: 1\n\ndata: [DONE]\n\n");
      res.on("close", () => {
        if (!res.writableFinished) closedEarly++;
      });
      // The end comes a moment after [DONE], as an engine's does.
      setTimeout(() => res.end(), 20);
    });
    for (let i = 0; i < 2; i++) {
      const res = await engineRequest(`${base}/s`, { method: "POST", body: "{}" });
      for await (const data of sseData(res.body)) if (data === "[DONE]") break;
      res.release();
      await new Promise((r) => setTimeout(r, 60));
    }
    expect(new Set(ports).size).toBe(1);
    const res = await engineRequest(`${base}/s`, { method: "POST", body: "{}" });
    for await (const data of sseData(res.body)) if (data === "1") break;
    res.destroy();
    await new Promise((r) => setTimeout(r, 60));
    expect(closedEarly).toBe(1);
    expect(ports).toHaveLength(3);
    expect(ports[2]).toBe(ports[0]); // the pool's connection, now destroyed
  });

  it("a refused connection and an answer cut short are EngineConnectionError", async () => {
    const base = await serve((res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: 1\n\n");
      setTimeout(() => res.socket?.destroy(), 10);
    });
    const res = await engineRequest(`${base}/s`, { method: "POST", body: "{}" });
    const got: string[] = [];
    const reading = (async () => {
      for await (const data of sseData(res.body)) got.push(data);
    })();
    await expect(reading).rejects.toBeInstanceOf(EngineConnectionError);
    expect(got).toEqual(["1"]);

    server!.closeAllConnections();
    await new Promise((r) => server!.close(r));
    server = undefined;
    await expect(engineRequest(`${base}/s`, { method: "GET" })).rejects.toBeInstanceOf(EngineConnectionError);
  });

  it("an aborted signal rejects with its reason, before the answer and while reading it", async () => {
    const base = await serve((res) => {
      res.writeHead(200, { "content-type": "text/event-stream" });
      res.write("data: 1\n\n");
    });
    const early = new AbortController();
    early.abort(new Error("gone before"));
    await expect(engineRequest(`${base}/s`, { method: "GET", signal: early.signal })).rejects.toThrow("gone before");

    const late = new AbortController();
    const res = await engineRequest(`${base}/s`, { method: "GET", signal: late.signal });
    const reading = (async () => {
      for await (const data of sseData(res.body)) if (data === "1") late.abort(new Error("cancelled mid-stream"));
    })();
    await expect(reading).rejects.toThrow("cancelled mid-stream");
  });
});
