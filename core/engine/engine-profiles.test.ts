import { describe, expect, it } from "vitest";
import { ENGINE_PROFILES, EngineProfileError, checkProfileArgs, engineCommand, profileFlags, type EngineLaunch } from "./engine-profiles.ts";

const base = { port: 41001, servedModelName: "llama-8b", concurrency: 8 } as const;

describe("engineCommand", () => {
  it("vllm: positional model, loopback bind, served name, concurrency as --max-num-seqs, user flags sorted", () => {
    const cmd = engineCommand({
      ...base,
      profile: "vllm",
      modelPath: "/cache/ab12/llama-8b",
      args: { "tensor-parallel-size": 2, "enable-prefix-caching": true, "gpu-memory-utilization": 0.85, "enforce-eager": false, dtype: "bfloat16" },
    });
    expect(cmd).toEqual({
      command: "vllm",
      args: [
        "serve", "/cache/ab12/llama-8b", "--host", "127.0.0.1", "--port", "41001", "--served-model-name", "llama-8b",
        "--dtype", "bfloat16", "--enable-prefix-caching", "--gpu-memory-utilization", "0.85", "--max-num-seqs", "8", "--tensor-parallel-size", "2",
      ],
      env: { HF_HUB_OFFLINE: "1" },
      port: 41001,
      healthPath: "/health",
    });
  });

  it("vllm: a false boolean with a documented --no- form is passed as that form; the user's --max-num-seqs wins", () => {
    const cmd = engineCommand({ ...base, profile: "vllm", modelPath: "/m", args: { "enable-prefix-caching": false, "max-num-seqs": 64 } });
    expect(cmd.args.slice(8)).toEqual(["--no-enable-prefix-caching", "--max-num-seqs", "64"]);
  });

  it("sglang: python3 -m sglang.launch_server with --model-path and --max-running-requests", () => {
    const cmd = engineCommand({
      ...base,
      profile: "sglang",
      modelPath: "/cache/cd34/qwen",
      args: { "tp-size": 4, "mem-fraction-static": 0.8, "disable-radix-cache": true, "context-length": 32768, quantization: "fp8" },
    });
    expect(cmd).toEqual({
      command: "python3",
      args: [
        "-m", "sglang.launch_server", "--model-path", "/cache/cd34/qwen", "--host", "127.0.0.1", "--port", "41001", "--served-model-name", "llama-8b",
        "--context-length", "32768", "--disable-radix-cache", "--max-running-requests", "8", "--mem-fraction-static", "0.8", "--quantization", "fp8", "--tp-size", "4",
      ],
      env: { HF_HUB_OFFLINE: "1" },
      port: 41001,
      healthPath: "/health",
    });
  });

  it("trtllm: trtllm-serve's snake_case options, concurrency as --max_batch_size", () => {
    const cmd = engineCommand({
      ...base,
      profile: "trtllm",
      modelPath: "/cache/ef56/llama",
      args: { tp_size: 2, backend: "pytorch", kv_cache_free_gpu_memory_fraction: 0.9, max_seq_len: 8192, trust_remote_code: true },
    });
    expect(cmd).toEqual({
      command: "trtllm-serve",
      args: [
        "/cache/ef56/llama", "--host", "127.0.0.1", "--port", "41001", "--served_model_name", "llama-8b",
        "--backend", "pytorch", "--kv_cache_free_gpu_memory_fraction", "0.9", "--max_batch_size", "8", "--max_seq_len", "8192", "--tp_size", "2", "--trust_remote_code",
      ],
      env: { HF_HUB_OFFLINE: "1" },
      port: 41001,
      healthPath: "/health",
    });
  });

  it("llamacpp: llama-server with --alias as the served name and --parallel as concurrency; keyword GPU layers", () => {
    const cmd = engineCommand({
      ...base,
      profile: "llamacpp",
      modelPath: "/cache/0a/model.gguf",
      args: { "ctx-size": 8192, "n-gpu-layers": "all", "flash-attn": "on", "cont-batching": false, threads: 6 },
    });
    expect(cmd).toEqual({
      command: "llama-server",
      args: [
        "--model", "/cache/0a/model.gguf", "--host", "127.0.0.1", "--port", "41001", "--alias", "llama-8b",
        "--no-cont-batching", "--ctx-size", "8192", "--flash-attn", "on", "--n-gpu-layers", "all", "--parallel", "8", "--threads", "6",
      ],
      port: 41001,
      healthPath: "/health",
    });
  });

  it("embeddings are each engine's own flags in args: llama-server --embeddings --pooling, vLLM --runner, SGLang --is-embedding", () => {
    const llama = engineCommand({ ...base, profile: "llamacpp", modelPath: "/m.gguf", args: { embeddings: true, pooling: "last" } });
    expect(llama.args.slice(8)).toEqual(["--embeddings", "--parallel", "8", "--pooling", "last"]);
    expect(engineCommand({ ...base, profile: "vllm", modelPath: "/m", args: { runner: "pooling", convert: "embed" } }).args.slice(8)).toEqual(["--convert", "embed", "--max-num-seqs", "8", "--runner", "pooling"]);
    expect(engineCommand({ ...base, profile: "sglang", modelPath: "/m", args: { "is-embedding": true } }).args).toContain("--is-embedding");
    expect(checkProfileArgs("llamacpp", { pooling: "max" })[0]?.key).toBe("pooling");
  });

  it("embedded: node + execArgv + entry, the default --ctx-size when unset", () => {
    const launch: EngineLaunch = {
      ...base,
      concurrency: 2,
      profile: "embedded",
      modelPath: "/models/tiny.gguf",
      args: {},
      embedded: { node: "/usr/bin/node", execArgv: ["--import", "tsx"], entry: "/app/worker/engines/embedded/main.ts" },
    };
    expect(engineCommand(launch)).toEqual({
      command: "/usr/bin/node",
      args: [
        "--import", "tsx", "/app/worker/engines/embedded/main.ts",
        "--model", "/models/tiny.gguf", "--host", "127.0.0.1", "--port", "41001", "--served-model-name", "llama-8b", "--ctx-size", "2048", "--parallel", "2",
      ],
      port: 41001,
      healthPath: "/health",
      sleepMode: true,
    });
    const withCtx = engineCommand({ ...launch, args: { "ctx-size": 512, threads: 1, parallel: 4 } });
    expect(withCtx.args.slice(11)).toEqual(["--ctx-size", "512", "--parallel", "4", "--threads", "1"]);
  });

  it("vLLM serves sleep mode only with enable-sleep-mode, in its dev-mode server (VLLM_SERVER_DEV_MODE=1)", () => {
    const plain = engineCommand({ ...base, profile: "vllm", modelPath: "/m", args: {} });
    expect(plain.sleepMode).toBeUndefined();
    const sleepy = engineCommand({ ...base, profile: "vllm", modelPath: "/m", args: { "enable-sleep-mode": true } });
    expect(sleepy).toMatchObject({ sleepMode: true, env: { VLLM_SERVER_DEV_MODE: "1" } });
    expect(sleepy.args).toContain("--enable-sleep-mode");
  });

  it("gives the same argv whatever the order of the args keys (JSONB reorders them)", () => {
    const a = engineCommand({ ...base, profile: "vllm", modelPath: "/m", args: { seed: 1, dtype: "half", "max-model-len": 4096 } });
    const b = engineCommand({ ...base, profile: "vllm", modelPath: "/m", args: { "max-model-len": 4096, dtype: "half", seed: 1 } });
    expect(a.args).toEqual(b.args);
  });

  it("refuses to build a launch whose args are invalid, or an embedded launch without its entry", () => {
    expect(() => engineCommand({ ...base, profile: "vllm", modelPath: "/m", args: { port: 9 } })).toThrow(EngineProfileError);
    expect(() => engineCommand({ ...base, profile: "embedded", modelPath: "/m", args: {} })).toThrow(/embedded/);
    expect(() => engineCommand({ ...base, concurrency: 0, profile: "llamacpp", modelPath: "/m", args: {} })).toThrow(/concurrency/);
  });
});

