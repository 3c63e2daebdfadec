import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { beforeAll, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { ApiMetrics } from "../apps/api/metrics/api-metrics.ts";
import { ControlMetrics } from "../apps/control/control-metrics.ts";
import { loadApiConfig, loadControlConfig, loadSchedulerConfig } from "../core/config/process-configs.ts";
import { Registry } from "prom-client";
import { SchedulerMetrics } from "../scheduler/scheduler-metrics.ts";
import { WorkerMetrics } from "../worker/metrics/worker-metrics.ts";
import { fileSdJson } from "../scheduler/worker-sd-file.ts";
import { exportedSeries, fromGrafana, metricNames, PromqlSyntaxError, unknownMetrics } from "./support/promql-check.ts";

const dir = fileURLToPath(new URL("../images/observability/", import.meta.url));
const yamlFile = async (name: string): Promise<unknown> => parseYaml(await readFile(join(dir, name), "utf8"));

/** Prometheus durations: `5m`, `1h30m`, `90s`. */
const duration = z.string().regex(/^(\d+(ms|s|m|h|d|w|y))+$/);
const alertRule = z
  .object({
    alert: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/),
    expr: z.string().min(1),
    for: duration,
    keep_firing_for: duration.optional(),
    labels: z.object({ severity: z.enum(["critical", "warning", "info"]) }).catchall(z.string()),
    annotations: z.object({ summary: z.string().min(1), description: z.string().min(1) }).catchall(z.string()),
  })
  .strict();
/** The part of prometheus.yml the rules refer to: its jobs' names. */
const scrapeConfig = z.object({ scrape_configs: z.array(z.object({ job_name: z.string() }).passthrough()) });
const ruleFile = z.object({ groups: z.array(z.object({ name: z.string().min(1), interval: duration.optional(), rules: z.array(alertRule).min(1) }).strict()).min(1) }).strict();

const datasourceRef = z.object({ type: z.literal("prometheus"), uid: z.string() });
const target = z.object({ expr: z.string().min(1), refId: z.string(), datasource: datasourceRef, legendFormat: z.string().optional() });
type Panel = { type: string; title: string; datasource?: z.infer<typeof datasourceRef>; targets?: z.infer<typeof target>[]; panels?: Panel[] };
const panel: z.ZodType<Panel> = z.lazy(() =>
  z.object({ type: z.string(), title: z.string().min(1), datasource: datasourceRef.optional(), targets: z.array(target).optional(), panels: z.array(panel).optional() }),
);
const dashboard = z.object({
  uid: z.string().min(1),
  title: z.string().min(1),
  panels: z.array(panel).min(1),
  templating: z.object({ list: z.array(z.object({ name: z.string(), type: z.string(), query: z.object({ query: z.string() }).optional(), datasource: datasourceRef.optional() })) }),
});

/** Every panel, rows' own included. */
const allPanels = (panels: Panel[]): Panel[] => panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);

/** Prometheus' `label_values(<selector>, <label>)` of a Grafana variable: its selector. */
const labelValuesSelector = (query: string): string => {
  const m = /^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$/.exec(query.trim());
  if (!m) throw new Error(`not a label_values query: ${query}`);
  return m[1]!;
};

describe("the PromQL checker", () => {
  let exported: Set<string>;
  beforeAll(async () => {
    exported = await exportedSeries(new ControlMetrics().registry);
  });

  it("fails an expression Prometheus' grammar refuses, and a range function given an instant vector", () => {
    expect(() => metricNames("sum(rate(hearth_job_delay_seconds_count[5m])")).toThrow(PromqlSyntaxError);
    expect(() => metricNames("rate(hearth_job_delay_seconds_count[5m]) )")).toThrow(PromqlSyntaxError);
    expect(() => metricNames("rate(hearth_job_delay_seconds_count)")).toThrow(/takes a range vector/);
    expect(() => metricNames(fromGrafana("rate(hearth_job_delay_seconds_count[$__rate_interval])"))).not.toThrow();
    expect(() => metricNames("rate(hearth_job_delay_seconds_count[$oops])")).toThrow(PromqlSyntaxError);
  });

  it("finds every name an expression selects, and names one Hearth does not export", () => {
    expect(metricNames('histogram_quantile(0.99, sum by (le) (rate(hearth_job_delay_seconds_bucket{endpoint=~"$e"}[5m]))) / on() group_left {__name__="b"} + {"c"}')).toEqual([
      "hearth_job_delay_seconds_bucket",
      "b",
      "c",
    ]);
    expect(() => metricNames('{__name__=~"hearth_.*"}')).toThrow(/cannot be checked/);
    expect(unknownMetrics("sum(rate(hearth_no_such_thing_total[5m])) / sum(rate(hearth_job_delay_seconds_count[5m]))", exported)).toEqual(["hearth_no_such_thing_total"]);
    // A classic histogram is stored as its _bucket, _sum and _count series: its bare name selects nothing.
    expect(unknownMetrics("hearth_job_delay_seconds", exported)).toEqual(["hearth_job_delay_seconds"]);
    expect(unknownMetrics("hearth_worker_exits_total + process_cpu_seconds_total", exported)).toEqual([]);
  });
});

