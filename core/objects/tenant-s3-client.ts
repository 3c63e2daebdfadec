import http from "node:http";
import https from "node:https";
import type { LookupFunction } from "node:net";
import { S3Client } from "@aws-sdk/client-s3";
import type { S3ConfigValue } from "../contracts/job-request.ts";

/** `s3.<region>.amazonaws.com` (and its dualstack/fips forms) name their region; anything else is us-east-1 (what MinIO, R2 and s3rver accept). */
export function regionOf(endpointUrl: string): string {
  const m = /(?:^|\.)s3[.-](?:dualstack\.|fips\.)?([a-z0-9-]+)\.amazonaws\.com$/.exec(new URL(endpointUrl).hostname);
  return m?.[1] && m[1] !== "external-1" ? m[1] : "us-east-1";
}

/**
 * A client on a tenant's credentials and endpoint (a request's `s3Config`), addressed path-style.
 * Its connections resolve through `lookup`, which refuses addresses the egress policy forbids
 * (core/net/host-resolution.ts): the endpoint is a URL the tenant named. Checksums only where S3
 * requires them, so S3-compatible servers that predate the SDK's default trailers accept it.
 */
export function tenantS3Client(config: S3ConfigValue, lookup: LookupFunction): S3Client {
  return new S3Client({
    region: regionOf(config.endpointUrl),
    endpoint: config.endpointUrl,
    forcePathStyle: true,
    credentials: { accessKeyId: config.accessId, secretAccessKey: config.accessSecret },
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: 2,
    // The options of the SDK's Node handler, which it builds from them.
    requestHandler: {
      httpAgent: new http.Agent({ lookup }),
      httpsAgent: new https.Agent({ lookup }),
      connectionTimeout: 5000,
      requestTimeout: 15_000,
    },
  });
}
