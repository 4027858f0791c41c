-- schemaop:no-transaction
-- The same rule in a no-transaction file, where splitting inside the
-- parentheses sent two broken statements.
CREATE TABLE a (x int);
CREATE TABLE b (x int);
CREATE TABLE c (x int);
CREATE RULE r AS ON INSERT TO a DO ALSO (INSERT INTO b VALUES (NEW.x); INSERT INTO c VALUES (NEW.x));
CREATE TABLE after_rule (id int);
