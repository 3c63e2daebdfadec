import type { z } from "zod";
import { DEFAULT_PRICES } from "../../../../core/billing/price-table.ts";
import type { ledgerEntryView } from "../../services/ledger.ts";
import type { limitsView, logStatus, priceTableView } from "../admin-routes.ts";
import { invalidField } from "../route-kit.ts";
import { AT, ENDPOINT_ID, GPU_TYPE, TENANT_ID, WORKER_ID } from "./example-ids.ts";

/*
 * Examples of the operator's routes (`/admin/...`): a tenant and its quotas, the price table, the
 * ledger, and the event log's consumers.
 */

export const createdTenant = { id: TENANT_ID, name: "acme-research", apiKey: "hk_jVAArd9GAaAZaJ4D33Hxyt73jobEMuYN", billingMode: "enforce" } as const;

export const limitsViewExample: z.input<typeof limitsView> = {
  tenantId: TENANT_ID,
  limits: { maxEndpoints: 100, maxWorkers: 8, maxWorkersMin: 20, maxQueuedJobsPerEndpoint: 1_000_000, maxInputBytes: 20 * 1024 * 1024, spendPerHourMicros: 100_000_000 },
  overrides: { maxWorkers: 8 },
  rates: { requestsPerSecond: 50, burst: 100, tokensPerMinute: 200_000 },
  rateDefault: "runpod",
};

/** The default version every install starts with, and one the operator added. */
export const priceTableExample: z.input<typeof priceTableView> = {
  versions: [
    { effectiveFrom: new Date(DEFAULT_PRICES.versions[0]!.effectiveFrom).toISOString(), prices: DEFAULT_PRICES.versions[0]!.prices, source: "default" },
    { effectiveFrom: "2025-07-01T00:00:00.000Z", prices: { [GPU_TYPE]: 180, "NVIDIA RTX PRO 6000": 610 }, adds: ["NVIDIA RTX PRO 6000"], source: "stored" },
  ],
};

type LedgerEntry = z.input<typeof ledgerEntryView>;

export const creditEntry: LedgerEntry = {
  id: 2215,
  kind: "credit",
  amountMicros: 50_000_000,
  seconds: null,
  endpointId: null,
  workerId: null,
  gpuType: null,
  at: "2025-06-04T15:03:44.620Z",
  reason: "invoice INV-2025-0142",
  key: `credit:${TENANT_ID}:key:inv-2025-0142`,
  createdAt: "2025-06-04T15:03:44.620Z",
};

/** One minute of a worker session at 190 µ$/s: charges are negative, as the balance is the sum of every entry. */
const chargeEntry: LedgerEntry = {
  id: 2214,
  kind: "charge",
  amountMicros: -11_400,
  seconds: 60,
  endpointId: ENDPOINT_ID,
  workerId: WORKER_ID,
  gpuType: GPU_TYPE,
  at: "2025-06-04T14:22:00.000Z",
  reason: null,
  key: `session:${WORKER_ID}:minute:29150782`,
  createdAt: "2025-06-04T14:23:01.733Z",
};

/** `nextCursor` is opaque: base64url of the last entry's position. */
export const ledgerPage = { items: [creditEntry, chargeEntry], nextCursor: "eyJhdCI6MTc0OTA0NjkyMDAwMCwiaWQiOjIyMTR9" };

const deadLetterId = `records:${ENDPOINT_ID}:1749046931204-0`;

export const logStatusExample: z.input<typeof logStatus> = {
  consumers: [
    { name: "records", lagEntries: 0, lagMs: 0, endpoints: 12 },
    { name: "billing", lagEntries: 37, lagMs: 1840, endpoints: 12 },
    { name: "webhooks", lagEntries: 2, lagMs: 310, endpoints: 12 },
  ],
  deadLetters: {
    open: 1,
    items: [
      {
        id: deadLetterId,
        consumer: "records",
        endpointId: ENDPOINT_ID,
        entryId: "1749046931204-0",
        entry: ["event", "hearth:worker", "d", JSON.stringify({ workerId: WORKER_ID, state: "idle", at: Date.parse(AT.jobFinished) + 3825 })],
        reason: 'insert or update on table "worker_transitions" violates foreign key constraint "worker_transitions_worker_id_fkey"',
        state: "open",
        createdAt: "2025-06-04T14:22:11.520Z",
      },
    ],
  },
};

export const deadLetterExample = { id: deadLetterId };

export const adminErrors = {
  pricesInPast: invalidField("effectiveFrom", "starts before now (1749046930311): prices never apply retroactively"),
};
