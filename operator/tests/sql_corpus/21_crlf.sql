-- Windows line endings.
CREATE TABLE crlf (id int,
  name text DEFAULT 'a;b');
-- comment; here
CREATE INDEX crlf_name ON crlf (name);
