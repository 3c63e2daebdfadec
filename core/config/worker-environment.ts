import { WORKER_CONFIG_NAMES } from "./process-configs.ts";

/**
 * What a worker process inherits from the process that starts it (the scheduler), by allow-list:
 * a worker runs a tenant's handler module and supervises a tenant's engine, so it gets what it needs
 * to run node and reach its GPUs, and the worker settings it reads, never the platform's secrets
 * (DATABASE_URL, HEARTH_ADMIN_TOKEN, HEARTH_SECRETS_KEY, AWS_*, provider credentials). Pure.
 */

/** Running node and tsx, locale, temp files, TLS trust, proxies for model downloads, the trace collector. */
const PROCESS = [
  "PATH",
  "HOME",
  "TMPDIR",
  "LANG",
  "LANGUAGE",
  "TZ",
  "NODE_OPTIONS",
  "NODE_ENV",
  "NODE_EXTRA_CA_CERTS",
  "SSL_CERT_FILE",
  "SSL_CERT_DIR",
  "HTTP_PROXY",
  "HTTPS_PROXY",
  "NO_PROXY",
  "http_proxy",
  "https_proxy",
  "no_proxy",
  // Where job spans go. Not OTEL_EXPORTER_OTLP_HEADERS: the collector's credentials would be readable by the tenant's handler.
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
] as const;

/**
 * What engines may need from the worker's environment (see core/engine/engine-environment.ts, which
 * narrows it again per profile): devices, libraries, shared caches.
 */
const ENGINE = ["LD_LIBRARY_PATH", "OMP_NUM_THREADS", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "PYTHONPATH", "PYTHONUNBUFFERED", "VIRTUAL_ENV"] as const;
const PREFIXES = ["LC_", "CUDA_", "NVIDIA_", "NCCL_"] as const;

/** Credentials among the worker's own config names: the provider sets REDIS_URL per worker, and workers have no database. */
const NEVER = new Set(["REDIS_URL", "DATABASE_URL"]);

const ALLOWED = new Set<string>([...PROCESS, ...ENGINE, ...WORKER_CONFIG_NAMES.filter((n) => !NEVER.has(n))]);

/**
 * The allow-listed part of `inherited`. The provider adds the worker's own settings (REDIS_URL with
 * the worker's credential, endpoint, engine…) and the spec's `env` (per endpoint) on top.
 */
export function workerEnvironment(inherited: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(inherited)) {
    if (value === undefined || NEVER.has(name)) continue;
    if (ALLOWED.has(name) || PREFIXES.some((p) => name.startsWith(p))) env[name] = value;
  }
  return env;
}
