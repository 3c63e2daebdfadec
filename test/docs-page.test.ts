import { createHash } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page, type Request } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startApiServer, type RunningApi } from "../apps/api/api-server.ts";
import { SCALAR_STANDALONE } from "../apps/api/docs/scalar-bundle.ts";
import { DOCS_CSP } from "../apps/api/routes/docs-routes.ts";
import { examplesDir } from "./support/hearth-stack.ts";
import { createTestDatabase, TEST_REDIS_URL, uniquePrefix } from "./support/services.ts";

const ADMIN = "docs-page-admin-token-0123456789abcdef";
const CHROMIUM = "/usr/bin/chromium";
/** The system's browser only: playwright-core never downloads one, and this test never asks it to. */
const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const hasChromium = existsSync(CHROMIUM);

/** The bytes the installed package ships, read here independently of the API's own loader. */
const packaged = readFileSync(createRequire(import.meta.url).resolve(SCALAR_STANDALONE));

/** What the API documents about an operation, read from its own /openapi.json. */
type Operation = { summary?: string };
type Document = { info: { title: string }; paths: Record<string, Record<string, Operation>> };
const summaryOf = (doc: Document, method: string, path: string): string => {
  const summary = doc.paths[path]?.[method]?.summary;
  if (!summary) throw new Error(`the document has no summary for ${method} ${path}`);
  return summary;
};

/**
 * `GET /docs` on a real API (Redis, Postgres): the reference page and the Scalar bundle it loads,
 * served by the API itself from node_modules, open without a token.
 */
