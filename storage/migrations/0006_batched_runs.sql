-- Runs are recorded in batches (COPY), as many as the scheduler runs: webhook_runs loses its
-- foreign key like the other bulk tables (0005) and the webhooks' delete trigger removes a
-- deleted webhook's runs once per statement. The writer keeps the reference whole: it locks
-- the webhook rows first and records runs only for those that still exist.
alter table webhook_runs drop constraint webhook_runs_webhook_id_fkey;

create or replace function hookd_webhooks_deleted() returns trigger language plpgsql as $$
begin
  delete from deliveries d using gone g where d.webhook_id = g.id;
  delete from delivery_attempts a using gone g where a.webhook_id = g.id;
  delete from webhook_runs r using gone g where r.webhook_id = g.id;
  return null;
end $$;

-- A feed whose last webhook went away: since when (the prune removes it after a grace period;
-- a new webhook on it within the grace starts it afresh, never on a stale snapshot).
alter table feeds add column orphaned_at timestamptz;
