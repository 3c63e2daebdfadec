import { chmod, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { assertReadableBy, EngineUserError, findPasswdUser, modePermits, resolveEngineUser, type EngineUser } from "./engine-user.ts";

const PASSWD = `root:x:0:0:root:/root:/bin/bash
# a comment
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
hearth-engine:x:998:997::/nonexistent:/usr/sbin/nologin
`;
const lookup = (name: string) => findPasswdUser(PASSWD, name);

describe("resolveEngineUser", () => {
  it("finds users in passwd text by name or uid", () => {
    expect(findPasswdUser(PASSWD, "nobody")).toEqual({ name: "nobody", uid: 65534, gid: 65534 });
    expect(findPasswdUser(PASSWD, "998")).toEqual({ name: "hearth-engine", uid: 998, gid: 997 });
    expect(findPasswdUser(PASSWD, "ghost")).toBeUndefined();
  });

  it("as root: the configured user, `nobody` by default, and a clear error for a user that does not exist", () => {
    expect(resolveEngineUser(undefined, { currentUid: 0, lookup })).toEqual({ name: "nobody", uid: 65534, gid: 65534 });
    expect(resolveEngineUser("hearth-engine", { currentUid: 0, lookup })).toEqual({ name: "hearth-engine", uid: 998, gid: 997 });
    expect(() => resolveEngineUser("ghost", { currentUid: 0, lookup })).toThrow(EngineUserError);
    expect(() => resolveEngineUser("ghost", { currentUid: 0, lookup })).toThrow(/HEARTH_ENGINE_USER=ghost: no such user/);
  });

  it("not root: engines run as the worker's own user; naming another is an error, naming itself is fine", () => {
    expect(resolveEngineUser(undefined, { currentUid: 998, lookup })).toBeUndefined();
    expect(resolveEngineUser("hearth-engine", { currentUid: 998, lookup })).toBeUndefined();
    expect(() => resolveEngineUser("nobody", { currentUid: 998, lookup })).toThrow(/not root, so it cannot start engines as another user/);
  });

  it("resolves the real `nobody` of this host from /etc/passwd", () => {
    expect(resolveEngineUser(undefined, { currentUid: 0 })).toMatchObject({ name: "nobody", uid: expect.any(Number) });
  });
});

describe("modePermits", () => {
  const user = { uid: 65534, gid: 65534 };
  it("applies the owner's bits to the owner, the group's to the group, the others' to everyone else", () => {
    expect(modePermits({ mode: 0o700, uid: 0, gid: 0 }, user, "x")).toBe(false);
    expect(modePermits({ mode: 0o755, uid: 0, gid: 0 }, user, "rx")).toBe(true);
    expect(modePermits({ mode: 0o640, uid: 0, gid: 65534 }, user, "r")).toBe(true);
    expect(modePermits({ mode: 0o604, uid: 0, gid: 65534 }, user, "r")).toBe(false); // the group's bits, not the others'
    expect(modePermits({ mode: 0o044, uid: 65534, gid: 0 }, user, "r")).toBe(false); // the owner's bits, not the others'
    expect(modePermits({ mode: 0o711, uid: 0, gid: 0 }, user, "rx")).toBe(false);
  });
});

describe("assertReadableBy (real files, mode bits)", () => {
  const nobody: EngineUser = { name: "nobody", uid: 65534, gid: 65534 };
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "hearth-engine-user-")); // 0700, owned by this process's user
  });
  afterAll(() => rm(root, { recursive: true, force: true }));

  it("names the directory on the way the engine user cannot enter, then the file it cannot read, then passes", async () => {
    const file = join(root, "model.gguf");
    await writeFile(file, "gguf", { mode: 0o600 });
    await expect(assertReadableBy(file, nobody)).rejects.toThrow(new RegExp(`${root} is not searchable by the engine user nobody .*mode 0700`));
    await chmod(root, 0o755);
    await expect(assertReadableBy(file, nobody)).rejects.toThrow(/model.gguf is not readable by the engine user nobody .*mode 0600/);
    await chmod(file, 0o644);
    await expect(assertReadableBy(file, nobody)).resolves.toBeUndefined();
  });

  it("checks every entry of a directory model (a Hugging Face checkpoint)", async () => {
    const dir = join(root, "checkpoint");
    await mkdir(join(dir, "tokenizer"), { recursive: true, mode: 0o755 });
    await writeFile(join(dir, "config.json"), "{}", { mode: 0o644 });
    await writeFile(join(dir, "tokenizer", "tokenizer.json"), "{}", { mode: 0o600 });
    await chmod(root, 0o755);
    await expect(assertReadableBy(dir, nobody)).rejects.toThrow(/tokenizer\/tokenizer.json is not readable/);
    await chmod(join(dir, "tokenizer", "tokenizer.json"), 0o644);
    await expect(assertReadableBy(dir, nobody)).resolves.toBeUndefined();
  });
});
