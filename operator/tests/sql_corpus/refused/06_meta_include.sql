-- refused at line 3
CREATE TABLE a (id int);
\i other.sql
