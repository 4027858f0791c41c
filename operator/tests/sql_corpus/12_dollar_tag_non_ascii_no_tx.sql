-- schemaop:no-transaction
-- A non-ASCII dollar tag in a no-transaction file.
CREATE FUNCTION grüße() RETURNS int LANGUAGE sql AS $grüße$ SELECT 1; SELECT 2; $grüße$;
CREATE TABLE after_gruesse (id int);
