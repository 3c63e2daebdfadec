import { parser } from "@prometheus-io/lezer-promql";
import type { Registry } from "prom-client";

type Tree = ReturnType<typeof parser.parse>;
type SyntaxNode = Tree["topNode"];

/** An expression Prometheus' grammar does not accept, with where. */
export class PromqlSyntaxError extends Error {
  override readonly name = "PromqlSyntaxError";
  readonly code = "PROMQL_SYNTAX";
}

/**
 * Functions that take a range vector: given an instant vector Prometheus refuses the expression at
 * evaluation, which the grammar alone (lezer's) does not catch.
 */
const RANGE_FUNCTIONS = new Set([
  "rate", "irate", "increase", "delta", "idelta", "deriv", "changes", "resets", "predict_linear", "holt_winters", "double_exponential_smoothing",
  "avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time", "stddev_over_time",
  "stdvar_over_time", "last_over_time", "present_over_time", "absent_over_time", "mad_over_time",
]);

/**
 * Grafana's interval variables are not PromQL: a dashboard's expression is checked with each as
 * `5m`, the way Grafana hands them to Prometheus. Other variables (`$endpoint`) sit inside label
 * values, which PromQL takes as they are; one anywhere else fails the parse, as it should.
 */
export function fromGrafana(expr: string): string {
  return expr.replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, "5m");
}

/** Parses with the Prometheus project's own PromQL grammar (@prometheus-io/lezer-promql); throws on any error node. */
export function parsePromql(expr: string): Tree {
  const tree = parser.parse(expr);
  const errors: string[] = [];
  tree.iterate({
    enter: (n) => {
      if (n.type.isError) errors.push(`at ${n.from}: ${JSON.stringify(expr.slice(Math.max(0, n.from - 15), n.to + 15))}`);
      if (n.name === "FunctionCall") {
        const name = expr.slice(n.node.firstChild?.from ?? 0, n.node.firstChild?.to ?? 0);
        const body = n.node.getChild("FunctionCallBody");
        const args = body ? argumentsOf(body) : [];
        if (RANGE_FUNCTIONS.has(name) && !args.some((a) => a.name === "MatrixSelector" || a.name === "SubqueryExpr")) errors.push(`${name}() at ${n.from} takes a range vector`);
      }
    },
  });
  if (errors.length > 0) throw new PromqlSyntaxError(`${expr.trim()}\n  ${errors.join("\n  ")}`);
  return tree;
}

function argumentsOf(body: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let c = body.firstChild; c; c = c.nextSibling) out.push(c);
  return out;
}

const unquote = (literal: string): string => JSON.parse(literal.startsWith("'") ? `"${literal.slice(1, -1).replace(/"/g, '\\"')}"` : literal.startsWith("`") ? JSON.stringify(literal.slice(1, -1)) : literal) as string;

/**
 * Every metric name an expression selects: a selector's name (`foo{…}`), `{__name__="foo"}` and
 * the quoted form `{"foo"}`. A name given by regex (`__name__=~`) cannot be checked and throws.
 */
export function metricNames(expr: string): string[] {
  const tree = parsePromql(expr);
  const names: string[] = [];
  const text = (n: SyntaxNode) => expr.slice(n.from, n.to);
  tree.iterate({
    enter: (ref) => {
      if (ref.name !== "VectorSelector") return;
      const sel = ref.node;
      const id = sel.getChild("Identifier");
      if (id) names.push(text(id));
      const matchers = sel.getChild("LabelMatchers");
      for (let m = matchers?.firstChild; m; m = m.nextSibling) {
        if (m.name === "QuotedLabelName") names.push(unquote(text(m.firstChild ?? m)));
        if (m.name !== "UnquotedLabelMatcher" && m.name !== "QuotedLabelMatcher") continue;
        const label = m.firstChild;
        const labelName = label && (label.name === "QuotedLabelName" ? unquote(text(label.firstChild ?? label)) : text(label));
        if (labelName !== "__name__") continue;
        const op = m.getChild("MatchOp");
        const value = m.lastChild;
        if (!op || !value || text(op) !== "=") throw new PromqlSyntaxError(`a metric name chosen by ${op ? text(op) : "?"} cannot be checked: ${text(m)}`);
        names.push(unquote(text(value)));
      }
    },
  });
  return names;
}

/**
 * The series names a registry exports, as Prometheus stores them: a histogram as its `_bucket`,
 * `_sum` and `_count` series, a summary as itself plus `_sum` and `_count`.
 */
export async function exportedSeries(...registries: Registry[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const r of registries) {
    for (const m of await r.getMetricsAsJSON()) {
      const type = String(m.type);
      const suffixes = type === "histogram" ? ["_bucket", "_sum", "_count"] : type === "summary" ? ["", "_sum", "_count"] : [""];
      for (const s of suffixes) out.add(`${m.name}${s}`);
    }
  }
  return out;
}

/** The names an expression selects that none of the exported series has. */
export function unknownMetrics(expr: string, exported: ReadonlySet<string>): string[] {
  return metricNames(expr).filter((n) => !exported.has(n));
}
