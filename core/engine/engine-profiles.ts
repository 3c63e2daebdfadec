/**
 * How each OpenAI-serving engine is launched: a table of the flags a user may pass per profile and
 * a pure function from a launch description to argv. No I/O; the worker's supervisor runs the
 * result and the API validates `args` with `checkProfileArgs` when an endpoint is created.
 *
 * `args` keys are the engine's own long flag names without the leading dashes, spelled as the
 * engine documents them (kebab-case for vLLM, SGLang and llama.cpp, snake_case for trtllm-serve),
 * so a user can copy a flag from the engine's docs. Only listed flags are accepted: an unknown
 * flag would otherwise surface as an engine crash loop on a GPU host, long after the request that
 * caused it was answered 200.
 */

export const ENGINE_PROFILES = ["vllm", "sglang", "trtllm", "llamacpp", "embedded"] as const;
export type EngineProfile = (typeof ENGINE_PROFILES)[number];
export type ProfileArgValue = string | number | boolean;
export type ProfileArgs = Record<string, ProfileArgValue>;

/**
 * Why a flag needs the admin's `remoteCode` grant: it runs code that comes with the model
 * (`code`), or makes the engine read a path the tenant names (`paths`).
 */
export type FlagRisk = "code" | "paths";

/** One flag a user may set. Booleans become a bare flag when true; when false they are left out, or `negation` is passed where the engine has one (its default is on). */
export type FlagSpec = { doc: string; risk?: FlagRisk } & (
  | { type: "int"; min?: number; max?: number; keywords?: readonly string[] }
  | { type: "number"; min?: number; max?: number; exclusiveMin?: boolean }
  | { type: "string" }
  | { type: "bool"; negation?: string }
  | { type: "enum"; values: readonly string[] }
);

interface ProfileTable {
  flags: Readonly<Record<string, FlagSpec>>;
  /** Flags the profile sets itself (model, bind address, served name): a user value would fight it. */
  reserved: readonly string[];
  /** The engine's "requests batched at once" flag, set from `concurrency` unless the user set it. */
  concurrencyFlag: string;
  /** Directories the engine fills with compiled artifacts at start, snapshotted to S3 (see `EngineCacheDir`). */
  cacheDirs: readonly EngineCacheDir[];
}

/**
 * Where an engine keeps one kind of compile artifact, as the engine itself decides it: the first of
 * `locations` whose variable is set (and absolute) in the engine's environment, joined with `path`.
 * HOME and TMPDIR are always set (a fresh directory per engine, see engine-environment.ts), so a
 * list ending with one of them always resolves; one without them resolves only when the endpoint
 * sets the variable. `{user}` in a path is the engine user's name. Pure data: resolved by
 * core/weights/engine-cache-paths.ts, archived and restored by worker/engine-cache.
 */
export interface EngineCacheDir {
  /** Names the directory inside a snapshot (its top-level folder), so a snapshot does not depend on where HOME was. */
  id: string;
  locations: readonly { variable: string; path?: string }[];
}

