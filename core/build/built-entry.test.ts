import { describe, expect, it } from "vitest";
import { BuildMissingError, builtEntryPath, requireBuiltEntry } from "./built-entry.ts";

describe("built entries", () => {
  it("maps a source entry to its JavaScript under dist/", () => {
    expect(builtEntryPath("worker/main.ts")).toMatch(/\/dist\/worker\/main\.js$/);
    expect(builtEntryPath("worker/engines/embedded/main.ts")).toMatch(/\/dist\/worker\/engines\/embedded\/main\.js$/);
  });

  it("says to run the build when the file is missing", () => {
    expect(() => requireBuiltEntry("worker/never-built.ts")).toThrow(BuildMissingError);
    expect(() => requireBuiltEntry("worker/never-built.ts")).toThrow(/dist\/worker\/never-built\.js is missing: run `npm run build`/);
  });
});
