import type { z } from "zod";
import type { billingSessionView, invoice, reconcileReport, usageReport } from "../../../../core/contracts/usage.ts";
import type { balanceView } from "../../services/ledger.ts";
import { ApiError } from "../../api-error.ts";
import { fieldError } from "../route-kit.ts";
import { AT, ENDPOINT_ID, GPU_TYPE, JOB_ID, SYNC_JOB_ID, TENANT_ID, WORKER_ID } from "./example-ids.ts";

/*
 * Examples of money (`/api/v1/billing/...`, `/usage`, `/invoices`, `/admin/billing/reconcile`),
 * all at the NVIDIA L4's 190 µ$/s and consistent with each other: the balance is the credits minus
 * the usage's total.
 */

export const balanceExample: z.input<typeof balanceView> = { balanceMicros: 38_588_600, creditedMicros: 50_000_000, chargedMicros: 11_411_400, billingMode: "enforce" };

export const usageExample: z.input<typeof usageReport> = {
  from: "2025-06-01T00:00:00.000Z",
  to: "2025-06-04T15:10:00.000Z",
  groupBy: "endpoint",
  groups: [
    { key: ENDPOINT_ID, seconds: 58_140, costMicros: 11_046_600 },
    { key: "r8t2w6y1u4i9op", seconds: 1_920, costMicros: 364_800 },
  ],
  totalSeconds: 60_060,
  totalCostMicros: 11_411_400,
};

export const invoiceExample: z.input<typeof invoice> = {
  month: "2025-05",
  from: "2025-05-01T00:00:00.000Z",
  to: "2025-06-01T00:00:00.000Z",
  open: false,
  lines: [
    { endpointId: ENDPOINT_ID, gpuType: GPU_TYPE, seconds: 412_380, costMicros: 78_352_200 },
    { endpointId: ENDPOINT_ID, gpuType: "NVIDIA L40S", seconds: 3_600, costMicros: 1_908_000 },
  ],
  totalSeconds: 415_980,
  totalMicros: 80_260_200,
  credits: [{ at: "2025-05-02T10:00:00.000Z", amountMicros: 100_000_000, reason: "invoice INV-2025-0097" }],
  creditedMicros: 100_000_000,
};

/** The worker that ran `JOB_ID` and `SYNC_JOB_ID`: 28.4 s fetching weights (not billed), stopped once idle. */
export const sessionBillExample: z.input<typeof billingSessionView> = {
  workerId: WORKER_ID,
  endpointId: ENDPOINT_ID,
  gpuType: GPU_TYPE,
  start: AT.workerRequested,
  end: AT.workerEnded,
  endedBy: "exited",
  asOf: "2025-06-04T15:10:00.000Z",
  billedSeconds: 583,
  costMicros: 110_770,
  metered: { seconds: 583, costMicros: 110_770 },
  weightsFetchMs: 28_412,
  pausedMs: 0,
  jobs: [
    { jobId: JOB_ID, startedAt: AT.jobStarted, executionMs: 1437, seconds: 2, costMicros: 380 },
    { jobId: SYNC_JOB_ID, startedAt: "2025-06-04T14:25:40.241Z", executionMs: 1502, seconds: 2, costMicros: 380 },
  ],
  jobCount: 2,
  idle: { seconds: 567, costMicros: 107_730 },
};

export const reconcileExample: z.input<typeof reconcileReport> = {
  from: "2025-06-04T00:00:00.000Z",
  to: "2025-06-05T00:00:00.000Z",
  asOf: "2025-06-04T15:10:00.000Z",
  sessions: [
    {
      workerId: WORKER_ID,
      tenantId: TENANT_ID,
      endpointId: ENDPOINT_ID,
      gpuType: GPU_TYPE,
      state: "exited",
      requestedAt: AT.workerRequested,
      endedAt: AT.workerEnded,
      observedMs: 611_074,
      observedSeconds: 612,
      billedSeconds: 583,
      billedMicros: 110_770,
      meter: { seconds: 583, micros: 110_770, endedBy: "exited", weightsFetchMs: 28_412, pausedMs: 0 },
      settled: true,
    },
  ],
  differences: [
    { workerId: WORKER_ID, tenantId: TENANT_ID, billedSeconds: 583, observedSeconds: 612, differenceSeconds: -29, explanation: "weights_fetch", detail: "not billed: a weights fetch of 28412 ms" },
  ],
  nextFrom: null,
};

export const billingErrors = {
  range: fieldError("from", "is after to (2025-06-01T00:00:00.000Z)"),
  month: fieldError("month", "is in the future"),
  unmeterable: new ApiError(
    409,
    "unmeterable",
    `the session cannot be metered (UNPRICED_GPU_TYPE): worker ${WORKER_ID}, GPU type "NVIDIA RTX PRO 6000": no price in force at ${AT.workerRequested}`,
  ),
};
