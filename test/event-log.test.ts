import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ControlPlane } from "../apps/control/control-plane.ts";
import { RedisKeys } from "../core/queue/keys.ts";
import { startApiReplica } from "./support/api-replica.ts";
import { examplesDir, fixturesDir, startStack, type Stack } from "./support/hearth-stack.ts";
import { waitFor } from "./support/services.ts";
import { pidOfWorker } from "./support/engine-processes.ts";
import { acceptedJobIds, readLog } from "./support/event-log-probe.ts";
import { compareStreamIds } from "../core/log/log-entry.ts";

/** The stack's admin token (test/support/hearth-stack.ts). */
const ADMIN = "stack-admin-token-0123456789";
const HOUR = 3_600_000;

type Call = Stack["call"];
type Replica = Awaited<ReturnType<typeof startApiReplica>>;

/** A job's durable record as `GET /api/v1/jobs[/:id]` returns it (the fields these tests read). */
interface JobRecord {
  id: string;
  endpointId: string;
  status: string;
  error: string | null;
  webhook: string | null;
  submittedAt: string;
  output?: unknown;
}

interface DeadLetter {
  id: string;
  consumer: string;
  endpointId: string;
  entryId: string;
  entry: unknown;
  reason: string;
  state: string;
}

interface WorkerSession {
  id: string;
  state: string;
  exitCode: number | null;
  endReason: string | null;
  requestedAt: string | null;
  readyAt: string | null;
  endedAt: string | null;
  transitions: { state: string; at: string; reason: string | null; exitCode: number | null }[];
}

/**
 * The endpoint event log end to end: jobs and workers of real processes go through BullMQ's events
 * stream, the control plane projects it into Postgres, and the API reads the records back.
 */
