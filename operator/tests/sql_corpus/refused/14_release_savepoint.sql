-- refused at line 2
RELEASE SAVEPOINT s;
CREATE TABLE a (id int);
