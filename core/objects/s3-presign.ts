import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectCommand,
  PutObjectCommand,
  UploadPartCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";

/** The longest a SigV4 presigned URL may live (7 days); temporary credentials may cut it shorter. */
export const MAX_PRESIGN_S = 7 * 86_400;

/** A bucket and the client holding credentials for it; presigning is local, no request is sent. */
export interface S3Place {
  client: S3Client;
  bucket: string;
}

export function presignPut(at: S3Place, key: string, expiresS: number): Promise<string> {
  return getSignedUrl(at.client, new PutObjectCommand({ Bucket: at.bucket, Key: key, ContentType: "application/json" }), { expiresIn: expiresS });
}

/**
 * A PUT of exactly `bytes` bytes: the length is a signed header, so S3 refuses a body of any other
 * length (the holder of the URL cannot store more than was granted). No content type: it would be
 * a signed header the uploader must repeat.
 */
export function presignPutOfLength(at: S3Place, key: string, bytes: number, expiresS: number): Promise<string> {
  return getSignedUrl(at.client, new PutObjectCommand({ Bucket: at.bucket, Key: key, ContentLength: bytes }), { expiresIn: expiresS });
}

export function presignGet(at: S3Place, key: string, expiresS: number): Promise<string> {
  return getSignedUrl(at.client, new GetObjectCommand({ Bucket: at.bucket, Key: key }), { expiresIn: expiresS });
}

/** Starts a multipart upload (one request to S3) and returns its id. */
export async function beginMultipart(at: S3Place, key: string): Promise<string> {
  const res = await at.client.send(new CreateMultipartUploadCommand({ Bucket: at.bucket, Key: key, ContentType: "application/json" }));
  if (!res.UploadId) throw new Error("CreateMultipartUpload returned no UploadId");
  return res.UploadId;
}

export function presignParts(at: S3Place, key: string, uploadId: string, from: number, count: number, expiresS: number): Promise<{ partNumber: number; url: string }[]> {
  return Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const partNumber = from + i;
      const url = await getSignedUrl(at.client, new UploadPartCommand({ Bucket: at.bucket, Key: key, UploadId: uploadId, PartNumber: partNumber }), { expiresIn: expiresS });
      return { partNumber, url };
    }),
  );
}

/** POST with the parts' XML completes the upload; the body is not part of the signature. */
export function presignComplete(at: S3Place, key: string, uploadId: string, expiresS: number): Promise<string> {
  return getSignedUrl(at.client, new CompleteMultipartUploadCommand({ Bucket: at.bucket, Key: key, UploadId: uploadId }), { expiresIn: expiresS });
}

export function presignAbort(at: S3Place, key: string, uploadId: string, expiresS: number): Promise<string> {
  return getSignedUrl(at.client, new AbortMultipartUploadCommand({ Bucket: at.bucket, Key: key, UploadId: uploadId }), { expiresIn: expiresS });
}
