import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eq } from "drizzle-orm";
import { openDb, type DbHandle } from "./client.ts";
import { jobs } from "./schema.ts";
import { JobRecordBuffer, upsertJobRecords } from "./job-records.ts";
import { createTestDatabase } from "../../test/support/services.ts";

describe("job records on real Postgres", () => {
  let dbh: DbHandle;
  let drop: () => Promise<void>;
  beforeAll(async () => {
    const t = await createTestDatabase();
    drop = t.drop;
    dbh = openDb(t.url, { max: 2 });
  });
  afterAll(async () => {
    await dbh.close();
    await drop();
  });

  const base = { tenantId: "t1", endpointId: "e1" };

  it("keeps the newest status when writes arrive out of order", async () => {
    await upsertJobRecords(dbh.sql, [{ ...base, id: "j1", status: "COMPLETED", statusAt: 30, output: { a: 1 }, workerId: "w1" }]);
    await upsertJobRecords(dbh.sql, [{ ...base, id: "j1", status: "IN_QUEUE", statusAt: 10, submittedAt: new Date(10), webhook: "http://x/" }]);
    const [row] = await dbh.db.select().from(jobs).where(eq(jobs.id, "j1"));
    expect(row?.status).toBe("COMPLETED");
    expect(row?.output).toEqual({ a: 1 });
    expect(row?.webhook).toBe("http://x/"); // the older write still fills what the row lacked
    expect(row?.submittedAt?.getTime()).toBe(10);
  });

  it("flushes every pushed write on close", async () => {
    const buf = new JobRecordBuffer(dbh.sql, { flushIntervalMs: 60_000, maxBatch: 10_000 });
    for (let i = 0; i < 1200; i++) buf.push({ ...base, id: `b${i}`, status: "IN_QUEUE", statusAt: i });
    buf.push({ ...base, id: "b0", status: "IN_PROGRESS", statusAt: 5000, workerId: "w9" });
    await buf.close();
    const rows = await dbh.sql`select count(*)::int as n from jobs where id like 'b%'`;
    expect(rows[0]?.n).toBe(1200);
    const [b0] = await dbh.db.select().from(jobs).where(eq(jobs.id, "b0"));
    expect(b0?.status).toBe("IN_PROGRESS");
    expect(b0?.workerId).toBe("w9");
  });
});
