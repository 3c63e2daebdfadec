/**
 * The embedded engine server (worker/engines/embedded/main.ts) with its flags taken from
 * `BENCH_ENGINE_ARGS`, a JSON array of strings: `startChild` runs an entry file without arguments,
 * and the engine is configured by flags only. The server itself is unchanged: this file only sets
 * `process.argv` before loading it.
 */
const raw = process.env.BENCH_ENGINE_ARGS ?? "[]";
const args: unknown = JSON.parse(raw);
if (!Array.isArray(args) || !args.every((a) => typeof a === "string")) throw new TypeError(`BENCH_ENGINE_ARGS must be a JSON array of strings, got ${raw}`);
process.argv.splice(2, process.argv.length, ...args);
await import("../../worker/engines/embedded/main.ts");
