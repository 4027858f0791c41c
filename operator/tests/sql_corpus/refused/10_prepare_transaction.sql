-- refused at line 3
CREATE TABLE a (id int);
PREPARE TRANSACTION 'x';
