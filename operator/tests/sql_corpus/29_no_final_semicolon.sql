-- The last statement has no semicolon.
CREATE TABLE first_one (id int);
CREATE TABLE last_one (id int)
