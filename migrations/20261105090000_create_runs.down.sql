DROP TABLE run_events;
DROP TABLE runs;
DROP TYPE run_status;
