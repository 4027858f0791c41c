-- An E-string continued on the next line stays an E-string: `\'` in the
-- second part is an escaped quote, so `; COMMIT; --` is text, not SQL.
CREATE TABLE notes (body text DEFAULT E'first part'
'\'; COMMIT; --');
