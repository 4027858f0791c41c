-- BEGIN, END, COMMIT as column names: unreserved keywords, not transaction control.
CREATE TABLE periods ("begin" date, "end" date, commit text, rollback text);
CREATE VIEW period_view AS SELECT "begin", "end" FROM periods;
