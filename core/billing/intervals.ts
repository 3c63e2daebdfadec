/** A half-open span [from, to) of ms on the log's clock, from < to. Lists are sorted and disjoint. */
export interface Interval {
  from: number;
  to: number;
}

export function measure(list: readonly Interval[]): number {
  return list.reduce((sum, i) => sum + (i.to - i.from), 0);
}

/** Sorts and merges overlapping or touching spans, dropping empty ones. */
export function normalize(list: readonly Interval[]): Interval[] {
  const sorted = list.filter((i) => i.to > i.from).sort((a, b) => a.from - b.from);
  const out: Interval[] = [];
  for (const i of sorted) {
    const last = out.at(-1);
    if (last && i.from <= last.to) last.to = Math.max(last.to, i.to);
    else out.push({ ...i });
  }
  return out;
}

/** `base` without any instant covered by `holes`. */
export function subtract(base: readonly Interval[], holes: readonly Interval[]): Interval[] {
  const cuts = normalize(holes);
  const out: Interval[] = [];
  for (const b of normalize(base)) {
    let from = b.from;
    for (const h of cuts) {
      if (h.to <= from || h.from >= b.to) continue;
      if (h.from > from) out.push({ from, to: h.from });
      from = Math.max(from, h.to);
      if (from >= b.to) break;
    }
    if (from < b.to) out.push({ from, to: b.to });
  }
  return out;
}

/** The part of `list` inside [from, to). */
export function clip(list: readonly Interval[], from: number, to: number): Interval[] {
  return list.map((i) => ({ from: Math.max(i.from, from), to: Math.min(i.to, to) })).filter((i) => i.to > i.from);
}

/** `list` without its first `ms` of covered time. */
export function dropFirst(list: readonly Interval[], ms: number): Interval[] {
  let left = ms;
  const out: Interval[] = [];
  for (const i of list) {
    const len = i.to - i.from;
    if (left >= len) {
      left -= len;
      continue;
    }
    out.push({ from: i.from + Math.max(0, left), to: i.to });
    left = 0;
  }
  return out;
}
