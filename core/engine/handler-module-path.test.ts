import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { resolveHandlerDir, resolveHandlerModule } from "./handler-module-path.ts";

const OUTSIDE = "module is outside the directories allowed by HEARTH_HANDLER_DIRS";

describe("resolveHandlerModule", () => {
  let root: string;
  let allowed: string;
  let outside: string;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "hearth-module-path-"));
    allowed = join(root, "allowed");
    outside = join(root, "outside");
    await mkdir(join(allowed, "sub"), { recursive: true });
    await mkdir(join(outside, "dir"), { recursive: true });
    await writeFile(join(allowed, "ok.mjs"), "export default () => 1;");
    await writeFile(join(outside, "secret.mjs"), "export default () => 1;");
    await symlink(outside, join(allowed, "escape"));
    await symlink(join(allowed, "ok.mjs"), join(allowed, "link-in.mjs"));
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  const reason = async (module: string) => {
    const r = await resolveHandlerModule(module, [allowed]);
    return r.ok ? "ok" : r.reason;
  };

  it("accepts a file inside, by path, file:// URL or a link that stays inside", async () => {
    expect(await resolveHandlerModule(join(allowed, "ok.mjs"), [allowed])).toEqual({ ok: true, path: join(allowed, "ok.mjs") });
    expect(await reason(pathToFileURL(join(allowed, "sub", "..", "ok.mjs")).href)).toBe("ok");
    expect(await resolveHandlerModule(join(allowed, "link-in.mjs"), [allowed])).toEqual({ ok: true, path: join(allowed, "ok.mjs") });
  });

  it("gives one answer for every path outside, whether it exists, is a directory or is missing", async () => {
    const probes = [
      join(outside, "secret.mjs"), // exists
      join(outside, "missing.mjs"), // does not
      join(outside, "dir"), // a directory
      join(outside, "secret.mjs", "below-a-file.mjs"), // not a directory
      join(root, "no-such-dir", "x.mjs"),
      "/etc/passwd",
      "/etc/hearth-surely-missing.mjs",
      `${allowed}/../outside/secret.mjs`, // `..` out of an allowed dir
      `${allowed}/../outside/missing.mjs`,
      join(allowed, "escape", "secret.mjs"), // a link inside that leads outside
      join(allowed, "escape", "missing.mjs"),
      join(allowed, "escape", "dir"),
      pathToFileURL(join(outside, "secret.mjs")).href,
      pathToFileURL(join(outside, "missing.mjs")).href,
    ];
    for (const p of probes) expect(await reason(p), p).toBe(OUTSIDE);
  });

  it("says what is wrong only with a path that would lie inside", async () => {
    expect(await reason(join(allowed, "missing.mjs"))).toBe("module does not exist");
    expect(await reason(join(allowed, "sub", "missing", "deeper.mjs"))).toBe("module does not exist");
    expect(await reason(`${allowed}/missing-dir/../../outside/secret.mjs`)).toBe("module does not exist"); // the OS would not get past missing-dir either
    expect(await reason(join(allowed, "sub"))).toBe("module is not a file");
    expect(await reason(allowed)).toBe(OUTSIDE); // the directory itself is not below itself
  });

  it("refuses relative paths and bad URLs before touching the file system, and with no allowed dirs everything", async () => {
    expect(await reason("ok.mjs")).toBe("module must be an absolute path or a file:// URL");
    expect(await reason("file://remote-host/x.mjs")).toBe("module is not a valid file:// URL");
    expect(await resolveHandlerModule(join(allowed, "ok.mjs"), [])).toEqual({ ok: false, reason: OUTSIDE });
    expect(await resolveHandlerModule(join(allowed, "missing.mjs"), [join(root, "gone")])).toEqual({ ok: false, reason: OUTSIDE });
  });

  it("checks a RunPod worker's folder the same way, wanting a directory", async () => {
    const dir = async (cwd: string) => {
      const r = await resolveHandlerDir(cwd, [allowed]);
      return r.ok ? r.path : r.reason;
    };
    expect(await dir(join(allowed, "sub"))).toBe(join(allowed, "sub"));
    expect(await dir(join(allowed, "ok.mjs"))).toBe("cwd is not a directory");
    expect(await dir(join(allowed, "escape", "dir"))).toBe("cwd is outside the directories allowed by HEARTH_HANDLER_DIRS");
    expect(await dir(join(outside, "dir"))).toBe("cwd is outside the directories allowed by HEARTH_HANDLER_DIRS");
    expect(await dir(join(allowed, "nope"))).toBe("cwd does not exist");
    expect(await dir("sub")).toBe("cwd must be an absolute path or a file:// URL");
  });
});