// vLLM's torch.compile artifacts: "~/.cache/vllm/torch_compile_cache/<hash>/rank_0_0", meant to be
// copied between deployments (https://docs.vllm.ai/en/v0.11.2/design/torch_compile/), under
// VLLM_CACHE_ROOT, default ~/.cache/vllm (https://docs.rbln.ai/latest/software/model_serving/vllm_support/features/compile-cache.html;
// vllm/envs.py puts it under XDG_CACHE_HOME when that is set). CUDA graphs are captured in GPU memory
// at every start and leave nothing on disk to keep.
const VLLM_CACHE: EngineCacheDir = { id: "vllm", locations: [{ variable: "VLLM_CACHE_ROOT" }, { variable: "XDG_CACHE_HOME", path: "vllm" }, { variable: "HOME", path: ".cache/vllm" }] };
// Triton's compiled kernels: TRITON_CACHE_DIR, else <TRITON_HOME or ~>/.triton/cache
// (deepspeedai/DeepSpeed PR #7907 "The default directory for Triton is only ~/.triton if $TRITON_HOME is not set").
const TRITON_CACHE: EngineCacheDir = { id: "triton", locations: [{ variable: "TRITON_CACHE_DIR" }, { variable: "TRITON_HOME", path: ".triton/cache" }, { variable: "HOME", path: ".triton/cache" }] };
// FlashInfer's JIT-compiled kernels: <FLASHINFER_WORKSPACE_BASE, default $HOME>/.cache/flashinfer/
// (https://rocm.docs.amd.com/projects/flashinfer/en/latest/reference/environment-variables.html).
const FLASHINFER_CACHE: EngineCacheDir = { id: "flashinfer", locations: [{ variable: "FLASHINFER_WORKSPACE_BASE", path: ".cache/flashinfer" }, { variable: "HOME", path: ".cache/flashinfer" }] };
// SGLang's torch.compile cache is TorchInductor's: TORCHINDUCTOR_CACHE_DIR, shipped between machines
// in https://docs.sglang.io/references/torch_compile_cache.html; unset, Inductor uses
// <tempfile.gettempdir()>/torchinductor_<user> (torch/_inductor codecache), and TMPDIR is the engine's own.
const INDUCTOR_CACHE: EngineCacheDir = { id: "torchinductor", locations: [{ variable: "TORCHINDUCTOR_CACHE_DIR" }, { variable: "TMPDIR", path: "torchinductor_{user}" }] };
// TensorRT-LLM's LLM API keeps built engines in TLLM_LLMAPI_BUILD_CACHE_ROOT when TLLM_LLMAPI_BUILD_CACHE=1
// (tensorrt_llm/llmapi/build_cache.py, https://nvidia.github.io/TensorRT-LLM/1.3.0rc7/_modules/tensorrt_llm/llmapi/build_cache.html).
// Its default, /tmp/.cache/tensorrt_llm/llmapi/, is a fixed path every engine on the host shares (it
// ignores TMPDIR): snapshotting it could hand one tenant another's engines, so only a root the
// endpoint sets is kept.
const TRTLLM_BUILD_CACHE: EngineCacheDir = { id: "trtllm-build", locations: [{ variable: "TLLM_LLMAPI_BUILD_CACHE_ROOT" }] };

const fraction = (doc: string): FlagSpec => ({ type: "number", min: 0, max: 1, exclusiveMin: true, doc });
const positive = (doc: string): FlagSpec => ({ type: "int", min: 1, doc });

// vLLM `vllm serve <model>`. Checked against https://docs.vllm.ai/en/v0.10.2/configuration/engine_args.html
// and the `vllm serve` usage in https://docs.vllm.ai/en/v0.8.5/serving/engine_args.html; prefix caching
// is on by default in vLLM V1, so `false` must be said with `--no-enable-prefix-caching` (listed in
// https://docs.cloudera.com/machine-learning/latest/release-notes-privatecloud/topics/ml-caii-supported-vllm-command-line-arguments-sp4.html).
const VLLM: ProfileTable = {
  reserved: ["model", "host", "port", "served-model-name"],
  concurrencyFlag: "max-num-seqs",
  cacheDirs: [VLLM_CACHE, TRITON_CACHE, FLASHINFER_CACHE],
  flags: {
    "tensor-parallel-size": positive("GPUs each layer is sharded across (tensor parallelism)."),
    "pipeline-parallel-size": positive("Pipeline stages the layers are split into."),
    "max-model-len": positive("Context length in tokens (prompt + output); default from the model config."),
    "gpu-memory-utilization": fraction("Fraction of GPU memory for weights, activations and KV cache (vLLM default 0.9)."),
    "enable-prefix-caching": { type: "bool", negation: "--no-enable-prefix-caching", doc: "Reuse KV cache across requests sharing a prefix." },
    quantization: { type: "string", doc: "Quantization method (awq, gptq, fp8, …); default from the checkpoint." },
    dtype: { type: "enum", values: ["auto", "half", "float16", "bfloat16", "float", "float32"], doc: "Weight and activation dtype." },
    "kv-cache-dtype": { type: "string", doc: "KV cache dtype (auto, fp8, fp8_e4m3, fp8_e5m2, …)." },
    "max-num-seqs": positive("Sequences batched at once; Hearth sets it to the worker's concurrency unless given."),
    "max-num-batched-tokens": positive("Tokens processed per scheduler step."),
    "trust-remote-code": { type: "bool", risk: "code", doc: "Run modelling code shipped with the checkpoint (needs the remoteCode grant)." },
    "enforce-eager": { type: "bool", doc: "Skip CUDA graph capture: less memory, slower decode." },
    "enable-sleep-mode": { type: "bool", doc: "Sleep mode (POST /sleep, /wake_up): a paused worker's engine releases GPU memory first (snapshot pool)." },
    seed: { type: "int", doc: "Random seed." },
    "load-format": { type: "string", doc: "Weight format (auto, safetensors, pt, gguf, …)." },
    "max-logprobs": { type: "int", min: 0, doc: "Most logprobs a request may ask for." },
    "cpu-offload-gb": { type: "number", min: 0, doc: "GiB of weights per GPU kept in CPU memory." },
    "disable-log-stats": { type: "bool", doc: "Do not log throughput statistics." },
    "enable-auto-tool-choice": { type: "bool", doc: "Let the model decide to call tools (needs tool-call-parser)." },
    "tool-call-parser": { type: "string", doc: "Parser turning model output into tool calls (hermes, llama3_json, …)." },
    "reasoning-parser": { type: "string", doc: "Parser extracting reasoning content (deepseek_r1, …)." },
    // Embeddings (/v1/embeddings): vLLM picks the pooling runner itself for embedding architectures;
    // these force it (https://docs.vllm.ai/en/v0.10.1.1/models/pooling_models.html).
    runner: { type: "enum", values: ["auto", "generate", "pooling"], doc: "Model runner; pooling serves /v1/embeddings (auto detects embedding models)." },
    convert: { type: "enum", values: ["auto", "none", "embed", "classify", "reward"], doc: "Adapt a generative model for pooling (embed: serve it on /v1/embeddings)." },
  },
};

