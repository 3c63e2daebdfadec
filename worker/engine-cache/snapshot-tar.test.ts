import { randomBytes } from "node:crypto";
import { createReadStream, existsSync } from "node:fs";
import { chmod, chown, lstat, mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { Header } from "tar";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { builtEntryPath } from "../../core/build/built-entry.ts";
import { resolveEngineUser, type EngineUser } from "../engines/openai/engine-user.ts";
import { readSnapshot, SnapshotRefused } from "./snapshot-reader.ts";
import { createArchive, extractArchive } from "./snapshot-tar-process.ts";

/**
 * The snapshot process (snapshot-tar-main.ts, built to dist/ by the test run's global setup) on
 * real directories: as the engine's user (`nobody`) when the test runs as root, as the test's own
 * user otherwise.
 */
const entry = builtEntryPath("worker/engine-cache/snapshot-tar-main.ts");
const user: EngineUser | undefined = process.getuid?.() === 0 ? resolveEngineUser("nobody") : undefined;
const MB = 1024 * 1024;

let root: string;
const own = async (path: string) => {
  if (user) await chown(path, user.uid, user.gid);
};
/** A directory the engine user owns, as an engine's own cache directory would be. */
async function engineDir(name: string): Promise<string> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  await own(dir);
  return dir;
}
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir, { recursive: true })).sort()) {
    const st = await lstat(join(dir, name));
    out[name] = st.isFile() ? (await readFile(join(dir, name))).toString("base64") : st.isDirectory() ? "<dir>" : "<other>";
  }
  return out;
}

