import type { EngineProfile } from "./engine-profiles.ts";

/**
 * The environment of an engine process, built from nothing: an engine runs whatever a model
 * brings (remote code, a tenant's flags), so it gets the names its profile needs to find its
 * binaries, libraries, GPUs and caches, and never the worker's own (REDIS_URL, DATABASE_URL,
 * HEARTH_* secrets, AWS_*, HF_TOKEN…). Pure: the caller passes the worker's environment in.
 */

/** Names every engine gets from the worker's environment when set there. */
const COMMON = ["PATH", "LANG", "LANGUAGE", "TZ", "LD_LIBRARY_PATH", "OMP_NUM_THREADS"] as const;
/** Prefixes every engine gets (locale settings). */
const COMMON_PREFIXES = ["LC_"] as const;

/**
 * GPU engines: which devices and driver capabilities they see (CUDA_VISIBLE_DEVICES, CUDA_HOME,
 * NVIDIA_VISIBLE_DEVICES…), NCCL's transport settings for tensor parallelism, and where the
 * operator keeps a shared Hugging Face cache. Tokens (HF_TOKEN) are not among them: the model is
 * already local and the profile sets HF_HUB_OFFLINE.
 */
const GPU_PREFIXES = ["CUDA_", "NVIDIA_", "NCCL_"] as const;
const HF_CACHE = ["HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE"] as const;
/** Python engines find their packages through these in images that set them. */
const PYTHON = ["PYTHONPATH", "PYTHONUNBUFFERED", "VIRTUAL_ENV"] as const;

interface ProfileAllowList {
  names: readonly string[];
  prefixes: readonly string[];
}

// The embedded engine (node + tsx + node-llama-cpp's prebuilt CPU binary) needs nothing beyond
// PATH, HOME and TMPDIR: checked by running it as `nobody` with only those.
/** What an engine process is: an OpenAI-serving profile, or a tenant's RunPod worker (`runpod` engines). */
export type EngineProcessKind = EngineProfile | "runpod";

const ALLOWED: Readonly<Record<EngineProcessKind, ProfileAllowList>> = {
  vllm: { names: [...COMMON, ...HF_CACHE, ...PYTHON], prefixes: [...COMMON_PREFIXES, ...GPU_PREFIXES] },
  sglang: { names: [...COMMON, ...HF_CACHE, ...PYTHON], prefixes: [...COMMON_PREFIXES, ...GPU_PREFIXES] },
  trtllm: { names: [...COMMON, ...HF_CACHE, ...PYTHON], prefixes: [...COMMON_PREFIXES, ...GPU_PREFIXES] },
  llamacpp: { names: [...COMMON], prefixes: [...COMMON_PREFIXES, ...GPU_PREFIXES] },
  // HEARTH_LOG_LEVEL: the embedded engine is Hearth's own process and logs as the others do.
  embedded: { names: [...COMMON, "HEARTH_LOG_LEVEL"], prefixes: [...COMMON_PREFIXES] },
  // A RunPod worker image is a Python program like vLLM's: its packages, GPUs and caches, nothing of Hearth's.
  runpod: { names: [...COMMON, ...HF_CACHE, ...PYTHON], prefixes: [...COMMON_PREFIXES, ...GPU_PREFIXES] },
};

/** Names the platform sets itself: neither the worker's environment nor an endpoint may change them. */
const PLATFORM_OWNED = new Set(["HOME", "TMPDIR", "PORT"]);

export interface EngineEnvironmentInput {
  profile: EngineProcessKind;
  /** The worker's environment (`process.env`); only allow-listed names are taken from it. */
  inherited: Readonly<Record<string, string | undefined>>;
  /**
   * A directory of this engine's own, empty and writable by the user it runs as: its HOME and
   * TMPDIR, so caches (~/.cache, torch/triton, tsx) are neither the operator's nor another engine's.
   */
  home: string;
  /** Loopback port the engine serves on (also passed as a flag); set as PORT for engines that read it. None for a RunPod worker, which serves nothing. */
  port?: number;
  /** What the profile sets (`EngineCommandLine.env`, e.g. HF_HUB_OFFLINE=1); wins over the endpoint's. */
  profileEnv?: Readonly<Record<string, string>>;
  /**
   * Variables the endpoint adds for its engine (its `engine.env`, secrets opened). Added over the
   * allow-listed ones; cannot change HOME, TMPDIR, PORT or what the profile sets.
   */
  endpointEnv?: Readonly<Record<string, string>>;
}

/** The complete environment to spawn an engine process with. */
export function engineEnvironment(input: EngineEnvironmentInput): Record<string, string> {
  const allowed = ALLOWED[input.profile];
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(input.inherited)) {
    if (value === undefined || PLATFORM_OWNED.has(name)) continue;
    if (allowed.names.includes(name) || allowed.prefixes.some((p) => name.startsWith(p))) env[name] = value;
  }
  for (const [name, value] of Object.entries(input.endpointEnv ?? {})) {
    if (!PLATFORM_OWNED.has(name)) env[name] = value;
  }
  Object.assign(env, input.profileEnv ?? {});
  env.HOME = input.home;
  env.TMPDIR = input.home;
  if (input.port !== undefined) env.PORT = String(input.port);
  return env;
}
