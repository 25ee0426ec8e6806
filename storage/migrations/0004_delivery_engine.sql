-- The delivery engine: deliveries are served by delivery rounds across webhooks, apart from
-- the scheduler's poll runs.
--
-- deliver_at: when the webhook next has delivery work (new changes in its feed, a retry);
--   null when it is caught up. A poll that logs changes sets it (if unset) and bumps
--   deliver_gen; a delivery lane that finds nothing left clears it only if deliver_gen is
--   still the one it read with the empty log, so a change logged meanwhile is never missed.
-- delivery_owner / delivery_expires_at: the lease of the instance whose lane serves it.
alter table webhooks
  add column deliver_at timestamptz,
  add column deliver_gen bigint not null default 0,
  add column delivery_owner text,
  add column delivery_expires_at timestamptz;
create index webhooks_deliver_at on webhooks(deliver_at) where deliver_at is not null;
-- Every webhook with a hook_url is looked at once after the upgrade.
update webhooks set deliver_at = now() where hook_url <> '';

-- A webhook's next deliveries may be recorded ahead (in one commit); they are sent in `ord`
-- order, each only after the previous one was acknowledged.
drop index deliveries_one_per_webhook;
alter table deliveries add column ord bigserial;
create index deliveries_webhook_ord on deliveries(webhook_id, ord);
