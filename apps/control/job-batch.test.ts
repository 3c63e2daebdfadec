import { describe, expect, it } from "vitest";
import type { LogEntry } from "../../core/log/log-entry.ts";
import { foldJobs } from "./job-batch.ts";

const ctx = { endpointId: "ep", tenantId: "tn", until: 0 };
const accepted = (id: string, jobId: string): LogEntry => ({
  kind: "accepted",
  id,
  p: { jobId, tenantId: "tn", sync: true, lowPriority: false, retries: 0, submittedAt: 0, executionTimeoutMs: 1000, webhook: "http://h/\u0000", traceId: "4bf92f3577b34da6a3ce929d0e0e4736" },
});
const active = (id: string, jobId: string): LogEntry => ({ kind: "active", id, jobId });
const completed = (id: string, jobId: string): LogEntry => ({
  kind: "completed",
  id,
  jobId,
  result: { status: "COMPLETED", output: { s: "\u0000\ud800" }, workerId: "w-1", startedAt: 10, finishedAt: 25 },
});

describe("foldJobs", () => {
  it("folds a job accepted, started and finished in one batch into one row with what each entry sets", () => {
    const { folded, single } = foldJobs([accepted("100-0", "a"), active("105-0", "a"), completed("130-1", "a")], ctx);
    expect(single).toEqual([]);
    expect(folded).toEqual([
      {
        id: "a",
        tenant_id: "tn",
        endpoint_id: "ep",
        status: "COMPLETED",
        seq_ms: 130,
        seq_n: 1,
        accepted: true,
        sync: true,
        low_priority: false,
        webhook: "http://h/\uFFFD",
        webhook_exact: JSON.stringify("http://h/\u0000"),
        retries: 0,
        submitted_at: new Date(100).toISOString(),
        started_at: new Date(105).toISOString(),
        started_ms: 105,
        finished: true,
        finished_at: new Date(130).toISOString(),
        worker_id: "w-1",
        error: null,
        error_exact: null,
        execution_time_ms: 15,
        output_json: JSON.stringify({ s: "\u0000\ud800" }),
        output_ref: null,
        ttft_ms: null,
        itl_ms: null,
        prompt_tokens: null,
        completion_tokens: null,
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
      },
    ]);
  });

  it("folds a lone part of a job's life too, and leaves to one-by-one a job with a removal or requeue, and worker entries", () => {
    const worker: LogEntry = { kind: "worker", id: "101-0", p: { workerId: "w-1", state: "idle" } };
    const entries: LogEntry[] = [
      accepted("100-0", "a"),
      worker,
      active("102-0", "b"),
      accepted("103-0", "c"),
      { kind: "removing", id: "104-0", p: { jobId: "c", reason: "cancelled" } },
      { kind: "removed", id: "104-1", jobId: "c" },
      accepted("105-0", "d"),
      active("106-0", "d"),
    ];
    const { folded, single } = foldJobs(entries, ctx);
    expect(folded.map((f) => [f.id, f.status, f.seq_ms])).toEqual([
      ["a", "IN_QUEUE", 100],
      ["b", "IN_PROGRESS", 102],
      ["d", "IN_PROGRESS", 106],
    ]);
    // In their original order.
    expect(single.map((e) => e.id)).toEqual(["101-0", "103-0", "104-0", "104-1"]);
  });

  it("does not fold entries out of a job's order (finished before started)", () => {
    const { folded, single } = foldJobs([completed("100-0", "a"), active("101-0", "a")], ctx);
    expect(folded).toEqual([]);
    expect(single.map((e) => e.id)).toEqual(["100-0", "101-0"]);
  });
});
