import { describe, expect, it } from "vitest";
import { jobRouteScope, managementScope, scopeAllows } from "./key-scopes.ts";

describe("key scopes", () => {
  it("orders read < run < full", () => {
    expect(scopeAllows("read", "read")).toBe(true);
    expect(scopeAllows("read", "run")).toBe(false);
    expect(scopeAllows("run", "read")).toBe(true);
    expect(scopeAllows("run", "full")).toBe(false);
    expect(scopeAllows("full", "run")).toBe(true);
  });

  it("needs read for GETs of /api/v1 and full for every change", () => {
    expect(managementScope("GET")).toBe("read");
    expect(managementScope("HEAD")).toBe("read");
    for (const m of ["POST", "PUT", "PATCH", "DELETE"]) expect(managementScope(m)).toBe("full");
  });

  it("maps each job route to its scope, and anything else to full", () => {
    const cases: [string, string, string][] = [
      ["GET", "/v2/ep1/status/j1", "read"],
      ["POST", "/v2/ep1/status/j1", "read"],
      ["GET", "/v2/ep1/status-sync/j1", "read"],
      ["POST", "/v2/ep1/stream/j1", "read"],
      ["GET", "/v2/ep1/health", "read"],
      ["GET", "/v2/ep1/openai/v1/models", "read"],
      ["POST", "/v2/ep1/run", "run"],
      ["POST", "/v2/ep1/runsync", "run"],
      ["POST", "/v2/ep1/cancel/j1", "run"],
      ["POST", "/v2/ep1/retry/j1", "run"],
      ["POST", "/v2/ep1/purge-queue", "run"],
      ["POST", "/v2/ep1/openai/v1/chat/completions", "run"],
      ["POST", "/v2/ep1/openai/v1/completions", "run"],
      ["POST", "/v2/ep1/openai/v1/embeddings", "run"],
      ["GET", "/v2/ep1/run", "full"],
      ["POST", "/v2/ep1/health", "full"],
      ["POST", "/v2/ep1/status/j1/extra", "full"],
      ["DELETE", "/v2/ep1/status/j1", "full"],
      ["POST", "/v2/ep1/something-new", "full"],
    ];
    for (const [method, path, scope] of cases) expect(jobRouteScope(method, path), `${method} ${path}`).toBe(scope);
  });
});
