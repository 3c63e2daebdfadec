import { z } from "zod";
import { safeText } from "./safe-text.ts";

/**
 * How a tenant pays. `enforce`: it needs credit; at zero balance new jobs get 402, no worker starts
 * and idle ones stop (new tenants, when HEARTH_BILLING_MODE is `enforce`, the default). `meter`:
 * usage is recorded and shown, nothing is refused (every tenant that existed before billing, and
 * every tenant when HEARTH_BILLING_MODE is `meter`).
 */
export const BILLING_MODES = ["enforce", "meter"] as const;
export const billingMode = z.enum(BILLING_MODES);
export type BillingMode = z.infer<typeof billingMode>;

/** What moved a tenant's money: an operator's `credit`, usage's `charge`, an `adjustment` correcting either. */
export const LEDGER_KINDS = ["credit", "charge", "adjustment"] as const;
export const ledgerKind = z.enum(LEDGER_KINDS);
export type LedgerKind = z.infer<typeof ledgerKind>;

/**
 * The dearest price a version may set, µ$ per second ($1,000/s). Far above any GPU's, and low
 * enough that a month-long session (2.7 million seconds) still costs a safe integer: a price past
 * it would make the meter refuse the session (AMOUNT_OVERFLOW) instead of billing it.
 */
export const MAX_PRICE_MICROS_PER_SECOND = 1_000_000_000;
/** Types per version; the defaults hold about 30. */
const MAX_TYPES_PER_VERSION = 500;

/**
 * A GPU type id as providers and nvidia-smi report it ("NVIDIA L4", "AMPERE_16", "cpu"): printable
 * ASCII, starting with a letter or digit. That keeps out what JSON in Postgres cannot hold (NUL)
 * and names like `__proto__`, which a parsed object would silently drop.
 */
const gpuTypeId = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9](?:[\x20-\x7e]*[\x21-\x7e])?$/, "must be printable ASCII, starting with a letter or digit, without trailing spaces");

/** The body of `PUT /admin/prices`: a new version of the price table, checked against it by core/billing/price-table.ts. */
export const priceVersionUpdate = z
  .strictObject({
    effectiveFrom: z.iso.datetime({ offset: true }).describe("When the prices apply from (inclusive, ISO-8601); not before now: prices never apply retroactively."),
    prices: z
      .record(gpuTypeId, z.number().int().min(0).max(MAX_PRICE_MICROS_PER_SECOND))
      .refine((p) => Object.keys(p).length <= MAX_TYPES_PER_VERSION, `at most ${MAX_TYPES_PER_VERSION} GPU types per version`)
      .describe("µ$ per second by GPU type; a type left out keeps its price."),
    adds: z.array(gpuTypeId).max(MAX_TYPES_PER_VERSION).optional().describe("GPU types this version introduces (each must be priced in it)."),
  })
  .meta({ id: "PriceVersionUpdate" });
export type PriceVersionUpdate = z.infer<typeof priceVersionUpdate>;

/** The body of `POST /admin/tenants/:id/credits`. */
export const creditRequest = z
  .strictObject({
    amountMicros: z.number().int().min(1).describe("µ$ to add to the tenant's balance (1 USD = 1000000)."),
    reason: safeText(500).describe("Why, for the ledger (an invoice number, a promotion)."),
  })
  .meta({ id: "CreditRequest" });
export type CreditRequest = z.infer<typeof creditRequest>;
