-- `begin` inside the parentheses of CREATE FUNCTION is a name: psql counts
-- BEGIN only at parenthesis depth 0. The bare `begin` after RETURN it does
-- count, so it sends the rest of the file as one statement; so must we.
CREATE FUNCTION span(begin int, "end" int) RETURNS int LANGUAGE sql RETURN "end" - begin;
CREATE TABLE after_span (id int);
