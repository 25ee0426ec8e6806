-- The webhook's `runs` (the latest ten, newest first) is read from webhook_runs instead of
-- being rewritten into the webhook's row by every run: a run's update of the row stays small,
-- and the lease a claim writes (no indexed column) can stay on the row's page (fillfactor).
alter table webhook_runs add column summary text not null default '';

-- What the rows held moves over, newest first (1 ms apart, before anything recorded later).
insert into webhook_runs(webhook_id, feed_id, owner, scheduled_for, started_at, finished_at, status,
                         polled, full_scan, summary)
  select w.id, w.feed_id, '', t.at, t.at, t.at, 'recorded', false, false, e
  from webhooks w
  cross join lateral jsonb_array_elements_text(w.runs) with ordinality x(e, o)
  cross join lateral (select now() - o * interval '1 millisecond' as at) t;

alter table webhooks drop column runs;
alter table webhooks set (fillfactor = 70);
alter table feeds set (fillfactor = 70);
alter table connections set (fillfactor = 80);
