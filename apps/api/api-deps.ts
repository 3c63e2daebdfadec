import type { Redis } from "ioredis";
import type { RedisKeys } from "../../core/queue/keys.ts";
import type { EndpointStore } from "./services/endpoint-store.ts";
import type { EndpointQueues } from "./services/endpoint-queues.ts";
import type { JobControl } from "./services/job-control.ts";
import type { OpenAIRelay } from "./services/openai-relay.ts";
import type { JobReader } from "./services/job-reader.ts";
import type { JobSubmitter } from "./services/job-submitter.ts";
import type { TenantStore } from "./services/tenant-store.ts";
import type { JobRecords } from "./services/job-records.ts";
import type { LogAdmin } from "./services/log-admin.ts";
import type { SyncRuns } from "./services/sync-runs.ts";

/** Everything `createApp` needs; built by a composition root (apps/api/main.ts, or a test). */
export interface ApiDeps {
  adminToken: string;
  /** Directories an endpoint's handler module must live in. */
  handlerDirs: string[];
  redis: Redis;
  keys: RedisKeys;
  tenants: TenantStore;
  endpoints: EndpointStore;
  queues: EndpointQueues;
  submitter: JobSubmitter;
  reader: JobReader;
  control: JobControl;
  /** Submit-and-wait (`/runsync`). */
  syncRuns: SyncRuns;
  /** Durable job records and worker sessions (Postgres). */
  records: JobRecords;
  /** The event log's consumers and dead letters, for the operator. */
  logAdmin: LogAdmin;
  /** Runs the OpenAI-compatible routes' requests as jobs. */
  openai: OpenAIRelay;
  /** Reachability of Redis and Postgres, for `/readyz`. */
  checkReady: () => Promise<{ redis: boolean; postgres: boolean }>;
}
