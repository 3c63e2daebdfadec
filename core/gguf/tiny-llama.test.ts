import { spawn } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { DEFAULT_ALIGNMENT, GgufType } from "./gguf-format.ts";
import { readGguf } from "./gguf-reader.ts";
import { GgufWriter } from "./gguf-writer.ts";
import { DEFAULT_TINY_LLAMA, tinyLlamaGguf } from "./tiny-llama.ts";

const vocabPath = fileURLToPath(new URL("./vocab/ggml-vocab-llama-spm.gguf", import.meta.url));
/** llama.cpp's own server, built from the source node-llama-cpp ships (see README); optional here. */
const llamaServer = process.env.HEARTH_LLAMA_SERVER ?? "/var/cache/hearth/llama-build/bin/llama-server";

describe("GGUF", () => {
  it("round-trips metadata and tensor layout through the writer and the reader", () => {
    const buf = new GgufWriter()
      .string("general.architecture", "llama")
      .u32("n", 7)
      .f32("eps", 0.5)
      .bool("flag", true)
      .set("list", { type: GgufType.ARRAY, value: { itemType: GgufType.STRING, items: ["a", "bé"] } })
      .tensor({ name: "a", dims: [3], data: new Float32Array([1, 2, 3]) })
      .tensor({ name: "b", dims: [2, 2], data: new Float32Array([4, 5, 6, 7]) })
      .toBuffer();
    const h = readGguf(buf);
    expect(h.version).toBe(3);
    expect(h.kv.get("n")).toEqual({ type: GgufType.UINT32, value: 7 });
    expect(h.kv.get("eps")?.value).toBe(0.5);
    expect(h.kv.get("flag")?.value).toBe(true);
    expect(h.kv.get("list")?.value).toEqual({ itemType: GgufType.STRING, items: ["a", "bé"] });
    expect(h.tensors.map((t) => [t.name, t.dims, t.offset])).toEqual([["a", [3], 0], ["b", [2, 2], DEFAULT_ALIGNMENT]]);
    expect(() => new GgufWriter().tensor({ name: "bad", dims: [2, 2], data: new Float32Array(3) })).toThrow(/need 4 values/);
    expect(() => readGguf(Buffer.from("nope nope nope nope nope"))).toThrow(/not a GGUF/);
  });

  it("makes a deterministic tiny llama with the vocabulary's real tokenizer", () => {
    const vocab = readGguf(readFileSync(vocabPath));
    const a = tinyLlamaGguf(vocab);
    expect(a.equals(tinyLlamaGguf(vocab))).toBe(true);
    expect(a.equals(tinyLlamaGguf(vocab, { ...DEFAULT_TINY_LLAMA, seed: 2 }))).toBe(false);
    const h = readGguf(a);
    expect(h.kv.get("general.architecture")?.value).toBe("llama");
    expect(h.kv.get("tokenizer.ggml.model")?.value).toBe("llama");
    expect((h.kv.get("tokenizer.ggml.tokens")?.value as { items: string[] }).items).toHaveLength(32_000);
    expect(h.tensors).toHaveLength(3 + 9 * DEFAULT_TINY_LLAMA.layers);
    expect(h.tensors.find((t) => t.name === "token_embd.weight")?.dims).toEqual([DEFAULT_TINY_LLAMA.embedding, 32_000]);
    expect(h.tensors.every((t) => t.offset % DEFAULT_ALIGNMENT === 0)).toBe(true);
  });

  it.skipIf(!existsSync(llamaServer))("is served by llama.cpp's own llama-server, which tokenizes with its vocabulary", async () => {
    const dir = await mkdtemp(join(tmpdir(), "hearth-gguf-"));
    const model = join(dir, "tiny-llama.gguf");
    writeFileSync(model, tinyLlamaGguf(readGguf(readFileSync(vocabPath))));
    const port = 20_000 + Math.floor(Math.random() * 20_000);
    const server = spawn(llamaServer, ["-m", model, "--host", "127.0.0.1", "--port", String(port), "-c", "256"], { stdio: "ignore" });
    try {
      const base = `http://127.0.0.1:${port}`;
      for (let i = 0; i < 200; i++) {
        const ok = await fetch(`${base}/health`).then((r) => r.ok, () => false);
        if (ok) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      const tok = (await (await fetch(`${base}/tokenize`, { method: "POST", body: JSON.stringify({ content: "Hello world" }) })).json()) as { tokens: number[] };
      expect(tok.tokens).toEqual([15043, 3186]); // "▁Hello", "▁world" in LLaMA's SentencePiece vocabulary
      const r = await fetch(`${base}/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "Hello", max_tokens: 8, temperature: 0 }) });
      const body = (await r.json()) as { usage: { completion_tokens: number } };
      expect(body.usage.completion_tokens).toBe(8);
    } finally {
      server.kill("SIGKILL");
    }
  });
});
