CREATE TABLE "endpoint_job_counts" (
	"endpoint_id" text NOT NULL,
	"status" text NOT NULL,
	"count" bigint DEFAULT 0 NOT NULL,
	CONSTRAINT "endpoint_job_counts_endpoint_id_status_pk" PRIMARY KEY("endpoint_id","status")
);
--> statement-breakpoint
CREATE TABLE "log_cursors" (
	"consumer" text NOT NULL,
	"endpoint_id" text NOT NULL,
	"last_id" text NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "log_cursors_consumer_endpoint_id_pk" PRIMARY KEY("consumer","endpoint_id")
);
--> statement-breakpoint
CREATE TABLE "log_dead_letters" (
	"id" text PRIMARY KEY NOT NULL,
	"consumer" text NOT NULL,
	"endpoint_id" text NOT NULL,
	"entry_id" text NOT NULL,
	"entry_json" text NOT NULL,
	"reason" text NOT NULL,
	"state" text DEFAULT 'open' NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"resolved_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "worker_sessions" (
	"id" text PRIMARY KEY NOT NULL,
	"endpoint_id" text NOT NULL,
	"tenant_id" text NOT NULL,
	"provider" text,
	"gpu_type" text,
	"state" text NOT NULL,
	"requested_at" timestamp (3) with time zone,
	"ready_at" timestamp (3) with time zone,
	"ended_at" timestamp (3) with time zone,
	"exit_code" integer,
	"end_reason" text,
	"seq_ms" bigint NOT NULL,
	"seq_n" integer NOT NULL
);
--> statement-breakpoint
CREATE TABLE "worker_transitions" (
	"worker_id" text NOT NULL,
	"entry_id" text NOT NULL,
	"seq_ms" bigint NOT NULL,
	"seq_n" integer NOT NULL,
	"state" text NOT NULL,
	"at" timestamp (3) with time zone NOT NULL,
	"reason" text,
	"exit_code" integer,
	CONSTRAINT "worker_transitions_worker_id_entry_id_pk" PRIMARY KEY("worker_id","entry_id")
);
--> statement-breakpoint
ALTER TABLE "workers" DISABLE ROW LEVEL SECURITY;--> statement-breakpoint
DROP TABLE "workers" CASCADE;--> statement-breakpoint
DROP INDEX "jobs_tenant_idx";--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "seq_ms" bigint DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "seq_n" integer DEFAULT 0 NOT NULL;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "output_json" text;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "webhook_exact" text;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "error_exact" text;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "removal_reason" text;--> statement-breakpoint
CREATE INDEX "log_dead_letters_state_idx" ON "log_dead_letters" USING btree ("state","created_at");--> statement-breakpoint
CREATE INDEX "worker_sessions_endpoint_idx" ON "worker_sessions" USING btree ("endpoint_id","requested_at");--> statement-breakpoint
CREATE INDEX "worker_sessions_open_idx" ON "worker_sessions" USING btree ("ended_at");--> statement-breakpoint
CREATE INDEX "jobs_tenant_submitted_idx" ON "jobs" USING btree ("tenant_id","submitted_at","id");--> statement-breakpoint
-- Records written before the event log keep their order and output.
UPDATE "jobs" SET "seq_ms" = "status_at", "output_json" = "output"::text;--> statement-breakpoint
ALTER TABLE "jobs" DROP COLUMN "status_at";--> statement-breakpoint
ALTER TABLE "jobs" DROP COLUMN "output";