ALTER TABLE "jobs" ADD COLUMN "ttft_ms" integer;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "itl_ms" real;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "prompt_tokens" integer;--> statement-breakpoint
ALTER TABLE "jobs" ADD COLUMN "completion_tokens" integer;