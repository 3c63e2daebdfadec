CREATE TABLE "ledger_entries" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"tenant_id" text NOT NULL,
	"key" text NOT NULL,
	"kind" text NOT NULL,
	"amount_micros" bigint NOT NULL,
	"seconds" integer,
	"endpoint_id" text,
	"worker_id" text,
	"gpu_type" text,
	"at" timestamp (3) with time zone NOT NULL,
	"reason" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "ledger_entries_key_unique" UNIQUE("key"),
	CONSTRAINT "ledger_entries_kind_check" CHECK ("ledger_entries"."kind" in ('credit', 'charge', 'adjustment')),
	CONSTRAINT "ledger_entries_credit_positive" CHECK ("ledger_entries"."kind" <> 'credit' or "ledger_entries"."amount_micros" > 0)
);
--> statement-breakpoint
CREATE TABLE "price_versions" (
	"effective_from" timestamp (3) with time zone PRIMARY KEY NOT NULL,
	"prices" jsonb NOT NULL,
	"adds" jsonb,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
-- The default fills every existing row: tenants from before billing are metered only, never refused.
ALTER TABLE "tenants" ADD COLUMN "billing_mode" text DEFAULT 'meter' NOT NULL;--> statement-breakpoint
ALTER TABLE "ledger_entries" ADD CONSTRAINT "ledger_entries_tenant_id_tenants_id_fk" FOREIGN KEY ("tenant_id") REFERENCES "public"."tenants"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "ledger_entries_tenant_at_idx" ON "ledger_entries" USING btree ("tenant_id","at","id");--> statement-breakpoint
-- Written by hand (drizzle-kit does not track triggers): the ledger is append-only. A wrong entry
-- is corrected by another entry (an adjustment), so every balance can be explained line by line.
CREATE FUNCTION "ledger_entries_append_only"() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'ledger_entries is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END
$$;--> statement-breakpoint
CREATE TRIGGER "ledger_entries_append_only" BEFORE UPDATE OR DELETE ON "ledger_entries" FOR EACH ROW EXECUTE FUNCTION "ledger_entries_append_only"();--> statement-breakpoint
CREATE TRIGGER "ledger_entries_no_truncate" BEFORE TRUNCATE ON "ledger_entries" FOR EACH STATEMENT EXECUTE FUNCTION "ledger_entries_append_only"();
