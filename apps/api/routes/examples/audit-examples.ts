import type { z } from "zod";
import type { adminKeyView } from "../../services/admin-key-store.ts";
import type { auditPage } from "../audit-routes.ts";
import { ADMIN_KEY, ADMIN_KEY_ID, AT, ENDPOINT_ID, JOB_ID, KEY_ID, MODEL_NAME, TENANT_ID } from "./example-ids.ts";

/*
 * Examples of the audit log and the operator's admin keys: a job submission (projected from the
 * event log, so it names the model the endpoint ran) and the endpoint change before it.
 */

export const auditPageExample: z.input<typeof auditPage> = {
  items: [
    {
      id: 41188,
      at: "2025-06-04T14:22:05.301Z",
      actor: { kind: "api_key", id: KEY_ID },
      tenantId: TENANT_ID,
      endpointId: ENDPOINT_ID,
      modelName: MODEL_NAME,
      modelVersion: "s3://hearth-models/Qwen2.5-7B-Instruct/",
      keyId: KEY_ID,
      sourceAddress: "203.0.113.24",
      action: "job.submit",
      targetId: JOB_ID,
      detail: { sync: false, acceptedAt: AT.jobSubmitted },
    },
    {
      id: 41187,
      at: AT.endpointUpdated,
      actor: { kind: "api_key", id: KEY_ID },
      tenantId: TENANT_ID,
      endpointId: ENDPOINT_ID,
      modelName: MODEL_NAME,
      modelVersion: "s3://hearth-models/Qwen2.5-7B-Instruct/",
      keyId: KEY_ID,
      sourceAddress: "203.0.113.24",
      action: "endpoint.update",
      targetId: ENDPOINT_ID,
      detail: { changed: ["workersMax"], settings: { workersMax: 3 }, engine: { kind: "openai", profile: "vllm" }, revision: Date.parse(AT.endpointUpdated) },
    },
  ],
  nextCursor: "eyJpZCI6NDExODd9",
};

export const adminKeyExample: z.input<typeof adminKeyView> = {
  id: ADMIN_KEY_ID,
  name: "on-call",
  prefix: ADMIN_KEY.slice(0, 10),
  createdAt: "2025-05-28T08:02:45.117Z",
  revokedAt: null,
};
