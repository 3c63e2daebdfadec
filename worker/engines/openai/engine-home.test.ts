import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createEngineHome } from "./engine-home.ts";

describe("createEngineHome", () => {
  let parent: string;
  beforeAll(async () => {
    parent = await mkdtemp(join(tmpdir(), "hearth-engine-home-test-"));
  });
  afterAll(() => rm(parent, { recursive: true, force: true }));

  it("makes a private directory for the engine user, and removes it with everything in it", async () => {
    const owner = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : undefined;
    const home = await createEngineHome(owner, parent);
    const st = statSync(home.path);
    expect(st.mode & 0o777).toBe(0o700);
    if (owner) expect({ uid: st.uid, gid: st.gid }).toEqual(owner);
    await mkdir(join(home.path, ".cache", "deep"), { recursive: true });
    await home.remove();
    expect(existsSync(home.path)).toBe(false);
  });

  it("removes homes left by workers that are gone, and keeps those of live ones", async () => {
    const gone = spawnSync(process.execPath, ["-e", "0"]).pid; // exited and reaped: its pid names no process now
    const deadHome = join(parent, `hearth-engine-${gone}-abc`);
    const liveHome = join(parent, `hearth-engine-${process.ppid}-def`);
    await mkdir(deadHome);
    await mkdir(liveHome);
    const home = await createEngineHome(undefined, parent);
    expect(existsSync(deadHome)).toBe(false);
    expect(existsSync(liveHome)).toBe(true);
    await home.remove();
  });
});