describe("GET /docs", () => {
  let db: { url: string; drop: () => Promise<void> };
  let api: RunningApi;

  beforeAll(async () => {
    db = await createTestDatabase();
    api = await startApiServer({ databaseUrl: db.url, redisUrl: TEST_REDIS_URL, redisPrefix: uniquePrefix(), handlerDirs: [examplesDir], port: 0, host: "127.0.0.1", adminToken: ADMIN }, { log: () => {} });
  });
  afterAll(async () => {
    await api?.close();
    await db?.drop();
  });

  it("serves the page without a token, with its CSP, pinning the packaged bundle by integrity under a versioned URL cached for a year", async () => {
    const page = await fetch(`${api.url}/docs`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-type")).toMatch(/^text\/html/);
    expect(page.headers.get("content-security-policy")).toBe(DOCS_CSP);
    expect(page.headers.get("x-frame-options")).toBe("DENY");
    const html = await page.text();
    expect(html).not.toContain(ADMIN);

    const script = /<script src="(\/docs\/scalar\.js\?v=[0-9a-f]+)" integrity="([^"]+)"><\/script>/.exec(html);
    expect(script).not.toBeNull();
    const [, src, integrity] = script!;
    expect(integrity).toBe(`sha384-${createHash("sha384").update(packaged).digest("base64")}`);
    // No script of the page's own: the configuration is a JSON data block, which the CSP's script-src 'self' allows.
    expect(html.match(/<script\b[^>]*>/g)?.filter((tag) => !tag.includes(" src=") && !tag.includes('type="application/json"'))).toEqual([]);

    const bundle = await fetch(`${api.url}${src}`);
    expect(bundle.status).toBe(200);
    expect(bundle.headers.get("content-type")).toMatch(/^text\/javascript/);
    expect(bundle.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(Buffer.from(await bundle.arrayBuffer()).equals(packaged)).toBe(true);
    // The same path without the page's version may be another bundle after an upgrade: revalidated, never immutable.
    const unversioned = await fetch(`${api.url}/docs/scalar.js`);
    expect(unversioned.headers.get("cache-control")).toBe("no-cache");
    await unversioned.arrayBuffer();
  });

  describe.skipIf(!hasChromium)(`in headless Chromium${hasChromium ? "" : ` (skipped: ${CHROMIUM} is absent; apt-get install chromium)`}`, () => {
    let userDataDir: string;
    let browser: BrowserContext;
    let page: Page;
    let origin: string;
    let doc: Document;
    /** Every request the browser made for the page, from navigation on. */
    const requests: Request[] = [];

    beforeAll(async () => {
      origin = new URL(api.url).origin;
      doc = (await (await fetch(`${api.url}/openapi.json`)).json()) as Document;
      userDataDir = mkdtempSync(join(tmpdir(), "hearth-docs-chromium-"));
      browser = await chromium.launchPersistentContext(userDataDir, { executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
      // Scalar parses the whole document in the page; on two busy shared cores that took 20 s once. Bounds, not speed targets.
      browser.setDefaultTimeout(60_000);
      browser.on("request", (r) => requests.push(r));
      page = browser.pages()[0] ?? (await browser.newPage());
      // What the CSP refused, recorded in the page: an attempt to reach elsewhere that never became a request shows up here.
      // (A string: this project's TypeScript has no DOM types.)
      await page.addInitScript({
        content: `globalThis.cspViolations = [];
          document.addEventListener("securitypolicyviolation", (e) => globalThis.cspViolations.push({ directive: e.effectiveDirective, blocked: e.blockedURI }));`,
      });
    });
    afterAll(async () => {
      await browser?.close();
      if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
    });

    it("renders the document's operations, fetching only from the API's own origin", async () => {
      const response = await page.goto(`${api.url}/docs`);
      expect(response?.status()).toBe(200);
      await page.getByRole("heading", { name: doc.info.title }).first().waitFor();

      // The first tag is open from the start; the job routes appear once their tag is opened in the sidebar, as a reader does.
      await expect.poll(() => page.getByText(summaryOf(doc, "post", "/admin/tenants")).count()).toBeGreaterThan(0);
      await page.getByText("jobs (RunPod)").first().click();
      for (const [method, path] of [["post", "/v2/{ep}/run"], ["post", "/v2/{ep}/runsync"], ["post", "/v2/{ep}/cancel/{id}"]] as const) {
        await page.getByText(summaryOf(doc, method, path)).first().waitFor();
      }

      const urls = requests.map((r) => r.url());
      expect(urls).toEqual(expect.arrayContaining([`${origin}/docs`, `${origin}/openapi.json`, expect.stringMatching(/\/docs\/scalar\.js\?v=/)]));
      // data: and blob: are the page's own bytes, not the network.
      expect(urls.filter((u) => !/^(data|blob):/.test(u) && new URL(u).origin !== origin)).toEqual([]);
      // The one refusal is zod's feature probe (`new Function("")` in a try, inside the bundle), which then works without eval.
      const violations = await page.evaluate(() => (globalThis as { cspViolations?: { directive: string; blocked: string }[] }).cspViolations ?? []);
      expect(violations.filter((v) => !(v.directive === "script-src" && v.blocked === "eval"))).toEqual([]);
    }, 180_000);

    it("sends what \"Test Request\" sends to the API itself, with no credential of its own", async () => {
      const run = summaryOf(doc, "post", "/v2/{ep}/run");
      await page.getByText(run).first().click();
      await page.getByRole("button", { name: /Test Request.*post \/v2\/\{ep\}\/run\b/ }).first().click();
      const sent = page.waitForRequest((r) => r.method() === "POST" && new URL(r.url()).pathname.endsWith("/run"));
      await page.getByRole("button", { name: /^Send/ }).first().click();
      const request = await sent;
      expect(new URL(request.url()).origin).toBe(origin);
      expect(request.headers().authorization ?? "").not.toContain(ADMIN);
      // Without a key of the reader's, the API refuses it: the page itself holds none.
      expect((await request.response())?.status()).toBe(401);
      expect(requests.map((r) => r.url()).filter((u) => !/^(data|blob):/.test(u) && new URL(u).origin !== origin)).toEqual([]);
    }, 120_000);
  });
});
