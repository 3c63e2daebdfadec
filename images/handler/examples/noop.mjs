/**
 * Returns its input unchanged: the benchmark handler, so the benchmark measures Hearth and not the
 * handler. One job at a time, like the bare BullMQ worker it is compared with.
 */
export const concurrency = 1;

export default async function handler(job) {
  return job.input;
}
