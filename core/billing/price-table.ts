import { z } from "zod";

/** The GPU type of a worker without a GPU: it is billed at this price. */
export const CPU_GPU_TYPE = "cpu";

const gpuTypeId = z.string().min(1).max(100);
/** µ$ per second; zod 4's `int()` also keeps it a safe integer. */
const microsPerSecond = z.number().int().min(0);

/**
 * One version of the price table. `prices` lists the GPU types whose price this version sets; a
 * type it does not list keeps its price from the versions before. `adds` names the types this
 * version introduces, so that a typo in a type id ("NVIDIA A100 80GB PCIE") is refused instead of
 * silently creating a type no worker reports.
 */
export const priceVersion = z.object({
  /** ms epoch on the log's clock from which these prices apply (inclusive). */
  effectiveFrom: z.number().int().min(0),
  prices: z.record(gpuTypeId, microsPerSecond),
  adds: z.array(gpuTypeId).optional(),
});
export type PriceVersion = z.infer<typeof priceVersion>;

/** The versioned price table as stored (a JSON column): versions in strictly increasing `effectiveFrom`. */
export const priceTable = z
  .object({ versions: z.array(priceVersion).min(1) })
  .superRefine((t, ctx) => {
    for (let i = 1; i < t.versions.length; i++) {
      if (t.versions[i]!.effectiveFrom <= t.versions[i - 1]!.effectiveFrom) {
        ctx.addIssue({ code: "custom", path: ["versions", i, "effectiveFrom"], message: "versions must be in strictly increasing effectiveFrom" });
      }
    }
  });
export type PriceTable = z.infer<typeof priceTable>;

/** A price in force from `from` (ms epoch) until the next step. */
export interface PriceStep {
  from: number;
  microsPerSecond: number;
}

/** A problem with a proposed version, at a path inside it. */
export interface PriceIssue {
  path: (string | number)[];
  message: string;
}

// Type ids come from outside (providers, admins): "constructor" or "__proto__" must not read the prototype.
const priceIn = (v: PriceVersion, gpuType: string): number | undefined => (Object.hasOwn(v.prices, gpuType) ? v.prices[gpuType] : undefined);

/** The steps of one GPU type's price, oldest first; empty for a type the table never priced. */
export function priceSteps(table: PriceTable, gpuType: string): PriceStep[] {
  const steps: PriceStep[] = [];
  for (const v of table.versions) {
    const p = priceIn(v, gpuType);
    if (p !== undefined) steps.push({ from: v.effectiveFrom, microsPerSecond: p });
  }
  return steps;
}

/** µ$ per second for `gpuType` at `t` (ms epoch), or undefined when it had no price then. */
export function priceAt(table: PriceTable, gpuType: string, t: number): number | undefined {
  let price: number | undefined;
  for (const v of table.versions) {
    if (v.effectiveFrom > t) break;
    price = priceIn(v, gpuType) ?? price;
  }
  return price;
}

/** Every GPU type's price in force at `t`. */
export function pricesAt(table: PriceTable, t: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const v of table.versions) {
    if (v.effectiveFrom > t) break;
    for (const [gpuType, p] of Object.entries(v.prices)) out[gpuType] = p;
  }
  return out;
}

/** Whether any version of the table prices `id`. */
export function isKnownGpuType(table: PriceTable, id: string): boolean {
  return table.versions.some((v) => priceIn(v, id) !== undefined);
}

export type PriceVersionCheck = { ok: true; version: PriceVersion } | { ok: false; issues: PriceIssue[] };

/**
 * Checks a proposed version against the table at `now` (ms epoch, on the log's clock: Redis TIME,
 * not the admin's host). Prices never apply retroactively: a version may not start before `now`,
 * nor at the instant of an existing version. It may sit between two future versions (it then
 * governs only the span up to the next one). Every type it prices must be known or listed in `adds`.
 */