describe("checkProfileArgs", () => {
  it("accepts every flag of a typical spec", () => {
    expect(checkProfileArgs("vllm", { "tensor-parallel-size": 2, "enable-prefix-caching": true, quantization: "awq", "max-model-len": 8192 })).toEqual([]);
    expect(checkProfileArgs("llamacpp", { "n-gpu-layers": 99, "n-gpu-layers-x": 1 }).map((p) => p.key)).toEqual(["n-gpu-layers-x"]);
  });

  it("reports flags the profile sets itself, naming them", () => {
    expect(checkProfileArgs("vllm", { port: 8000, host: "0.0.0.0", "served-model-name": "x", model: "m" })).toEqual([
      { key: "port", message: "--port is set by Hearth for every vllm engine" },
      { key: "host", message: "--host is set by Hearth for every vllm engine" },
      { key: "served-model-name", message: "--served-model-name is set by Hearth for every vllm engine" },
      { key: "model", message: "--model is set by Hearth for every vllm engine" },
    ]);
    expect(checkProfileArgs("sglang", { "model-path": "/x" })[0]?.key).toBe("model-path");
    expect(checkProfileArgs("trtllm", { served_model_name: "x" })[0]?.message).toMatch(/set by Hearth/);
    expect(checkProfileArgs("llamacpp", { alias: "x" })[0]?.message).toMatch(/set by Hearth/);
  });

  it("reports unknown flags, including another engine's spelling, and flags written with dashes", () => {
    const [unknown] = checkProfileArgs("sglang", { "tensor-parallel-size": 2 });
    expect(unknown?.key).toBe("tensor-parallel-size");
    expect(unknown?.message).toMatch(/^--tensor-parallel-size is not a flag Hearth passes to sglang; allowed: .*tp-size/);
    expect(checkProfileArgs("trtllm", { "tp-size": 2 })[0]?.message).toMatch(/not a flag/);
    expect(checkProfileArgs("vllm", { "--dtype": "half" })).toEqual([{ key: "--dtype", message: 'write flags without the leading dashes ("dtype")' }]);
    // Keys as JSON.parse gives them: Object.prototype's names are not flags.
    const inherited = JSON.parse('{"constructor": "x", "toString": true, "__proto__": 1}') as Record<string, string | number | boolean>;
    expect(checkProfileArgs("llamacpp", inherited).map((p) => p.key)).toEqual(["constructor", "toString", "__proto__"]);
  });

  it("reports wrong types and out-of-range values", () => {
    expect(checkProfileArgs("vllm", {
      "tensor-parallel-size": "2",
      "max-model-len": 1.5,
      "gpu-memory-utilization": 1.2,
      "enable-prefix-caching": "yes",
      dtype: "fp64",
      quantization: "",
    })).toEqual([
      { key: "tensor-parallel-size", message: "--tensor-parallel-size must be an integer" },
      { key: "max-model-len", message: "--max-model-len must be an integer" },
      { key: "gpu-memory-utilization", message: "--gpu-memory-utilization must be at most 1" },
      { key: "enable-prefix-caching", message: "--enable-prefix-caching must be true or false" },
      { key: "dtype", message: "--dtype must be one of auto, half, float16, bfloat16, float, float32" },
      { key: "quantization", message: "--quantization must be a non-empty string" },
    ]);
    expect(checkProfileArgs("sglang", { "mem-fraction-static": 0 })[0]?.message).toBe("--mem-fraction-static must be greater than 0");
    expect(checkProfileArgs("vllm", { "tensor-parallel-size": 0 })[0]?.message).toBe("--tensor-parallel-size must be at least 1");
    expect(checkProfileArgs("llamacpp", { "n-gpu-layers": "most" })[0]?.message).toBe("--n-gpu-layers must be an integer or one of auto, all");
    expect(checkProfileArgs("embedded", { parallel: 257 })[0]?.message).toBe("--parallel must be at most 256");
    expect(checkProfileArgs("llamacpp", { "chat-template": "--jinja" })[0]?.message).toMatch(/must not start with '-'/);
  });

  it("every profile documents each flag and adds exactly one concurrency flag that a user may also set", () => {
    for (const profile of ENGINE_PROFILES) {
      const flags = profileFlags(profile);
      for (const [key, spec] of Object.entries(flags)) expect(spec.doc.length, `${profile} ${key}`).toBeGreaterThan(0);
      // The concurrency flag is the one engineCommand adds when args are empty.
      const cmd = engineCommand({ ...base, profile, modelPath: "/m", args: {}, embedded: { node: "node", execArgv: [], entry: "e.ts" } });
      const added = cmd.args.filter((a) => a.startsWith("--") && !["--host", "--port", "--model", "--model-path", "--served-model-name", "--served_model_name", "--alias", "--ctx-size"].includes(a));
      expect(added, profile).toHaveLength(1);
      expect(Object.keys(flags), profile).toContain(added[0]?.slice(2));
    }
  });
});