/** A .tar.gz made of raw headers: what a hostile snapshot could hold. */
function hostileTar(entries: { path: string; type: string; body?: Buffer; linkpath?: string }[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = e.body ?? Buffer.alloc(0);
    const h = new Header({ path: e.path, type: e.type as "File", size: body.length, mode: 0o644, mtime: new Date(), ...(e.linkpath && { linkpath: e.linkpath }) });
    h.encode();
    blocks.push(h.block as Buffer, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "hearth-snapshot-tar-"));
  await chmod(root, 0o755);
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe("snapshot process", () => {
  it("archives the declared directories (files and directories only), and restores them byte for byte into empty ones, owned by the engine's user", async () => {
    const vllm = await engineDir("a/vllm");
    const triton = await engineDir("a/triton");
    const files: Record<string, Buffer> = {
      [join(vllm, "torch_compile_cache/1517964802/rank_0_0/backbone/artifact.bin")]: randomBytes(3 * MB + 17),
      [join(vllm, "modelinfos/x.json")]: Buffer.from('{"ok":true}'),
      [join(triton, "ABCDEF/kernel.cubin")]: randomBytes(70_000),
      // Past ustar's 255 characters: written with a pax header.
      [join(triton, `${"d".repeat(120)}/${"e".repeat(120)}/${"f".repeat(100)}.json`)]: Buffer.from("long"),
      [join(triton, "empty")]: Buffer.alloc(0),
    };
    for (const [path, bytes] of Object.entries(files)) {
      await mkdir(join(path, ".."), { recursive: true });
      await writeFile(path, bytes);
    }
    await chmod(join(vllm, "modelinfos/x.json"), 0o755);
    // What an engine could plant: a link to a secret, and a FIFO. Neither is archived.
    await symlink("/etc/shadow", join(vllm, "shadow-link"));
    execFileSync("mkfifo", [join(triton, "fifo")]);
    if (user) execFileSync("chown", ["-R", `${user.uid}:${user.gid}`, join(root, "a")]);
    const dirs = [{ id: "vllm", path: vllm }, { id: "triton", path: triton }, { id: "flashinfer", path: join(root, "a/absent") }];
    const before = { vllm: await tree(vllm), triton: await tree(triton) };

    const file = join(root, "a.tar.gz");
    const built = await createArchive({ mode: "create", dirs, maxBytes: 64 * MB }, file, { entry, ...(user && { user }) });
    expect(built.report).toEqual({ ok: true, mode: "create", dirs: ["vllm", "triton"], files: 5, bytes: 3 * MB + 17 + 11 + 70_000 + 4, skipped: 2 });
    expect(built.bytes).toBe((await stat(file)).size);
    const listed = await readSnapshot(createReadStream(file), { ids: new Set(["vllm", "triton", "flashinfer"]), maxBytes: 64 * MB }, async (e) => void e.resume());
    expect(listed.bytes).toBe(built.report.ok ? (built.report as { bytes: number }).bytes : -1);

    // Restored where the directories are gone (as in a fresh engine HOME) and where one is empty.
    await rm(vllm, { recursive: true });
    await rm(triton, { recursive: true });
    await engineDir("a/triton");
    const report = await extractArchive({ mode: "extract", dirs, maxBytes: 64 * MB }, file, { entry, ...(user && { user }) });
    expect(report).toEqual({ ok: true, mode: "extract", restored: ["vllm", "triton"], kept: [], files: 5, bytes: 3 * MB + 17 + 11 + 70_000 + 4 });
    const skippedNames = (t: Record<string, string>) => Object.fromEntries(Object.entries(t).filter(([k]) => k !== "shadow-link" && k !== "fifo"));
    expect(await tree(vllm)).toEqual(skippedNames(before.vllm));
    expect(await tree(triton)).toEqual(skippedNames(before.triton));
    expect((await stat(join(vllm, "modelinfos/x.json"))).mode & 0o777).toBe(0o755);
    if (user) {
      const st = await stat(join(vllm, "torch_compile_cache/1517964802/rank_0_0/backbone/artifact.bin"));
      expect([st.uid, st.gid]).toEqual([user.uid, user.gid]);
      expect((await stat(vllm)).uid).toBe(user.uid);
    }
    expect(existsSync(join(root, "a/absent"))).toBe(false);

    // A directory that already holds files is the engine's: left as it is.
    await rm(vllm, { recursive: true });
    await writeFile(join(triton, "ABCDEF/kernel.cubin"), "mine");
    const again = await extractArchive({ mode: "extract", dirs, maxBytes: 64 * MB }, file, { entry, ...(user && { user }) });
    expect(again).toMatchObject({ ok: true, restored: ["vllm"], kept: ["triton"] });
    expect(await readFile(join(triton, "ABCDEF/kernel.cubin"), "utf8")).toBe("mine");
  });

  it("says so when the directories hold more than the limit, and leaves no archive to upload", async () => {
    const big = await engineDir("b/vllm");
    await writeFile(join(big, "a.bin"), randomBytes(2 * MB));
    await own(join(big, "a.bin"));
    const file = join(root, "b.tar.gz");
    const built = await createArchive({ mode: "create", dirs: [{ id: "vllm", path: big }], maxBytes: MB }, file, { entry, ...(user && { user }) });
    expect(built.report).toMatchObject({ ok: false, reason: "too-large" });
  });

  describe("a hostile archive", () => {
    const outside = () => join(root, `outside-${randomBytes(4).toString("hex")}`);
    const cases: [string, (o: string) => { path: string; type: string; body?: Buffer; linkpath?: string }[]][] = [
      ["a path climbing out with ..", () => [{ path: "vllm/../../../escaped.txt", type: "File", body: Buffer.from("x") }]],
      ["an absolute path", (o) => [{ path: o, type: "File", body: Buffer.from("x") }]],
      ["a symbolic link out of the directory, then a file through it", (o) => [{ path: "vllm/link", type: "SymbolicLink", linkpath: o }, { path: "vllm/link/pwned", type: "File", body: Buffer.from("x") }]],
      ["a hard link to a file outside", (o) => [{ path: "vllm/hard", type: "Link", linkpath: o }]],
      ["a device file", () => [{ path: "vllm/mem", type: "CharacterDevice" }]],
      ["a top-level folder no declared directory has", () => [{ path: "ssh/authorized_keys", type: "File", body: Buffer.from("x") }]],
      ["one good file before a bad one", (o) => [{ path: "vllm/good", type: "File", body: Buffer.from("good") }, { path: `vllm/../${o.split("/").at(-1)}`, type: "File", body: Buffer.from("x") }]],
    ];

    for (const [name, make] of cases) {
      it(`is refused, writing nothing: ${name}`, async () => {
        const target = outside();
        const dir = join(root, `h-${randomBytes(4).toString("hex")}`, "vllm");
        await mkdir(join(dir, ".."), { recursive: true });
        await own(join(dir, ".."));
        const file = join(root, `h-${randomBytes(4).toString("hex")}.tar.gz`);
        await writeFile(file, hostileTar(make(target)));
        const dirs = [{ id: "vllm", path: dir }];
        // The reader refuses it (the rule)...
        await expect(readSnapshot(createReadStream(file), { ids: new Set(["vllm"]), maxBytes: MB }, async (e) => void e.resume())).rejects.toBeInstanceOf(SnapshotRefused);
        // ...and so does the snapshot process, removing what it wrote before the bad entry.
        const report = await extractArchive({ mode: "extract", dirs, maxBytes: MB }, file, { entry, ...(user && { user }) });
        expect(report).toMatchObject({ ok: false, reason: "refused" });
        expect(existsSync(target)).toBe(false);
        expect(existsSync(join(root, "escaped.txt"))).toBe(false);
        expect(await readdir(dir).catch(() => [])).toEqual([]);
      });
    }

    it("is refused when its files would hold more than the limit (a gzip bomb), or when it is not a tar at all", async () => {
      const bomb = join(root, "bomb.tar.gz");
      await writeFile(bomb, hostileTar([{ path: "vllm/zeros", type: "File", body: Buffer.alloc(4 * MB) }]));
      await expect(readSnapshot(createReadStream(bomb), { ids: new Set(["vllm"]), maxBytes: MB }, async (e) => void e.resume())).rejects.toThrow(/more than/);
      const junk = join(root, "junk.tar.gz");
      await writeFile(junk, randomBytes(5000));
      await expect(readSnapshot(createReadStream(junk), { ids: new Set(["vllm"]), maxBytes: MB }, async (e) => void e.resume())).rejects.toThrow();
    });
  });
});