describe("event log and its records", () => {
  let stack: Stack;
  let keys: RedisKeys;
  let key: string; // the tenant most tests use
  let otherKey: string; // another tenant
  let echoEp: string; // key's echo endpoint with a worker always up
  let otherEp: string; // otherKey's endpoint that never runs anything
  let sleepEp: string; // key's sleep endpoint with a worker always up (clock-shift test)
  let listerKey: string; // a tenant of its own for the listing test
  let listerEchoEp: string;
  let ahead: Replica; // an API replica whose clock is an hour ahead
  let behind: Replica; // and one an hour behind
  let replay: ControlPlane | undefined;

  const echo = { kind: "handler", module: join(examplesDir, "echo.mjs") };
  const sleep = { kind: "handler", module: join(fixturesDir, "sleep.mjs") };
  /** An endpoint nothing ever takes jobs from. */
  const parked = { engine: echo, workersMax: 0 };

  beforeAll(async () => {
    stack = await startStack();
    keys = new RedisKeys(stack.redisPrefix);
    [key, otherKey, listerKey] = await Promise.all([stack.tenant("a"), stack.tenant("b"), stack.tenant("lister")]);
    // Created together so their workers boot while the rest is set up.
    [echoEp, otherEp, sleepEp, listerEchoEp] = await Promise.all([
      stack.endpoint(key, { engine: echo, workersMin: 1 }),
      stack.endpoint(otherKey, parked),
      stack.endpoint(key, { engine: sleep, workersMin: 1, workersMax: 1 }),
      stack.endpoint(listerKey, { engine: echo, workersMin: 1, workersMax: 1 }),
    ]);
    [ahead, behind] = await Promise.all([startApiReplica(stack, { now: () => Date.now() + HOUR }), startApiReplica(stack, { now: () => Date.now() - HOUR })]);
  });
  afterAll(async () => {
    await Promise.all([ahead?.close(), behind?.close()]);
    await replay?.stop();
    await stack?.close();
  });

  const run = async (ep: string, body: unknown, as = key, call: Call = stack.call): Promise<string> => {
    const r = await call("POST", `/v2/${ep}/run`, { key: as, body });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body.id as string;
  };
  /** The job's record once it has `status` (the control plane follows the log by a moment). */
  const recordWith = (id: string, status: string, as = key): Promise<JobRecord> =>
    waitFor(async () => {
      const r = await stack.call("GET", `/api/v1/jobs/${id}`, { key: as });
      return r.status === 200 && r.body.status === status ? (r.body as JobRecord) : undefined;
    }, 30_000);
  const list = async (query: string, as = key) => {
    const r = await stack.call("GET", `/api/v1/jobs?${query}`, { key: as });
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    return r.body as { items: JobRecord[]; nextCursor: string | null };
  };
  const adminLog = async () => {
    const r = await stack.call("GET", "/admin/log", { key: ADMIN });
    expect(r.status).toBe(200);
    return r.body as { consumers: { name: string; lagEntries: number; lagMs: number; endpoints: number }[]; deadLetters: { open: number; items: DeadLetter[] } };
  };
  /** Every consumer sets an unreadable entry aside on its own; these tests follow the records projector's. */
  const deadLetterOf = async (entryId: string, consumer = "records") => (await adminLog()).deadLetters.items.find((d) => d.entryId === entryId && d.consumer === consumer);
  /** Resolves once the records consumer has applied every entry of every log. */
  const caughtUp = () =>
    waitFor(async () => {
      const records = (await adminLog()).consumers.find((c) => c.name === "records");
      return records?.lagEntries === 0 ? records : undefined;
    }, 30_000);
  const counts = async (ep: string) =>
    Object.fromEntries((await stack.sql<{ status: string; count: number }[]>`select status, count::int as count from endpoint_job_counts where endpoint_id = ${ep}`).map((r) => [r.status, r.count]));
  const sessions = async (ep: string, as = key) => {
    const r = await stack.call("GET", `/api/v1/endpoints/${ep}/workers`, { key: as });
    expect(r.status).toBe(200);
    return r.body.items as WorkerSession[];
  };
  /** POST with an `Idempotency-Key` (stack.call sends no extra headers). */
  const postWithKey = async (path: string, as: string, idempotencyKey: string, body: unknown) => {
    const res = await fetch(`${stack.api.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${as}`, "content-type": "application/json", "idempotency-key": idempotencyKey },
      body: JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  /** An endpoint's log entries after `afterId`: each one's event and, for Hearth's own, its payload. */
  /** Job ids of the acceptance records (the API's jobs' `added` entries) after a log position. */
  const acceptedAfter = async (ep: string, afterId: string) => acceptedJobIds((await readLog(stack.redis, keys.log(ep))).filter((e) => compareStreamIds(e.id, afterId) > 0));
  const lastLogId = async (ep: string) => ((await stack.redis.xrevrange(keys.log(ep), "+", "-", "COUNT", 1)) as [string, string[]][])[0]?.[0] ?? "0-0";

  it("lists a tenant's jobs newest first, a page at a time, filtered by endpoint, status and time", async () => {
    const parkedEp = await stack.endpoint(listerKey, parked);
    const submitted: string[] = [];
    for (let i = 0; i < 7; i++) submitted.push(await run(i % 3 === 2 ? parkedEp : listerEchoEp, { input: { i } }, listerKey));
    const onParked = [submitted[2]!, submitted[5]!];
    const onEcho = submitted.filter((id) => !onParked.includes(id));
    const records = new Map<string, JobRecord>();
    for (const id of onEcho) records.set(id, await recordWith(id, "COMPLETED", listerKey));
    for (const id of onParked) records.set(id, await recordWith(id, "IN_QUEUE", listerKey));
    const t = (id: string) => Date.parse(records.get(id)!.submittedAt);
    // Dated in log order: a job submitted later is never dated earlier.
    for (let i = 1; i < submitted.length; i++) expect(t(submitted[i]!)).toBeGreaterThanOrEqual(t(submitted[i - 1]!));

    // Every job exactly once, following nextCursor until null.
    const pages: JobRecord[][] = [];
    let cursor: string | null = null;
    do {
      const page = await list(`limit=3${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`, listerKey);
      pages.push(page.items);
      cursor = page.nextCursor;
    } while (cursor !== null && pages.length < 10);
    expect(pages.map((p) => p.length)).toEqual([3, 3, 1]);
    const listed = pages.flat().map((r) => r.id);
    expect(new Set(listed).size).toBe(listed.length);
    expect([...listed].sort()).toEqual([...submitted].sort());
    // Newest first (jobs of the same millisecond by id, descending).
    const newestFirst = [...submitted].sort((a, b) => t(b) - t(a) || (a < b ? 1 : a > b ? -1 : 0));
    expect(listed).toEqual(newestFirst);

    // Filters, alone, together and across pages.
    expect((await list(`endpointId=${parkedEp}`, listerKey)).items.map((r) => r.id).sort()).toEqual([...onParked].sort());
    expect((await list("status=COMPLETED", listerKey)).items.map((r) => r.id).sort()).toEqual([...onEcho].sort());
    expect((await list("status=IN_QUEUE", listerKey)).items.map((r) => r.id).sort()).toEqual([...onParked].sort());
    expect((await list(`endpointId=${listerEchoEp}&status=IN_QUEUE`, listerKey)).items).toEqual([]);
    const echoPages: string[] = [];
    let echoCursor: string | null = null;
    do {
      const page = await list(`endpointId=${listerEchoEp}&limit=2${echoCursor ? `&cursor=${encodeURIComponent(echoCursor)}` : ""}`, listerKey);
      echoPages.push(...page.items.map((r) => r.id));
      echoCursor = page.nextCursor;
    } while (echoCursor !== null && echoPages.length < 20);
    expect(echoPages).toEqual(newestFirst.filter((id) => onEcho.includes(id)));

    // `from` inclusive, `to` exclusive, on the submission time.
    const times = [...new Set(submitted.map(t))].sort((a, b) => a - b);
    const from = times[1]!;
    const to = times[times.length - 2]!;
    const inWindow = (await list(`from=${new Date(from).toISOString()}&to=${new Date(to).toISOString()}`, listerKey)).items.map((r) => r.id);
    expect(inWindow.sort()).toEqual(submitted.filter((id) => t(id) >= from && t(id) < to).sort());
    expect(inWindow.length).toBeGreaterThan(0);
    expect((await list(`from=${new Date(times[times.length - 1]! + 1).toISOString()}`, listerKey)).items).toEqual([]);

    // A malformed query is a 400 naming the field.
    for (const [query, field] of [
      ["limit=0", "limit"],
      ["limit=501", "limit"],
      ["limit=abc", "limit"],
      ["status=NOPE", "status"],
      ["from=yesterday", "from"],
      ["to=2024-02-30T00:00:00", "to"],
      // A damaged cursor would otherwise restart the listing, and a client would page for ever.
      ["cursor=not-a-cursor", "cursor"],
      [`cursor=${"x".repeat(600)}`, "cursor"],
      // A forged cursor whose time no date can hold (was a 500 from toISOString).
      [`cursor=${Buffer.from(JSON.stringify({ t: 1e300, id: "x" })).toString("base64url")}`, "cursor"],
    ] as const) {
      const r = await stack.call("GET", `/api/v1/jobs?${query}`, { key: listerKey });
      expect(r.status, query).toBe(400);
      expect(r.body.issues.map((i: { path: string }) => i.path), query).toContain(field);
    }

    // Another tenant's job and endpoint do not exist for this one.
    const theirs = await run(otherEp, { input: { mine: false } }, otherKey);
    await recordWith(theirs, "IN_QUEUE", otherKey); // the record exists: the 404 below is about ownership
    expect((await stack.call("GET", `/api/v1/jobs/${theirs}`, { key: listerKey })).status).toBe(404);
    expect((await stack.call("GET", `/api/v1/jobs?endpointId=${otherEp}`, { key: listerKey })).status).toBe(404);
    expect((await stack.call("GET", `/api/v1/endpoints/${otherEp}/workers`, { key: listerKey })).status).toBe(404);
    expect((await stack.call("GET", `/api/v1/endpoints/${otherEp}/workers`, { key: otherKey })).status).toBe(200);
    expect((await stack.call("GET", "/api/v1/jobs/no-such-job", { key: listerKey })).status).toBe(404);
    expect((await list("", listerKey)).items.map((r) => r.id)).not.toContain(theirs);
  });

  it("keeps NUL and lone surrogates in webhooks and outputs exactly, and later jobs still get records", async () => {
    const nulHook = "http://127.0.0.1/\u0000";
    const surrogateHook = "http://127.0.0.1/\ud800";
    const hostileInput = { s: "\u0000\ud800", "k\u0000": "\udc00x", list: ["\ud83d", "a\u0000b"] };
    const first = await stack.call("POST", `/v2/${echoEp}/run`, { key, body: { input: { n: 1 }, webhook: nulHook } });
    expect(first.status, JSON.stringify(first.body)).toBe(200); // a URL parser drops the trailing NUL: the API accepts it
    const withHook = first.body.id as string;
    const withSurrogateHook = await run(echoEp, { input: { n: 2 }, webhook: surrogateHook });
    const hostile = await run(echoEp, { input: hostileInput });
    const plain = await run(echoEp, { input: { n: 3 } });

    for (const id of [withHook, withSurrogateHook, hostile, plain]) await recordWith(id, "COMPLETED");
    const get = async (id: string) => (await stack.call("GET", `/api/v1/jobs/${id}`, { key })).body as JobRecord;
    expect((await get(withHook)).webhook).toBe(nulHook);
    expect((await get(withHook)).output).toEqual({ echo: { n: 1 } });
    expect((await get(withSurrogateHook)).webhook).toBe(surrogateHook);
    const h = await get(hostile);
    expect(h).toMatchObject({ status: "COMPLETED", error: null, webhook: null });
    expect(h.output).toEqual({ echo: hostileInput });
    expect((h.output as { echo: typeof hostileInput }).echo.s).toBe("\u0000\ud800");
    expect(await get(plain)).toMatchObject({ status: "COMPLETED", output: { echo: { n: 3 } }, webhook: null, error: null });
    // The listing returns the exact webhook too.
    const listed = (await list(`endpointId=${echoEp}&limit=500`)).items;
    expect(listed.find((r) => r.id === withHook)?.webhook).toBe(nulHook);
    expect(listed.find((r) => r.id === withSurrogateHook)?.webhook).toBe(surrogateHook);
    // Postgres text holds a well-formed copy; nothing was set aside.
    const [row] = await stack.sql<{ webhook: string }[]>`select webhook from jobs where id = ${withHook}`;
    expect(row?.webhook).toBe("http://127.0.0.1/\uFFFD");
    expect((await adminLog()).deadLetters.items.filter((d) => d.endpointId === echoEp)).toEqual([]);
  });

  it("answers a repeated Idempotency-Key with the job it first created", async () => {
    const idem = `idem-${randomBytes(6).toString("hex")}`;
    const logStart = await lastLogId(echoEp);
    const a = await postWithKey(`/v2/${echoEp}/run`, key, idem, { input: { n: 1 } });
    const b = await postWithKey(`/v2/${echoEp}/run`, key, idem, { input: { n: 2 } });
    expect(a.status).toBe(200);
    expect(b.status).toBe(200);
    expect(b.body.id).toBe(a.body.id);
    // Another API key of the same tenant: the same job.
    const second = await stack.call("POST", "/api/v1/keys", { key, body: { name: "second" } });
    expect(second.status).toBe(200);
    const viaSecondKey = await postWithKey(`/v2/${echoEp}/run`, second.body.key as string, idem, { input: { n: 3 } });
    expect(viaSecondKey.body.id).toBe(a.body.id);
    const otherIdem = await postWithKey(`/v2/${echoEp}/run`, key, `${idem}-2`, { input: { n: 4 } });
    expect(otherIdem.status).toBe(200);
    expect(otherIdem.body.id).not.toBe(a.body.id);
    const otherTenant = await postWithKey(`/v2/${otherEp}/run`, otherKey, idem, { input: { n: 5 } });
    expect(otherTenant.status).toBe(200);
    expect(otherTenant.body.id).not.toBe(a.body.id);

    // One job ran: the first body's.
    expect((await recordWith(a.body.id, "COMPLETED")).output).toEqual({ echo: { n: 1 } });
    await recordWith(otherIdem.body.id, "COMPLETED");
    await recordWith(otherTenant.body.id, "IN_QUEUE", otherKey);
    expect(await acceptedAfter(echoEp, logStart)).toEqual([a.body.id, otherIdem.body.id]);

    // /runsync: the repeat returns the same finished job, and a /run's key answers a /runsync too.
    const syncIdem = `${idem}-sync`;
    // A bounded wait: a reply that misses the job's finish reads the job after it instead.
    const s1 = await postWithKey(`/v2/${echoEp}/runsync?wait=10000`, key, syncIdem, { input: { n: 6 } });
    expect(s1.body).toMatchObject({ status: "COMPLETED", output: { echo: { n: 6 } } });
    const s2 = await postWithKey(`/v2/${echoEp}/runsync`, key, syncIdem, { input: { n: 7 } });
    expect(s2.body).toMatchObject({ id: s1.body.id, status: "COMPLETED", output: { echo: { n: 6 } } });
    const s3 = await postWithKey(`/v2/${echoEp}/runsync`, key, idem, { input: { n: 8 } });
    expect(s3.body).toMatchObject({ id: a.body.id, status: "COMPLETED", output: { echo: { n: 1 } } });
    await recordWith(s1.body.id, "COMPLETED");
    expect(await acceptedAfter(echoEp, logStart)).toHaveLength(3);

    const bad = await postWithKey(`/v2/${echoEp}/run`, key, "has space", { input: {} });
    expect(bad.status).toBe(400);
    expect(bad.body.issues.map((i: { path: string }) => i.path)).toContain("headers.idempotency-key");
  });

  it("records cancelled, purged and expired jobs that never ran, each counted once", async () => {
    const ep = await stack.endpoint(key, parked);
    const status = (id: string, call: Call = stack.call) => call("GET", `/v2/${ep}/status/${id}`, { key });

    const cancelled = await run(ep, { input: { n: 1 } });
    const c = await stack.call("POST", `/v2/${ep}/cancel/${cancelled}`, { key });
    expect(c.body).toMatchObject({ id: cancelled, status: "CANCELLED" });
    const purged = [await run(ep, { input: { n: 2 } }), await run(ep, { input: { n: 3 } })];
    expect((await stack.call("POST", `/v2/${ep}/purge-queue`, { key })).body).toEqual({ removed: 2, status: "completed" });
    const expiring = await run(ep, { input: { n: 4 }, policy: { ttl: 10_000 } });
    expect((await status(expiring)).body.status).toBe("IN_QUEUE");
    // Read from a replica whose clock is an hour on: past its TTL the job is gone, and taken out of the queue.
    expect((await status(expiring, ahead.call)).status).toBe(404);

    expect(await recordWith(cancelled, "CANCELLED")).toMatchObject({ error: null, endpointId: ep });
    for (const id of purged) expect((await recordWith(id, "CANCELLED")).error).toBe("purged from the queue");
    expect((await recordWith(expiring, "TIMED_OUT")).error).toBe("ttl expired before the job started");
    expect((await status(expiring)).status).toBe(404);
    await caughtUp();
    expect(await counts(ep)).toEqual({ CANCELLED: 3, TIMED_OUT: 1 });

    // Asking again changes nothing.
    expect((await stack.call("POST", `/v2/${ep}/cancel/${cancelled}`, { key })).body).toMatchObject({ status: "CANCELLED" });
    expect((await stack.call("POST", `/v2/${ep}/purge-queue`, { key })).body).toEqual({ removed: 0, status: "completed" });
    expect((await status(expiring, ahead.call)).status).toBe(404);
    await caughtUp();
    expect(await counts(ep)).toEqual({ CANCELLED: 3, TIMED_OUT: 1 });
    expect((await stack.call("GET", `/v2/${ep}/health`, { key })).body.jobs.inQueue).toBe(0);
  });

  it("closes the session of a SIGKILLed worker with exit code 137 and its transitions in order", async () => {
    const ep = await stack.endpoint(key, { engine: echo, workersMin: 1, workersMax: 1 });
    const [ready] = await waitFor(async () => {
      const s = await sessions(ep);
      return s.length === 1 && s[0]!.transitions.some((t) => t.state === "idle") ? s : undefined;
    }, 30_000);
    const workerId = ready!.id;
    process.kill(pidOfWorker(workerId), "SIGKILL");

    const killed = await waitFor(async () => (await sessions(ep)).find((s) => s.id === workerId && s.state === "exited"), 30_000);
    expect(killed.exitCode).toBe(137);
    expect(killed.endedAt).not.toBeNull();
    expect(killed.endReason).toEqual(expect.any(String));
    const states = killed.transitions.map((t) => t.state);
    expect(inOrder(states, ["requested", "initializing", "idle", "exited"]), states.join(",")).toBe(true);
    expect(states[states.length - 1]).toBe("exited");
    expect(killed.transitions[killed.transitions.length - 1]!.exitCode).toBe(137);
    const requested = Date.parse(killed.requestedAt!);
    expect(Date.parse(killed.readyAt!)).toBeGreaterThanOrEqual(requested);
    expect(Date.parse(killed.endedAt!)).toBeGreaterThanOrEqual(Date.parse(killed.readyAt!));

    // A replacement (if one was started) goes when the endpoint does: every session ends closed.
    expect((await stack.call("DELETE", `/api/v1/endpoints/${ep}`, { key })).status).toBe(200);
    await waitFor(async () => stack.provider.list().every((w) => w.endpointId !== ep), 30_000);
    const all = await waitFor(async () => {
      const s = await sessions(ep);
      return s.every((x) => x.endedAt !== null) ? s : undefined;
    }, 30_000);
    expect(all.map((s) => s.state)).toEqual(all.map(() => "exited"));
  });

  it("sets unreadable log entries aside as dead letters without blocking the entries behind them", async () => {
    const log = keys.log(echoEp);
    // An `added` entry whose name (the job's acceptance record) is not JSON.
    const poisonId = (await stack.redis.xadd(log, "*", "event", "added", "jobId", "poison-job", "name", "{not json"))!;
    const after = await run(echoEp, { input: { after: "poison" } });
    expect((await recordWith(after, "COMPLETED")).output).toEqual({ echo: { after: "poison" } });

    const poison = await waitFor(() => deadLetterOf(poisonId));
    expect(poison).toMatchObject({ consumer: "records", endpointId: echoEp, state: "open", entry: ["event", "added", "jobId", "poison-job", "name", "{not json"] });
    expect(poison.reason).toMatch(/not JSON/);
    expect(await waitFor(() => deadLetterOf(poisonId, "billing"))).toMatchObject({ consumer: "billing", state: "open" });
    const openBefore = (await adminLog()).deadLetters.open;
    expect((await stack.call("POST", `/admin/log/dead-letters/${encodeURIComponent(poison.id)}/discard`, { key: ADMIN })).body).toEqual({ id: poison.id, state: "discarded" });
    expect(await deadLetterOf(poisonId)).toBeUndefined();
    expect((await adminLog()).deadLetters.open).toBe(openBefore - 1);
    expect((await stack.call("POST", `/admin/log/dead-letters/${encodeURIComponent(poison.id)}/discard`, { key: ADMIN })).status).toBe(404);
    expect((await stack.call("POST", "/admin/log/dead-letters/no-such-letter/retry", { key: ADMIN })).status).toBe(404);
    expect((await stack.call("POST", "/admin/log/dead-letters/no-such-letter/discard", { key: ADMIN })).status).toBe(404);
    expect((await stack.call("GET", "/admin/log")).status).toBe(401);
    expect((await stack.call("GET", "/admin/log", { key })).status).toBe(401); // a tenant's key is not the admin's
    expect((await stack.call("POST", `/admin/log/dead-letters/${encodeURIComponent(poison.id)}/retry`, { key })).status).toBe(401);

    // A state outside the vocabulary: a retry cannot mend it, and it stays open with its reason.
    const ghost = `w-ghost-${randomBytes(4).toString("hex")}`;
    const zombieId = (await stack.redis.xadd(log, "*", "event", "hearth:worker", "d", JSON.stringify({ workerId: ghost, state: "zombie" })))!;
    const zombie = await waitFor(() => deadLetterOf(zombieId));
    expect(zombie.reason).toMatch(/state/);
    expect((await stack.call("POST", `/admin/log/dead-letters/${encodeURIComponent(zombie.id)}/retry`, { key: ADMIN })).body).toEqual({ id: zombie.id, state: "retrying" });
    const reopened = await waitFor(async () => {
      const d = await deadLetterOf(zombieId);
      return d?.state === "open" ? d : undefined;
    });
    expect(reopened.reason).toMatch(/state/);
    expect((await sessions(echoEp)).find((s) => s.id === ghost)).toBeUndefined();

    // One the database refused, whose cause an operator then removed: a retry applies it.
    const blocked = `w-blocked-${randomBytes(4).toString("hex")}`;
    await stack.sql.unsafe(`alter table worker_sessions add constraint event_log_test_block check (id <> '${blocked}')`);
    let blockedId: string;
    try {
      blockedId = (await stack.redis.xadd(log, "*", "event", "hearth:worker", "d", JSON.stringify({ workerId: blocked, state: "exited", reason: "test", exitCode: 3 })))!;
      const refused = await waitFor(() => deadLetterOf(blockedId));
      expect(refused.reason).toMatch(/event_log_test_block/);
    } finally {
      await stack.sql.unsafe("alter table worker_sessions drop constraint if exists event_log_test_block");
    }
    expect((await sessions(echoEp)).find((s) => s.id === blocked)).toBeUndefined();
    const letterId = (await deadLetterOf(blockedId))!.id;
    expect((await stack.call("POST", `/admin/log/dead-letters/${encodeURIComponent(letterId)}/retry`, { key: ADMIN })).status).toBe(200);
    const mended = await waitFor(async () => (await sessions(echoEp)).find((s) => s.id === blocked));
    expect(mended).toMatchObject({ state: "exited", exitCode: 3, endReason: "test" });
    await waitFor(async () => (await deadLetterOf(blockedId)) === undefined);
    const [row] = await stack.sql<{ state: string }[]>`select state from log_dead_letters where id = ${letterId}`;
    expect(row?.state).toBe("retried");

    const lag = await caughtUp();
    expect(lag).toMatchObject({ lagEntries: 0, lagMs: 0 });
  });

  it("ends jobs in the same states through API replicas whose clocks are an hour off", async () => {
    const parkedEp = await stack.endpoint(key, parked);
    const scenario = async (call: Call) => {
      const done = await run(echoEp, { input: { n: 1 } }, key, call);
      // Only the record is compared: a replica an hour ahead takes a finished sync job for one past its
      // retention, so its reply says IN_QUEUE whenever it did not hear the job's finish message.
      const sync = await call("POST", `/v2/${echoEp}/runsync?wait=5000`, { key, body: { input: { n: 2 } } });
      expect(sync.status).toBe(200);
      const cancelledQueued = await run(parkedEp, { input: { n: 3 } }, key, call);
      expect((await call("POST", `/v2/${parkedEp}/cancel/${cancelledQueued}`, { key })).body.status).toBe("CANCELLED");
      const purged = await run(parkedEp, { input: { n: 4 } }, key, call);
      expect((await call("POST", `/v2/${parkedEp}/purge-queue`, { key })).body.removed).toBe(1);
      const running = await run(sleepEp, { input: { ms: 30_000 } }, key, call);
      await waitFor(async () => (await stack.call("GET", `/v2/${sleepEp}/status/${running}`, { key })).body.status === "IN_PROGRESS", 30_000);
      expect((await call("POST", `/v2/${sleepEp}/cancel/${running}`, { key })).body.status).toBe("CANCELLED");
      return { done, sync: sync.body.id as string, cancelledQueued, purged, running };
    };
    const finals = async (ids: Record<string, string>) => {
      const out: Record<string, { status: string; error: string | null }> = {};
      for (const [name, id] of Object.entries(ids)) {
        const r = await waitFor(async () => {
          const rec = (await stack.call("GET", `/api/v1/jobs/${id}`, { key })).body as JobRecord;
          return ["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"].includes(rec?.status) ? rec : undefined;
        }, 30_000);
        // Dated by the log (Redis' clock), not by the clock of the replica that took the job.
        expect(Math.abs(Date.parse(r.submittedAt) - Date.now()), name).toBeLessThan(HOUR / 2);
        out[name] = { status: r.status, error: r.error };
      }
      return out;
    };
    const normal = await finals(await scenario(stack.call));
    expect(normal).toEqual({
      done: { status: "COMPLETED", error: null },
      sync: { status: "COMPLETED", error: null },
      cancelledQueued: { status: "CANCELLED", error: null },
      purged: { status: "CANCELLED", error: "purged from the queue" },
      running: expect.objectContaining({ status: "CANCELLED" }),
    });
    expect(await finals(await scenario(ahead.call))).toEqual(normal);
    expect(await finals(await scenario(behind.call))).toEqual(normal);
    await caughtUp();
    expect(await counts(parkedEp)).toEqual({ CANCELLED: 6 });
  });

  it("replays every log from the start without changing a record, a count or a session", async () => {
    await caughtUp();
    const snapshot = async () => ({
      jobs: await stack.sql`select * from jobs order by id`,
      counts: await stack.sql`select * from endpoint_job_counts order by endpoint_id, status`,
      sessions: await stack.sql`select * from worker_sessions order by id`,
      transitions: await stack.sql`select * from worker_transitions order by worker_id, entry_id`,
      deadLetters: await stack.sql`select id, state, reason from log_dead_letters order by id`,
    });
    const before = await snapshot();
    expect(before.jobs.length).toBeGreaterThan(20);
    await stack.control!.stop();
    await stack.sql`delete from log_cursors where consumer = 'records'`;
    expect((await adminLog()).consumers.find((c) => c.name === "records")!.lagEntries).toBeGreaterThan(100);
    replay = new ControlPlane({ redis: stack.redis, sql: stack.sql, keys, log: () => {}, blockMs: 100, trimIntervalMs: 60_000 });
    replay.start();
    await caughtUp();
    expect(await snapshot()).toEqual(before);
  });
});

/** True when `wanted` appears in `states` in this order (other states may come between). */
function inOrder(states: string[], wanted: string[]): boolean {
  let i = 0;
  for (const s of states) if (s === wanted[i]) i++;
  return i === wanted.length;
}

