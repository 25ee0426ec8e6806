-- Delivery: each delivery is recorded before it is sent; one outstanding delivery per
-- webhook keeps deliveries in order. Attempts are kept for operators.
create table deliveries (
  id text primary key,                    -- the webhook-id header: stable across retries
  webhook_id text not null references webhooks(id) on delete cascade,
  seq_to bigint not null,                 -- the webhook's cursor once this is delivered
  type text not null,                     -- VIRTUAL | INITIAL-PARTIAL | INITIAL-COMPLETE
  body text not null,                     -- the exact bytes sent at every attempt
  records integer not null,
  initial_after text not null default '', -- INITIAL-PARTIAL: the page's last record id
  snapshot_head bigint not null default 0, -- initial pages: the feed's log head read with the page
  attempts integer not null default 0,
  next_attempt_at timestamptz not null,
  created_at timestamptz not null
);
create unique index deliveries_one_per_webhook on deliveries(webhook_id);

create table delivery_attempts (
  id bigserial primary key,
  delivery_id text not null,
  webhook_id text not null references webhooks(id) on delete cascade,
  attempt integer not null,
  at timestamptz not null,
  status integer,                         -- null: no HTTP response
  latency_ms integer not null,
  error text not null default ''
);
create index delivery_attempts_webhook on delivery_attempts(webhook_id, at desc);

alter table webhooks
  add column next_slot_at timestamptz,    -- the next poll slot (next_run_at may be an earlier retry)
  add column consecutive_failures integer not null default 0,
  add column delivery_healthy boolean not null default true,
  add column paused_reason text not null default '',
  add column initial_sync_done boolean not null default false,
  add column triggered boolean not null default false;  -- the next run must read the source
update webhooks set next_slot_at = next_run_at;
-- A webhook created without include_all has nothing to sync initially.
update webhooks set initial_sync_done = not include_all;
-- Initial sync progress (include_all): the last record id sent in an INITIAL-PARTIAL page,
-- and each delivered page's {after: last id, head: log head read with it}, so that VIRTUAL
-- deliveries skip the changes a later initial page already carried.
alter table webhooks add column initial_after text not null default '';
alter table webhooks add column initial_pages jsonb not null default '[]';
