import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { freePort, waitFor } from "./services.ts";

const root = fileURLToPath(new URL("../..", import.meta.url));
const wranglerBin = join(root, "node_modules/wrangler/bin/wrangler.js");
const workerdBin = join(root, "node_modules/workerd/bin/workerd");

/** Why `wrangler dev` cannot run here (no wrangler, no workerd binary for this platform), or undefined when it can. */
export function wranglerDevUnavailable(): string | undefined {
  if (!existsSync(wranglerBin)) return `wrangler is not installed (${wranglerBin})`;
  if (!existsSync(workerdBin)) return `no workerd binary for ${process.platform}-${process.arch} (${workerdBin})`;
  const v = spawnSync(workerdBin, ["--version"], { encoding: "utf8", timeout: 20_000 });
  if (v.status !== 0) return `workerd does not run on this machine: ${(v.stderr || v.error?.message || `exit ${v.status}`).trim()}`;
  return undefined;
}

export interface WranglerDev {
  url: string;
  /** Everything wrangler and workerd printed so far. */
  output(): string;
  close(): Promise<void>;
}

/**
 * `wrangler dev --local` of the repository's wrangler.toml on a free loopback port, with `vars`
 * overriding its [vars]: workerd on this machine, no login, no telemetry, and no fetch of the
 * `Request.cf` object from Cloudflare (CLOUDFLARE_CF_FETCH_ENABLED=false). Resolves once it answers.
 */
export async function startWranglerDev(vars: Record<string, string>, readyTimeoutMs = 120_000): Promise<WranglerDev> {
  const port = await freePort();
  const home = await mkdtemp(join(tmpdir(), "hearth-wrangler-"));
  const args = [wranglerBin, "dev", "--local", "--ip", "127.0.0.1", "--port", String(port), "--inspector-port", "0", "--show-interactive-dev-session=false", "--persist-to", join(home, "state")];
  for (const [k, v] of Object.entries(vars)) args.push("--var", `${k}:${v}`);
  let out = "";
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd: root,
    // Its own process group: workerd is wrangler's child and goes with it.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
    env: {
      PATH: process.env.PATH,
      HOME: home,
      XDG_CONFIG_HOME: join(home, "config"),
      WRANGLER_SEND_METRICS: "false",
      CLOUDFLARE_CF_FETCH_ENABLED: "false",
      WRANGLER_LOG: "info",
      CI: "1",
    },
  });
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  let exited = false;
  child.once("exit", () => (exited = true));
  const close = async () => {
    if (!exited && child.pid !== undefined) {
      const gone = new Promise((r) => child.once("exit", r));
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {}
      const killer = setTimeout(() => {
        try {
          process.kill(-child.pid!, "SIGKILL");
        } catch {}
      }, 5000);
      await gone;
      clearTimeout(killer);
    }
    await rm(home, { recursive: true, force: true });
  };
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(async () => {
      if (exited) throw new Error("exited");
      return (await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(5000) })).ok;
    }, readyTimeoutMs, 250);
  } catch (err) {
    await close();
    throw new Error(`wrangler dev did not start: ${String(err)}\n${out}`);
  }
  return { url, output: () => out, close };
}
