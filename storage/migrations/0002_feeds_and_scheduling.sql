-- Change detection (feeds, snapshots, the change log) and scheduling (leases, runs).

-- A feed: the stream of one (connection, object type, pushed-down filters). Webhooks on
-- the same feed share its polls.
create table feeds (
  id bigserial primary key,
  connection_id text not null references connections(id) on delete cascade,
  object_type text not null,
  filter_key text not null,               -- canonical JSON of the pushed-down filters
  filters jsonb not null default '{}',
  baseline_done boolean not null default false,
  head_seq bigint not null default 0,     -- the last change_log sequence number
  record_count bigint not null default 0, -- snapshot size
  polls bigint not null default 0,
  last_polled_at timestamptz,             -- end of the last poll (complete or not)
  last_poll_started_at timestamptz,       -- start of the last poll: what it read is at least this fresh
  last_complete_at timestamptz,
  last_error text not null default '',    -- why the last poll was incomplete ('' when it was complete)
  last_full_scan_at timestamptz,
  high_water timestamptz,                 -- newest updated_at seen: the next incremental "since"
  pending_deletes jsonb not null default '[]',  -- held by the mass-delete guard
  poll_owner text,                        -- the instance polling it now
  poll_expires_at timestamptz,
  created_at timestamptz not null default now(),
  unique (connection_id, object_type, filter_key)
);

-- The snapshot: every record the feed has seen, with the hash of its canonical JSON.
create table feed_records (
  feed_id bigint not null references feeds(id) on delete cascade,
  record_id text not null,
  hash text not null,
  record text not null,
  primary key (feed_id, record_id)
);

-- The append-only change log; webhooks keep a cursor (sequence number) into it.
create table change_log (
  feed_id bigint not null references feeds(id) on delete cascade,
  seq bigint not null,
  record_id text not null,
  kind text not null check (kind in ('created', 'updated', 'deleted')),
  record text not null,                   -- the new state; for deletes the last known one
  created_at timestamptz not null default now(),
  primary key (feed_id, seq)
);

alter table webhooks
  add column feed_id bigint references feeds(id) on delete set null,
  add column cursor_seq bigint not null default 0,
  add column client_filters jsonb not null default '{}',  -- filters applied by hookd
  add column lease_owner text,
  add column lease_expires_at timestamptz,
  add column runs jsonb not null default '[]',             -- recent run summaries, newest first
  add column source_healthy boolean not null default true;
create index webhooks_feed on webhooks(feed_id);

create table webhook_runs (
  id bigserial primary key,
  webhook_id text not null references webhooks(id) on delete cascade,
  feed_id bigint,
  owner text not null,
  scheduled_for timestamptz not null,
  started_at timestamptz not null,
  finished_at timestamptz not null,
  status text not null,                   -- ok | incomplete | failed
  polled boolean not null,                -- this run scanned the source (else a fresh poll was shared)
  full_scan boolean not null,
  records_read bigint not null default 0,
  changes bigint not null default 0,
  requests integer not null default 0,
  error text not null default ''
);
create index webhook_runs_webhook on webhook_runs(webhook_id, started_at desc);
