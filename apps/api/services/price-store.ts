import type { Sql, TransactionSql } from "postgres";
import { addPriceVersion, DEFAULT_PRICES, isKnownGpuType, priceAt, type PriceTable } from "../../../core/billing/price-table.ts";
import { PRICE_VERSIONS_LOCK, readPriceTable } from "../../../core/db/price-versions.ts";
import { ApiError, type IssueDetail } from "../api-error.ts";
import { TtlCache } from "./ttl-cache.ts";
import { appendAudit, auditRow, type AuditBy } from "../../../core/db/audit-writes.ts";

export interface PriceStoreOptions {
  sql: Sql;
  /** The versions every install starts with. Default core/billing's DEFAULT_PRICES. */
  defaults?: PriceTable;
  /** How long the table is served from memory to the endpoint checks (ms). Default 5000: another replica's new version is seen within it. */
  cacheMs?: number;
  /** Clock of the cache and of the GPU type check (ms epoch). Default Date.now. */
  now?: () => number;
}

/** One version as the API shows it. */
export interface PriceVersionView {
  effectiveFrom: string;
  prices: Record<string, number>;
  adds?: string[];
  /** `default`: DEFAULT_PRICES, the seed of every install; `stored`: added with PUT /admin/prices. */
  source: "default" | "stored";
}

/** The table in force and how many of its first versions are the defaults. */
interface Effective {
  table: PriceTable;
  defaults: number;
}

/**
 * The price table in force: DEFAULT_PRICES' versions followed by the admin's (Postgres
 * `price_versions`), in `effectiveFrom` order. New versions are checked by core/billing
 * (`addPriceVersion`) against the whole table under a lock, so two admins adding at once cannot
 * both introduce a type or both take one instant. DEFAULT_PRICES is a seed, not a setting:
 * changing it in code would reprice the past; new prices go through `addVersion`.
 */
export class PriceStore {
  private readonly cache: TtlCache<Effective>;
  private readonly defaults: PriceTable;
  private readonly now: () => number;

  constructor(private readonly options: PriceStoreOptions) {
    this.defaults = options.defaults ?? DEFAULT_PRICES;
    this.now = options.now ?? Date.now;
    this.cache = new TtlCache(options.cacheMs ?? 5000, 1, this.now);
  }

  /** The table in force, from memory when it was read within `cacheMs`. */
  async table(): Promise<PriceTable> {
    return (this.cache.get("table") ?? (await this.load())).table;
  }

  /** The table as the admin sees it: read from Postgres now, not from the cache. */
  async view(): Promise<PriceVersionView[]> {
    return toView(await this.load());
  }

  /**
   * Adds a version (`effectiveFrom` in ms epoch) unless core/billing refuses it against the table
   * at `now()` (ms epoch on the log's clock, read once the lock is held): 400 naming each offending
   * field. Returns the new table.
   */
  async addVersion(candidate: { effectiveFrom: number; prices: Record<string, number>; adds?: string[] }, now: () => Promise<number>, by: AuditBy): Promise<PriceVersionView[]> {
    const result = await this.options.sql.begin(async (tx) => {
      await tx`select pg_advisory_xact_lock(hashtext(${PRICE_VERSIONS_LOCK}))`;
      const current = await this.read(tx);
      // Now is read under the lock: every charge made before it was dated before it (core/db/price-versions.ts).
      const update = addPriceVersion(current.table, candidate, await now());
      if (!update.ok) return update;
      const v = update.table.versions.find((x) => x.effectiveFrom === candidate.effectiveFrom)!;
      await tx`insert into price_versions (effective_from, prices, adds)
               values (${new Date(v.effectiveFrom).toISOString()}::timestamptz, ${JSON.stringify(v.prices)}::text::jsonb, ${v.adds === undefined ? null : JSON.stringify(v.adds)}::text::jsonb)`;
      const effectiveFrom = new Date(v.effectiveFrom).toISOString();
      await appendAudit(tx, [auditRow(by, { action: "price.add", targetId: effectiveFrom, detail: { effectiveFrom, prices: v.prices, ...(v.adds !== undefined && { adds: v.adds }) } })]);
      return { ok: true as const, effective: { table: update.table, defaults: current.defaults } };
    });
    if (!result.ok) throw refused(result.issues.map((i) => ({ path: i.path.length > 0 ? i.path.join(".") : "(body)", message: i.message })));
    this.cache.set("table", result.effective);
    return toView(result.effective);
  }

  /**
   * Refuses GPU type ids the table does not price now (`path` is where the list sits in the body):
   * 400 naming `<path>.<index>`. A worker of a type without a price could not be billed.
   */
  async checkGpuTypes(ids: readonly string[], path: string): Promise<void> {
    if (ids.length === 0) return;
    const table = await this.table();
    const at = this.now();
    const issues = ids.flatMap((id, i): IssueDetail[] => {
      if (priceAt(table, id, at) !== undefined) return [];
      const message = isKnownGpuType(table, id) ? "this GPU type has no price yet (its first price version starts later)" : "unknown GPU type: the price table does not list it (GET /admin/prices)";
      return [{ path: `${path}.${i}`, message }];
    });
    if (issues.length > 0) throw refused(issues);
  }

  private async load(): Promise<Effective> {
    const effective = await this.read(this.options.sql);
    this.cache.set("table", effective);
    return effective;
  }

  private async read(sql: Sql | TransactionSql): Promise<Effective> {
    return { table: await readPriceTable(sql, this.defaults), defaults: this.defaults.versions.length };
  }
}

function toView({ table, defaults }: Effective): PriceVersionView[] {
  return table.versions.map((v, i) => ({
    effectiveFrom: new Date(v.effectiveFrom).toISOString(),
    prices: v.prices,
    ...(v.adds !== undefined && { adds: v.adds }),
    source: i < defaults ? "default" : "stored",
  }));
}

function refused(issues: IssueDetail[]): ApiError {
  return ApiError.badRequest(`invalid request: ${issues.map((i) => `${i.path}: ${i.message}`).join("; ")}`, issues);
}
