-- refused at line 2
\set ON_ERROR_STOP on
CREATE TABLE a (id int);