// SGLang `python3 -m sglang.launch_server`. Checked against sgl-project/sglang
// python/sglang/srt/server_args.py (ServerArgs fields; flag = field name in kebab-case) and
// https://docs.sglang.io/advanced_features/server_arguments.html; `/health` is listed in
// https://docs.sglang.io/basic_usage/native_api.html.
const SGLANG: ProfileTable = {
  reserved: ["model-path", "model", "host", "port", "served-model-name"],
  concurrencyFlag: "max-running-requests",
  // SGLang compiles with Triton and FlashInfer too (its default attention backend on CUDA).
  cacheDirs: [INDUCTOR_CACHE, TRITON_CACHE, FLASHINFER_CACHE],
  flags: {
    "tp-size": positive("Tensor parallelism size."),
    "dp-size": positive("Data parallelism size (model replicas)."),
    "pp-size": positive("Pipeline parallelism size."),
    "context-length": positive("Context length in tokens; default from the model's config.json."),
    "mem-fraction-static": fraction("Fraction of GPU memory for weights and the KV cache pool; lower it on OOM."),
    "max-running-requests": positive("Requests running at once; Hearth sets it to the worker's concurrency unless given."),
    "max-total-tokens": positive("Tokens in the KV memory pool (normally derived from mem-fraction-static)."),
    "chunked-prefill-size": { type: "int", min: -1, doc: "Tokens per chunked-prefill chunk; -1 disables chunking." },
    "max-prefill-tokens": positive("Tokens in one prefill batch."),
    "disable-radix-cache": { type: "bool", doc: "Disable RadixAttention prefix caching." },
    "disable-overlap-schedule": { type: "bool", doc: "Do not overlap the CPU scheduler with GPU work." },
    "enable-mixed-chunk": { type: "bool", doc: "Mix prefill and decode in one batch when chunking prefill." },
    quantization: { type: "string", doc: "Quantization method (awq, fp8, gptq, …)." },
    dtype: { type: "enum", values: ["auto", "half", "float16", "bfloat16", "float", "float32"], doc: "Weight and activation dtype." },
    "kv-cache-dtype": { type: "string", doc: "KV cache dtype (auto, fp8_e5m2, fp8_e4m3, bf16, …)." },
    "trust-remote-code": { type: "bool", risk: "code", doc: "Run modelling code shipped with the checkpoint (needs the remoteCode grant)." },
    "schedule-policy": { type: "string", doc: "Request scheduling policy (fcfs, lpm, …)." },
    "random-seed": { type: "int", doc: "Random seed." },
    "load-format": { type: "string", doc: "Weight format (auto, safetensors, gguf, …)." },
    // SGLang also takes a file path here: a tenant could make it read any file the engine can.
    "chat-template": { type: "string", risk: "paths", doc: "Built-in chat template name, or a template file's path (needs the remoteCode grant)." },
    "reasoning-parser": { type: "string", doc: "Parser extracting reasoning content." },
    // https://docs.sglang.io/supported_models/embedding_models.html: embedding models need it to serve /v1/embeddings.
    "is-embedding": { type: "bool", doc: "Serve the model as an embedding model (/v1/embeddings)." },
  },
};

