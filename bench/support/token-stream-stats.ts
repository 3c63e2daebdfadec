import { round, summarize, type LatencySummary } from "./latency-stats.ts";
import type { StreamTiming } from "./sse-timing-client.ts";

/** One side's streamed completions summed up; times in ms, all from the client's clock. */
export interface TokenStreamStats {
  requests: number;
  /** Request written → first content chunk read. */
  ttftMs: LatencySummary;
  /** Between consecutive content chunks of one request; chunks that arrive in the same socket read are 0 ms apart. */
  gapMs: LatencySummary;
  /** Between consecutive socket reads that carried content: the cadence at which tokens actually arrive. */
  readGapMs: LatencySummary;
  /** Per token, a read's gap split evenly over the k chunks it carried (k × gap/k); the same as `gapMs` when every chunk has its own read. */
  splitGapMs: LatencySummary;
  /** Request written → end of the response. */
  streamMs: LatencySummary;
  /** Per request: content chunks / (last chunk − first chunk) seconds; mean, min and max over the requests. */
  tokensPerSecond: { mean: number; min: number; max: number };
  /** Content chunks, and what the engine's usage chunk counted (undefined if there was none). */
  tokens: number;
  completionTokens: number | undefined;
  /** Socket reads of the bodies, those that carried content, and SSE events (`[DONE]` included). */
  reads: number;
  tokenReads: number;
  events: number;
  /** tokens / tokenReads: 1 when every token arrives on its own, more when they arrive batched. */
  tokensPerTokenRead: number;
}

export function tokenStreamStats(runs: readonly StreamTiming[]): TokenStreamStats {
  const gaps: number[] = [];
  const readGaps: number[] = [];
  const splitGaps: number[] = [];
  const ttft: number[] = [];
  const stream: number[] = [];
  const tps: number[] = [];
  let tokens = 0;
  let completionTokens: number | undefined = 0;
  let reads = 0;
  let tokenReads = 0;
  let events = 0;
  for (const r of runs) {
    const times = r.tokenTimes;
    tokens += times.length;
    reads += r.reads;
    tokenReads += r.tokenReads;
    events += r.events;
    completionTokens = completionTokens === undefined || r.completionTokens === undefined ? undefined : completionTokens + r.completionTokens;
    stream.push(r.endedAt - r.sentAt);
    if (times.length === 0) continue;
    ttft.push(times[0]! - r.sentAt);
    // Chunks of one read share its timestamp exactly.
    let readStart = 0;
    for (let i = 1; i <= times.length; i++) {
      if (i < times.length) gaps.push(times[i]! - times[i - 1]!);
      if (i < times.length && times[i] === times[readStart]) continue;
      // times[readStart..i) is one read; the first read's chunks have no gap before them (they are the TTFT).
      if (readStart > 0) {
        const gap = times[readStart]! - times[readStart - 1]!;
        readGaps.push(gap);
        for (let k = readStart; k < i; k++) splitGaps.push(gap / (i - readStart));
      }
      readStart = i;
    }
    const span = (times[times.length - 1]! - times[0]!) / 1000;
    if (span > 0) tps.push(times.length / span);
  }
  return {
    requests: runs.length,
    ttftMs: summarize(ttft),
    gapMs: summarize(gaps),
    readGapMs: summarize(readGaps),
    splitGapMs: summarize(splitGaps),
    streamMs: summarize(stream),
    tokensPerSecond: {
      mean: round(tps.length ? tps.reduce((a, b) => a + b, 0) / tps.length : Number.NaN, 1),
      min: round(tps.length ? Math.min(...tps) : Number.NaN, 1),
      max: round(tps.length ? Math.max(...tps) : Number.NaN, 1),
    },
    tokens,
    completionTokens,
    reads,
    tokenReads,
    events,
    tokensPerTokenRead: round(tokenReads ? tokens / tokenReads : Number.NaN),
  };
}
