-- schemaop:no-transaction
-- ALTER TYPE ... ADD VALUE, then a statement that uses the new value: each
-- statement commits before the next.
CREATE TYPE mood AS ENUM ('sad', 'ok');
ALTER TYPE mood ADD VALUE 'happy';
CREATE TABLE people (name text, current mood DEFAULT 'happy');
