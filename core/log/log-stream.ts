/**
 * The cap written to each queue's meta hash (`opts.maxLenEvents`), which BullMQ's scripts pass to
 * `XTRIM MAXLEN ~`. Large enough never to bite: an endpoint's log is trimmed only by its consumers,
 * once every one of them has passed an entry (BullMQ's default, 10,000, would drop entries under a
 * lagging reader).
 */
export const LOG_STREAM_MAX_LEN = 1_000_000_000_000;

/**
 * Every consumer of the log, by the name its cursor is saved under: the trimmer waits for all of
 * them, and `/admin/log` reports each one's lag.
 */
export const LOG_CONSUMERS = ["records", "billing", "webhooks"] as const;
