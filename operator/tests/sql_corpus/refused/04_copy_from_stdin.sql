-- refused at line 4
-- COPY FROM stdin with the data inline: only psql reads it.
CREATE TABLE people (name text);
COPY people (name) FROM stdin;
alice
bob
\.