export function validatePriceVersion(table: PriceTable, candidate: unknown, now: number): PriceVersionCheck {
  const parsed = priceVersion.safeParse(candidate);
  if (!parsed.success) {
    return { ok: false, issues: parsed.error.issues.map((i) => ({ path: i.path.map((p) => (typeof p === "symbol" ? String(p) : p)), message: i.message })) };
  }
  const v = parsed.data;
  const issues: PriceIssue[] = [];
  if (v.effectiveFrom < now) issues.push({ path: ["effectiveFrom"], message: `starts before now (${now}): prices never apply retroactively` });
  if (table.versions.some((x) => x.effectiveFrom === v.effectiveFrom)) {
    issues.push({ path: ["effectiveFrom"], message: `a version already starts at ${v.effectiveFrom}` });
  }
  if (Object.keys(v.prices).length === 0) issues.push({ path: ["prices"], message: "sets no price" });
  const adds = new Set(v.adds ?? []);
  for (const gpuType of Object.keys(v.prices)) {
    if (!isKnownGpuType(table, gpuType) && !adds.has(gpuType)) {
      issues.push({ path: ["prices", gpuType], message: `unknown GPU type; list it in adds to introduce it` });
    }
  }
  (v.adds ?? []).forEach((gpuType, i) => {
    if (isKnownGpuType(table, gpuType)) issues.push({ path: ["adds", i], message: `${gpuType} is already known` });
    if (priceIn(v, gpuType) === undefined) issues.push({ path: ["adds", i], message: `${gpuType} is added without a price` });
  });
  return issues.length > 0 ? { ok: false, issues } : { ok: true, version: v };
}

export type PriceTableUpdate = { ok: true; table: PriceTable } | { ok: false; issues: PriceIssue[] };

/** The table with a validated new version in its place (the input is not modified). */
export function addPriceVersion(table: PriceTable, candidate: unknown, now: number): PriceTableUpdate {
  const check = validatePriceVersion(table, candidate, now);
  if (!check.ok) return check;
  const versions = [...table.versions, check.version].sort((a, b) => a.effectiveFrom - b.effectiveFrom);
  return { ok: true, table: { versions } };
}

// RunPod's published flex (scale-to-zero) serverless rates, USD per second × 1e6, as listed on
// docs.runpod.io/serverless/pricing: 16 GB $0.00016, 24 GB $0.00019, 24 GB PRO (4090) $0.00031,
// 48 GB $0.00034, 48 GB PRO $0.00053, 80 GB (A100) $0.00076, 80 GB PRO (H100) $0.00116,
// 141 GB (H200) $0.00155, 180 GB (B200) $0.00240. They are a starting point an admin replaces
// with a new version. ADA_24 holds both the L4 (24 GB tier) and the RTX 4090 (24 GB PRO tier); the
// pool is priced at the dearer tier, as a pool request may land on either.
const RUNPOD_POOLS = {
  AMPERE_16: 160,
  AMPERE_24: 190,
  ADA_24: 310,
  AMPERE_48: 340,
  ADA_48_PRO: 530,
  AMPERE_80: 760,
  ADA_80_PRO: 1160,
  HOPPER_141: 1550,
};

// Exact GPU type ids (RunPod's `gpuTypeIds`, which are also what nvidia-smi reports) at their tier's rate.
const NAMED_GPUS = {
  "NVIDIA RTX A4000": 160,
  "NVIDIA RTX A4500": 160,
  "NVIDIA RTX 4000 Ada Generation": 160,
  "NVIDIA RTX A5000": 190,
  "NVIDIA GeForce RTX 3090": 190,
  "NVIDIA L4": 190,
  "NVIDIA GeForce RTX 4090": 310,
  "NVIDIA RTX A6000": 340,
  "NVIDIA A40": 340,
  "NVIDIA L40": 530,
  "NVIDIA L40S": 530,
  "NVIDIA RTX 6000 Ada Generation": 530,
  "NVIDIA A100 80GB PCIe": 760,
  "NVIDIA A100-SXM4-80GB": 760,
  "NVIDIA H100 PCIe": 1160,
  "NVIDIA H100 80GB HBM3": 1160,
  "NVIDIA H100 NVL": 1160,
  "NVIDIA H200": 1550,
  "NVIDIA B200": 2400,
};

/**
 * The table a fresh install starts with: one version from the epoch. The `cpu` price (20 µ$/s,
 * $0.072 an hour) is a placeholder with no published source behind it; the GPU prices are RunPod's
 * flex rates above.
 */
export const DEFAULT_PRICES: PriceTable = {
  versions: [{ effectiveFrom: 0, prices: { [CPU_GPU_TYPE]: 20, ...RUNPOD_POOLS, ...NAMED_GPUS } }],
};
