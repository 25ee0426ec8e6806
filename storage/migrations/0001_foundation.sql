-- Workspaces, API keys, connections and webhooks.
create table workspaces (
  id text primary key,
  name text not null,
  secret_sealed text not null,          -- AES-256-GCM sealed signing secret
  notification_url text not null default '',
  created_at timestamptz not null default now()
);

create table api_keys (
  key_hash text primary key,            -- sha256 hex of the key; the key itself is never stored
  workspace_id text not null references workspaces(id) on delete cascade,
  is_bootstrap boolean not null default false,  -- the key from HOOKD_API_KEY, replaced when it changes
  created_at timestamptz not null default now()
);
create index api_keys_workspace on api_keys(workspace_id);

create table connections (
  id text primary key,
  workspace_id text not null references workspaces(id) on delete cascade,
  integration_type text not null,
  integration_name text not null,
  categories jsonb not null default '[]',
  permissions jsonb not null default '[]',
  auth_sealed text not null,            -- AES-256-GCM sealed JSON object
  environment text not null default 'Production',
  external_xref text not null default '',
  is_paused boolean not null default false,
  created_at timestamptz not null,
  updated_at timestamptz not null,
  last_healthy_at timestamptz,
  last_unhealthy_at timestamptz,
  last_unhealthy_code text not null default ''
);
create index connections_workspace on connections(workspace_id, created_at, id);

create table webhooks (
  id text primary key,
  workspace_id text not null references workspaces(id) on delete cascade,
  connection_id text not null references connections(id) on delete cascade,
  hook_url text not null default '',
  object_type text not null,
  interval_minutes double precision not null,
  checked_at timestamptz,
  integration_type text not null,
  environment text not null default 'Production',
  event text not null,
  fields text not null default '',
  webhook_type text not null default 'virtual',
  is_healthy boolean not null default true,
  page_max_limit integer not null default 100,
  filters jsonb not null default '{}',
  db_type text not null default '',
  db_url_sealed text not null default '',  -- AES-256-GCM sealed, empty when unset
  db_schema text not null default '',
  db_name_prefix text not null default '',
  is_paused boolean not null default false,
  is_beta boolean not null default false,
  include_all boolean not null default false,
  next_run_at timestamptz not null,
  created_at timestamptz not null,
  updated_at timestamptz not null
);
create index webhooks_workspace on webhooks(workspace_id, created_at, id);
create index webhooks_connection on webhooks(connection_id);
create index webhooks_due on webhooks(next_run_at) where not is_paused;
