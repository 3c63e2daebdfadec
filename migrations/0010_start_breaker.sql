ALTER TABLE "endpoints" ADD COLUMN "max_failed_starts" integer DEFAULT 3 NOT NULL;--> statement-breakpoint
ALTER TABLE "worker_sessions" ADD COLUMN "spec_hash" text;--> statement-breakpoint
ALTER TABLE "worker_sessions" ADD COLUMN "cold_start" jsonb;