// TensorRT-LLM `trtllm-serve <model>` (click options, snake_case). Checked against NVIDIA/TensorRT-LLM
// tensorrt_llm/commands/serve.py (`--tp_size` is an alias of `--tensor_parallel_size`,
// `--kv_cache_free_gpu_memory_fraction` of `--free_gpu_memory_fraction`; both spellings exist in every
// version seen) and https://nvidia.github.io/TensorRT-LLM/0.18.2/commands/trtllm-serve.html. `/health` is
// listed in https://nvidia.github.io/TensorRT-LLM/commands/trtllm-serve/trtllm-serve.html.
// `--served_model_name` arrived in v1.3.0rc7 (release notes: "Add --served-model-name option to serve
// command (#11711)"); the option is spelled with underscores like the others
// (https://www.mintlify.com/NVIDIA/TensorRT-LLM/cli/trtllm-serve). Older trtllm-serve refuses it at start.
const TRTLLM: ProfileTable = {
  reserved: ["host", "port", "served_model_name"],
  concurrencyFlag: "max_batch_size",
  // The PyTorch backend (trtllm-serve's default) JIT-compiles with Triton and FlashInfer as well.
  cacheDirs: [TRTLLM_BUILD_CACHE, TRITON_CACHE, FLASHINFER_CACHE],
  flags: {
    backend: { type: "enum", values: ["pytorch", "tensorrt", "_autodeploy"], doc: "Runtime backend (default pytorch)." },
    tp_size: positive("Tensor parallelism size."),
    pp_size: positive("Pipeline parallelism size."),
    ep_size: positive("Expert parallelism size (MoE)."),
    gpus_per_node: positive("GPUs per node; detected when unset."),
    max_batch_size: positive("Requests the engine schedules at once; Hearth sets it to the worker's concurrency unless given."),
    max_num_tokens: positive("Batched input tokens per iteration."),
    max_seq_len: positive("Prompt + output tokens of one request; default from the model config."),
    max_beam_width: positive("Beams for beam search."),
    kv_cache_free_gpu_memory_fraction: fraction("Fraction of free GPU memory (after weights) for the KV cache."),
    num_postprocess_workers: { type: "int", min: 0, doc: "Workers turning raw output into OpenAI responses." },
    trust_remote_code: { type: "bool", risk: "code", doc: "Run modelling code shipped with the checkpoint (needs the remoteCode grant)." },
    enable_chunked_prefill: { type: "bool", doc: "Split long prefills into chunks." },
    reasoning_parser: { type: "string", doc: "Parser extracting reasoning content." },
  },
};

const LLAMA_CACHE_TYPES = ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"] as const;

