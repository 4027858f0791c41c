-- `a$e'\'` is the type a$e followed by the standard string '\', not an
-- E-string: the quote after the backslash ends it.
CREATE DOMAIN a$e AS text;
CREATE TABLE t (x a$e DEFAULT a$e'\');
CREATE TABLE u (y text DEFAULT 'x;y');
