-- Derived duration for dashboards; stored so it can be indexed later.
ALTER TABLE runs
    ADD COLUMN duration interval
    GENERATED ALWAYS AS (finished_at - started_at) STORED;

CREATE FUNCTION touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER workflows_touch_updated_at
    BEFORE UPDATE ON workflows
    FOR EACH ROW EXECUTE FUNCTION touch_updated_at();