// llama.cpp `llama-server`. Checked against ggml-org/llama.cpp tools/server/README.md (generated from
// the argument parser); `/health` is registered without API-key check (ggml-org/llama.cpp PR #16461).
const LLAMACPP: ProfileTable = {
  reserved: ["model", "host", "port", "alias"],
  concurrencyFlag: "parallel",
  // llama.cpp loads its kernels prebuilt: nothing is compiled at start.
  cacheDirs: [],
  flags: {
    "ctx-size": { type: "int", min: 0, doc: "Context size in tokens shared by the slots (0 = from the model)." },
    "n-gpu-layers": { type: "int", min: 0, keywords: ["auto", "all"], doc: "Layers kept in VRAM: a number, auto or all." },
    parallel: positive("Server slots (requests decoded at once); Hearth sets it to the worker's concurrency unless given."),
    threads: positive("CPU threads for generation."),
    "threads-batch": positive("CPU threads for prompt processing."),
    "flash-attn": { type: "enum", values: ["on", "off", "auto"], doc: "Flash Attention use." },
    "batch-size": positive("Logical maximum batch size."),
    "ubatch-size": positive("Physical maximum batch size."),
    "cache-type-k": { type: "enum", values: LLAMA_CACHE_TYPES, doc: "KV cache dtype for K." },
    "cache-type-v": { type: "enum", values: LLAMA_CACHE_TYPES, doc: "KV cache dtype for V." },
    "cont-batching": { type: "bool", negation: "--no-cont-batching", doc: "Continuous batching (default on)." },
    "cache-prompt": { type: "bool", negation: "--no-cache-prompt", doc: "Prompt caching (default on)." },
    jinja: { type: "bool", negation: "--no-jinja", doc: "Jinja chat templates (default on in recent builds)." },
    "chat-template": { type: "string", doc: "Chat template: a built-in name or a Jinja template." },
    "reasoning-format": { type: "string", doc: "How thoughts are returned (none, deepseek, …)." },
    "split-mode": { type: "enum", values: ["none", "layer", "row", "tensor"], doc: "How the model is split across GPUs." },
    "tensor-split": { type: "string", doc: "Proportions per GPU, comma-separated (e.g. 3,1)." },
    "main-gpu": { type: "int", min: 0, doc: "GPU for the model (split-mode none) or intermediate results." },
    "cache-reuse": { type: "int", min: 0, doc: "Minimum chunk reused from the cache via KV shifting." },
    seed: { type: "int", doc: "RNG seed (-1 = random)." },
    embeddings: { type: "bool", doc: "Serve /v1/embeddings (recent builds then serve embeddings only: dedicated embedding models)." },
    // A generative GGUF carries no pooling type, and llama-server's /v1/embeddings refuses `none`.
    pooling: { type: "enum", values: ["none", "mean", "cls", "last", "rank"], doc: "How token vectors become one embedding (default: the model's); last for decoder models." },
    metrics: { type: "bool", doc: "Expose the Prometheus /metrics endpoint." },
  },
};

// Hearth's own node-llama-cpp server (worker/engines/embedded/main.ts): its CLI requires --ctx-size,
// and its bounds are repeated here so a bad value is refused when the endpoint is created.
const EMBEDDED: ProfileTable = {
  reserved: ["model", "host", "port", "served-model-name"],
  concurrencyFlag: "parallel",
  // node-llama-cpp's prebuilt CPU binary: nothing is compiled at start.
  cacheDirs: [],
  flags: {
    "ctx-size": { type: "int", min: 1, max: 1 << 20, doc: "Context per request in tokens; default 2048." },
    threads: { type: "int", min: 1, max: 1024, doc: "CPU threads; default: half the machine's cores." },
    parallel: { type: "int", min: 1, max: 256, doc: "Sequences decoded at once; Hearth sets it to the worker's concurrency unless given." },
  },
};

const TABLES: Readonly<Record<EngineProfile, ProfileTable>> = { vllm: VLLM, sglang: SGLANG, trtllm: TRTLLM, llamacpp: LLAMACPP, embedded: EMBEDDED };

/** The embedded server's context per request when the endpoint does not set `ctx-size`: enough for chat with small GGUF models on CPU. */
export const EMBEDDED_DEFAULT_CTX_SIZE = 2048;

/**
 * The flags in `args` that need the `remoteCode` grant, with why. A boolean set to false asks for
 * nothing and is not listed.
 */
export function riskyArgs(profile: EngineProfile, args: ProfileArgs): { key: string; risk: FlagRisk }[] {
  const table = TABLES[profile];
  const out: { key: string; risk: FlagRisk }[] = [];
  for (const [key, value] of Object.entries(args)) {
    const spec = Object.hasOwn(table.flags, key) ? table.flags[key] : undefined;
    if (spec?.risk !== undefined && value !== false) out.push({ key, risk: spec.risk });
  }
  return out;
}

