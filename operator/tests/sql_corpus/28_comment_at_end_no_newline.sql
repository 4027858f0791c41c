-- A comment at the very end without a newline.
CREATE TABLE last_comment (id int);
-- the end; really