-- schemaop:no-transaction
-- E-string continuation in a no-transaction file.
CREATE TABLE notes (body text DEFAULT E'a\n'
  '\'; still text'
  'and more');
CREATE TABLE after_notes (id int);