/** The directories `profile`'s engine compiles into at start, kept as engine cache snapshots; empty for engines that compile nothing. */
export function engineCacheDirs(profile: EngineProfile): readonly EngineCacheDir[] {
  return TABLES[profile].cacheDirs;
}

/** The flags a user may set for `profile`, with their types and one-line docs (for API errors and docs). */
export function profileFlags(profile: EngineProfile): Readonly<Record<string, FlagSpec>> {
  return TABLES[profile].flags;
}

/** Problems with `args` for `profile` (unknown flag, wrong type, a flag the profile sets itself); empty when fine. */
export function checkProfileArgs(profile: EngineProfile, args: ProfileArgs): { key: string; message: string }[] {
  const table = TABLES[profile];
  const problems: { key: string; message: string }[] = [];
  for (const [key, value] of Object.entries(args)) {
    if (key.startsWith("-")) {
      problems.push({ key, message: `write flags without the leading dashes ("${key.replace(/^-+/, "")}")` });
      continue;
    }
    if (table.reserved.includes(key)) {
      problems.push({ key, message: `--${key} is set by Hearth for every ${profile} engine` });
      continue;
    }
    // Own keys only: "constructor" or "toString" must not find Object.prototype's members.
    const spec = Object.hasOwn(table.flags, key) ? table.flags[key] : undefined;
    if (spec === undefined) {
      problems.push({ key, message: `--${key} is not a flag Hearth passes to ${profile}; allowed: ${Object.keys(table.flags).join(", ")}` });
      continue;
    }
    const wrong = checkValue(spec, value);
    if (wrong !== undefined) problems.push({ key, message: `--${key} ${wrong}` });
  }
  return problems;
}

function checkValue(spec: FlagSpec, value: ProfileArgValue): string | undefined {
  switch (spec.type) {
    case "int":
      if (typeof value === "string" && spec.keywords?.includes(value)) return undefined;
      if (typeof value !== "number" || !Number.isSafeInteger(value)) {
        return `must be an integer${spec.keywords ? ` or one of ${spec.keywords.join(", ")}` : ""}`;
      }
      if (spec.min !== undefined && value < spec.min) return `must be at least ${spec.min}`;
      return spec.max !== undefined && value > spec.max ? `must be at most ${spec.max}` : undefined;
    case "number":
      if (typeof value !== "number" || !Number.isFinite(value)) return "must be a number";
      if (spec.min !== undefined && (spec.exclusiveMin ? value <= spec.min : value < spec.min)) {
        return `must be ${spec.exclusiveMin ? "greater than" : "at least"} ${spec.min}`;
      }
      return spec.max !== undefined && value > spec.max ? `must be at most ${spec.max}` : undefined;
    case "string":
      // argv elements cannot hold NUL; a value starting with "-" would be parsed as another flag.
      if (typeof value !== "string" || value.length === 0) return "must be a non-empty string";
      return value.includes("\0") || value.startsWith("-") ? "must not start with '-' or contain NUL" : undefined;
    case "bool":
      return typeof value === "boolean" ? undefined : "must be true or false";
    case "enum":
      return typeof value === "string" && spec.values.includes(value) ? undefined : `must be one of ${spec.values.join(", ")}`;
  }
}

export interface EngineLaunch {
  profile: EngineProfile;
  /** Local path (file or directory) the model was materialised to. */
  modelPath: string;
  /** Loopback port the engine listens on. */
  port: number;
  /** The name clients put in a request's `model` field. */
  servedModelName: string;
  /** Requests the worker sends at once; becomes the engine's batch limit unless `args` sets it. */
  concurrency: number;
  args: ProfileArgs;
  /** Only for "embedded": how to run node and the server's entry file. */
  embedded?: { node: string; execArgv: string[]; entry: string };
}

/** How to run an engine process: the shape `EngineSupervisor` takes. */
export interface EngineCommandLine {
  command: string;
  args: string[];
  env?: Record<string, string>;
  port: number;
  /** Answers 200 once the model is loaded (every profile's engine serves `/health`). */
  healthPath: string;
  /**
   * The engine serves vLLM's sleep mode (`POST /sleep`, `POST /wake_up`): the embedded engine always,
   * vLLM with `enable-sleep-mode`. A worker puts it to sleep before it is paused.
   */
  sleepMode?: boolean;
}

