-- The tables written a row per record or per POST (the snapshot, the change log, deliveries
-- and their attempts) lose their foreign keys: a foreign key checks every inserted row with a
-- query of its own, which cost more than the insert. What the keys did on delete (cascade) is
-- done once per statement by triggers instead. The writers keep the references whole:
-- the poll locks its feed row, the delivery engine locks its webhook rows and checks them
-- before it commits.
alter table feed_records drop constraint feed_records_feed_id_fkey;
alter table change_log drop constraint change_log_feed_id_fkey;
alter table deliveries drop constraint deliveries_webhook_id_fkey;
alter table delivery_attempts drop constraint delivery_attempts_webhook_id_fkey;

create function hookd_feeds_deleted() returns trigger language plpgsql as $$
begin
  delete from feed_records r using gone g where r.feed_id = g.id;
  delete from change_log l using gone g where l.feed_id = g.id;
  return null;
end $$;
create trigger feeds_deleted after delete on feeds
  referencing old table as gone for each statement execute function hookd_feeds_deleted();

create function hookd_webhooks_deleted() returns trigger language plpgsql as $$
begin
  delete from deliveries d using gone g where d.webhook_id = g.id;
  delete from delivery_attempts a using gone g where a.webhook_id = g.id;
  return null;
end $$;
create trigger webhooks_deleted after delete on webhooks
  referencing old table as gone for each statement execute function hookd_webhooks_deleted();

-- Rows a lost race left behind (none are expected; the cascade used to make sure).
delete from feed_records r where not exists (select 1 from feeds f where f.id = r.feed_id);
delete from change_log l where not exists (select 1 from feeds f where f.id = l.feed_id);
delete from deliveries d where not exists (select 1 from webhooks w where w.id = d.webhook_id);
delete from delivery_attempts a where not exists (select 1 from webhooks w where w.id = a.webhook_id);
