-- schemaop:no-transaction
-- refused at line 5
-- BEGIN without COMMIT would swallow the rest of the file.
CREATE TABLE before_begin (id int);
BEGIN;
CREATE TABLE after_begin (id int);
