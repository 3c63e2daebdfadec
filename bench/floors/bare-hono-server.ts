/**
 * The floor of the `/run` throughput benchmark: the least an HTTP JSON endpoint on the same stack
 * (Hono on @hono/node-server) can do — parse the body, answer with an id. No auth, no Redis.
 * Prints `{"t":"floor-hono","msg":"listening","port":N}` once it listens; exits on SIGTERM.
 */
import { randomUUID } from "node:crypto";
import { serve } from "@hono/node-server";
import { Hono } from "hono";

const app = new Hono();
app.post("/run", async (c) => {
  await c.req.json();
  return c.json({ id: randomUUID(), status: "IN_QUEUE" }, 200);
});

const server = serve({ fetch: app.fetch, port: Number(process.env.PORT ?? 0), hostname: "127.0.0.1" }, (info) => {
  console.log(JSON.stringify({ t: "floor-hono", msg: "listening", port: info.port }));
});

process.on("SIGTERM", () => {
  server.close(() => process.exit(0));
  (server as { closeAllConnections?: () => void }).closeAllConnections?.();
});
