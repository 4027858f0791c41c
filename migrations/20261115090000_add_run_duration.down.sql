DROP TRIGGER workflows_touch_updated_at ON workflows;
DROP FUNCTION touch_updated_at();
ALTER TABLE runs DROP COLUMN duration;
