import { describe, expect, it } from "vitest";
import { openDb } from "../../core/db/client.ts";
import { endpoints } from "../../core/db/schema.ts";
import { isBackendUnavailable } from "./backend-unavailable.ts";

describe("isBackendUnavailable", () => {
  it("sees a refused Postgres through drizzle's wrapping error", async () => {
    const dbh = openDb("postgres://postgres@127.0.0.1:1/nothing", { max: 1 });
    try {
      const err = await dbh.db.select().from(endpoints).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(Error);
      expect(isBackendUnavailable(err)).toBe(true);
    } finally {
      await dbh.close();
    }
  });

  it("takes Postgres starting up or shutting down for an outage", () => {
    expect(isBackendUnavailable(Object.assign(new Error("the database system is starting up"), { code: "57P03" }))).toBe(true);
    expect(isBackendUnavailable(new Error("Failed query", { cause: Object.assign(new Error("terminating connection"), { code: "57P01" }) }))).toBe(true);
  });

  it("does not take an ordinary error for an outage", () => {
    expect(isBackendUnavailable(new Error("invalid input syntax for type integer"))).toBe(false);
    expect(isBackendUnavailable(Object.assign(new Error("duplicate key"), { code: "23505" }))).toBe(false);
    expect(isBackendUnavailable(undefined)).toBe(false);
  });
});
