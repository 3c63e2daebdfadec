import { randomBytes } from "node:crypto";
import { rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ControlPlane } from "../apps/control/control-plane.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";

/**
 * Scoped tenant keys on the job routes, and job submissions in the audit log: written by the
 * control plane from the log's acceptance records (never by `/run` itself), once each, with the
 * submitting key and the model of the endpoint revision the job was accepted under, even when the
 * control plane reads the log again from its start.
 */
describe("key scopes and audited job submissions", () => {
  let stack: Stack;
  let control: ControlPlane | undefined;
  const models: string[] = [];
  const startControl = () => {
    // No trimming: a replay from the start of the log must find every entry again.
    control = new ControlPlane({ redis: stack.redis, sql: stack.sql, keys: new RedisKeys(stack.redisPrefix), log: () => {}, blockMs: 100, trimIntervalMs: 3_600_000 });
    control.start();
  };

  beforeAll(async () => {
    stack = await startStack({ control: false });
    for (const name of ["audit-llama-a", "audit-llama-b"]) {
      const path = join(tmpdir(), `${name}-${randomBytes(4).toString("hex")}.gguf`);
      await writeFile(path, "not really a model: no worker ever starts here");
      models.push(path);
    }
  }, 60_000);
  afterAll(async () => {
    await control?.stop();
    await stack?.close();
    for (const m of models) await rm(m, { force: true });
  });

  it("refuses a key beyond its scope with 403, and audits each submission once with its key and model, across a replay", async () => {
    const { id: tenantId, key: full } = await stack.tenantWithId("scoped");
    const call = stack.call;
    const llm = (model: string) => ({ kind: "openai", profile: "embedded", model: `file://${model}`, args: { threads: 1 } });
    const ep = await stack.endpoint(full, { engine: llm(models[0]!), workersMax: 0 });
    const makeKey = async (scope: string) => {
      const r = await call("POST", "/api/v1/keys", { key: full, body: { name: scope, scope } });
      expect(r.status).toBe(200);
      return { id: r.body.id as string, key: r.body.key as string };
    };
    const read = await makeKey("read");
    const run = await makeKey("run");
    const listed = (await call("GET", "/api/v1/keys", { key: read.key })).body;
    expect(listed.map((k: any) => [k.name, k.scope]).sort()).toEqual([["default", "full"], ["read", "read"], ["run", "run"]]);

    // A read key: statuses, health, listings; no jobs, no management.
    const a = await call("POST", `/v2/${ep}/run`, { key: full, body: { input: { n: "a" } } });
    expect(a.status).toBe(200);
    for (const [method, path] of [["GET", `/v2/${ep}/status/${a.body.id}`], ["POST", `/v2/${ep}/status/${a.body.id}`], ["GET", `/v2/${ep}/health`], ["GET", `/v2/${ep}/openai/v1/models`], ["GET", "/api/v1/endpoints"], ["GET", "/api/v1/audit"]] as const) {
      expect((await call(method, path, { key: read.key })).status, `${method} ${path}`).toBe(200);
    }
    const refusedRun = await call("POST", `/v2/${ep}/run`, { key: read.key, body: { input: {} } });
    expect(refusedRun.status).toBe(403);
    expect(refusedRun.body).toMatchObject({ code: "insufficient_scope", error: expect.stringContaining("scope is read") });
    expect((await call("POST", `/v2/${ep}/cancel/${a.body.id}`, { key: read.key })).status).toBe(403);
    expect((await call("POST", `/v2/${ep}/purge-queue`, { key: read.key })).status).toBe(403);
    // The OpenAI routes answer in OpenAI's error shape, as for a 401.
    const refusedChat = await call("POST", `/v2/${ep}/openai/v1/chat/completions`, { key: read.key, body: { messages: [{ role: "user", content: "hi" }] } });
    expect(refusedChat.status).toBe(403);
    expect(refusedChat.body).toEqual({ error: { message: expect.stringContaining("scope is read"), type: "permission_error", code: "insufficient_scope", param: null } });

    // A run key: jobs, but no management.
    const b = await call("POST", `/v2/${ep}/run`, { key: run.key, body: { input: { n: "b" } } });
    expect(b.status).toBe(200);
    const c = await call("POST", `/v2/${ep}/runsync?wait=1000`, { key: run.key, body: { input: { n: "c" } } });
    expect(c.status).toBe(200);
    // An OpenAI request is a job too; the client gives up at once (the relay then cancels the job).
    await fetch(`${stack.api.url}/v2/${ep}/openai/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${run.key}`, "content-type": "application/json" },
      body: JSON.stringify({ messages: [{ role: "user", content: "hi" }] }),
      signal: AbortSignal.timeout(1000),
    }).catch(() => {});
    for (const [method, path, body] of [["POST", "/api/v1/endpoints", { name: "x", engine: llm(models[0]!) }], ["PATCH", `/api/v1/endpoints/${ep}`, { idleTimeout: 3 }], ["POST", "/api/v1/keys", { name: "more" }], ["DELETE", `/api/v1/keys/${read.id}`, undefined]] as const) {
      const r = await call(method, path, { key: run.key, ...(body !== undefined && { body }) });
      expect(r.status, `${method} ${path}`).toBe(403);
      expect(r.body.code).toBe("insufficient_scope");
    }

    // The model changes before the control plane reads any of it: earlier jobs keep the model they were accepted under.
    expect((await call("PATCH", `/api/v1/endpoints/${ep}`, { key: full, body: { engine: { ...llm(models[1]!), servedModelName: "llama-b" } } })).status).toBe(200);
    const d = await call("POST", `/v2/${ep}/run`, { key: full, body: { input: { n: "d" } } });
    expect(d.status).toBe(200);
    expect(await stack.sql`select 1 from audit_log where action = 'job.submit'`).toHaveLength(0);

    startControl();
    const submissions = async () =>
      (await stack.sql`select target_id, key_id, actor_kind, actor_id, tenant_id, endpoint_id, model_name, model_version, source_address, detail, log_entry_id
                       from audit_log where action = 'job.submit' order by id`) as any[];
    const first = await waitFor(async () => {
      const rows = await submissions();
      return rows.length >= 5 ? rows : undefined;
    });
    const byJob = new Map(first.map((r) => [r.target_id, r]));
    const nameA = models[0]!.slice(models[0]!.lastIndexOf("/") + 1).replace(/\.gguf$/, "");
    expect(byJob.get(a.body.id)).toMatchObject({ actor_kind: "api_key", key_id: listed.find((k: any) => k.name === "default").id, tenant_id: tenantId, endpoint_id: ep, model_name: nameA, model_version: `file://${models[0]}`, detail: { sync: false } });
    expect(byJob.get(b.body.id)).toMatchObject({ actor_id: run.id, key_id: run.id, model_name: nameA });
    expect(byJob.get(c.body.id)).toMatchObject({ key_id: run.id, detail: { sync: true } });
    expect(byJob.get(d.body.id)).toMatchObject({ model_name: "llama-b", model_version: `file://${models[1]}` });
    expect(first.filter((r) => r.key_id === run.id)).toHaveLength(3); // b, c and the OpenAI request
    for (const r of first) {
      expect(r.source_address).toMatch(/^(::ffff:)?127\.0\.0\.1$/);
      expect(JSON.stringify(r.detail)).not.toContain('"n"'); // never the job's input
    }

    // Restart the control plane and make it read the whole log again: nothing is written twice.
    await control!.stop();
    const [cursor] = (await stack.sql`select last_id from log_cursors where consumer = 'records' and endpoint_id = ${ep}`) as any[];
    await stack.sql`delete from log_cursors where consumer = 'records'`;
    startControl();
    await waitFor(async () => ((await stack.sql`select last_id from log_cursors where consumer = 'records' and endpoint_id = ${ep}`) as any[])[0]?.last_id === cursor.last_id);
    const replayed = await submissions();
    expect(replayed).toEqual(first);
    expect(new Set(replayed.map((r) => r.log_entry_id)).size).toBe(replayed.length);
  }, 60_000);
});
