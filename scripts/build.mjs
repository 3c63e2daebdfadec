/**
 * `npm run build`: bundles the processes that must start fast (the worker and the embedded engine)
 * into plain ESM JavaScript under `dist/`, so they start without a TypeScript loader: through tsx a
 * worker spent about 1.6 s of its 1.7 s cold start compiling its own sources (issue 10).
 *
 *   dist/worker/main.js                   the worker (LocalProvider and the images run it)
 *   dist/worker/engines/embedded/main.js  the embedded engine (the worker runs it)
 *   dist/worker/preload-main.js           the weights preloader (the scheduler runs it)
 *   dist/worker/engine-cache/snapshot-tar-main.js  engine cache archive/extract (the worker runs it as the engine's user)
 *   dist/chunks/*.js                      code loaded on demand (an engine kind, /metrics)
 *
 * Source maps are written beside each file but not enabled at run time: `--enable-source-maps`
 * cost a worker about 250 ms of its start here. To see TypeScript lines in a worker's stack traces,
 * start Hearth with NODE_OPTIONS=--enable-source-maps (workers inherit it).
 *
 * Plain JavaScript on purpose: `npm start` and `npm test` run this before anything else, and it
 * must not itself need the loader it removes. Exits 1 on a build error.
 *
 * Why esbuild: it is already here (tsx compiles with it), it bundles TypeScript without a type
 * check (tsc does that in `npm test`) in well under a second, and it splits dynamic imports into
 * chunks, so an engine kind's code is read only by workers of that kind.
 */
import { build } from "esbuild";
import { mkdir, readdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const outdir = `${root}dist`;

/**
 * Packages left out of the bundle and loaded from node_modules at run time, each because bundling
 * breaks it: they find files beside their own code (`__dirname`, `createRequire(__filename)`), which
 * in a bundle would point into dist/.
 * - node-llama-cpp: a native addon and the loader that picks its prebuilt binary.
 * - msgpackr, msgpackr-extract: BullMQ's packer and its optional native decoder, which msgpackr
 *   loads with createRequire(__filename); bundled, it silently falls back to plain JS.
 * - ioredis: reads its own package.json (the lib-ver it reports to Redis) from `__dirname`.
 * - prom-client, @opentelemetry/*: CommonJS loaded with `import()` (prom-client by the worker for
 *   its /metrics; OpenTelemetry's resources for their machine-id detectors): a bundled chunk
 *   exports such a module as `default` only, where Node's own loader also gives its named exports.
 */
const external = ["node-llama-cpp", "msgpackr", "msgpackr-extract", "ioredis", "prom-client", "@opentelemetry/*"];

/**
 * `import.meta.url` in our own sources means "this source file" (default directories, the
 * embedded engine's entry, the tiny model's vocabulary are found relative to it). In a bundle it
 * would be the output file's URL, so each use is replaced by the source file's own URL: dist/ is
 * built where it runs (`npm start`, `npm test` and the images build it in place), like node_modules.
 */
const sourceUrls = {
  name: "source-import-meta-url",
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, async (args) => {
      if (args.path.split(sep).includes("node_modules")) return undefined;
      const text = await readFile(args.path, "utf8");
      if (!text.includes("import.meta.url")) return undefined;
      return { contents: text.replaceAll("import.meta.url", JSON.stringify(pathToFileURL(args.path).href)), loader: "ts" };
    });
  },
};

/**
 * zod's index re-exports its ~60 message locales as `z.locales`, so a bundle holds them all: about
 * a third of the worker's first chunk, parsed and compiled on every cold start before the engine
 * can be spawned. Hearth uses the English messages zod configures by default and never another
 * locale, so the namespace is bundled with English alone.
 */
const englishZodOnly = {
  name: "english-zod-only",
  setup(b) {
    b.onResolve({ filter: /^\.\.\/locales\/index\.js$/ }, (args) => {
      if (!args.importer.split(sep).join("/").includes("/node_modules/zod/v4/")) return undefined;
      return { path: "zod-locales-english", namespace: "zod-locales", pluginData: { dir: join(dirname(args.importer), "..", "locales") } };
    });
    b.onLoad({ filter: /.*/, namespace: "zod-locales" }, (args) => ({
      contents: `export { default as en } from ${JSON.stringify(join(args.pluginData.dir, "en.js"))};`,
      loader: "js",
      resolveDir: args.pluginData.dir,
    }));
  },
};

/**
 * Builds into dist/ file by file (a temporary file renamed over the old one), then removes what the
 * build no longer makes: a test run or a scheduler may be running workers from dist/ meanwhile, and
 * a worker imports some chunks after its start, so dist/ is never emptied nor half-written.
 */
export async function buildDist() {
  const started = performance.now();
  const result = await build({
    absWorkingDir: root,
    entryPoints: ["worker/main.ts", "worker/engines/embedded/main.ts", "worker/preload-main.ts", "worker/engine-cache/snapshot-tar-main.ts"],
    outdir,
    outbase: ".",
    bundle: true,
    splitting: true,
    chunkNames: "chunks/[name]-[hash]",
    platform: "node",
    target: "node20",
    format: "esm",
    sourcemap: "linked",
    external,
    // Bundled CommonJS packages call require() for Node's modules: give ESM output a real one.
    banner: { js: "import { createRequire as __hearthCreateRequire } from 'node:module'; const require = __hearthCreateRequire(import.meta.url);" },
    plugins: [sourceUrls, englishZodOnly],
    logLevel: "warning",
    write: false,
  });
  const made = new Set();
  for (const file of result.outputFiles) {
    made.add(file.path);
    await mkdir(dirname(file.path), { recursive: true });
    const current = await readFile(file.path).catch(() => undefined);
    if (current?.equals(file.contents)) continue;
    const tmp = `${file.path}.${process.pid}.tmp`;
    await writeFile(tmp, file.contents);
    await rename(tmp, file.path);
  }
  for (const entry of await readdir(outdir, { recursive: true, withFileTypes: true })) {
    const path = join(entry.parentPath, entry.name);
    // Another build's files in flight (`.tmp`) are its own to rename.
    if (entry.isFile() && !made.has(path) && !path.endsWith(".tmp")) await rm(path, { force: true });
  }
  return { outdir, files: made.size, ms: Math.round(performance.now() - started) };
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  buildDist().then(
    ({ outdir: dir, ms }) => console.log(`built ${relative(root, dir)}/ (worker, embedded engine) in ${ms} ms`),
    (err) => {
      console.error(err instanceof Error ? err.message : err);
      process.exit(1);
    },
  );
}
