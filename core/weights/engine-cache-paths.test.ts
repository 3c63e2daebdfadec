import { describe, expect, it } from "vitest";
import { engineCacheDirs } from "../engine/engine-profiles.ts";
import { checkArchiveEntry, resolveCacheDirs } from "./engine-cache-paths.ts";

const home = "/tmp/hearth-engine-1-abc";
const env = { HOME: home, TMPDIR: home, PATH: "/usr/bin" };

describe("resolveCacheDirs", () => {
  it("puts vLLM's caches in the engine's own HOME when no variable moves them", () => {
    const { dirs, skipped } = resolveCacheDirs(engineCacheDirs("vllm"), env, "nobody");
    expect(dirs).toEqual([
      { id: "vllm", path: `${home}/.cache/vllm` },
      { id: "triton", path: `${home}/.triton/cache` },
      { id: "flashinfer", path: `${home}/.cache/flashinfer` },
    ]);
    expect(skipped).toEqual([]);
  });

  it("honours the variables each engine reads, in the engine's order", () => {
    const { dirs } = resolveCacheDirs(engineCacheDirs("vllm"), { ...env, VLLM_CACHE_ROOT: "/data/vllm/", XDG_CACHE_HOME: "/xdg", TRITON_HOME: "/th", FLASHINFER_WORKSPACE_BASE: "/fi" }, "nobody");
    expect(dirs).toEqual([
      { id: "vllm", path: "/data/vllm" },
      { id: "triton", path: "/th/.triton/cache" },
      { id: "flashinfer", path: "/fi/.cache/flashinfer" },
    ]);
    expect(resolveCacheDirs(engineCacheDirs("vllm"), { ...env, XDG_CACHE_HOME: "/xdg", TRITON_CACHE_DIR: "/tc" }, "nobody").dirs.slice(0, 2)).toEqual([
      { id: "vllm", path: "/xdg/vllm" },
      { id: "triton", path: "/tc" },
    ]);
  });

  it("names Inductor's default cache after the engine's user, in its TMPDIR", () => {
    expect(resolveCacheDirs(engineCacheDirs("sglang"), env, "nobody").dirs[0]).toEqual({ id: "torchinductor", path: `${home}/torchinductor_nobody` });
    expect(resolveCacheDirs(engineCacheDirs("sglang"), env, "bad/user").skipped[0]).toMatchObject({ id: "torchinductor" });
  });

  it("keeps TensorRT-LLM's build cache only where the endpoint puts it (its default is shared by the host)", () => {
    expect(resolveCacheDirs(engineCacheDirs("trtllm"), env, "nobody").skipped).toEqual([{ id: "trtllm-build", reason: expect.stringContaining("TLLM_LLMAPI_BUILD_CACHE_ROOT") }]);
    expect(resolveCacheDirs(engineCacheDirs("trtllm"), { ...env, TLLM_LLMAPI_BUILD_CACHE_ROOT: "/b" }, "nobody").dirs[0]).toEqual({ id: "trtllm-build", path: "/b" });
  });

  it("declares nothing for engines that compile nothing", () => {
    expect(resolveCacheDirs(engineCacheDirs("llamacpp"), env, "nobody").dirs).toEqual([]);
    expect(resolveCacheDirs(engineCacheDirs("embedded"), env, "nobody").dirs).toEqual([]);
  });

  it("skips a relative value (the engine would use it, so no other place is guessed), / and overlapping directories", () => {
    const relative = resolveCacheDirs(engineCacheDirs("vllm"), { ...env, VLLM_CACHE_ROOT: "cache" }, "nobody");
    expect(relative.dirs.map((d) => d.id)).toEqual(["triton", "flashinfer"]);
    expect(relative.skipped).toEqual([{ id: "vllm", reason: "VLLM_CACHE_ROOT is not an absolute path" }]);
    expect(resolveCacheDirs(engineCacheDirs("vllm"), { ...env, VLLM_CACHE_ROOT: "/" }, "nobody").skipped[0]).toMatchObject({ id: "vllm" });
    const nested = resolveCacheDirs(engineCacheDirs("vllm"), { ...env, VLLM_CACHE_ROOT: home, TRITON_CACHE_DIR: `${home}/t/../x` }, "nobody");
    expect(nested.dirs).toEqual([{ id: "vllm", path: home }]);
    expect(nested.skipped.map((s) => s.id)).toEqual(["triton", "flashinfer"]);
  });
});

describe("checkArchiveEntry", () => {
  const ids = new Set(["vllm", "triton"]);
  const file = (path: string) => checkArchiveEntry({ path, type: "File", size: 3 }, ids);

  it("accepts files and directories inside a declared directory, and says where they go", () => {
    expect(file("vllm/torch_compile_cache/abc/rank_0_0/model.so")).toEqual({ ok: true, id: "vllm", rel: "torch_compile_cache/abc/rank_0_0/model.so", directory: false });
    expect(checkArchiveEntry({ path: "triton/", type: "Directory", size: 0 }, ids)).toEqual({ ok: true, id: "triton", rel: "", directory: true });
    expect(checkArchiveEntry({ path: "triton/ab/", type: "Directory", size: 0 }, ids)).toEqual({ ok: true, id: "triton", rel: "ab", directory: true });
  });

  it("refuses links, devices and FIFOs", () => {
    for (const type of ["SymbolicLink", "Link", "CharacterDevice", "BlockDevice", "FIFO", "ContiguousFile", "Unsupported"]) {
      expect(checkArchiveEntry({ path: "vllm/x", type, size: 0 }, ids)).toMatchObject({ ok: false });
    }
  });

  it("refuses absolute paths, .., . and empty segments, backslashes and NULs", () => {
    for (const path of ["/etc/passwd", "vllm/../../etc/passwd", "../x", "vllm/./x", "vllm//x", "vllm/a\\..\\b", "vllm/a\0b", "", "vllm/x/"]) {
      expect(file(path), path).toMatchObject({ ok: false });
    }
  });

  it("refuses what lies outside every declared directory, and a file in a declared directory's place", () => {
    expect(file("flashinfer/x")).toMatchObject({ ok: false, reason: expect.stringContaining("outside") });
    expect(file(".bashrc")).toMatchObject({ ok: false });
    expect(file("vllm")).toMatchObject({ ok: false, reason: expect.stringContaining("replaces") });
  });

  it("refuses segments longer than a file name may be", () => {
    expect(file(`vllm/${"a".repeat(256)}`)).toMatchObject({ ok: false });
    expect(file(`vllm/${"a".repeat(255)}`)).toMatchObject({ ok: true });
  });
});
