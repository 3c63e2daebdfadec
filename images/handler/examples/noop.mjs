/** Returns its input unchanged, eight jobs at a time: the benchmark handler, it measures Hearth and not the handler. */
export const concurrency = 8;

export default async function handler(job) {
  return job.input;
}
