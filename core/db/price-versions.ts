import type { Sql, TransactionSql } from "postgres";
import { z } from "zod";
import { priceTable, priceVersion, type PriceTable } from "../billing/price-table.ts";

/**
 * Writers of `price_versions` hold this advisory lock exclusively; readers that charge by the table
 * hold it shared, so a version added while seconds are being charged is either seen by the charge
 * or dated after every second it charges (the writer checks `effectiveFrom` against Redis' clock
 * once it holds the lock).
 */
export const PRICE_VERSIONS_LOCK = "hearth:price_versions";

// A JSON column read back: checked again, field by field, by core/billing's own schema below.
const versionRow = z.object({ effective_from: z.coerce.date(), prices: z.unknown(), adds: z.unknown() });

/**
 * The price table in force: `defaults` (core/billing's DEFAULT_PRICES, the seed of every install)
 * followed by the admin's stored versions, in `effectiveFrom` order. Fails loudly if a stored
 * version does not follow the defaults (changing DEFAULT_PRICES in code would reprice the past).
 */
export async function readPriceTable(sql: Sql | TransactionSql, defaults: PriceTable): Promise<PriceTable> {
  const rows = z.array(versionRow).parse(await sql`select effective_from, prices, adds from price_versions order by effective_from`);
  const stored = rows.map((r) => priceVersion.parse({ effectiveFrom: r.effective_from.getTime(), prices: r.prices, ...(r.adds !== null && { adds: r.adds }) }));
  return priceTable.parse({ versions: [...defaults.versions, ...stored] });
}
