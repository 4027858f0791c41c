-- CREATE RULE with several actions in parentheses: the semicolons between
-- them do not end the statement.
CREATE TABLE a (x int);
CREATE TABLE b (x int);
CREATE TABLE c (x int);
CREATE RULE r AS ON INSERT TO a DO ALSO (INSERT INTO b VALUES (NEW.x); INSERT INTO c VALUES (NEW.x));
