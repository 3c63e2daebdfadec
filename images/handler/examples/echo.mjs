/**
 * The default demo handler: answers `{ echo: input }`.
 * A Hearth handler module's default export is called as `handler(job, { signal })`, where
 * `job` is `{ id, input }` and `signal` aborts on cancel, timeout or worker drain.
 */
export default async function handler(job) {
  return { echo: job.input };
}