describe("images/observability", () => {
  let exported: Set<string>;
  beforeAll(async () => {
    // The real registries, listed by prom-client: not a hand-kept list of names.
    exported = await exportedSeries(
      new ControlMetrics().registry,
      new ApiMetrics({ sampleEndpoints: async () => [] }).registry,
      new SchedulerMetrics({ registry: new Registry() }).registry,
      new WorkerMetrics({ registry: new Registry(), endpointId: "ep" }).registry,
    );
    expect(exported.has("hearth_http_request_duration_seconds_bucket") && exported.has("hearth_job_delay_seconds_bucket")).toBe(true);
    expect(exported.has("hearth_scheduler_provider_start_seconds_bucket") && exported.has("hearth_worker_engine_restarts_total")).toBe(true);
  });

  it("alert rules: each has what Prometheus needs, parses, and selects only series Hearth exports", async () => {
    const rules = ruleFile.parse(await yamlFile("hearth-alerts.yml")).groups.flatMap((g) => g.rules);
    const names = rules.map((r) => r.alert);
    expect(new Set(names).size).toBe(names.length);
    // What issue 13 asks the rules to watch.
    for (const a of ["HearthTTFTHigh", "HearthQueuedJobTooOld", "HearthWorkersUnhealthy", "HearthWorkersCrashLooping", "HearthEngineRestarting", "HearthWebhookFailureRate", "HearthEndpointErrorRate", "HearthProcessDown"]) expect(names).toContain(a);
    // `up` is the one series Prometheus writes itself for each target; a rule may watch it only for jobs prometheus.yml scrapes.
    const withPrometheusOwn = new Set([...exported, "up"]);
    const jobs = new Set(scrapeConfig.parse(await yamlFile("prometheus.yml")).scrape_configs.map((c) => c.job_name));
    const problems = rules.flatMap((r) => {
      try {
        const upJobs = [...r.expr.matchAll(/\bup\{job=~?"([^"]+)"\}/g)].flatMap((m) => m[1]!.split("|"));
        const unknownJobs = upJobs.filter((j) => !jobs.has(j)).map((j) => `${r.alert}: up of job ${j}, which prometheus.yml does not scrape`);
        if (unknownJobs.length > 0) return unknownJobs;
        const used = metricNames(r.expr);
        if (used.length === 0) return [`${r.alert}: selects no metric`];
        return unknownMetrics(r.expr, withPrometheusOwn).map((m) => `${r.alert}: ${m} is not exported`);
      } catch (err) {
        return [`${r.alert}: ${String(err)}`];
      }
    });
    expect(problems).toEqual([]);
  });

  it("dashboard: every panel has a query, each parses and selects only series Hearth exports, on the provisioned data source", async () => {
    const d = dashboard.parse(JSON.parse(await readFile(join(dir, "grafana/dashboards/hearth.json"), "utf8")));
    const provisioned = z.object({ datasources: z.array(z.object({ uid: z.string(), type: z.literal("prometheus") })).length(1) }).parse(await yamlFile("grafana/provisioning/datasources/prometheus.yml"));
    const uid = provisioned.datasources[0]!.uid;
    const graphs = allPanels(d.panels).filter((p) => p.type !== "row");
    expect(graphs.length).toBeGreaterThanOrEqual(20);
    const problems: string[] = [];
    for (const p of graphs) {
      if (!p.targets || p.targets.length === 0) problems.push(`${p.title}: no query`);
      if (p.datasource?.uid !== uid) problems.push(`${p.title}: data source ${p.datasource?.uid}`);
      for (const t of p.targets ?? []) {
        if (t.datasource.uid !== uid) problems.push(`${p.title}/${t.refId}: data source ${t.datasource.uid}`);
        try {
          if (metricNames(fromGrafana(t.expr)).length === 0) problems.push(`${p.title}/${t.refId}: selects no metric`);
          for (const m of unknownMetrics(fromGrafana(t.expr), exported)) problems.push(`${p.title}/${t.refId}: ${m} is not exported`);
        } catch (err) {
          problems.push(`${p.title}/${t.refId}: ${String(err)}`);
        }
      }
    }
    for (const v of d.templating.list) {
      if (v.type !== "query") continue;
      try {
        for (const m of unknownMetrics(labelValuesSelector(v.query?.query ?? ""), exported)) problems.push(`variable ${v.name}: ${m} is not exported`);
      } catch (err) {
        problems.push(`variable ${v.name}: ${String(err)}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it("prometheus.yml scrapes the API, the control plane and the scheduler where their configs listen, with the admin token from the file compose mounts, and loads the mounted rules", async () => {
    const scrape = z
      .object({
        job_name: z.string(),
        metrics_path: z.string(),
        honor_labels: z.boolean().optional(),
        authorization: z.object({ type: z.literal("Bearer"), credentials_file: z.string() }).optional(),
        static_configs: z.array(z.object({ targets: z.array(z.string()) })).optional(),
        file_sd_configs: z.array(z.object({ files: z.array(z.string()).min(1), refresh_interval: duration.optional() }).strict()).optional(),
      })
      .strict();
    const prom = z.object({ rule_files: z.array(z.string()), scrape_configs: z.array(scrape) }).parse(await yamlFile("prometheus.yml"));
    const compose = z
      .object({ services: z.object({ prometheus: z.object({ network_mode: z.literal("host"), volumes: z.array(z.string()) }), grafana: z.object({ volumes: z.array(z.string()) }) }) })
      .parse(await yamlFile("docker-compose.yml"));
    const mounts = new Map(compose.services.prometheus.volumes.filter((v) => v.startsWith("./")).map((v) => [v.split(":")[1]!, v.split(":")[0]!] as const));
    const jobs = new Map(prom.scrape_configs.map((s) => [s.job_name, s]));
    const api = jobs.get("hearth-api");
    const control = jobs.get("hearth-control");
    // The API's defaults, from its own config loader; the control plane with the port the README tells to set.
    const apiConfig = loadApiConfig({});
    const listen = loadControlConfig({ HEARTH_CONTROL_METRICS_PORT: "9464" }).metricsListen!;
    const scheduler = jobs.get("hearth-scheduler");
    const schedulerListen = loadSchedulerConfig({ HEARTH_SCHEDULER_METRICS_PORT: "9465" }).metricsListen!;
    expect(api?.static_configs?.flatMap((c) => c.targets)).toEqual([`${apiConfig.host}:${apiConfig.port}`]);
    expect(control?.static_configs?.flatMap((c) => c.targets)).toEqual([`${listen.host}:${listen.port}`]);
    expect(scheduler?.static_configs?.flatMap((c) => c.targets)).toEqual([`${schedulerListen.host}:${schedulerListen.port}`]);
    expect([api?.metrics_path, control?.metrics_path, scheduler?.metrics_path]).toEqual(["/metrics", "/metrics", "/metrics"]);
    expect(scheduler?.authorization).toBeUndefined();
    expect(mounts.get(api!.authorization!.credentials_file)).toBe("./hearth-admin-token");
    expect(control?.authorization).toBeUndefined();
    for (const f of [...prom.rule_files, "/etc/prometheus/prometheus.yml"]) {
      const local = mounts.get(f);
      expect(local, f).toBeDefined();
      expect((await stat(join(dir, local!))).isFile()).toBe(true);
    }
    // Grafana gets the provisioning and the dashboard this test checked.
    expect(compose.services.grafana.volumes).toEqual(expect.arrayContaining(["./grafana/provisioning:/etc/grafana/provisioning:ro", "./grafana/dashboards:/etc/grafana/dashboards:ro"]));
  });

  it("prometheus.yml finds workers through the scheduler's discovery file, in a directory compose mounts, keeping the workers' own endpoint label", async () => {
    const prom = z.object({ scrape_configs: z.array(z.object({ job_name: z.string() }).passthrough()) }).parse(await yamlFile("prometheus.yml"));
    const worker = z
      .object({ metrics_path: z.literal("/metrics"), honor_labels: z.literal(true), file_sd_configs: z.array(z.object({ files: z.array(z.string()) })).length(1) })
      .parse(prom.scrape_configs.find((s) => s.job_name === "hearth-worker"));
    const compose = z.object({ services: z.object({ prometheus: z.object({ volumes: z.array(z.string()) }) }) }).parse(await yamlFile("docker-compose.yml"));
    const [glob] = worker.file_sd_configs[0]!.files;
    // A directory is mounted, not the file: the scheduler replaces the file by rename, which a file mount would not see.
    const sdDir = glob!.slice(0, glob!.lastIndexOf("/"));
    expect(glob!.slice(sdDir.length)).toBe("/*.json");
    expect(compose.services.prometheus.volumes).toContain(`./hearth-sd:${sdDir}:ro`);
    // What the scheduler writes is a target list Prometheus' file SD reads: targets and string labels.
    const written = z
      .array(z.object({ targets: z.array(z.string().regex(/^127\.0\.0\.1:\d+$/)), labels: z.record(z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/), z.string()) }).strict())
      .parse(JSON.parse(fileSdJson([{ endpointId: "ep1", workerId: "w1", port: 40001 }])));
    expect(Object.keys(written[0]!.labels).sort()).toEqual(["endpoint", "worker"]);
  });
});
