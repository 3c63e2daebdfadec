import type { Redis } from "ioredis";

/*
 * The worker's own Lua, one script per operation, each a single command on the job's path where
 * MULTI/EXEC would cost three or four (and ioredis a Pipeline object per call). Defined once per
 * connection; ioredis sends EVALSHA and falls back to EVAL when Redis lacks the script.
 */

/**
 * --[[ Records a finished job and tells the API's waiters, if this worker still holds the job: a
 *   worker that lost its lock (the stalled checker gave the job to another, or failed it) must not
 *   announce a result BullMQ will refuse. BullMQ's moveToFinished, which checks the same lock, goes
 *   out next on the same connection.
 *   KEYS[1] stats hash of the endpoint
 *   KEYS[2] the job's lock key
 *   ARGV[1] stats field to increment (completed | failed | cancelled)
 *   ARGV[2] job-events channel
 *   ARGV[3] the `finished` event (JSON)
 *   ARGV[4] this worker's lock token for the job
 *   Returns: the number of subscribers that received the event, or -1 when the lock is not ours.
 * ]]
 */
const FINISH_JOB = `
if redis.call("GET", KEYS[2]) ~= ARGV[4] then return -1 end
redis.call("HINCRBY", KEYS[1], ARGV[1], 1)
return redis.call("PUBLISH", ARGV[2], ARGV[3])
`;

/**
 * --[[ Buffers stream chunks for `/stream` and announces them.
 *   KEYS[1] stream list of the job
 *   ARGV[1] ms the list is kept from now
 *   ARGV[2] job-events channel
 *   ARGV[3] the `chunk` event (JSON, carrying the same chunks)
 *   ARGV[4..] the chunks, in order (each JSON `{"output": ...}`)
 *   Returns: the list's length after the push.
 * ]]
 */
const PUSH_CHUNKS = `
local n = redis.call("RPUSH", KEYS[1], unpack(ARGV, 4))
redis.call("PEXPIRE", KEYS[1], ARGV[1])
redis.call("PUBLISH", ARGV[2], ARGV[3])
return n
`;

/**
 * --[[ Tells the API's waiters a job BullMQ failed itself (stalled too often), after the fact.
 *   KEYS[1] stats hash of the endpoint
 *   ARGV[1] job-events channel, ARGV[2] the `finished` event (JSON)
 *   Returns: the number of subscribers that received the event.
 * ]]
 */
const FAILED_BY_QUEUE = `
redis.call("HINCRBY", KEYS[1], "failed", 1)
return redis.call("PUBLISH", ARGV[1], ARGV[2])
`;

export interface WorkerScripts {
  hearthFinishJob(statsKey: string, lockKey: string, field: string, channel: string, event: string, token: string): Promise<number>;
  hearthFailedByQueue(statsKey: string, channel: string, event: string): Promise<number>;
  hearthPushChunks(streamKey: string, keepMs: number, channel: string, event: string, ...chunks: string[]): Promise<number>;
}

/** The connection with the worker's scripts defined on it (idempotent). */
export function withWorkerScripts(redis: Redis): Redis & WorkerScripts {
  const r = redis as Redis & Partial<WorkerScripts>;
  if (!r.hearthFinishJob) {
    redis.defineCommand("hearthFinishJob", { numberOfKeys: 2, lua: FINISH_JOB });
    redis.defineCommand("hearthPushChunks", { numberOfKeys: 1, lua: PUSH_CHUNKS });
    redis.defineCommand("hearthFailedByQueue", { numberOfKeys: 1, lua: FAILED_BY_QUEUE });
  }
  return redis as Redis & WorkerScripts;
}
