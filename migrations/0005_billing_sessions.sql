CREATE TABLE "billing_sessions" (
	"worker_id" text PRIMARY KEY NOT NULL,
	"endpoint_id" text NOT NULL,
	"tenant_id" text NOT NULL,
	"transitions" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"weights_fetches" jsonb DEFAULT '[]'::jsonb NOT NULL,
	"charged_minute" bigint,
	"settled_at" timestamp (3) with time zone,
	"error" text,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "billing_sessions_open_idx" ON "billing_sessions" USING btree ("endpoint_id") WHERE "billing_sessions"."settled_at" is null;--> statement-breakpoint
CREATE INDEX "ledger_entries_worker_idx" ON "ledger_entries" USING btree ("worker_id") WHERE "ledger_entries"."worker_id" is not null;