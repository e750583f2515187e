-- The janitor (src/deploy/janitor.c) prunes finished webhook deliveries by age; this keeps
-- its hourly statement from reading the whole table.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (updated_at)
    WHERE state <> 'pending';
