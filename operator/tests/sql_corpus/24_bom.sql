-- A UTF-8 byte-order mark before the first comment.
CREATE TABLE with_bom (id int);