/** Raised by `engineCommand` for a launch it cannot build (bad args, missing embedded entry). */
export class EngineProfileError extends Error {
  readonly code = "ENGINE_PROFILE_INVALID";
}

// The model is already local: nothing may be fetched from the Hugging Face Hub, which hosts without
// egress cannot reach and which could serve something other than what the endpoint names.
// (HF_HUB_OFFLINE: https://huggingface.co/docs/huggingface_hub/package_reference/environment_variables)
const OFFLINE_ENV = { HF_HUB_OFFLINE: "1" };

/**
 * argv for one engine process. Fails closed (throws `EngineProfileError`) on args that
 * `checkProfileArgs` rejects: they were checked at endpoint creation, but a spec stored before a
 * table changed must not reach an engine unchecked.
 */
export function engineCommand(launch: EngineLaunch): EngineCommandLine {
  const problems = checkProfileArgs(launch.profile, launch.args);
  if (problems.length > 0) throw new EngineProfileError(`invalid ${launch.profile} args: ${problems.map((p) => p.message).join("; ")}`);
  if (!Number.isSafeInteger(launch.concurrency) || launch.concurrency < 1) throw new EngineProfileError("concurrency must be a positive integer");

  const table = TABLES[launch.profile];
  const host = "127.0.0.1";
  const port = String(launch.port);
  const name = launch.servedModelName;
  const user = userArgv(table, launch.args, launch.concurrency);
  const base = { port: launch.port, healthPath: "/health" };
  switch (launch.profile) {
    case "vllm": {
      const args = ["serve", launch.modelPath, "--host", host, "--port", port, "--served-model-name", name, ...user];
      // vLLM serves /sleep and /wake_up only in its development mode (VLLM_SERVER_DEV_MODE=1).
      if (launch.args["enable-sleep-mode"] === true) return { ...base, command: "vllm", args, env: { ...OFFLINE_ENV, VLLM_SERVER_DEV_MODE: "1" }, sleepMode: true };
      return { ...base, command: "vllm", args, env: OFFLINE_ENV };
    }
    case "sglang": {
      const args = ["-m", "sglang.launch_server", "--model-path", launch.modelPath, "--host", host, "--port", port, "--served-model-name", name, ...user];
      return { ...base, command: "python3", args, env: OFFLINE_ENV };
    }
    case "trtllm": {
      const args = [launch.modelPath, "--host", host, "--port", port, "--served_model_name", name, ...user];
      return { ...base, command: "trtllm-serve", args, env: OFFLINE_ENV };
    }
    case "llamacpp":
      return { ...base, command: "llama-server", args: ["--model", launch.modelPath, "--host", host, "--port", port, "--alias", name, ...user] };
    case "embedded": {
      if (launch.embedded === undefined) throw new EngineProfileError("the embedded profile needs `embedded` (node, execArgv, entry)");
      const { node, execArgv, entry } = launch.embedded;
      const ctx = launch.args["ctx-size"] === undefined ? ["--ctx-size", String(EMBEDDED_DEFAULT_CTX_SIZE)] : [];
      const args = [...execArgv, entry, "--model", launch.modelPath, "--host", host, "--port", port, "--served-model-name", name, ...ctx, ...user];
      return { ...base, command: node, args, sleepMode: true };
    }
  }
}

/** The user's flags plus the concurrency flag, keys sorted so the same spec gives the same argv after a JSONB round trip (which reorders keys). */
function userArgv(table: ProfileTable, args: ProfileArgs, concurrency: number): string[] {
  const all: ProfileArgs = { [table.concurrencyFlag]: concurrency, ...args };
  const argv: string[] = [];
  for (const key of Object.keys(all).sort()) {
    const value = all[key] as ProfileArgValue;
    const spec = table.flags[key];
    if (typeof value === "boolean") {
      if (value) argv.push(`--${key}`);
      else if (spec?.type === "bool" && spec.negation) argv.push(spec.negation);
    } else {
      argv.push(`--${key}`, String(value));
    }
  }
  return argv;
}
