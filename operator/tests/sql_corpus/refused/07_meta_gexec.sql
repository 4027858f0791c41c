-- refused at line 3
CREATE TABLE a (id int);
SELECT format('CREATE TABLE %I (id int)', 'b') \gexec
