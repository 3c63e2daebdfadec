import type { z } from "zod";
import type { outputLine } from "../../../../core/contracts/output-line.ts";
import type { jobRecordView, workerSessionView } from "../../services/job-records.ts";
import { AT, ENDPOINT_ID, GPU_TYPE, JOB_ID, SYNC_JOB_ID, TRACE_ID, WORKER_ID } from "./example-ids.ts";

/*
 * Examples of the durable records (`/api/v1/jobs`, `/endpoints/{id}/workers`) and the output lines
 * kept for jobs and workers: the job of job-examples.ts as Postgres keeps it, and the worker that ran it.
 */

type JobRecord = z.input<typeof jobRecordView>;

const noTokens = { promptTokens: null, completionTokens: null, ttftMs: null, itlMs: null };

/** `GET /jobs/{id}`: a small output is kept inline; its share of the worker's cost, 2 s at 190 µ$/s. */
export const jobRecordExample: JobRecord = {
  id: JOB_ID,
  endpointId: ENDPOINT_ID,
  status: "COMPLETED",
  delayTime: 824,
  executionTime: 1437,
  workerId: WORKER_ID,
  retries: 0,
  error: null,
  webhook: "https://hooks.acme.example/hearth",
  sync: false,
  submittedAt: AT.jobSubmitted,
  startedAt: AT.jobStarted,
  finishedAt: AT.jobFinished,
  output: { text: "Hearth runs RunPod-style serverless workers on your own GPUs.", tokens: 14 },
  outputRef: null,
  ...noTokens,
  costMicros: 380,
  billedSeconds: 2,
  traceId: TRACE_ID,
};

const { output: _inline, ...listed } = jobRecordExample;
const LARGE_JOB_ID = "6d6e8176-4c1d-49f8-b13c-a84d6124fe94-u1";

/**
 * A listing (outputs are in single records only), newest first: an OpenAI completion with its token
 * counts, `JOB_ID`, and a job whose output (over 256 KB) is in the object store.
 */
export const jobRecordPage: { items: JobRecord[]; nextCursor: string | null } = {
  items: [
    {
      ...listed,
      id: SYNC_JOB_ID,
      delayTime: 31,
      executionTime: 1502,
      webhook: null,
      sync: true,
      submittedAt: "2025-06-04T14:25:40.210Z",
      startedAt: "2025-06-04T14:25:40.241Z",
      finishedAt: "2025-06-04T14:25:41.743Z",
      promptTokens: 24,
      completionTokens: 14,
      ttftMs: 38,
      itlMs: 11,
      traceId: "9b1e4c7a2d5f8e0b3a6c9d2e5f8a1b4c",
    },
    listed,
    {
      ...listed,
      id: LARGE_JOB_ID,
      executionTime: 20_731,
      webhook: null,
      submittedAt: "2025-06-04T14:22:01.003Z",
      startedAt: "2025-06-04T14:22:01.870Z",
      finishedAt: "2025-06-04T14:22:22.601Z",
      outputRef: {
        url: `https://hearth.example.com/api/v1/jobs/${LARGE_JOB_ID}/output`,
        store: "s3",
        bucket: "hearth-outputs",
        key: `outputs/${ENDPOINT_ID}/0c9f3e7a5b1d2c4e6f8a0b2c4d6e8f1a-1749046942601-0.json`,
        bytes: 1_843_221,
        sha256: "52865f7840265aaa2a4286b977b9c910386f5474d63c08600975c7d0b5f735d9",
      },
      costMicros: 3_990,
      billedSeconds: 21,
      traceId: "f04a7c2e9b6d1358ace0b2d4f6a8c0e1",
    },
  ],
  nextCursor: "eyJ0IjoxNzQ5MDQ2OTIxMDAzLCJpZCI6IjZkNmU4MTc2LTRjMWQtNDlmOC1iMTNjLWE4NGQ2MTI0ZmU5NC11MSJ9",
};

/** `GET /jobs/{id}/output`: the stored bytes as the worker returned them (a transcription, shortened here). */
export const storedOutputExample = {
  language: "en",
  duration: 5412.8,
  segments: [
    { start: 0, end: 4.2, text: "Welcome back to the quarterly review." },
    { start: 4.2, end: 9.86, text: "Revenue grew in every region this quarter." },
  ],
};

const transitions: z.input<typeof workerSessionView>["transitions"] = [
  { state: "requested", at: AT.workerRequested, reason: null, exitCode: null },
  { state: "initializing", at: "2025-06-04T14:20:31.456Z", reason: null, exitCode: null },
  { state: "idle", at: AT.workerReady, reason: null, exitCode: null },
  { state: "running", at: AT.jobStarted, reason: null, exitCode: null },
  { state: "idle", at: AT.jobFinished, reason: null, exitCode: null },
  { state: "draining", at: "2025-06-04T14:30:41.903Z", reason: "idle", exitCode: null },
  { state: "exited", at: AT.workerEnded, reason: "idle", exitCode: 0 },
];

export const workerSessionExample: z.input<typeof workerSessionView> = {
  id: WORKER_ID,
  endpointId: ENDPOINT_ID,
  state: "exited",
  provider: "local",
  gpuType: GPU_TYPE,
  requestedAt: AT.workerRequested,
  readyAt: AT.workerReady,
  endedAt: AT.workerEnded,
  exitCode: 0,
  endReason: "idle",
  specHash: "3f9a1c7e5b2d8046",
  coldStart: { kind: "cold", provisionMs: 412, processStartMs: 1830, weightsFetchMs: 28_412, engineLoadMs: 10_664, firstJobMs: 1441 },
  transitions,
};

type Line = z.input<typeof outputLine>;
const workerLine = (time: string, fields: object): Line => ({
  at: Date.parse(time) + 1,
  stream: "stdout",
  line: JSON.stringify({ level: "info", time, component: "worker", pid: 4182, workerId: WORKER_ID, endpointId: ENDPOINT_ID, ...fields }),
});

/** A job's lines: its handler's `console` output and the runtime's own, each with the job's `jobId` and `traceId`. */
export const jobLogLines: Line[] = [
  workerLine("2025-06-04T14:22:06.011Z", { jobId: JOB_ID, traceId: TRACE_ID, source: "console", msg: "prompt of 9 tokens, generating up to 64" }),
  workerLine(AT.jobFinished, { jobId: JOB_ID, traceId: TRACE_ID, msg: "job finished", status: "COMPLETED", ms: 1437 }),
];

/** A worker's last lines: its engine's output as the runtime relays it, then the job it ran. */
export const workerLogLines: Line[] = [workerLine("2025-06-04T14:21:11.930Z", { msg: "engine output", stream: "stderr", line: "INFO:     Application startup complete." }), ...jobLogLines];
