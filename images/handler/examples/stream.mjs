/**
 * A streaming handler: an async generator whose yields are stream chunks (`/stream/{id}` returns
 * them as `{ output: "token-0" }`, …). Yields `input.count` tokens (default 5), `input.delayMs`
 * apart (default 0). Without `returnAggregateStream` the job's final output is empty, as on RunPod.
 */
export default async function* handler(job, { signal }) {
  const count = Number(job.input?.count ?? 5);
  const delayMs = Number(job.input?.delayMs ?? 0);
  for (let i = 0; i < count; i++) {
    if (signal.aborted) return;
    if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs));
    yield `token-${i}`;
  }
}
